"""Wiring for learning: which adapters play the ports of training, evaluation and the demo.

Plain factories, so the container (or a test) can hand them to the use cases: the synthetic feed
the demo records, the Gymnasium environment over market tapes, and the Stable-Baselines3 trainer.
The environment's settings are one frozen value, :class:`EnvironmentSettings`, stored with every
model so a model is always evaluated and traded the way it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from adapters.gym_env import OrderbookEnv
from adapters.sb3 import Sb3Trainer
from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig
from domain.actions import ActionConfig, PricingStrategy
from domain.fees import FeeSchedule
from domain.market_tape import MarketTape
from domain.rewards import RewardFunction
from domain.values import MONEY_SCALE, ONE_CONTRACT


@attrs.frozen
class EnvironmentSettings:
    """What an agent trades with: order size and pricing, position limit, cash, fees, reward."""

    contract_size: int = 10  # whole contracts per order (RL_ACTOR_CONTRACT_SIZE)
    pricing: PricingStrategy = attrs.field(default=PricingStrategy.AGGRESSIVE, converter=PricingStrategy)
    max_position_contracts: int = 50
    initial_cash_dollars: int = 100
    maker_fees: bool = False  # the series charges makers 1.75% (most charge nothing)
    reward_scale: float = 1.0
    inventory_penalty: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "pricing": self.pricing.value}

    def make_environment(self, tapes: Sequence[MarketTape]) -> OrderbookEnv:
        return OrderbookEnv(
            tapes,
            actions=ActionConfig(
                order_size=self.contract_size * ONE_CONTRACT,
                pricing=self.pricing,
                max_position=self.max_position_contracts * ONE_CONTRACT,
            ),
            fees=FeeSchedule.kalshi_with_maker_fees() if self.maker_fees else FeeSchedule.kalshi_standard(),
            reward=RewardFunction(self.reward_scale, self.inventory_penalty),
            initial_cash=self.initial_cash_dollars * MONEY_SCALE,
        )


def sb3_trainer(
    environment: EnvironmentSettings, *, algorithm: str = "ppo", n_envs: int = 4, torch_threads: int = 1
) -> Sb3Trainer:
    return Sb3Trainer(environment.make_environment, algorithm=algorithm, n_envs=n_envs, torch_threads=torch_threads)


def synthetic_session_feed(*, seed: int, markets: int, duration_ms: int, edge_strength: float) -> SyntheticMarketFeed:
    """A SYNTHETIC session: ``markets`` generated markets that trade for ``duration_ms`` and resolve."""
    config = SyntheticMarketConfig(seed=seed, markets=markets, duration_ms=duration_ms, edge_strength=edge_strength)
    return SyntheticMarketFeed(config)
