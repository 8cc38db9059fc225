"""The agent's reward and the statistics of an episode.

Both run every environment step, so each update is O(1) on plain numbers. Money comes in as
integer micro-dollars (the ledger's unit) and leaves as floats only where a statistic needs one.
"""

from __future__ import annotations

import math

import attrs

from domain.values import COUNT_SCALE, MONEY_SCALE


def _check_finite(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def _check_non_negative(instance: object, attribute: attrs.Attribute, value: float) -> None:
    _check_finite(instance, attribute, value)
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


@attrs.frozen
class RewardFunction:
    """``reward = value change in dollars x scale - inventory_penalty x |position in contracts|``.

    ``scale`` is reward per dollar of portfolio value gained; ``inventory_penalty`` is reward
    taken away per contract held (either side) per step, which discourages carrying inventory.
    """

    scale: float = attrs.field(default=1.0, validator=_check_finite)
    inventory_penalty: float = attrs.field(default=0.0, validator=_check_non_negative)

    def reward(self, value_change: int, position: int) -> float:
        """``value_change`` in micro-dollars; ``position`` signed, in count units."""
        reward = value_change / MONEY_SCALE * self.scale
        if self.inventory_penalty:
            reward -= self.inventory_penalty * abs(position) / COUNT_SCALE
        return reward


@attrs.frozen
class EpisodeSummary:
    """An episode's results. Money fields are micro-dollars; ``*_dollars`` convert them."""

    steps: int
    trades: int
    fees_paid: int
    initial_value: int
    final_value: int
    total_return: int
    total_return_fraction: float
    sharpe_ratio: float
    max_drawdown: int
    max_drawdown_fraction: float
    win_rate: float | None  # None when no trade was closed or settled

    @property
    def total_return_dollars(self) -> float:
        return self.total_return / MONEY_SCALE

    @property
    def max_drawdown_dollars(self) -> float:
        return self.max_drawdown / MONEY_SCALE

    @property
    def fees_paid_dollars(self) -> float:
        return self.fees_paid / MONEY_SCALE

    def as_dict(self) -> dict[str, float | int | None]:
        """Dollars and fractions, ready for a log line or a metrics table."""
        return {
            "steps": self.steps,
            "trades": self.trades,
            "fees_paid": self.fees_paid_dollars,
            "total_return": self.total_return_dollars,
            "total_return_fraction": self.total_return_fraction,
            "sharpe_ratio": self.sharpe_ratio,
            "max_drawdown": self.max_drawdown_dollars,
            "max_drawdown_fraction": self.max_drawdown_fraction,
            "win_rate": self.win_rate,
        }


# Validated once, at construction: per-write hooks would run on every step's bookkeeping.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class EpisodeStats:
    """Accumulates one episode: feed every step's portfolio value, every fill, every closed trade.

    A step's return is its change in portfolio value as a fraction of the initial value. That
    stays defined if the value ever touches zero, and the Sharpe ratio -- mean over sample
    standard deviation of those returns -- does not depend on the denominator at all. The sums
    behind it are exact integers, so a flat series has a standard deviation of exactly zero.
    """

    initial_value: int = attrs.field()
    steps: int = attrs.field(init=False, default=0)
    trades: int = attrs.field(init=False, default=0)
    fees_paid: int = attrs.field(init=False, default=0)
    closed_trades: int = attrs.field(init=False, default=0)
    winning_trades: int = attrs.field(init=False, default=0)
    value: int = attrs.field(init=False)
    peak: int = attrs.field(init=False)
    max_drawdown: int = attrs.field(init=False, default=0)
    max_drawdown_fraction: float = attrs.field(init=False, default=0.0)
    _sum_changes: int = attrs.field(init=False, default=0)
    _sum_squared_changes: int = attrs.field(init=False, default=0)

    @initial_value.validator
    def _check_initial_value(self, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"initial portfolio value must be a positive integer of micro-dollars, got {value!r}"
            )

    def __attrs_post_init__(self) -> None:
        self.value = self.peak = self.initial_value

    def record_step(self, portfolio_value: int) -> None:
        """The portfolio value (micro-dollars) after one step."""
        # A plain int (every environment step) passes at the first test.
        if type(portfolio_value) is not int and (
            isinstance(portfolio_value, bool) or not isinstance(portfolio_value, int)
        ):
            raise ValueError(
                f"portfolio value must be an integer of micro-dollars, got {portfolio_value!r}"
            )
        change = portfolio_value - self.value
        self.value = portfolio_value
        self.steps += 1
        self._sum_changes += change
        self._sum_squared_changes += change * change
        if portfolio_value > self.peak:
            self.peak = portfolio_value
        elif portfolio_value < self.peak:
            drawdown = self.peak - portfolio_value
            if drawdown > self.max_drawdown:
                self.max_drawdown = drawdown
            fraction = drawdown / self.peak
            if fraction > self.max_drawdown_fraction:
                self.max_drawdown_fraction = fraction

    def record_fill(self, fee: int) -> None:
        self.trades += 1
        self.fees_paid += fee

    def record_closed_trade(self, realized_pnl: int) -> None:
        """A fill that closed contracts, or a settlement of an open position, and its realised P&L."""
        self.closed_trades += 1
        if realized_pnl > 0:
            self.winning_trades += 1

    @property
    def total_return(self) -> int:
        return self.value - self.initial_value

    @property
    def win_rate(self) -> float | None:
        return self.winning_trades / self.closed_trades if self.closed_trades else None

    def sharpe_ratio(self, periods_per_year: float | None = None) -> float:
        """Mean over sample standard deviation of per-step returns; annualised by
        ``sqrt(periods_per_year)`` only when that is given. Zero when the deviation is zero."""
        if periods_per_year is not None and not periods_per_year > 0:
            raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
        n = self.steps
        if n < 2:
            return 0.0
        # mean / std = (S/n) / sqrt(W / (n(n-1))) with W = n*Q - S^2, exact in integers
        # (S = sum of changes, Q = sum of squares): no cancellation error, and zero means flat.
        scaled_variance = n * self._sum_squared_changes - self._sum_changes * self._sum_changes
        if scaled_variance <= 0:
            return 0.0
        ratio = self._sum_changes * math.sqrt((n - 1) / (n * scaled_variance))
        if periods_per_year is not None:
            ratio *= math.sqrt(periods_per_year)
        return ratio

    def summary(self, periods_per_year: float | None = None) -> EpisodeSummary:
        return EpisodeSummary(
            steps=self.steps,
            trades=self.trades,
            fees_paid=self.fees_paid,
            initial_value=self.initial_value,
            final_value=self.value,
            total_return=self.total_return,
            total_return_fraction=self.total_return / self.initial_value,
            sharpe_ratio=self.sharpe_ratio(periods_per_year),
            max_drawdown=self.max_drawdown,
            max_drawdown_fraction=self.max_drawdown_fraction,
            win_rate=self.win_rate,
        )
