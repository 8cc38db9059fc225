"""How a training run is configured: the algorithms, their default hyperparameters, the
vectorisations, the curriculum and :class:`TrainingOptions`. Importable without torch or
Stable-Baselines3, so the command line can parse and check options (and every other command
can start) without loading them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

VECTORISATIONS = ("in-process", "subprocess")

ALGORITHMS = ("ppo", "a2c")

# Chosen with benchmarks/train.py and the learning test (tests/application/test_learning.py,
# 100k timesteps, held-out return over seeds 0-2) on 2 cores. More copies with shorter rollouts
# run faster -- every vectorised step pays a fixed cost (the policy's forward pass, normalisation,
# the rollout buffer) shared by the copies -- but learn less per timestep (shorter rollouts lean
# on a value function still being learnt). Rates measured while the machine was shared (16 x 256
# reached ~12.5k on a quiet day):
#   16 x 256-step rollouts:  ~8-9k timesteps/s,  +5.4 to +10.8 $/held-out market (11-18 s)
#   64 x 64:                 ~11k timesteps/s,   +2.1 to +4.8 (11-14 s)
#   128 x 32:                ~13k timesteps/s,   -5.7 to +4.6 (measured before the numpy rollouts)
# so the default keeps 16 x 256: the best return per second of training too (64 x 64 given 200k
# timesteps, ~25 s, still reached only -0.8 to +7.1, before the numpy rollouts). 4096-step
# rollouts in 1024-sample minibatches for 4 epochs keep the gradient phase under a fifth of the
# run. A small network: the observation is a few dozen numbers.
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "ppo": {
        "learning_rate": 3e-4,
        "n_steps": 256,
        "batch_size": 1024,
        "n_epochs": 4,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.01,
        "net_arch": [64, 64],
    },
    "a2c": {"learning_rate": 7e-4, "n_steps": 16, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.01, "net_arch": [64, 64]},
}

@attrs.frozen
class Curriculum:
    start_fraction: float = 0.25  # of the tapes, easiest first, trained on at the start
    ramp_fraction: float = 0.5  # of the run, after which every tape is in the pool

    def __attrs_post_init__(self) -> None:
        if not 0 < self.start_fraction <= 1:
            raise ValueError(f"curriculum start_fraction must lie in (0, 1], got {self.start_fraction!r}")
        if not 0 < self.ramp_fraction <= 1:
            raise ValueError(f"curriculum ramp_fraction must lie in (0, 1], got {self.ramp_fraction!r}")

    def pool_size(self, tapes: int, progress: float) -> int:
        """How many of the easiest tapes are drawn from at ``progress`` (0..1) of the run."""
        fraction = self.start_fraction + (1 - self.start_fraction) * min(1.0, progress / self.ramp_fraction)
        return max(1, min(tapes, math.ceil(fraction * tapes)))


def _at_least(minimum: int) -> Callable[[object, attrs.Attribute, int | None], None]:  # type: ignore[type-arg]
    def check(_instance: object, attribute: attrs.Attribute, value: int | None) -> None:  # type: ignore[type-arg]
        if value is None and attribute.default is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{attribute.name} must be an integer >= {minimum}, got {value!r}")

    return check


@attrs.frozen
class TrainingOptions:
    """How a run trains; everything here is recorded with the model (see ``as_dict``)."""

    algorithm: str = attrs.field(default="ppo", validator=attrs.validators.in_(ALGORITHMS))
    n_envs: int = attrs.field(default=16, validator=_at_least(1))
    vectorisation: str = attrs.field(default="in-process", validator=attrs.validators.in_(VECTORISATIONS))
    normalize_observations: bool = True
    action_masks: bool = True  # PPO only (sb3-contrib has no maskable A2C)
    # Torch works only in the gradient phase (rollouts use the numpy forward pass), where a
    # second thread is ~10% faster on 2 cores, with the same weights (benchmarks/train.py).
    torch_threads: int = attrs.field(default=2, validator=_at_least(1))
    hyperparameters: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    tensorboard_dir: str | None = None
    checkpoint_every: int | None = attrs.field(default=None, validator=_at_least(1))  # timesteps
    # timesteps between evaluations on the held-out eval_tapes given to train(), which are
    # required with it (and refused without it): never on the training tapes
    eval_every: int | None = attrs.field(default=None, validator=_at_least(1))
    eval_episodes: int = attrs.field(default=10, validator=_at_least(1))
    curriculum: Curriculum | None = None

    def __attrs_post_init__(self) -> None:
        known = DEFAULT_HYPERPARAMETERS[self.algorithm]
        unknown = set(self.hyperparameters) - set(known)
        if unknown:
            raise ValueError(f"unknown {self.algorithm} hyperparameters {sorted(unknown)}; known: {sorted(known)}")

    @property
    def masked(self) -> bool:
        return self.action_masks and self.algorithm == "ppo"

    @property
    def rollout_timesteps(self) -> int:
        """Timesteps between two gradient updates: ``n_steps`` in each of the ``n_envs`` copies.
        A run trains whole rollouts: at least one, and ``total_timesteps`` rounded up to them."""
        return int(self.settings["n_steps"]) * self.n_envs

    @property
    def settings(self) -> dict[str, Any]:
        """The algorithm's hyperparameters: the defaults with this run's overrides."""
        return {**DEFAULT_HYPERPARAMETERS[self.algorithm], **self.hyperparameters}

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.settings,
            "n_envs": self.n_envs,
            "vectorisation": self.vectorisation,
            "normalize_observations": self.normalize_observations,
            "action_masks": self.masked,
            "torch_threads": self.torch_threads,
            "curriculum": None if self.curriculum is None else attrs.asdict(self.curriculum),
        }
