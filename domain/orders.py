"""Limit orders and fills as Kalshi's V2 API sees them: one YES-price ladder.

``bid`` buys YES at ``price``; ``ask`` sells YES at ``price``, which is the same as buying NO at
``ONE_DOLLAR - price``. Kalshi has accepted limit orders only since 2026-02-11.
"""

from __future__ import annotations

import enum

import attrs

from domain.values import ONE_DOLLAR


class OrderSide(enum.StrEnum):
    BID = "bid"  # buy YES (or close NO)
    ASK = "ask"  # sell YES, i.e. buy NO at 1 - price


class TimeInForce(enum.StrEnum):
    GOOD_TILL_CANCELED = "good_till_canceled"
    IMMEDIATE_OR_CANCEL = "immediate_or_cancel"
    FILL_OR_KILL = "fill_or_kill"


class OrderStatus(enum.StrEnum):
    PENDING = "pending"  # submitted, not yet acknowledged (order-entry latency)
    RESTING = "resting"
    CANCELED = "canceled"
    EXECUTED = "executed"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self is _PENDING or self is _RESTING


# Enum members looked up through their class cost a Python-level call on 3.11 (~0.15 us);
# the per-step paths below compare against these module constants instead.
_PENDING, _RESTING = OrderStatus.PENDING, OrderStatus.RESTING
_EXECUTED, _CANCELED = OrderStatus.EXECUTED, OrderStatus.CANCELED


class OrderError(ValueError):
    """An order that cannot exist (bad price, bad count) or an illegal transition."""


def _check_price(_instance: object, _attribute: object, price: int) -> None:
    if not 0 < price < ONE_DOLLAR:
        raise OrderError(f"limit price must be strictly between $0 and $1, got {price} price units")


def _check_count(_instance: object, _attribute: object, count: int) -> None:
    if count <= 0:
        raise OrderError(f"order count must be positive, got {count} count units")


@attrs.frozen
class OrderRequest:
    """What a strategy asks a gateway for. Prices are YES prices in price units."""

    ticker: str
    side: OrderSide
    price: int = attrs.field(validator=_check_price)
    count: int = attrs.field(validator=_check_count)
    client_order_id: str
    time_in_force: TimeInForce = TimeInForce.GOOD_TILL_CANCELED
    post_only: bool = False
    reduce_only: bool = False


# Validated at construction; no per-write hooks: ``filled`` and ``status`` change on every fill
# of a simulated step, and a hook there cost more than the fill. Code that reassigns ``price`` or
# ``count`` (amends) validates the new values itself before writing them.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Order:
    """An order with identity; its fills move it from resting to executed."""

    order_id: str
    client_order_id: str
    ticker: str
    side: OrderSide
    price: int = attrs.field(validator=_check_price)
    count: int = attrs.field(validator=_check_count)
    created_ms: int
    time_in_force: TimeInForce = TimeInForce.GOOD_TILL_CANCELED
    filled: int = 0
    status: OrderStatus = OrderStatus.RESTING

    @property
    def remaining(self) -> int:
        return self.count - self.filled if self.status.is_open else 0

    def record_fill(self, count: int) -> None:
        if not self.status.is_open:
            raise OrderError(f"order {self.order_id} is {self.status}; it cannot fill")
        if not 0 < count <= self.count - self.filled:
            raise OrderError(
                f"order {self.order_id}: fill of {count} exceeds remaining {self.count - self.filled}"
            )
        self.filled += count
        if self.filled == self.count:
            self.status = _EXECUTED

    def cancel(self) -> int:
        """Cancel what is left; returns the count taken off the book."""
        if not self.status.is_open:
            raise OrderError(f"order {self.order_id} is {self.status}; nothing to cancel")
        reduced = self.count - self.filled
        self.status = _CANCELED
        return reduced


@attrs.frozen
class Fill:
    """One execution. ``price`` is the YES price; ``fee`` is in micro-dollars."""

    fill_id: str
    order_id: str
    ticker: str
    side: OrderSide
    price: int
    count: int
    fee: int
    is_taker: bool
    ts_ms: int

    @property
    def no_price(self) -> int:
        return ONE_DOLLAR - self.price


@attrs.frozen
class FeeCorrection:
    """A streamed fill's fee, put right: the exchange charged ``charged_fee`` for ``fill_id``
    where the stream had reported ``reported_fee`` (micro-dollars). Cash moves by ``-delta``."""

    fill_id: str
    ticker: str
    reported_fee: int
    charged_fee: int

    @property
    def delta(self) -> int:
        return self.charged_fee - self.reported_fee
