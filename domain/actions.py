"""The action decoder: the one place an agent's choice becomes a limit order.

Two action spaces, chosen by :attr:`ActionConfig.space`:

* ``single-size`` -- the seed design's five actions: HOLD, BUY_YES, SELL_YES, BUY_NO, SELL_NO,
  each (but HOLD) one limit order of the configured ``order_size``.
* ``sized`` -- the seed design's 21 actions: HOLD, then each of the four directions at each of
  ``sizes`` (5, 10, 20, 50 and 100 contracts by default), direction first: BUY_YES_5,
  BUY_YES_10, ..., BUY_YES_100, SELL_YES_5, ..., SELL_NO_100. (Sizes 10/20/50/100 alone
  would make 17 actions; the seeds' 21 include the 5-contract size.)

A model is trained for one space and must be decoded with that one: a 21-action model behind a
5-action decoder silently trades the wrong orders. So the space is part of the configuration
recorded with every model (:meth:`ActionConfig.as_dict`), and :meth:`ActionDecoder.check_model`
refuses a model whose number of actions is not the decoder's.

Orders live on Kalshi's V2 single YES ladder (see ``domain.orders``): buying YES is a ``bid`` at
the YES price; buying NO at ``q`` is an ``ask`` at ``1 - q``; selling NO at ``q`` is a ``bid`` at
``1 - q``. Pricing, for a buy (a sell mirrors it):

* ``aggressive`` -- at the best ask: crosses the spread and takes liquidity now.
* ``passive`` -- at the best bid: joins the queue and waits for the market to come to it.
* ``mid`` -- at the mid, rounded away from the market to the tick (down for a bid, up for an
  ask), so it never pays more than the mid.

An action is illegal (masked) when its price is not on the ladder (an empty side of the book,
or a price at $0 or $1), when there is nothing to sell (SELL_YES needs YES contracts, SELL_NO
needs NO), when the position is already at ``max_position`` contracts on the side it would add
to, or when the account cannot pay for it, fee included (:func:`cash_required`, plus one
account increment: an order that takes the touch and rests the rest pays two fees, each rounded
up, where the bound rounds one). HOLD is always legal. Sells are reduce-only and never exceed
the holding; buys stop at the position limit. Both hold whether or not the market's open orders
-- which a new order replaces, their cancels travelling with it -- fill first: an order larger
than what is left is cut to fit (so a sized action may place fewer contracts than its name says,
never more).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from domain.fees import FeeSchedule
from domain.orders import OrderRequest, OrderSide
from domain.values import ONE_CENT_PRICE, ONE_CONTRACT, ONE_DOLLAR


class Action(enum.IntEnum):
    """The single-size space's actions; also the direction of every action of the sized space."""

    HOLD = 0
    BUY_YES = 1
    SELL_YES = 2
    BUY_NO = 3
    SELL_NO = 4


ACTION_COUNT = len(Action)  # the single-size space; ask a decoder for its own count
ACTION_NAMES = tuple(action.name for action in Action)
DIRECTIONS = (Action.BUY_YES, Action.SELL_YES, Action.BUY_NO, Action.SELL_NO)
SIZED_CONTRACTS = (5, 10, 20, 50, 100)  # the sized space's order sizes, whole contracts


class ActionSpace(enum.StrEnum):
    SINGLE_SIZE = "single-size"  # HOLD + 4 directions at order_size: 5 actions
    SIZED = "sized"  # HOLD + 4 directions x sizes: 21 actions with the default sizes


class PricingStrategy(enum.StrEnum):
    AGGRESSIVE = "aggressive"
    PASSIVE = "passive"
    MID = "mid"


# Enum members looked up through their class cost a Python-level call on 3.11 (~0.15 us);
# the per-step paths below compare against these module constants instead.
_AGGRESSIVE, _PASSIVE = PricingStrategy.AGGRESSIVE, PricingStrategy.PASSIVE
_BID, _ASK = OrderSide.BID, OrderSide.ASK


class ActionError(ValueError):
    """An action index or an action configuration that cannot exist."""


class ActionSpaceMismatch(ActionError):
    """A model trained for one action space, about to be decoded with another."""


def _positive_count(_instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ActionError(f"{attribute.name} must be a positive integer of count units, got {value!r}")


def _sizes(_instance: object, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:  # type: ignore[type-arg]
    if not value or any(isinstance(size, bool) or not isinstance(size, int) or size <= 0 for size in value):
        raise ActionError(f"{attribute.name} must be positive integers of count units, got {value!r}")
    if list(value) != sorted(set(value)):
        raise ActionError(f"{attribute.name} must be distinct and ascending, got {value!r}")


def _tick(_instance: object, _attribute: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or ONE_DOLLAR % value:
        raise ActionError(f"tick must be a positive divisor of {ONE_DOLLAR} price units, got {value!r}")


def _space(value: object) -> ActionSpace:
    try:
        return ActionSpace(value)
    except ValueError:
        known = ", ".join(space.value for space in ActionSpace)
        raise ActionError(f"action space must be one of {known}, got {value!r}") from None


@attrs.frozen
class ActionConfig:
    """Which action space, how big each order is, how it is priced, how large a position may grow."""

    order_size: int = attrs.field(default=10 * ONE_CONTRACT, validator=_positive_count)  # single-size
    pricing: PricingStrategy = attrs.field(default=PricingStrategy.AGGRESSIVE, converter=PricingStrategy)
    max_position: int = attrs.field(default=50 * ONE_CONTRACT, validator=_positive_count)
    tick: int = attrs.field(default=ONE_CENT_PRICE, validator=_tick)  # the grid mid prices round to
    space: ActionSpace = attrs.field(default=ActionSpace.SINGLE_SIZE, converter=_space)
    sizes: tuple[int, ...] = attrs.field(  # the sized space's order sizes, count units
        default=tuple(contracts * ONE_CONTRACT for contracts in SIZED_CONTRACTS), converter=tuple, validator=_sizes
    )

    def __attrs_post_init__(self) -> None:
        smallest = self.order_size if self.space is ActionSpace.SINGLE_SIZE else self.sizes[0]
        if self.max_position < smallest:
            raise ActionError(
                f"max_position ({self.max_position}) must be at least the smallest order ({smallest}) count units"
            )

    @property
    def order_sizes(self) -> tuple[int, ...]:
        """The sizes an order can be placed at, count units, ascending."""
        return (self.order_size,) if self.space is ActionSpace.SINGLE_SIZE else self.sizes

    @property
    def action_names(self) -> tuple[str, ...]:
        if self.space is ActionSpace.SINGLE_SIZE:
            return ACTION_NAMES
        return ("HOLD",) + tuple(
            f"{direction.name}_{_contracts(size)}" for direction in DIRECTIONS for size in self.sizes
        )

    @property
    def action_count(self) -> int:
        return 1 + len(DIRECTIONS) * len(self.order_sizes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready) to record with a model; :meth:`from_dict` reads them back."""
        return {
            "space": self.space.value,
            "action_count": self.action_count,
            "order_size": self.order_size,
            "sizes": list(self.sizes),
            "pricing": self.pricing.value,
            "max_position": self.max_position,
            "tick": self.tick,
        }

    @classmethod
    def from_dict(cls, recorded: Mapping[str, Any]) -> ActionConfig:
        """The configuration :meth:`as_dict` recorded; refuses a record whose action count does
        not match the space it names (a record written by something else)."""
        fields = {key: value for key, value in recorded.items() if key != "action_count"}
        config = cls(**fields)
        if "action_count" in recorded and recorded["action_count"] != config.action_count:
            raise ActionSpaceMismatch(
                f"recorded action space {config.space.value!r} has {config.action_count} actions, "
                f"but the record says {recorded['action_count']}"
            )
        return config


def _contracts(count: int) -> str:
    whole, part = divmod(count, ONE_CONTRACT)
    return str(whole) if not part else f"{count / ONE_CONTRACT:g}"


def cash_required(
    side: OrderSide, price: int, count: int, position: int, fees: FeeSchedule, *, fee_margin: int = 0
) -> int:
    """The most cash (micro-dollars) an order can take from the account if it all fills.

    Contracts that open a position cost their own side's price (a bid pays ``price`` for YES,
    an ask ``1 - price`` for NO); contracts that close one bring cash in -- at least ``price``
    each for YES sold by an ask, ``1 - price`` for NO sold by a bid -- which pays the fee first
    (Kalshi nets a fill's fee from its revenue), so a close needs no cash unless its fee exceeds
    what it brings in. The fee is bounded at the dearest price the order can fill at: ``P(1-P)``
    peaks at $0.50, and a bid fills at or below its price, an ask at or above. ``fee_margin`` is
    added to the fee (the mask's allowance for the rounding of an order split in two).
    """
    opening_cost, fee_price, proceeds = _cash_terms(side, price, count, position)
    return opening_cost + max(0, fees.fee(count, fee_price, is_taker=True) + fee_margin - proceeds)


def _cash_terms(side: OrderSide, price: int, count: int, position: int) -> tuple[int, int, int]:
    """``(opening cost, price the fee is bounded at, least proceeds of the closing part)``."""
    if side is _BID:
        closing = min(count, -position) if position < 0 else 0
        return (count - closing) * price, min(price, ONE_DOLLAR // 2), closing * (ONE_DOLLAR - price)
    closing = min(count, position) if position > 0 else 0
    return (count - closing) * (ONE_DOLLAR - price), max(price, ONE_DOLLAR // 2), closing * price


# Per direction (Action.BUY_YES .. SELL_NO): the order side and whether it closes a position.
_SIDE = (None, _BID, _ASK, _ASK, _BID)
_CLOSES = (False, False, True, False, True)


class ActionDecoder:
    """Decodes action indices into limit orders and computes which actions are legal.

    The same object serves training, evaluation and the live actor; build it from the model's
    recorded :class:`ActionConfig`.
    """

    __slots__ = (
        "config",
        "fees",
        "action_count",
        "action_names",
        "_table",
        "_sizes",
        "_max",
        "_tick",
        "_pricing",
        "_fee_bounds",
        "_rounding",
        "_size_bounds",
        "ample_buying_power",
    )

    def __init__(self, config: ActionConfig, fees: FeeSchedule) -> None:
        self.config = config
        self.fees = fees
        self.action_count = config.action_count
        self.action_names = config.action_names
        self._sizes = config.order_sizes
        # action index -> (direction, size); index 0 is HOLD
        self._table: tuple[tuple[int, int], ...] = ((0, 0),) + tuple(
            (int(direction), size) for direction in DIRECTIONS for size in self._sizes
        )
        self._max = config.max_position
        self._tick = config.tick
        self._pricing = config.pricing
        self._fee_bounds: dict[tuple[int, int], int] = {}  # (count, price) -> taker fee; few keys
        # An order priced at the touch crosses one level at most (its own price) and rests what it
        # could not take: the exchange charges that fill's fee and reserves the rest's, each
        # rounded up to the account's increment -- one increment above a single rounded fee.
        self._rounding = fees.account_increment_micros
        # Per size, the most any order of it can cost ($1 a contract, the fee at its $0.50 peak):
        # an account with that much to spend can afford it whatever the price.
        self._size_bounds = tuple(
            (size, size * ONE_DOLLAR + fees.fee(size, ONE_DOLLAR // 2, is_taker=True) + self._rounding)
            for size in self._sizes
        )
        # With this much to spend every order is affordable: :meth:`legal_actions` gives the same
        # answer for any buying power at or above it (callers caching masks key on the minimum).
        self.ample_buying_power = max(dearest for _, dearest in self._size_bounds)

    def check_model(self, action_count: int, *, model: str = "the model") -> None:
        """Refuse a model that chooses among ``action_count`` actions when this decoder has another
        number: it was trained for another action space."""
        if action_count != self.action_count:
            raise ActionSpaceMismatch(
                f"{model} chooses among {action_count} actions, but this decoder is the "
                f"{self.config.space.value!r} action space of {self.action_count} "
                f"({', '.join(self.action_names[:6])}{', ...' if self.action_count > 6 else ''}): "
                "decode a model with the action space recorded in its environment settings"
            )

    def direction(self, action: int) -> Action:
        """What kind of order ``action`` places (HOLD for none)."""
        return Action(self._entry(action)[0])

    def order(
        self, action: int, yes_bid: int, yes_ask: int, position: int, open_bids: int = 0, open_asks: int = 0
    ) -> tuple[OrderSide, int, int] | None:
        """``(side, YES price, count)`` for ``action``, or None when it places no order.

        ``yes_bid``/``yes_ask`` are the book's best prices (-1: none); ``position`` is signed
        count units (+YES, -NO); ``open_bids``/``open_asks`` the remaining counts of the market's
        open orders on each side: orders a new one replaces, which may still fill before their
        cancels land. Sizes hold whether they fill first or not: buys leave room for them under
        the limit, sells close no more than would be left. Plain ints: this runs every step.
        """
        direction, size = self._entry(action)
        if direction == 0:
            return None
        if direction == 1:  # BUY_YES
            count = min(size, self._max - position - open_bids)
        elif direction == 2:  # SELL_YES: close YES
            count = min(size, position - open_asks)
        elif direction == 3:  # BUY_NO
            count = min(size, self._max + position - open_asks)
        else:  # SELL_NO: close NO
            count = min(size, -position - open_bids)
        if count <= 0:
            return None
        side = _SIDE[direction]
        price = self._price(side, yes_bid, yes_ask)  # type: ignore[arg-type]
        if not 0 < price < ONE_DOLLAR:
            return None
        return side, price, count  # type: ignore[return-value]

    def decode(
        self,
        action: int,
        *,
        ticker: str,
        yes_bid: int,
        yes_ask: int,
        position: int,
        client_order_id: str,
        working: tuple[OrderSide, int, int] | None = None,
        open_bids: int = 0,
        open_asks: int = 0,
    ) -> OrderRequest | None:
        """The order ``action`` places, or None (HOLD, or an action that is not possible now).

        ``working``: the market's latest open order as ``(side, price, remaining)``, the one a new
        order replaces; if the action would place exactly that order, it is the answer (the
        caller keeps it). Otherwise the new order is sized beside the market's open orders
        (``open_bids``/``open_asks``, see :meth:`order`), which may fill before their cancels land."""
        order = self.order(action, yes_bid, yes_ask, position)
        if order is not None and order != working and (open_bids or open_asks):
            order = self.order(action, yes_bid, yes_ask, position, open_bids, open_asks)
        if order is None:
            return None
        side, price, count = order
        closes = _CLOSES[self._table[action][0]]
        return OrderRequest(ticker, side, price, count, client_order_id, reduce_only=closes)

    def legal_actions(
        self, *, yes_bid: int, yes_ask: int, position: int, buying_power: int, open_bids: int = 0, open_asks: int = 0
    ) -> list[bool]:
        """Which actions are legal now, indexed by action (a plain list: asked every step);
        ``open_bids``/``open_asks`` as for :meth:`order`."""
        legal = [True]
        tick = self._tick
        pricing = self._pricing
        # The two order sides' prices (bid: buy YES / sell NO; ask: sell YES / buy NO).
        if pricing is _AGGRESSIVE:
            bid_price, ask_price = yes_ask, yes_bid
        elif pricing is _PASSIVE:
            bid_price, ask_price = yes_bid, yes_ask
        elif yes_bid < 0 or yes_ask < 0:
            bid_price = ask_price = -1
        else:
            bid_price = (yes_bid + yes_ask) // 2 // tick * tick
            ask_price = -(-(yes_bid + yes_ask) // (2 * tick)) * tick
        bid_ok = 0 < bid_price < ONE_DOLLAR
        ask_ok = 0 < ask_price < ONE_DOLLAR
        limit = self._max
        most_yes, least_yes = position + open_bids, position - open_asks  # as in :meth:`order`
        capacities = (
            (limit - most_yes if bid_ok else 0, _BID, bid_price),  # BUY_YES
            (least_yes if ask_ok else 0, _ASK, ask_price),  # SELL_YES
            (limit + least_yes if ask_ok else 0, _ASK, ask_price),  # BUY_NO
            (-most_yes if bid_ok else 0, _BID, bid_price),  # SELL_NO
        )
        for capacity, side, price in capacities:
            affordable = capacity > 0
            for size, dearest in self._size_bounds:
                # Cost grows with the count: once too dear, every larger size is too.
                if affordable and buying_power < dearest:
                    count = size if size < capacity else capacity
                    affordable = self._cash_required(side, price, count, position) <= buying_power
                legal.append(affordable)
        return legal

    def mask(
        self,
        out: np.ndarray,
        *,
        yes_bid: int,
        yes_ask: int,
        position: int,
        buying_power: int,
        open_bids: int = 0,
        open_asks: int = 0,
    ) -> np.ndarray:
        """Write the legal actions into ``out`` (bool, length ``action_count``) and return it."""
        out[:] = self.legal_actions(
            yes_bid=yes_bid, yes_ask=yes_ask, position=position, buying_power=buying_power,
            open_bids=open_bids, open_asks=open_asks,
        )  # fmt: skip
        return out

    def _entry(self, action: int) -> tuple[int, int]:
        if 0 <= action < self.action_count:
            return self._table[action]
        raise ActionError(
            f"action must be one of 0..{self.action_count - 1} of the {self.config.space.value!r} space "
            f"({', '.join(self.action_names[:5])}{', ...' if self.action_count > 5 else ''}), got {action!r}"
        )

    def _cash_required(self, side: OrderSide, price: int, count: int, position: int) -> int:
        """:func:`cash_required` with the split order's extra rounding as its ``fee_margin``, the
        fee remembered (the mask asks every step)."""
        opening_cost, fee_price, proceeds = _cash_terms(side, price, count, position)
        key = (count, fee_price)
        fee = self._fee_bounds.get(key)
        if fee is None:
            if len(self._fee_bounds) > 4096:
                self._fee_bounds.clear()
            fee = self._fee_bounds[key] = self.fees.fee(count, fee_price, is_taker=True) + self._rounding
        return opening_cost + (fee - proceeds if fee > proceeds else 0)

    def _price(self, side: OrderSide, yes_bid: int, yes_ask: int) -> int:
        pricing = self._pricing
        if pricing is _AGGRESSIVE:
            return yes_ask if side is _BID else yes_bid
        if pricing is _PASSIVE:
            return yes_bid if side is _BID else yes_ask
        if yes_bid < 0 or yes_ask < 0:
            return -1
        tick = self._tick
        if side is _BID:
            return (yes_bid + yes_ask) // 2 // tick * tick
        return -(-(yes_bid + yes_ask) // (2 * tick)) * tick
