"""The action decoder: the one place an agent's choice becomes a limit order.

Five actions, as in the seed design: HOLD, BUY_YES, SELL_YES, BUY_NO, SELL_NO, each (but HOLD)
one limit order of the configured size, priced by a configured strategy. Orders live on
Kalshi's V2 single YES ladder (see ``domain.orders``): buying YES is a ``bid`` at the YES price;
buying NO at ``q`` is an ``ask`` at ``1 - q``; selling NO at ``q`` is a ``bid`` at ``1 - q``.

Pricing, for a buy (a sell mirrors it):

* ``aggressive`` -- at the best ask: crosses the spread and takes liquidity now.
* ``passive`` -- at the best bid: joins the queue and waits for the market to come to it.
* ``mid`` -- at the mid, rounded away from the market to the tick (down for a bid, up for an
  ask), so it never pays more than the mid.

An action is illegal (masked) when its price does not exist (an empty side of the book), when
there is nothing to sell (SELL_YES needs YES contracts, SELL_NO needs NO), when it would take
the position beyond ``max_position`` contracts on either side, or when the account cannot pay
for it (:func:`cash_required`). HOLD is always legal. Sells are reduce-only: they never flip a
position.
"""

from __future__ import annotations

import enum

import attrs
import numpy as np

from domain.fees import FeeSchedule
from domain.orders import OrderRequest, OrderSide
from domain.values import ONE_CENT_PRICE, ONE_CONTRACT, ONE_DOLLAR


class Action(enum.IntEnum):
    HOLD = 0
    BUY_YES = 1
    SELL_YES = 2
    BUY_NO = 3
    SELL_NO = 4


ACTION_COUNT = len(Action)
ACTION_NAMES = tuple(action.name for action in Action)


class PricingStrategy(enum.StrEnum):
    AGGRESSIVE = "aggressive"
    PASSIVE = "passive"
    MID = "mid"


class ActionError(ValueError):
    """An action index or an action configuration that cannot exist."""


def _positive_count(_instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ActionError(f"{attribute.name} must be a positive integer of count units, got {value!r}")


def _tick(_instance: object, _attribute: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or ONE_DOLLAR % value:
        raise ActionError(f"tick must be a positive divisor of {ONE_DOLLAR} price units, got {value!r}")


@attrs.frozen
class ActionConfig:
    """How big each order is, how it is priced, and how large a position may grow."""

    order_size: int = attrs.field(default=10 * ONE_CONTRACT, validator=_positive_count)
    pricing: PricingStrategy = attrs.field(default=PricingStrategy.AGGRESSIVE, converter=PricingStrategy)
    max_position: int = attrs.field(default=50 * ONE_CONTRACT, validator=_positive_count)
    tick: int = attrs.field(default=ONE_CENT_PRICE, validator=_tick)  # the grid mid prices round to

    def __attrs_post_init__(self) -> None:
        if self.max_position < self.order_size:
            raise ActionError(
                f"max_position ({self.max_position}) must be at least order_size ({self.order_size}) count units"
            )


def cash_required(side: OrderSide, price: int, count: int, position: int, fees: FeeSchedule) -> int:
    """The most cash (micro-dollars) an order can take from the account if it all fills.

    Contracts that open a position cost their own side's price (a bid pays ``price`` for YES,
    an ask ``1 - price`` for NO); contracts that close one only bring cash in, so they count for
    nothing. The fee is bounded at the dearest price the order can fill at: ``P(1-P)`` peaks at
    $0.50, and a bid fills at or below its price, an ask at or above.
    """
    opening_cost, fee_price = _opening_cost_and_fee_price(side, price, count, position)
    return opening_cost + fees.fee(count, fee_price, is_taker=True)


def _opening_cost_and_fee_price(side: OrderSide, price: int, count: int, position: int) -> tuple[int, int]:
    if side is OrderSide.BID:
        closing = min(count, -position) if position < 0 else 0
        return (count - closing) * price, min(price, ONE_DOLLAR // 2)
    closing = min(count, position) if position > 0 else 0
    return (count - closing) * (ONE_DOLLAR - price), max(price, ONE_DOLLAR // 2)


class ActionDecoder:
    """Decodes action indices into limit orders and computes which actions are legal."""

    __slots__ = ("config", "fees", "_size", "_max", "_tick", "_pricing", "_fee_bounds")

    def __init__(self, config: ActionConfig, fees: FeeSchedule) -> None:
        self.config = config
        self.fees = fees
        self._size = config.order_size
        self._max = config.max_position
        self._tick = config.tick
        self._pricing = config.pricing
        self._fee_bounds: dict[tuple[int, int], int] = {}  # (count, price) -> taker fee; few keys

    def order(self, action: int, yes_bid: int, yes_ask: int, position: int) -> tuple[OrderSide, int, int] | None:
        """``(side, YES price, count)`` for ``action``, or None when it places no order.

        ``yes_bid``/``yes_ask`` are the book's best prices (-1: none); ``position`` is signed
        count units (+YES, -NO). Plain ints: this runs every environment step.
        """
        if action == 0:
            return None
        if action == 1:  # BUY_YES
            side, count = OrderSide.BID, min(self._size, self._max - position)
        elif action == 2:  # SELL_YES: close YES
            side, count = OrderSide.ASK, min(self._size, position)
        elif action == 3:  # BUY_NO
            side, count = OrderSide.ASK, min(self._size, self._max + position)
        elif action == 4:  # SELL_NO: close NO
            side, count = OrderSide.BID, min(self._size, -position)
        else:
            names = ", ".join(ACTION_NAMES)
            raise ActionError(f"action must be one of 0..{ACTION_COUNT - 1} ({names}), got {action!r}")
        if count <= 0:
            return None
        price = self._price(side, yes_bid, yes_ask)
        if not 0 < price < ONE_DOLLAR:
            return None
        return side, price, count

    def decode(
        self, action: int, *, ticker: str, yes_bid: int, yes_ask: int, position: int, client_order_id: str
    ) -> OrderRequest | None:
        """The order ``action`` places, or None (HOLD, or an action that is not possible now)."""
        order = self.order(action, yes_bid, yes_ask, position)
        if order is None:
            return None
        side, price, count = order
        closes = action in (Action.SELL_YES, Action.SELL_NO)
        return OrderRequest(ticker, side, price, count, client_order_id, reduce_only=closes)

    def mask(self, out: np.ndarray, *, yes_bid: int, yes_ask: int, position: int, buying_power: int) -> np.ndarray:
        """Write the legal actions into ``out`` (bool, length ``ACTION_COUNT``) and return it."""
        out[0] = True
        for action in (1, 2, 3, 4):
            order = self.order(action, yes_bid, yes_ask, position)
            out[action] = order is not None and self._cash_required(*order, position) <= buying_power
        return out

    def _cash_required(self, side: OrderSide, price: int, count: int, position: int) -> int:
        """:func:`cash_required`, with the fee remembered (the mask asks every step)."""
        opening_cost, fee_price = _opening_cost_and_fee_price(side, price, count, position)
        key = (count, fee_price)
        fee = self._fee_bounds.get(key)
        if fee is None:
            if len(self._fee_bounds) > 4096:
                self._fee_bounds.clear()
            fee = self._fee_bounds[key] = self.fees.fee(count, fee_price, is_taker=True)
        return opening_cost + fee

    def _price(self, side: OrderSide, yes_bid: int, yes_ask: int) -> int:
        pricing = self._pricing
        if pricing is PricingStrategy.AGGRESSIVE:
            return yes_ask if side is OrderSide.BID else yes_bid
        if pricing is PricingStrategy.PASSIVE:
            return yes_bid if side is OrderSide.BID else yes_ask
        if yes_bid < 0 or yes_ask < 0:
            return -1
        tick = self._tick
        if side is OrderSide.BID:
            return (yes_bid + yes_ask) // 2 // tick * tick
        return -(-(yes_bid + yes_ask) // (2 * tick)) * tick
