"""Risk limits of the paper-trading actor, and its per-market throttle: pure rules over ints.

Three limits, as an account manager would set them:

* ``max_position`` -- the most contracts held in one market, either side (count units);
* ``max_open_orders`` -- the most orders resting at once, all markets together;
* ``max_daily_loss`` -- the most the account may lose in one UTC day (micro-dollars), measured on
  its value (cash plus every position marked at its market's YES mark) against the day's first
  valuation, so an open losing position counts before it is closed.

Two kinds of check. :func:`check_order` is asked before an order leaves: an order that could,
if it all filled, take a position past its limit or open one order too many is not sent (the
actor carries on). :func:`check_account` is asked after anything that changes the account (a
fill, a reconciliation with the exchange, a new valuation): a limit already passed is a
:class:`RiskBreach`, and the actor's answer is to cancel every open order and stop trading.

"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from domain.orders import OrderSide
from domain.values import format_count, format_money

DAY_MS = 86_400_000


class RiskError(ValueError):
    """Risk limits that cannot exist (a negative limit...)."""


def _positive_int(_instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RiskError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen
class RiskLimits:
    max_position: int = attrs.field(validator=_positive_int)  # count units, per market, either side
    max_open_orders: int = attrs.field(validator=_positive_int)  # all markets together
    max_daily_loss: int = attrs.field(validator=_positive_int)  # micro-dollars per UTC day


@attrs.frozen
class RiskBreach:
    """A limit already passed: cancel everything and stop. ``limit`` names it, ``reason`` says by how much."""

    limit: str  # "max_position" | "max_open_orders" | "max_daily_loss"
    reason: str


def check_account(
    limits: RiskLimits, *, positions: Mapping[str, int], open_orders: int, daily_loss: int
) -> RiskBreach | None:
    """The first limit the account has passed, or None. ``positions`` are signed count units,
    ``daily_loss`` micro-dollars (positive: a loss)."""
    for ticker in sorted(positions):
        quantity = positions[ticker]
        if abs(quantity) > limits.max_position:
            return RiskBreach(
                "max_position",
                f"position in {ticker} is {format_count(quantity)} contracts, beyond the limit of "
                f"{format_count(limits.max_position)} (RL_ACTOR_MAX_POSITION)",
            )
    if open_orders > limits.max_open_orders:
        return RiskBreach(
            "max_open_orders",
            f"{open_orders} orders are open, beyond the limit of {limits.max_open_orders} (RL_ACTOR_MAX_OPEN_ORDERS)",
        )
    if daily_loss > limits.max_daily_loss:
        return RiskBreach(
            "max_daily_loss",
            f"the account lost ${format_money(daily_loss)} today, beyond the limit of "
            f"${format_money(limits.max_daily_loss)} (RL_ACTOR_MAX_DAILY_LOSS)",
        )
    return None


def check_order(
    limits: RiskLimits, *, ticker: str, side: OrderSide, count: int, position: int, other_open_orders: int
) -> str | None:
    """Why an order must not be sent, or None. ``position`` is the market's signed position,
    ``other_open_orders`` the orders that stay open beside this one (the market's own resting
    order is replaced by it, so it is not counted)."""
    reach = position + count if side is OrderSide.BID else position - count
    if abs(reach) > limits.max_position and abs(reach) > abs(position):
        return (
            f"{ticker}: {side.value} of {format_count(count)} contracts could take the position from "
            f"{format_count(position)} to {format_count(reach)}, beyond the limit of "
            f"{format_count(limits.max_position)} (RL_ACTOR_MAX_POSITION)"
        )
    if other_open_orders + 1 > limits.max_open_orders:
        return (
            f"{ticker}: a new order would make {other_open_orders + 1} open orders, beyond the limit of "
            f"{limits.max_open_orders} (RL_ACTOR_MAX_OPEN_ORDERS)"
        )
    return None


@attrs.define
class DailyLoss:
    """The loss since the first valuation of the current UTC day (micro-dollars, a gain is negative)."""

    day: int | None = None
    day_start_value: int = 0

    def update(self, now_ms: int, value: int) -> int:
        """Record the account's ``value`` at ``now_ms``; returns the day's loss so far."""
        day = now_ms // DAY_MS
        if day != self.day:
            self.day = day
            self.day_start_value = value
        return self.day_start_value - value
