"""Many copies of the environment behind SB3's ``VecEnv`` API: in this process, or in workers.

Measured on the 2-core machine (``benchmarks/train.py``, masked PPO, shared and noisy): with 2
copies, in-process ~1,100 timesteps/s against ~530 in 2 worker processes (the workers' per-step
pickling and wake-ups cost more than the environment step, and ``action_masks()`` costs each
worker a second round trip per step); with 16 copies, ~3,600 against ~400 (16 processes on 2
cores). Splitting the copies in two -- half here, half in one worker stepped at the same time,
one message each way per step with the arrays sent as raw bytes -- measured no faster either
(10-14k environment steps/s both ways over 16 copies, session 4): the two hand-offs per step
cost what the overlap saves on this virtual machine. So ``in-process`` is the default;
``subprocess`` stays an option for machines with cores to spare.

:class:`InProcessVecEnv` is ``DummyVecEnv`` without its per-step ``deepcopy`` of the info dicts
(a tenth of a training step's time here): ``OrderbookEnv`` builds a new info dict every step, so
nothing is shared with the caller that the next step could change. Nor does it ``deepcopy`` the
observation buffer's dict to hand out one array: it copies the array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from adapters.sb3.settings import VECTORISATIONS


class InProcessVecEnv(DummyVecEnv):
    def __init__(self, env_fns: list[Callable[[], gym.Env]]) -> None:
        super().__init__(env_fns)
        self._flat = self.keys == [None]  # one array of observations (a Box space, as OrderbookEnv's)

    def _save_obs(self, env_idx: int, obs: VecEnvObs) -> None:
        if self._flat:
            self.buf_obs[None][env_idx] = obs
        else:
            super()._save_obs(env_idx, obs)

    def _obs_from_buf(self) -> VecEnvObs:
        """A copy of the buffer, as ``DummyVecEnv`` hands out, without its ``deepcopy`` of a dict."""
        return self.buf_obs[None].copy() if self._flat else super()._obs_from_buf()

    def step_wait(self) -> VecEnvStepReturn:
        infos = self.buf_infos
        for index, environment in enumerate(self.envs):
            observation, reward, terminated, truncated, info = environment.step(self.actions[index])
            self.buf_rews[index] = reward
            done = terminated or truncated
            self.buf_dones[index] = done
            info["TimeLimit.truncated"] = truncated and not terminated
            if done:
                info["terminal_observation"] = observation
                observation, self.reset_infos[index] = environment.reset()
            infos[index] = info
            self._save_obs(index, observation)
        return self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), list(infos)


class ObservationNormalize(VecNormalize):
    """``VecNormalize`` for observations alone (rewards as they are), without its per-step extras:
    the statistics of returns nobody reads, a ``deepcopy`` of every batch, numpy's Python-level
    ``mean``/``var`` wrappers (~100-125 us a step on 16 copies here, ~50 us this way). The running
    statistics and the normalised observations are the same, bit for bit (tested against
    ``VecNormalize``), so the saved normalisation means what it meant."""

    def __init__(self, venv: VecEnv, *, training: bool = True) -> None:
        super().__init__(venv, training=training, norm_obs=True, norm_reward=False)

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, dones, infos = self.venv.step_wait()
        assert isinstance(observations, np.ndarray)
        self.old_obs, self.old_reward = observations, rewards
        if self.training:
            self._update_statistics(observations)
        normalised = self._normalize(observations)
        if dones.any():
            for index in np.flatnonzero(dones):
                terminal = infos[index].get("terminal_observation")
                if terminal is not None:
                    infos[index]["terminal_observation"] = self._normalize(terminal)
        return normalised, rewards, dones, infos

    def _normalize(self, observations: np.ndarray) -> np.ndarray:
        return self._normalize_obs(observations, self.obs_rms).astype(np.float32)  # type: ignore[arg-type]

    def _update_statistics(self, batch: np.ndarray) -> None:
        """``RunningMeanStd.update``, with numpy's ``mean`` and ``var`` done by their own ufuncs
        in their own order (a float32 sum divided by the count as ``intp``)."""
        count = np.intp(len(batch))
        mean = np.add.reduce(batch, axis=0, keepdims=True)
        np.true_divide(mean, count, out=mean, casting="unsafe")
        deviations = np.subtract(batch, mean)
        np.square(deviations, out=deviations)
        variance = np.add.reduce(deviations, axis=0)
        np.true_divide(variance, count, out=variance, casting="unsafe")
        self.obs_rms.update_from_moments(mean[0], variance, len(batch))  # type: ignore[union-attr]


def vectorised(factories: Sequence[Callable[[], gym.Env]], kind: str) -> VecEnv:
    if kind == "in-process":
        return InProcessVecEnv(list(factories))
    if kind == "subprocess":
        # forkserver: a fresh interpreter per worker, not a fork of one holding torch's threads.
        return SubprocVecEnv(list(factories), start_method="forkserver")
    raise ValueError(f"vectorisation must be one of {', '.join(VECTORISATIONS)}, got {kind!r}")
