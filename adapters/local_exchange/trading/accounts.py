"""The exchange's accounts: one per API key, with its orders, fills, cash and positions.

Cash and positions are a :class:`domain.ledger.Ledger` (exact integers, Kalshi's netting:
+N YES / -N NO); orders are :class:`domain.orders.Order` with what the exchange adds to them
(the queue entry while resting, fees and notional per role). Every ``client_order_id`` an
account ever used stays taken -- even when its order is cancelled -- as on Kalshi.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs

from domain.ledger import Ledger
from domain.orders import Fill, Order, OrderSide, OrderStatus
from domain.values import ONE_DOLLAR

# The owner tag of account orders in the synthetic simulation's FIFO queues (the simulation
# tags its makers 0.., its noise traders -1); the simulation never cancels an entry it does
# not own, and fills any entry in queue order.
ACCOUNT_OWNER = -2


@attrs.define(eq=False)
class AccountOrder:
    order: Order
    post_only: bool = False
    self_trade_prevention: str = "taker_at_cross"
    reduce_only: bool = False
    entry: list[int] | None = None  # [ACCOUNT_OWNER, resting count] in the simulation's queue
    taker_fees: int = 0  # micro-dollars
    maker_fees: int = 0
    taker_filled: int = 0  # count units
    fill_notional: int = 0  # sum of YES price x count over the fills (micro-dollars)
    last_update_ms: int = 0

    @property
    def order_id(self) -> str:
        return self.order.order_id

    @property
    def ticker(self) -> str:
        return self.order.ticker

    @property
    def is_resting(self) -> bool:
        return self.order.status is OrderStatus.RESTING and self.entry is not None

    @property
    def ladder(self) -> int:
        """The book side it rests on: a bid on YES at its price, an ask on NO at $1 - price."""
        return 0 if self.order.side is OrderSide.BID else 1

    @property
    def ladder_price(self) -> int:
        return self.order.price if self.order.side is OrderSide.BID else ONE_DOLLAR - self.order.price


@attrs.frozen
class AccountFill:
    """One execution of an account's order, as the fill channel and ``/portfolio/fills`` show it."""

    fill: Fill
    client_order_id: str
    post_position: int  # the account's position in the market after this fill (count units)


FillListener = Callable[[AccountFill], None]


class Account:
    def __init__(self, key_id: str, initial_cash: int) -> None:
        self.key_id = key_id
        self.ledger = Ledger(initial_cash)
        self.orders: dict[str, AccountOrder] = {}  # by order id, in creation order
        self.client_order_ids: dict[str, str] = {}  # every id ever used -> its order id
        self.fills: list[AccountFill] = []
        self._listeners: list[FillListener] = []

    def add_listener(self, listener: FillListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: FillListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def book_fill(self, fill: Fill, client_order_id: str) -> AccountFill:
        """Book ``fill`` in the ledger, remember it and tell the listeners (the fill channel)."""
        self.ledger.apply_fill(fill)
        booked = AccountFill(fill, client_order_id, self.ledger.quantity(fill.ticker))
        self.fills.append(booked)
        for listener in tuple(self._listeners):
            listener(booked)
        return booked

    def open_orders(self, ticker: str | None = None) -> Iterator[AccountOrder]:
        for order in self.orders.values():
            if order.is_resting and (ticker is None or order.ticker == ticker):
                yield order
