"""Training with Stable-Baselines3: the :class:`~domain.ports.AgentTrainer` port.

Several copies of the environment run in one process (``DummyVecEnv``): the environment step is
cheap Python, so worker processes would cost more in pickling than they save. Each copy is
seeded from the training seed, so a run is reproducible on the same machine and library
versions. Torch is held to ``torch_threads`` threads: the machines are small and shared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from domain.actions import ACTION_COUNT
from domain.market_tape import MarketTape

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C}

# Small and quick: a first model in a minute on two cores. Override any of them per run.
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "ppo": {
        "learning_rate": 3e-4,
        "n_steps": 256,
        "batch_size": 256,
        "n_epochs": 4,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "ent_coef": 0.01,
        "net_arch": [64, 64],
    },
    "a2c": {"learning_rate": 7e-4, "n_steps": 16, "gamma": 0.99, "ent_coef": 0.01, "net_arch": [64, 64]},
}

EnvFactory = Callable[[Sequence[MarketTape]], gym.Env]


class Sb3Policy:
    """The :class:`~domain.ports.Policy` port over a trained model: its most likely action.

    An action the mask forbids becomes HOLD -- exactly what the environment does with it during
    training, so the model is judged on the behaviour it learned.
    """

    def __init__(self, model: BaseAlgorithm) -> None:
        self.model = model

    def action_probabilities(self, observation: np.ndarray) -> np.ndarray:
        policy = self.model.policy
        with torch.no_grad():
            tensor, _ = policy.obs_to_tensor(np.asarray(observation, dtype=np.float32))
            probabilities = policy.get_distribution(tensor).distribution.probs  # type: ignore[union-attr]
        return probabilities.cpu().numpy()[0]

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> int:
        action = int(np.argmax(self.action_probabilities(observation)))
        if action_mask is not None and not action_mask[action]:
            return 0
        return action


class Sb3Agent:
    """A trained Stable-Baselines3 model: the :class:`~domain.ports.TrainedAgent` port."""

    def __init__(self, model: BaseAlgorithm, algorithm: str, hyperparameters: Mapping[str, Any]) -> None:
        self.model = model
        self.algorithm = algorithm
        self.hyperparameters = dict(hyperparameters)

    def save(self, path: str) -> None:
        self.model.save(path)

    def policy(self) -> Sb3Policy:
        return Sb3Policy(self.model)


class Sb3Trainer:
    """Trains ``algorithm`` (``ppo`` or ``a2c``) with an MLP policy on environments from ``make_env``."""

    def __init__(
        self,
        make_env: EnvFactory,
        *,
        algorithm: str = "ppo",
        n_envs: int = 4,
        hyperparameters: Mapping[str, Any] | None = None,
        torch_threads: int = 1,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        unknown = set(hyperparameters or ()) - set(DEFAULT_HYPERPARAMETERS[algorithm])
        if unknown:
            raise ValueError(
                f"unknown {algorithm} hyperparameters {sorted(unknown)}; "
                f"known: {sorted(DEFAULT_HYPERPARAMETERS[algorithm])}"
            )
        self.make_env = make_env
        self.algorithm = algorithm
        self.n_envs = n_envs
        self.settings = {**DEFAULT_HYPERPARAMETERS[algorithm], **(hyperparameters or {})}
        self.torch_threads = torch_threads

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {**self.settings, "n_envs": self.n_envs}

    def train(
        self, tapes: Sequence[MarketTape], *, total_timesteps: int, seed: int, progress: bool = False
    ) -> Sb3Agent:
        if total_timesteps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {total_timesteps}")
        if not tapes:
            raise ValueError("training needs at least one market tape")
        torch.set_num_threads(self.torch_threads)
        environments = DummyVecEnv([self._env_maker(tapes) for _ in range(self.n_envs)])
        environments.seed(seed)
        settings = dict(self.settings)
        net_arch = settings.pop("net_arch")
        model = ALGORITHMS[self.algorithm](
            "MlpPolicy",
            environments,
            seed=seed,
            device="cpu",
            verbose=0,
            policy_kwargs={"net_arch": list(net_arch)},
            **settings,
        )
        model.learn(total_timesteps=total_timesteps, progress_bar=progress)
        environments.close()
        return Sb3Agent(
            model, self.algorithm, {**self.hyperparameters, "total_timesteps": total_timesteps, "seed": seed}
        )

    def load_policy(self, path: str) -> Sb3Policy:
        model = ALGORITHMS[self.algorithm].load(path, device="cpu")
        space = model.action_space
        if getattr(space, "n", None) != ACTION_COUNT:
            raise ValueError(f"{path}: the model's action space {space} is not the {ACTION_COUNT}-action space")
        return Sb3Policy(model)

    def _env_maker(self, tapes: Sequence[MarketTape]) -> Callable[[], gym.Env]:
        return lambda: Monitor(self.make_env(tapes))
