"""Wiring for learning: which adapters play the ports of training, evaluation and the demo.

Plain factories, so the container (or a test) can hand them to the use cases: the synthetic feed
the demo records, the Gymnasium environment over market tapes, and the Stable-Baselines3 trainer.
The environment's settings are one frozen value, :class:`EnvironmentSettings`, stored with every
model so a model is always evaluated and traded the way it was trained -- including how the
simulated exchange fills (latency, queue model, consumed-liquidity refill).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from adapters.gym_env import OrderbookEnv
from adapters.sb3.settings import TrainingOptions
from adapters.simulated_exchange import (
    DEFAULT_LATENCY_MS,
    ExchangeConfig,
    SimulatedFillProbe,
    queue_model_named,
)
from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig
from domain.actions import ActionConfig, ActionSpace, PricingStrategy
from domain.fees import FeeSchedule
from domain.market_tape import MarketTape
from domain.rewards import RewardFunction
from domain.values import MONEY_SCALE, ONE_CONTRACT

if TYPE_CHECKING:
    from adapters.sb3.trainer import Sb3Trainer


@attrs.frozen
class EnvironmentSettings:
    """What an agent trades with: order size and pricing, position limit, cash, fees, reward, and
    the simulated exchange (order-entry latency, queue model, when consumed liquidity returns)."""

    contract_size: int = 10  # whole contracts per order (RL_ACTOR_CONTRACT_SIZE)
    pricing: PricingStrategy = attrs.field(default=PricingStrategy.AGGRESSIVE, converter=PricingStrategy)
    max_position_contracts: int = 50
    initial_cash_dollars: int = 100
    maker_fees: bool = False  # the series charges makers 1.75% (most charge nothing)
    reward_scale: float = 1.0
    inventory_penalty: float = 0.0
    latency_ms: int = DEFAULT_LATENCY_MS  # order entry: a request takes effect this long after it is sent
    queue_model: str = "risk-averse"  # see adapters.simulated_exchange.QUEUE_MODEL_NAMES
    liquidity_refill_ms: int | None = None  # None: consumed liquidity returns only as the replay drains it
    # "single-size" (5 actions) or "sized" (21): recorded with the model, so it is decoded as trained
    action_space: ActionSpace = attrs.field(default=ActionSpace.SINGLE_SIZE, converter=ActionSpace)

    def __attrs_post_init__(self) -> None:
        self.exchange_config()  # a bad latency, queue model or refill fails here, naming it

    def as_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "pricing": self.pricing.value}

    @property
    def fees(self) -> FeeSchedule:
        return FeeSchedule.kalshi_with_maker_fees() if self.maker_fees else FeeSchedule.kalshi_standard()

    def exchange_config(self, queue_model: str | None = None) -> ExchangeConfig:
        """The simulated exchange's settings (with another queue model, if named)."""
        return ExchangeConfig(
            latency_ms=self.latency_ms,
            queue_model=queue_model_named(queue_model or self.queue_model),
            liquidity_refill_ms=self.liquidity_refill_ms,
        )

    def make_training_environment(self, tapes: Sequence[MarketTape]) -> OrderbookEnv:
        """The environment without step details (each step's Order and Fill objects): training
        reads rewards, observations and masks only, and builds no objects it would not read."""
        return self.make_environment(tapes, step_details=False)

    def make_environment(self, tapes: Sequence[MarketTape], *, step_details: bool = True) -> OrderbookEnv:
        return OrderbookEnv(
            tapes,
            actions=ActionConfig(
                order_size=self.contract_size * ONE_CONTRACT,
                pricing=self.pricing,
                max_position=self.max_position_contracts * ONE_CONTRACT,
                space=self.action_space,
            ),
            fees=self.fees,
            reward=RewardFunction(self.reward_scale, self.inventory_penalty),
            initial_cash=self.initial_cash_dollars * MONEY_SCALE,
            exchange=self.exchange_config(),
            step_details=step_details,
        )

    def fill_probes(self, queue_models: Sequence[str], *, seed: int = 0) -> list[SimulatedFillProbe]:
        """One fill probe per queue model, on this exchange's latency, refill rule and fees."""
        return [SimulatedFillProbe(self.exchange_config(name), self.fees, seed=seed) for name in queue_models]


def sb3_trainer(environment: EnvironmentSettings, *, algorithm: str = "ppo", **options: Any) -> Sb3Trainer:
    """The trainer on ``environment``; ``options`` are :class:`~adapters.sb3.TrainingOptions` fields."""
    from adapters.sb3.trainer import Sb3Trainer  # torch loads here, when a command trains or acts

    return Sb3Trainer(environment.make_training_environment, TrainingOptions(algorithm=algorithm, **options))


def synthetic_session_feed(
    *,
    seed: int,
    markets: int,
    duration_ms: int,
    edge_strength: float,
    volatility: float | None = None,
    edge_lead_steps: int | None = None,
) -> SyntheticMarketFeed:
    """A SYNTHETIC session: ``markets`` generated markets that trade for ``duration_ms`` and
    resolve; ``volatility`` and ``edge_lead_steps`` default to the generator's."""
    knobs: dict[str, Any] = {}
    if volatility is not None:
        knobs["volatility"] = volatility
    if edge_lead_steps is not None:
        knobs["edge_lead_steps"] = edge_lead_steps
    config = SyntheticMarketConfig(
        seed=seed, markets=markets, duration_ms=duration_ms, edge_strength=edge_strength, **knobs
    )
    return SyntheticMarketFeed(config)
