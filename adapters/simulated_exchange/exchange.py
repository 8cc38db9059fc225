"""A simple simulated exchange for replayed markets: immediate crossing fills, trade-through fills.

The first, deliberately plain fill model (queue position, latency and the decay of liquidity we
consumed come with the realistic exchange, later). What it does, it does exactly:

* **Crossing.** An order that crosses the replayed book fills at once against the visible
  depth, best level first, each level at its own price (one :class:`Fill` per level, so the
  average is the VWAP and the ledger stays exact), as a taker with Kalshi's fee. When the
  crossing levels run out the order fills partially; a good-till-cancelled remainder rests,
  an immediate-or-cancel one is cancelled, and a fill-or-kill order that cannot fill whole is
  refused before anything fills. A bid at ``p`` takes NO bids ``q`` with ``1 - q <= p`` at the
  YES price ``1 - q``; an ask at ``p`` takes YES bids ``b >= p`` at ``b``.
* **Resting.** One resting order per market; a new order in a market cancels the one
  resting there (the agent changed its mind). A resting order fills, as a maker at its own
  price, when a replayed trade prints strictly through it (a sale below our bid, a purchase
  above our ask) -- that trade's counterparty would have met us first. It fills up to the
  trade's size. A print *at* our price is not enough: without a queue model we assume we were
  last in line.
* **Money.** Every fill is booked in the :class:`~domain.ledger.Ledger`. Orders are refused
  unless the account can pay for them in full (:func:`domain.actions.cash_required`), counting
  the cash other markets' resting orders have reserved. At resolution the market settles through
  the ledger and its resting order is cancelled.

Not modelled yet: the liquidity our fills consumed stays in the replayed book (the next step
sees it again), and orders reach the book with no latency.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from domain.actions import cash_required
from domain.events import Level
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.orders import Fill, Order, OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.values import ONE_DOLLAR, Side


@attrs.frozen
class Execution:
    """A fill and what it did to the position: how much it closed and the P&L that realised."""

    fill: Fill
    closed: int  # count units of the fill that closed an open position
    realized_pnl: int  # micro-dollars, before fees


@attrs.frozen
class Settlement:
    ticker: str
    result: Side
    payout: int  # micro-dollars paid for the winning contracts
    closed: int  # count units the resolution closed
    realized_pnl: int  # payout minus what the settled contracts cost


@attrs.frozen
class OrderOutcome:
    order: Order
    executions: tuple[Execution, ...]
    reason: str | None = None  # why the order was rejected, if it was


class SimulatedExchange:
    """One account trading replayed markets. Book and trades are handed in by the replay."""

    def __init__(self, ledger: Ledger, fees: FeeSchedule, *, id_prefix: str = "sim") -> None:
        self.ledger = ledger
        self.fees = fees
        self.id_prefix = id_prefix
        self._resting: dict[str, Order] = {}
        self._reserved: dict[str, int] = {}  # cash set aside for each market's resting order
        self._orders = 0
        self._fills = 0

    # -- state ------------------------------------------------------------------------------
    def resting_order(self, ticker: str) -> Order | None:
        return self._resting.get(ticker)

    def buying_power(self, ticker: str | None = None) -> int:
        """Cash not reserved by resting orders -- other than ``ticker``'s, which a new order in
        ``ticker`` would replace."""
        reserved = sum(amount for market, amount in self._reserved.items() if market != ticker)
        return self.ledger.cash - reserved

    # -- orders -----------------------------------------------------------------------------
    def submit(
        self, request: OrderRequest, *, yes_bids: Sequence[Level], no_bids: Sequence[Level], ts_ms: int
    ) -> OrderOutcome:
        """Place ``request`` against the book (each side's bids, best first) as it is at ``ts_ms``."""
        ticker = request.ticker
        self.cancel(ticker)
        self._orders += 1
        order = Order(
            f"{self.id_prefix}-order-{self._orders}",
            request.client_order_id,
            ticker,
            request.side,
            request.price,
            request.count,
            ts_ms,
            request.time_in_force,
        )
        position = self.ledger.quantity(ticker)
        is_bid = request.side is OrderSide.BID
        levels = _crossing(request, yes_bids, no_bids)
        available = sum(count for _price, count in levels)

        problem = None
        if request.reduce_only and (position >= 0 if is_bid else position <= 0):
            problem = "reduce-only order with no position to reduce"
        elif request.reduce_only and request.count > abs(position):
            problem = f"reduce-only order for {request.count} exceeds the position of {abs(position)}"
        elif request.post_only and levels:
            problem = "post-only order would cross the book"
        elif request.time_in_force is TimeInForce.FILL_OR_KILL and available < request.count:
            problem = f"fill-or-kill order for {request.count} sees only {available} to take"
        else:
            required = cash_required(request.side, request.price, request.count, position, self.fees)
            if required > self.buying_power(ticker):
                problem = f"needs {required} micro-dollars, has {self.buying_power(ticker)} to spend"
        if problem is not None:
            order.status = OrderStatus.REJECTED
            return OrderOutcome(order, (), problem)

        executions = []
        for price, count in levels:
            take = min(count, order.remaining)
            executions.append(self._execute(order, price, take, is_taker=True, ts_ms=ts_ms))
            if not order.remaining:
                break
        if order.remaining:
            if request.time_in_force is TimeInForce.GOOD_TILL_CANCELED:
                self._rest(order)
            else:
                order.cancel()
        return OrderOutcome(order, tuple(executions))

    def cancel(self, ticker: str) -> Order | None:
        """Cancel ``ticker``'s resting order, if any; returns it."""
        order = self._resting.pop(ticker, None)
        self._reserved.pop(ticker, None)
        if order is not None:
            order.cancel()
        return order

    # -- market events ----------------------------------------------------------------------
    def on_trade(self, ticker: str, yes_price: int, count: int, ts_ms: int) -> Execution | None:
        """A replayed trade: fills the resting order of ``ticker`` if it prints through it."""
        order = self._resting.get(ticker)
        if order is None:
            return None
        if order.side is OrderSide.BID:
            if yes_price >= order.price:
                return None
        elif yes_price <= order.price:
            return None
        execution = self._execute(order, order.price, min(count, order.remaining), is_taker=False, ts_ms=ts_ms)
        if order.remaining:
            self._reserve(order)
        else:
            del self._resting[ticker]
            del self._reserved[ticker]
        return execution

    def settle(self, ticker: str, result: Side) -> Settlement:
        """The market resolved: cancel its resting order and pay out through the ledger."""
        self.cancel(ticker)
        position = self.ledger.position(ticker)
        closed = abs(position.quantity)
        realized_before = position.realized_pnl
        payout = self.ledger.settle(ticker, result)
        realized = self.ledger.position(ticker).realized_pnl - realized_before
        return Settlement(ticker, result, payout, closed, realized)

    # -- internals --------------------------------------------------------------------------
    def _execute(self, order: Order, price: int, count: int, *, is_taker: bool, ts_ms: int) -> Execution:
        self._fills += 1
        fill = Fill(
            f"{self.id_prefix}-fill-{self._fills}",
            order.order_id,
            order.ticker,
            order.side,
            price,
            count,
            self.fees.fee(count, price, is_taker=is_taker),
            is_taker,
            ts_ms,
        )
        closed = self.ledger.closing_count(fill)
        realized = self.ledger.apply_fill(fill)
        order.record_fill(count)
        return Execution(fill, closed, realized)

    def _rest(self, order: Order) -> None:
        self._resting[order.ticker] = order
        self._reserve(order)

    def _reserve(self, order: Order) -> None:
        position = self.ledger.quantity(order.ticker)
        self._reserved[order.ticker] = cash_required(order.side, order.price, order.remaining, position, self.fees)


def _crossing(request: OrderRequest, yes_bids: Sequence[Level], no_bids: Sequence[Level]) -> list[Level]:
    """The visible levels ``request`` would take, best first, as ``(YES price, count)``."""
    limit = request.price
    levels = []
    if request.side is OrderSide.BID:
        for no_price, count in no_bids:
            price = ONE_DOLLAR - no_price
            if price > limit:
                break
            if price > 0:  # a NO bid at $1 would be a free YES: not a tradable level
                levels.append((price, count))
    else:
        for price, count in yes_bids:
            if price < limit:
                break
            if price < ONE_DOLLAR:
                levels.append((price, count))
    return levels
