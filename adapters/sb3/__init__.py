"""Stable-Baselines3: training (PPO with action masks, A2C), model files, and the policy a trained model plays.

The names below load on first use (PEP 562): importing the package does not import torch, so a
command that never trains or acts (``exchange``, ``collect``, ``serve`` without a model) starts
in a fraction of a second. The options themselves live in :mod:`adapters.sb3.settings`.
"""

from __future__ import annotations

import importlib
from typing import Any

from adapters.sb3.settings import ALGORITHMS, DEFAULT_HYPERPARAMETERS, VECTORISATIONS, Curriculum, TrainingOptions

_LAZY = {
    "tape_difficulty": "adapters.sb3.curriculum",
    "ModelFileError": "adapters.sb3.model_file",
    "Sb3Agent": "adapters.sb3.policy",
    "Sb3Policy": "adapters.sb3.policy",
    "Sb3Trainer": "adapters.sb3.trainer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adapters.sb3' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ALGORITHMS",
    "DEFAULT_HYPERPARAMETERS",
    "VECTORISATIONS",
    "Curriculum",
    "ModelFileError",
    "Sb3Agent",
    "Sb3Policy",
    "Sb3Trainer",
    "TrainingOptions",
    "tape_difficulty",
]
