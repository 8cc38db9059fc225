"""Curriculum: the easier markets first, the whole set by the end of the ramp.

"Easier" is measured from the compiled tapes, before training: a market is harder the wider its
spread (what crossing it costs) and the more its price moves from one decision to the next
(how much a wrong position loses before it can be undone). The difficulty of a tape is the mean
quoted spread plus the standard deviation of one-step mark changes, both in cents.

Training starts on the easiest ``start_fraction`` of the tapes; the pool grows linearly with the
timesteps done until, at ``ramp_fraction`` of the run, every tape is in it. Each environment
copy draws its episodes uniformly from the current pool with its own seeded generator, so a
curriculum run is as reproducible as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from adapters.sb3.settings import Curriculum
from domain.market_tape import NO_LEVEL, MarketTape
from domain.values import ONE_CENT_PRICE, ONE_DOLLAR


def tape_difficulty(tape: MarketTape) -> float:
    """Mean spread plus one-step mark volatility, in cents (rows where both sides quote)."""
    yes_bid = tape.bid_prices[:, 0, 0].astype(np.int64)
    no_bid = tape.bid_prices[:, 1, 0].astype(np.int64)
    two_sided = (yes_bid != NO_LEVEL) & (no_bid != NO_LEVEL)
    spreads = (ONE_DOLLAR - no_bid - yes_bid)[two_sided]
    spread = float(spreads.mean()) if spreads.size else float(ONE_DOLLAR)
    moves = np.diff(tape.marks.astype(np.int64))
    volatility = float(moves.std()) if moves.size else 0.0
    return (spread + volatility) / ONE_CENT_PRICE


def easiest_first(tapes: Sequence[MarketTape]) -> list[MarketTape]:
    """The tapes from easiest to hardest (ties keep their order)."""
    return sorted(tapes, key=tape_difficulty)


class CurriculumEnv(gym.Wrapper):
    """Picks each episode among the first ``pool`` tapes of the wrapped environment (which holds
    them easiest first), instead of letting it draw among all of them."""

    def __init__(self, env: gym.Env, pool: int) -> None:
        super().__init__(env)
        self.pool = pool
        self._rng = np.random.default_rng()

    def set_pool(self, pool: int) -> None:
        self.pool = pool

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if options and "episode" in options:
            return self.env.reset(seed=seed, options=options)
        episode = int(self._rng.integers(self.pool))
        return self.env.reset(seed=seed, options={**(options or {}), "episode": episode})


class CurriculumCallback(BaseCallback):
    """Widens every copy's pool as training progresses (before each rollout)."""

    def __init__(self, curriculum: Curriculum, tapes: int, total_timesteps: int) -> None:
        super().__init__()
        self.curriculum = curriculum
        self.tapes = tapes
        self.total_timesteps = total_timesteps
        self.pools: list[int] = []  # the pool at each rollout, for the record

    def _on_rollout_start(self) -> None:
        progress = self.num_timesteps / self.total_timesteps
        pool = self.curriculum.pool_size(self.tapes, progress)
        if not self.pools or self.pools[-1] != pool:
            self.training_env.env_method("set_pool", pool)
        self.pools.append(pool)

    def _on_step(self) -> bool:
        return True
