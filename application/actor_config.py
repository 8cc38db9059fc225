"""What the paper-trading actor is given and what it reports: its configuration, its state,
its counters, and the market rows its observations are built from."""

from __future__ import annotations

import enum
from typing import Protocol

import attrs

from application.observation import LiveMarketObservation
from domain.events import PublicTrade
from domain.risk import RiskLimits


class ActorState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    HALTED = "halted"  # a risk limit or the kill switch: no more orders, the account still tracked
    STOPPED = "stopped"
    FAILED = "failed"


class MarketRows(Protocol):
    """Each market's live rows: the same rows training compiled from tapes, on the same grid."""

    step_ms: int  # the row grid: a row at every multiple of it on the Unix clock (the model's step)

    def sample(self, ticker: str, now_ms: int) -> LiveMarketObservation | None:
        """The row of ``ticker`` at the grid time ``now_ms`` (taken now from the live book if it
        is not yet; the same row again if it is) and the market's observation object (its
        observation, mask and decoded orders), or None when there is none (no book in sync, no
        close time, past the close, a time before the latest row or off the grid)."""
        ...

    def set_close(self, ticker: str, close_ms: int) -> None:
        """When trading in ``ticker`` closes: the time-left features count down to it."""
        ...

    def record_trade(self, trade: PublicTrade) -> None:
        """A public trade, in feed order (the trade-flow features)."""
        ...


@attrs.frozen
class ActorConfig:
    tickers: tuple[str, ...] = attrs.field(converter=tuple)
    contract_size: int  # whole contracts per order (RL_ACTOR_CONTRACT_SIZE); the model must match
    limits: RiskLimits
    reconcile_interval_s: float = 10.0
    reload_interval_s: float = 5.0
    client_order_prefix: str = "kfrl"
    cancel_on_stop: bool = True  # leave nothing resting when the process stops

    def __attrs_post_init__(self) -> None:
        if not self.tickers:
            raise ValueError("the actor needs at least one market ticker to trade (RL_MARKET_TICKERS)")
        if self.reconcile_interval_s <= 0 or self.reload_interval_s <= 0:
            raise ValueError("reconcile_interval_s and reload_interval_s must be > 0")


@attrs.define
class ActorCounters:
    book_updates: int = 0
    coalesced: int = 0  # book updates folded into one row (several between two grid times)
    rows: int = 0  # grid times the markets were sampled at (every market in sync, each time)
    late_rows: int = 0  # grid times the sampler woke too late for: rows from the book as it was next
    decisions: int = 0
    illegal_choices: int = 0  # the policy chose a masked action: held instead
    skipped: int = 0  # a decision due on a book out of sequence, or without a market row
    orders_placed: int = 0
    orders_replaced: int = 0  # placed in place of a resting one
    orders_kept: int = 0  # the decision was the order already resting
    orders_cancelled: int = 0
    orders_blocked: int = 0  # refused by the pre-trade risk check
    orders_rejected: int = 0  # refused by the exchange
    orders_unknown: int = 0  # the exchange did not answer: settled by the next reconciliation
    markets_closed: int = 0  # markets whose trading closed while the actor ran
    public_trades: int = 0  # the feed's trades handed to the observations
    fills: int = 0
    duplicate_fills: int = 0
    reconciliations: int = 0
    mismatches_adopted: int = 0
    settlements: int = 0  # resolved markets whose positions were booked as paid out
    reloads: int = 0
    reload_failures: int = 0
    errors: int = 0
