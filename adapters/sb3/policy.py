"""A trained model as the :class:`~domain.ports.Policy` port, and as a :class:`~domain.ports.TrainedAgent`.

The policy acts exactly as the model was trained to: the observation goes through the
normalisation the training environment applied (saved in the model file), and the action mask
is used the way training used it -- a model trained with masks picks its most likely *legal*
action; one trained without them picks its most likely action, and an illegal one becomes HOLD,
which is what the environment did with it during training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from adapters.sb3.model_file import ModelMetadata, save_model

HOLD = 0


class Sb3Policy:
    """Greedy (deterministic) actions of a trained model."""

    def __init__(self, model: BaseAlgorithm, metadata: ModelMetadata) -> None:
        self.model = model
        self.metadata = metadata

    @property
    def action_count(self) -> int:
        return int(self.model.action_space.n)  # type: ignore[attr-defined]

    def prepare(self, observation: np.ndarray) -> np.ndarray:
        """The observation as the network sees it (normalised as in training)."""
        normalizer = self.metadata.normalizer
        observation = np.asarray(observation, dtype=np.float32)
        return observation if normalizer is None else normalizer(observation)

    def network_probabilities(self, observation: np.ndarray) -> np.ndarray:
        """The network's distribution over every action, before any mask."""
        policy = self.model.policy
        with torch.no_grad():
            tensor, _ = policy.obs_to_tensor(self.prepare(observation))
            probabilities = policy.get_distribution(tensor).distribution.probs  # type: ignore[union-attr]
        return probabilities.cpu().numpy()[0]

    def action_probabilities(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> np.ndarray:
        """The distribution the policy acts from: for a model trained with masks, the network's
        renormalised over the legal actions (what ``MaskablePPO`` samples from: a masked action
        has probability 0); for one trained without, or without a mask, the network's own."""
        probabilities = self.network_probabilities(observation)
        if action_mask is None or not self.metadata.masked:
            return probabilities
        legal = np.where(np.asarray(action_mask, dtype=bool), probabilities.astype(np.float64), 0.0)
        total = legal.sum()
        if total <= 0:  # every legal action's float32 probability underflowed to 0: call them equal
            legal = np.asarray(action_mask, dtype=np.float64)
            total = legal.sum()
        return legal / total

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> int:
        probabilities = self.network_probabilities(observation)
        if action_mask is None:
            return int(np.argmax(probabilities))
        legal = np.asarray(action_mask, dtype=bool)
        if self.metadata.masked:
            return int(np.argmax(np.where(legal, probabilities, -1.0)))
        action = int(np.argmax(probabilities))
        return action if legal[action] else HOLD


class Sb3Agent:
    """A trained model with what it was trained with: the :class:`~domain.ports.TrainedAgent` port."""

    def __init__(
        self,
        model: BaseAlgorithm,
        metadata: ModelMetadata,
        *,
        algorithm: str,
        hyperparameters: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.metadata = metadata
        self.algorithm = algorithm
        self.hyperparameters = dict(hyperparameters)
        self.metrics = dict(metrics or {})

    def save(self, path: str) -> None:
        save_model(self.model, Path(path), self.metadata)

    def policy(self) -> Sb3Policy:
        return Sb3Policy(self.model, self.metadata)

    def weights(self) -> dict[str, np.ndarray]:
        """The policy network's parameters by name (to compare two runs)."""
        return {name: tensor.detach().cpu().numpy().copy() for name, tensor in self.model.policy.state_dict().items()}
