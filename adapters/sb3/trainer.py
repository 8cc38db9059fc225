"""Training with Stable-Baselines3: the :class:`~domain.ports.AgentTrainer` port.

What one run does, in order:

* ``n_envs`` copies of the environment (``vectorisation``: in this process by default, see
  :mod:`adapters.sb3.vec_env`), each seeded from the run's seed, with episode statistics
  (``VecMonitor``) and observation normalisation (``ObservationNormalize``, SB3's
  ``VecNormalize`` made lean: running mean and variance, saved into the model file and applied
  by the loaded policy exactly as in training);
* the policy network of :mod:`adapters.sb3.rollout_policy`: SB3's MLP actor-critic, whose
  rollout forward pass runs in numpy;
* PPO from sb3-contrib's ``MaskablePPO`` when action masks are on (the agent never samples an
  action the environment would refuse), plain PPO or A2C otherwise (an illegal action then acts
  as HOLD, as the environment treats it);
* optionally a curriculum (easier markets first, :mod:`adapters.sb3.curriculum`), TensorBoard
  logs, periodic checkpoints (model files, loadable as policies) and periodic evaluation on the
  held-out tapes given as ``eval_tapes`` (mean episode reward, logged and returned as metrics;
  ``eval_every`` without them, or them without it, is refused: never the training tapes);
* when the caller passes a ``stop`` request, a callback that ends training at the next step
  once it is set (:class:`StopOnRequest`);
* always, the training curve (:class:`TrainingCurve`: mean episode reward per rollout), returned
  in the metrics as ``training_curve`` (the application plots it).

Same seed, same tapes, same settings -> the same weights, bit for bit, on one machine (tested):
every source of randomness (torch, numpy, the environments, the curriculum's draws) is seeded
from the run's seed, and torch runs on ``torch_threads`` threads (2 by default; rollouts use
numpy, :mod:`adapters.sb3.rollout_policy`, so torch's threads serve the gradient phase alone).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from adapters.sb3.curriculum import CurriculumCallback, CurriculumEnv, easiest_first, tape_difficulty
from adapters.sb3.model_file import ModelMetadata, ObservationNormalizer, load_model, save_model
from adapters.sb3.policy import Sb3Agent, Sb3Policy
from adapters.sb3.rollout_policy import FastActorCriticPolicy, FastMaskablePolicy
from adapters.sb3.settings import TrainingOptions
from adapters.sb3.vec_env import ObservationNormalize, vectorised
from domain.market_tape import MarketTape
from domain.ports import StopRequest

EnvFactory = Callable[[Sequence[MarketTape]], gym.Env]


class Sb3Trainer:
    """Trains PPO (masked or not) or A2C with an MLP policy on environments from ``make_env``."""

    def __init__(self, make_env: EnvFactory, options: TrainingOptions | None = None) -> None:
        self.make_env = make_env
        self.options = options or TrainingOptions()

    @property
    def algorithm(self) -> str:
        return self.options.algorithm

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.options.as_dict()

    @property
    def rollout_timesteps(self) -> int:
        return self.options.rollout_timesteps

    def train(
        self,
        tapes: Sequence[MarketTape],
        *,
        total_timesteps: int,
        seed: int,
        progress: bool = False,
        eval_tapes: Sequence[MarketTape] | None = None,
        checkpoint_dir: str | None = None,
        run_name: str | None = None,
        stop: StopRequest | None = None,
    ) -> Sb3Agent:
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, int) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be an integer >= 1, got {total_timesteps!r}")
        if not tapes:
            raise ValueError("training needs at least one market tape")
        options = self.options
        if total_timesteps < options.rollout_timesteps:
            raise ValueError(
                f"total_timesteps {total_timesteps} is less than one rollout ({options.settings['n_steps']} steps x "
                f"{options.n_envs} environments = {options.rollout_timesteps} timesteps), the least a run trains"
            )
        if options.checkpoint_every is not None and checkpoint_dir is None:
            raise ValueError("checkpoint_every is set but no checkpoint_dir was given")
        # Evaluating on the training tapes would be reported as held-out: never fall back to them.
        if options.eval_every is not None and not eval_tapes:
            raise ValueError("eval_every is set but no held-out eval_tapes were given (evaluating on the "
                             "training tapes would say nothing about held-out sessions)")  # fmt: skip
        if eval_tapes and options.eval_every is None:
            raise ValueError("eval_tapes were given but eval_every is not set: they would never be used")
        torch.set_num_threads(options.torch_threads)
        curriculum = options.curriculum
        tapes = easiest_first(tapes) if curriculum is not None else list(tapes)
        start_pool = curriculum.pool_size(len(tapes), 0.0) if curriculum is not None else 0
        environments = self._environments(tapes, options.n_envs, seed=seed, start_pool=start_pool)
        curve = TrainingCurve()
        callbacks: list[BaseCallback] = [curve]
        stopper = StopOnRequest(stop) if stop is not None else None
        if stopper is not None:
            callbacks.append(stopper)
        evaluations: EvalCallback | None = None
        try:
            model = self._model(environments, seed)
            if curriculum is not None:
                callbacks.append(CurriculumCallback(curriculum, len(tapes), total_timesteps))
            if options.checkpoint_every is not None:
                callbacks.append(CheckpointCallback(options.checkpoint_every, Path(str(checkpoint_dir)), self._metadata))
            if options.eval_every is not None:
                evaluations = self._evaluation(eval_tapes, seed)
                callbacks.append(evaluations)
            started = time.perf_counter()
            with _unchecked_distributions():
                model.learn(
                    total_timesteps=total_timesteps,
                    progress_bar=progress,
                    callback=callbacks,
                    tb_log_name=run_name or options.algorithm,
                )
            seconds = time.perf_counter() - started
        finally:
            environments.close()
            if evaluations is not None:
                evaluations.eval_env.close()
        metrics = self._metrics(model, seconds, evaluations, callbacks, tapes)
        if stopper is not None and stopper.stopped:
            metrics["stopped"] = True  # asked to stop before total_timesteps
        return Sb3Agent(
            model,
            self._metadata(model),
            algorithm=options.algorithm,
            hyperparameters={**self.hyperparameters, "total_timesteps": total_timesteps, "seed": seed},
            metrics=metrics,
        )

    def load_policy(self, path: str) -> Sb3Policy:
        model, metadata = load_model(path)
        return Sb3Policy(model, metadata)

    # -- pieces ---------------------------------------------------------------------------------
    def _environments(self, tapes: Sequence[MarketTape], copies: int, *, seed: int, start_pool: int) -> VecEnv:
        make_env = self.make_env

        def factory() -> gym.Env:
            environment = make_env(tapes)
            return CurriculumEnv(environment, start_pool) if start_pool else environment

        environments: VecEnv = VecMonitor(vectorised([factory] * copies, self.options.vectorisation))
        if self.options.normalize_observations:
            environments = ObservationNormalize(environments)
        environments.seed(seed)
        return environments

    def _model(self, environments: VecEnv, seed: int) -> BaseAlgorithm:
        options = self.options
        settings = options.settings
        net_arch = list(settings.pop("net_arch"))
        policy: type[BasePolicy] = FastActorCriticPolicy
        if options.algorithm == "a2c":
            algorithm: type[BaseAlgorithm] = A2C
        else:
            algorithm = MaskablePPO if options.masked else PPO
            policy = FastMaskablePolicy if options.masked else FastActorCriticPolicy
            # A minibatch larger than the rollout would be the rollout anyway; say so up front.
            settings["batch_size"] = min(settings["batch_size"], settings["n_steps"] * options.n_envs)
        return algorithm(
            policy,
            environments,
            seed=seed,
            device="cpu",
            verbose=0,
            # Adam's fused CPU kernel: one call per step instead of a dozen small ops per tensor
            # (Adam was ~10% of the gradient phase).
            policy_kwargs={"net_arch": net_arch, "optimizer_kwargs": {"fused": True}},
            tensorboard_log=options.tensorboard_dir,
            **settings,
        )

    def _metadata(self, model: BaseAlgorithm) -> ModelMetadata:
        environment = model.get_env()
        normalizer = (
            ObservationNormalizer.from_vec_normalize(environment) if isinstance(environment, VecNormalize) else None
        )
        name = "maskable-ppo" if isinstance(model, MaskablePPO) else self.options.algorithm
        return ModelMetadata(algorithm=name, masked=isinstance(model, MaskablePPO), normalizer=normalizer)

    def _evaluation(self, tapes: Sequence[MarketTape], seed: int) -> EvalCallback:
        """Deterministic episodes on ``tapes`` every ``eval_every`` timesteps, the same ones each
        time (:class:`EpisodeCycle`), so the points of the curve compare; the evaluation
        environment reads the training normalisation statistics without updating them."""
        options = self.options
        environment: VecEnv = VecMonitor(vectorised([lambda: EpisodeCycle(self.make_env(tapes))], "in-process"))
        if options.normalize_observations:
            environment = ObservationNormalize(environment, training=False)
        environment.seed(seed + 1_000_003)  # its own episodes, not the first training copy's
        callback_class = MaskableEvalCallback if options.masked else EvalCallback
        return callback_class(
            environment,
            callback_after_eval=EvaluationLog(),
            n_eval_episodes=options.eval_episodes,
            eval_freq=max(1, (options.eval_every or 1) // options.n_envs),
            deterministic=True,
            verbose=0,
        )

    def _metrics(
        self,
        model: BaseAlgorithm,
        seconds: float,
        evaluations: EvalCallback | None,
        callbacks: Sequence[BaseCallback],
        tapes: Sequence[MarketTape],
    ) -> dict[str, Any]:
        episodes = [float(info["r"]) for info in model.ep_info_buffer or ()]
        metrics: dict[str, Any] = {
            "timesteps": int(model.num_timesteps),
            "seconds": round(seconds, 3),
            "timesteps_per_s": round(model.num_timesteps / seconds, 1) if seconds > 0 else None,
            "recent_episode_reward_mean": float(np.mean(episodes)) if episodes else None,
        }
        for callback in callbacks:
            if isinstance(callback, TrainingCurve):
                metrics["training_curve"] = callback.points
        if evaluations is not None and isinstance(evaluations.callback, EvaluationLog) and evaluations.callback.log:
            metrics["evaluations"] = evaluations.callback.log
            metrics["best_eval_mean_reward"] = float(evaluations.best_mean_reward)
        for callback in callbacks:
            if isinstance(callback, CurriculumCallback):
                metrics["curriculum"] = {
                    "difficulty_cents": [round(tape_difficulty(tape), 3) for tape in tapes],
                    "pool_per_rollout": callback.pools,
                }
            if isinstance(callback, CheckpointCallback):
                metrics["checkpoints"] = [str(path) for path in callback.saved]
        return metrics


@contextlib.contextmanager
def _unchecked_distributions() -> Iterator[None]:
    """Torch checks every distribution's arguments when it is built, once per policy forward
    pass: a sixth of the rollout phase here (measured), for inputs the policy builds itself."""
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)


class StopOnRequest(BaseCallback):
    """Ends training at the next step once ``stop`` is set (SB3 stops when a callback's step
    returns False): how a run cancelled from another thread -- Ctrl-C -- stops promptly."""

    def __init__(self, stop: StopRequest) -> None:
        super().__init__()
        self.stop = stop
        self.stopped = False

    def _on_step(self) -> bool:
        self.stopped = self.stop.is_set()
        return not self.stopped


class CheckpointCallback(BaseCallback):
    """Saves the model, as a complete model file, every ``every`` timesteps: once the gradient
    update of the rollout that crossed a multiple of ``every`` has been applied (SB3 calls
    ``_on_rollout_end`` *before* that update, so the save waits for the next rollout's start),
    and at the end of training. A checkpoint is named by the timesteps whose updates its weights
    hold, and its normalisation statistics are those of the same moment -- the last one is the
    final model. A run stopped mid-rollout ends without one for the rollout it did not learn from."""

    def __init__(self, every: int, directory: Path, metadata: Callable[[BaseAlgorithm], ModelMetadata]) -> None:
        super().__init__()
        self.every = every  # timesteps
        self.directory = directory
        self.metadata = metadata
        self.saved: list[Path] = []
        self._saved_at = 0  # timesteps of the last checkpoint
        self._learned = False  # the last rollout ended, so its update was (or is being) applied

    def _on_rollout_start(self) -> None:
        self._learned = False
        if self.num_timesteps // self.every > self._saved_at // self.every:
            self._save()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self._learned = True

    def _on_training_end(self) -> None:
        if self._learned and self.num_timesteps > self._saved_at:
            self._save()

    def _save(self) -> None:
        path = self.directory / f"step-{self.num_timesteps}.zip"
        save_model(self.model, path, self.metadata(self.model))
        self.saved.append(path)
        self._saved_at = self.num_timesteps


class TrainingCurve(BaseCallback):
    """The training curve: after each rollout, the mean reward and count of the episodes that
    ended in it (``VecMonitor`` marks them in the step infos). One point per rollout keeps it
    small however long the run."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[dict[str, float]] = []
        self._rewards: list[float] = []

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")
            if episode is not None:
                self._rewards.append(float(episode["r"]))
        return True

    def _on_rollout_end(self) -> None:
        if self._rewards:
            self.points.append(
                {
                    "timesteps": int(self.num_timesteps),
                    "mean_episode_reward": float(np.mean(self._rewards)),
                    "episodes": len(self._rewards),
                }
            )
            self._rewards = []


class EvaluationLog(BaseCallback):
    """Called by the evaluation callback after each evaluation: keeps its mean episode reward and
    sends the evaluation environment back to its first episode for the next evaluation."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        assert isinstance(self.parent, EvalCallback)
        self.log.append({"timesteps": int(self.num_timesteps), "mean_reward": float(self.parent.last_mean_reward)})
        self.parent.eval_env.env_method("restart")
        return True


class EpisodeCycle(gym.Wrapper):
    """Plays the environment's episodes in order -- 0, 1, 2, ..., then from 0 again -- and from
    the first after :meth:`restart`: every periodic evaluation meets the same episodes (a
    random draw per evaluation made its points incomparable)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._episodes = int(env.unwrapped.episode_count)  # type: ignore[attr-defined]
        self._next = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        episode = self._next % self._episodes
        self._next += 1
        return self.env.reset(seed=seed, options={**(options or {}), "episode": episode})

    def restart(self) -> None:
        self._next = 0

    def action_masks(self) -> Any:
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined]
