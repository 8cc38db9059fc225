"""The actor's orders: at most one working order per market, sent through the ``OrderGateway``.

:class:`OrderDesk` carries out what each decision decodes to (:meth:`OrderDesk.execute`): the
order already resting (same side, price and remaining size) is kept; a different one is
cancelled and replaced, once it passes the pre-trade check (:func:`domain.risk.check_order`).
Fills are booked against the working order they belong to (:meth:`OrderDesk.book_fill`); one
with nothing left is forgotten. A fill can outrun the answer to the create that caused it: it is
held until that answer names the order.

The exchange is the truth about what rests. A create that got no answer may or may not have
placed its order: its client order id is remembered (:meth:`OrderDesk.was_unanswered`) and the
desk asks for a reconciliation, whose :meth:`OrderDesk.sync` adopts what the exchange lists and
we lost, forgets what it no longer lists, and cancels anything beyond one order per market.

One order operation runs at a time (a decision's cancel-and-create, a sync, a halt's
:meth:`OrderDesk.cancel_all`), and none starts a new order once trading has halted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

import attrs

from application.actor_config import ActorCounters
from domain.gateway_errors import ExchangeUnavailable, OrderNotFound, OrderRejected
from domain.orders import Fill, Order, OrderRequest
from domain.ports import OrderGateway
from domain.risk import RiskLimits, check_order

log = logging.getLogger(__name__)

CANCEL_ATTEMPTS = 3  # a halt tries this many times to cancel what is open before giving up loudly


@attrs.define(eq=False)
class WorkingOrder:
    order: Order  # as the exchange acknowledged it
    placed_ms: int
    booked: int = 0  # count units booked from the fill stream

    @property
    def remaining(self) -> int:
        if not self.order.status.is_open:
            return 0
        return self.order.count - max(self.order.filled, self.booked)


class OrderDesk:
    """``tickers`` are the markets the actor trades (an open order elsewhere is cancelled);
    ``halted`` says whether trading has stopped; ``on_unanswered`` asks for a reconciliation."""

    def __init__(
        self,
        *,
        gateway: OrderGateway,
        limits: RiskLimits,
        tickers: frozenset[str],
        counters: ActorCounters,
        halted: Callable[[], bool],
        on_unanswered: Callable[[], None],
    ) -> None:
        self._gateway = gateway
        self._limits = limits
        self._tickers = tickers
        self._counters = counters
        self._halted = halted
        self._on_unanswered = on_unanswered
        self._lock = asyncio.Lock()  # one order operation at a time: decisions, halts, order syncs
        self._working: dict[str, WorkingOrder] = {}
        self._by_order_id: dict[str, str] = {}  # order id -> ticker, while working
        self._booked_early: dict[str, int] = {}  # order id -> count filled before its create returned
        self._creating = False  # a create request is awaiting its answer
        self._unanswered: set[str] = set()  # client order ids of creates that got no answer

    # -- reads -----------------------------------------------------------------------------------
    @property
    def by_market(self) -> Mapping[str, WorkingOrder]:
        """The working order in each market that has one."""
        return self._working

    def open_orders(self) -> dict[str, Order]:
        """The order resting in each market, as the actor knows it."""
        return {ticker: entry.order for ticker, entry in self._working.items()}

    def was_unanswered(self, client_order_id: str) -> bool:
        """Whether a create with this client order id got no answer (placed or not, nobody knows)."""
        return client_order_id in self._unanswered

    # -- decisions -------------------------------------------------------------------------------
    async def execute(self, ticker: str, request: OrderRequest | None, position: int, now: int) -> Order | None:
        """Carry out a decision's order; returns the order sent, if one was."""
        if request is None:
            return None
        working = self._working.get(ticker)
        if (
            working is not None
            and working.order.side is request.side
            and working.order.price == request.price
            and working.remaining == request.count
        ):
            self._counters.orders_kept += 1
            return None
        others = sum(1 for other in self._working if other != ticker)
        refusal = check_order(
            self._limits, ticker=ticker, side=request.side, count=request.count, position=position,
            other_open_orders=others,
        )  # fmt: skip
        if refusal is not None:
            self._counters.orders_blocked += 1
            log.warning("actor: order not sent: %s", refusal)
            return None
        async with self._lock:
            if self._halted():
                return None
            working = self._working.get(ticker)
            if working is not None:
                await self._cancel_working(ticker, working)
            if self._halted():
                return None
            self._creating = True
            try:
                order = await self._gateway.create_order(request)
            except OrderRejected as error:
                self._counters.orders_rejected += 1
                log.warning("actor: %s refused %s: %s", ticker, request.client_order_id, error)
                return None
            except ExchangeUnavailable as error:
                # Sent or not, nobody knows: the next reconciliation reads the open orders.
                self._counters.orders_unknown += 1
                self._unanswered.add(request.client_order_id)
                log.warning("actor: no answer placing %s on %s: %s", request.client_order_id, ticker, error)
                self._on_unanswered()
                return None
            finally:
                self._creating = False
            self._counters.orders_placed += 1
            if working is not None:
                self._counters.orders_replaced += 1
            self._track(order, now)
            self._booked_early.clear()
            return order

    def book_fill(self, fill: Fill) -> None:
        """A fill the account has just booked, against the working order it belongs to."""
        ticker = self._by_order_id.get(fill.order_id)
        if ticker is not None:
            entry = self._working[ticker]
            entry.booked += fill.count
            if entry.remaining <= 0:
                self._forget(ticker)
        elif self._creating:
            # A fill can outrun the answer to the create request that caused it.
            self._booked_early[fill.order_id] = self._booked_early.get(fill.order_id, 0) + fill.count

    def _track(self, order: Order, placed_ms: int) -> None:
        entry = WorkingOrder(order, placed_ms)
        entry.booked = self._booked_early.pop(order.order_id, 0)
        if entry.remaining > 0:
            self._working[order.ticker] = entry
            self._by_order_id[order.order_id] = order.ticker

    def _forget(self, ticker: str) -> None:
        entry = self._working.pop(ticker, None)
        if entry is not None:
            self._by_order_id.pop(entry.order.order_id, None)

    async def _cancel_working(self, ticker: str, working: WorkingOrder) -> None:
        try:
            await self._gateway.cancel_order(working.order.order_id)
            self._counters.orders_cancelled += 1
        except OrderNotFound:
            pass  # filled or cancelled already: its fills come on the stream
        self._forget(ticker)

    # -- the exchange's open orders --------------------------------------------------------------
    async def sync(self) -> None:
        """Hold the exchange's open orders as the truth: forget ours it no longer has, adopt the
        ones it has that we lost (an unanswered create), one per market; cancel any extra."""
        async with self._lock:
            open_orders = await self._gateway.open_orders()
            listed = {order.order_id for order in open_orders}
            for ticker, entry in list(self._working.items()):
                if entry.order.order_id not in listed:
                    self._forget(ticker)
            extras = []
            for order in sorted(open_orders, key=lambda order: order.created_ms, reverse=True):
                known = self._by_order_id.get(order.order_id)
                if known is not None:
                    self._working[known].order = order
                elif order.ticker in self._tickers and order.ticker not in self._working and not self._halted():
                    self._track(order, order.created_ms)
                else:
                    extras.append(order.order_id)
            if extras:
                log.warning("actor: cancelling %d open orders beyond one per market", len(extras))
                await self._cancel_ids(extras)

    async def cancel_leftovers(self) -> None:
        """Cancel the orders an earlier run left open (at start, before anything of ours rests)."""
        leftovers = await self._gateway.open_orders()
        if leftovers:
            log.warning("actor: cancelling %d orders left open by an earlier run", len(leftovers))
            await self._cancel_ids([order.order_id for order in leftovers])

    async def cancel_all(self) -> int:
        """Cancel every order the exchange lists as open (ours or lost), with retries; returns
        how many were cancelled."""
        async with self._lock:
            for attempt in range(1, CANCEL_ATTEMPTS + 1):
                try:
                    open_orders = await self._gateway.open_orders()
                    cancelled = await self._cancel_ids([order.order_id for order in open_orders])
                except ExchangeUnavailable as error:
                    log.error("actor: cancelling open orders failed (attempt %d): %s", attempt, error)
                    await asyncio.sleep(0.5 * attempt)
                    continue
                self._working.clear()
                self._by_order_id.clear()
                return cancelled
            self._counters.errors += 1
            log.critical(
                "actor: could not cancel the open orders after %d attempts: cancel them by hand", CANCEL_ATTEMPTS
            )
            return 0

    async def _cancel_ids(self, order_ids: Sequence[str]) -> int:
        if not order_ids:
            return 0
        results = await self._gateway.cancel_orders(order_ids)
        cancelled = sum(1 for result in results if isinstance(result, Order))
        self._counters.orders_cancelled += cancelled
        for result in results:
            if isinstance(result, OrderRejected) and not isinstance(result, OrderNotFound):
                log.warning("actor: a cancel was refused: %s", result)
        return cancelled
