"""The simulated exchange behind the :class:`~domain.ports.OrderGateway` port.

:class:`SimulatedOrderGateway` is an async facade over :class:`SimulatedExchange`, so a strategy
written against the port trades a replayed market exactly as it trades the local or demo
exchange, and the order-gateway contract suite holds both to the same behaviour.

The facade owns the exchange's clock: a market stands at the row it was last advanced to
(:meth:`advance`, by whoever drives the replay), and a request is sent at that row's time. A
request takes effect after the exchange's latency; the call replays the market up to the first
row at or after that moment -- time passes while a request travels -- so with no latency it takes
effect at once, at the current row. Whatever that replay fills (our order or others resting) is
booked in :meth:`fills` and sent to every :meth:`stream_fills`.

What the exchange records as a refusal becomes the port's typed error, as Kalshi's would:
insufficient cash -> :class:`InsufficientBalance`, a crossing post-only order ->
:class:`PostOnlyCross`, a price off the market's tick grid -> :class:`InvalidPrice`, and so on. Client order ids are checked here, as Kalshi checks them: an id
that placed an order can never be used again, even once that order is closed.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import AsyncIterator, Iterable, Sequence

import attrs

from adapters.simulated_exchange.exchange import ExchangeError, Execution, Settlement, SimulatedExchange
from adapters.simulated_exchange.replayed_market import ReplayedMarket
from domain.gateway_errors import (
    DuplicateClientOrderId,
    InsufficientBalance,
    InvalidOrder,
    InvalidPrice,
    MarketNotFound,
    OrderNotFound,
    OrderRejected,
    one_at_a_time,
    PostOnlyCross,
)
from domain.orders import FeeCorrection, Fill, Order, OrderRequest, OrderStatus
from domain.values import Side

# The exchange's refusal reasons (SimulatedExchange.rejections) -> the port's errors.
_REFUSALS: tuple[tuple[str, type[OrderRejected]], ...] = (
    ("off the tick grid", InvalidPrice),
    ("micro-dollars", InsufficientBalance),
    ("post-only", PostOnlyCross),
    ("reduce-only", InvalidOrder),
    ("no longer open", OrderNotFound),
    ("amend total", InvalidOrder),
    ("fill-or-kill", OrderRejected),
)


def _refusal(reason: str) -> OrderRejected:
    for marker, error in _REFUSALS:
        if marker in reason:
            return error(reason)
    return OrderRejected(reason)


def _copy(order: Order) -> Order:
    """A snapshot: the exchange keeps mutating its own order as it fills."""
    return attrs.evolve(order)


class SimulatedOrderGateway:
    """One account on ``exchange``, trading the replayed ``markets``."""

    def __init__(self, exchange: SimulatedExchange, markets: Iterable[ReplayedMarket] = ()) -> None:
        self.exchange = exchange
        self._markets: dict[str, ReplayedMarket] = {}
        self._rows: dict[str, int] = {}
        self._orders: dict[str, Order] = {}  # every order placed, by id
        self._client_ids: set[str] = set()
        self._fills: list[Fill] = []
        self._streams: list[asyncio.Queue[Fill | None]] = []
        self._closed = False
        for market in markets:
            self.open_market(market)

    # -- the replay ------------------------------------------------------------------------------
    def open_market(self, market: ReplayedMarket, *, price_levels: str | None = None) -> None:
        """Replay ``market``; ``price_levels``, its tick grid, defaults to its tape's."""
        self.exchange.open_market(market, price_levels=price_levels)
        self._markets[market.ticker] = market
        self._rows[market.ticker] = 0

    def row(self, ticker: str) -> int:
        return self._rows[self._market(ticker).ticker]

    def now_ms(self, ticker: str) -> int:
        """The market's clock: the time of the row it stands at."""
        return self._market(ticker).times[self.row(ticker)]

    def advance(self, ticker: str, row: int) -> list[Fill]:
        """Replay ``ticker`` up to ``row``; returns the fills on the way (also streamed)."""
        executions = self.exchange.advance(ticker, row)
        self._rows[ticker] = row
        return self._publish(executions)

    def settle(self, ticker: str, result: Side) -> Settlement:
        """The market resolved: its orders are cancelled, its position paid out."""
        return self.exchange.settle(ticker, result)

    # -- orders ----------------------------------------------------------------------------------
    async def create_order(self, request: OrderRequest) -> Order:
        market = self._market(request.ticker)
        if request.client_order_id in self._client_ids:
            raise DuplicateClientOrderId(f"client order id {request.client_order_id!r} was already used")
        order = self.exchange.submit(request, ts_ms=self.now_ms(market.ticker))
        self._orders[order.order_id] = order
        self._client_ids.add(request.client_order_id)
        self._carry_out(market)
        self._raise_if_refused(order)
        return _copy(order)

    async def cancel_order(self, order_id: str) -> Order:
        order = self._open(order_id)
        self.exchange.cancel(order_id, ts_ms=self.now_ms(order.ticker))
        self._carry_out(self._markets[order.ticker])
        if order.status is not OrderStatus.CANCELED:
            raise OrderNotFound(f"order {order_id} was {order.status} before the cancel arrived")
        return _copy(order)

    async def amend_order(self, order_id: str, *, price: int, count: int, client_order_id: str) -> Order:
        old = self._open(order_id)
        if client_order_id in self._client_ids:
            raise DuplicateClientOrderId(f"client order id {client_order_id!r} was already used")
        try:
            order = self.exchange.amend(
                order_id, price=price, count=count, ts_ms=self.now_ms(old.ticker), client_order_id=client_order_id
            )
        except ExchangeError as error:
            raise InvalidOrder(str(error)) from None
        self._orders[order.order_id] = order
        self._client_ids.add(client_order_id)
        self._carry_out(self._markets[old.ticker])
        self._raise_if_refused(order)
        return _copy(order)

    async def create_orders(self, requests: Sequence[OrderRequest]) -> list[Order | OrderRejected]:
        return await one_at_a_time(self.create_order, requests)

    async def cancel_orders(self, order_ids: Sequence[str]) -> list[Order | OrderRejected]:
        return await one_at_a_time(self.cancel_order, order_ids)

    # -- reads -----------------------------------------------------------------------------------
    async def get_order(self, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id!r}")
        return _copy(order)

    async def open_orders(self, ticker: str | None = None) -> list[Order]:
        tickers = self._markets if ticker is None else (self._market(ticker).ticker,)
        return [
            _copy(order)
            for name in tickers
            for order in self.exchange.open_orders(name)
            if order.status is OrderStatus.RESTING
        ]

    async def fills(self, since_ms: int = 0) -> list[Fill]:
        return [fill for fill in self._fills if fill.ts_ms >= since_ms]

    async def stream_fills(self, since_ms: int | None = None) -> AsyncIterator[Fill]:
        if self._closed:
            return
        queue: asyncio.Queue[Fill | None] = asyncio.Queue()
        backlog = [] if since_ms is None else [fill for fill in self._fills if fill.ts_ms >= since_ms]
        self._streams.append(queue)  # with the backlog taken at the same instant: no gap, no repeat
        try:
            for fill in backlog:
                yield fill
            while (fill := await queue.get()) is not None:
                yield fill
        finally:
            self._streams.remove(queue)

    def fee_corrections(self) -> list[FeeCorrection]:
        return []  # every fill carries the fee the simulated exchange charged

    async def positions(self) -> dict[str, int]:
        return {ticker: position.quantity for ticker, position in self.exchange.ledger.positions.items() if position.quantity}

    async def balance(self) -> int:
        return self.exchange.ledger.cash

    async def close(self) -> None:
        self._closed = True
        for queue in self._streams:
            queue.put_nowait(None)

    # -- internals -------------------------------------------------------------------------------
    def _market(self, ticker: str) -> ReplayedMarket:
        market = self._markets.get(ticker)
        if market is None:
            raise MarketNotFound(f"market {ticker!r} is not open on the simulated exchange")
        return market

    def _open(self, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None or not order.status.is_open:
            state = "unknown" if order is None else str(order.status)
            raise OrderNotFound(f"order {order_id!r} is {state}: nothing to cancel or amend")
        return order

    def _carry_out(self, market: ReplayedMarket) -> None:
        """Replay the market until the requests just sent have taken effect (or the tape ends)."""
        effect_ms = self.now_ms(market.ticker) + self.exchange.config.latency_ms
        row = min(bisect_left(market.times, effect_ms, self._rows[market.ticker]), market.last_row)
        self.advance(market.ticker, row)

    def _raise_if_refused(self, order: Order) -> None:
        if order.status is not OrderStatus.REJECTED:
            return
        self._client_ids.discard(order.client_order_id)  # a refused order never existed
        for rejection in reversed(self.exchange.rejections):
            if rejection.order is order:
                raise _refusal(rejection.reason)
        raise OrderRejected(f"order {order.order_id} was refused")  # pragma: no cover - always recorded

    def _publish(self, executions: list[Execution]) -> list[Fill]:
        fills = [execution.fill for execution in executions]
        self._fills.extend(fills)
        for queue in self._streams:
            for fill in fills:
                queue.put_nowait(fill)
        return fills

