"""``CompiledExchange``: the simulated exchange for one replayed market, matching in compiled code.

The training environment's exchange when it can be: one market, the risk-averse queue model
(:func:`supports`). It answers the part of :class:`SimulatedExchange`'s interface the
environment uses -- ``submit``, ``cancel``, ``cancel_all``, ``advance``, ``settle``, ``latest_order``,
``open_orders``, ``buying_power``, ``rejections`` -- with the same :class:`~domain.orders.Order`,
:class:`~domain.orders.Fill` and :class:`Execution` objects, booked into the same
:class:`~domain.ledger.Ledger` in the same order, while :mod:`adapters.simulated_exchange.kernel`
does the matching. The rules live in :mod:`adapters.simulated_exchange.exchange`; a test steps
both side by side over long random trajectories and requires identical results.
"""

from __future__ import annotations

import numpy as np

from adapters.simulated_exchange import kernel as k
from adapters.simulated_exchange.exchange import (
    CASH_SHORT,
    CASH_SHORT_TO_FILL,
    FILL_OR_KILL_SHORT,
    NOTHING_TO_REDUCE,
    POST_ONLY_CROSSES,
    REDUCE_TOO_BIG,
    ExchangeConfig,
    ExchangeError,
    Execution,
    Rejection,
    Settlement,
    book_fill,
    book_terms,
    pending_order,
    refusal_reason,
    settle_market,
    too_early,
    unknown_market,
)
from adapters.simulated_exchange.queue_models import RiskAverseQueueModel
from adapters.simulated_exchange.replayed_market import ReplayedMarket
from domain.actions import cash_required
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.market_tape import MarketTape
from domain.orders import Order, OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.ticks import check_structure, off_grid
from domain.values import LADDER_SIZE, Side

_BID = OrderSide.BID
_PENDING, _RESTING, _REJECTED = OrderStatus.PENDING, OrderStatus.RESTING, OrderStatus.REJECTED
_TIME_IN_FORCE = {TimeInForce.GOOD_TILL_CANCELED: k.GTC, TimeInForce.IMMEDIATE_OR_CANCEL: k.IOC,
                  TimeInForce.FILL_OR_KILL: k.FOK}  # fmt: skip
_REFUSALS = {k.R_NOTHING_TO_REDUCE: NOTHING_TO_REDUCE, k.R_REDUCE_TOO_BIG: REDUCE_TOO_BIG,
             k.R_POST_ONLY: POST_ONLY_CROSSES, k.R_FILL_OR_KILL: FILL_OR_KILL_SHORT, k.R_CASH: CASH_SHORT,
             k.R_CASH_TO_FILL: CASH_SHORT_TO_FILL}  # fmt: skip
# Counts above this could overflow the kernel's 64-bit fee arithmetic (rate x count x P x (1 - P)).
MAX_COUNT = 10**7


def supports(config: ExchangeConfig) -> bool:
    """Whether the compiled exchange carries out ``config`` (the probabilistic queue model draws
    from Python's generator and stays in :class:`SimulatedExchange`)."""
    return isinstance(config.queue_model, RiskAverseQueueModel)


def check_supported(config: ExchangeConfig) -> None:
    if not supports(config):
        raise ValueError(f"the compiled exchange has no {config.queue_model.name} queue model")


class CompiledMarket:
    """A tape's arrays in the kernel's layout, built once per tape and shared by its episodes."""

    __slots__ = ("ticker", "price_levels", "last_row", "times", "log_offsets", "log", "bids", "level_offsets", "level_entries",
                 "time_list", "log_offset_list")  # fmt: skip

    def __init__(self, tape: MarketTape) -> None:
        self.ticker = tape.ticker
        self.price_levels = tape.price_levels  # the tick grid orders must be on
        self.times = np.ascontiguousarray(tape.times, dtype=np.int64)
        self.last_row = len(self.times) - 1
        self.log_offsets = np.ascontiguousarray(tape.log_offsets, dtype=np.int64)
        self.time_list: list[int] = self.times.tolist()  # the same, for reading one at a time from Python
        self.log_offset_list: list[int] = self.log_offsets.tolist()
        self.log = np.stack([tape.log_times, tape.log_kinds, tape.log_prices, tape.log_counts]).astype(np.int64)
        self.bids = np.ascontiguousarray(np.stack([tape.bid_prices, tape.bid_counts], axis=-1), dtype=np.int64)
        # per level (side * LADDER_SIZE + price): the log entries that changed it, ascending
        kinds = self.log[k.L_KIND]
        changes = np.flatnonzero(kinds < 2)
        keys = kinds[changes] * LADDER_SIZE + self.log[k.L_PRICE][changes]
        order = np.argsort(keys, kind="stable")
        self.level_entries = changes[order].astype(np.int64)
        self.level_offsets = np.zeros(2 * LADDER_SIZE + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=2 * LADDER_SIZE), out=self.level_offsets[1:])


class CompiledExchange:
    """One account trading one replayed market (see the module docstring)."""

    def __init__(
        self, ledger: Ledger, fees: FeeSchedule, *, config: ExchangeConfig | None = None, id_prefix: str = "sim"
    ) -> None:
        self.ledger = ledger
        self.fees = fees
        self.config = config or ExchangeConfig()
        check_supported(self.config)
        self.id_prefix = id_prefix
        self.rejections: list[Rejection] = []
        refill = self.config.liquidity_refill_ms
        self._config = np.array(
            [fees.taker_rate, fees.maker_rate, fees.fee_increment_micros, fees.account_increment_micros,
             self.config.latency_ms, -1 if refill is None else refill],
            dtype=np.int64,
        )  # fmt: skip
        self._market: CompiledMarket | None = None
        self._orders: list[Order] = []  # by slot
        self._slots: dict[str, int] = {}  # order id -> slot
        self._requests_sent = 0
        self._fills = 0
        self._latest = -1  # the latest open order's slot
        self._row = 0

    # -- markets ----------------------------------------------------------------------------
    def open_market(self, market: CompiledMarket, *, price_levels: str | None = None) -> None:
        if self._market is not None:
            raise ExchangeError(f"the compiled exchange replays one market; {self._market.ticker} is open")
        self._grid = check_structure(market.price_levels if price_levels is None else price_levels, name="price_levels")
        self._market = market
        self._state = np.zeros(k.STATE_SIZE, dtype=np.int64)
        self._state[k.NOW] = self._state[k.SENT] = market.times[0]
        self._state[k.CURSOR] = market.log_offsets[1]  # row 0 holds everything up to its time
        self._state[k.CASH], self._state[k.POSITION] = self.ledger.cash, self.ledger.quantity(market.ticker)
        self._order_rows = np.zeros((64, k.ORDER_FIELDS), dtype=np.int64)
        self._open = np.zeros(64, dtype=np.int64)
        self._resting = np.zeros(64, dtype=np.int64)
        self._request_rows = np.zeros((256, 3), dtype=np.int64)
        self._taken = np.zeros((2 * LADDER_SIZE, 4), dtype=np.int64)
        self._events = np.zeros((256, k.EVENT_FIELDS), dtype=np.int64)

    # -- state ------------------------------------------------------------------------------
    def open_orders(self, ticker: str) -> list[Order]:
        self._check(ticker)
        return [self._orders[slot] for slot in self._open[: self._state[k.OPEN]].tolist()]

    def latest_order(self, ticker: str) -> Order | None:
        market = self._market
        if market is None or ticker != market.ticker:
            raise unknown_market(ticker)
        return self._orders[self._latest] if self._latest >= 0 else None

    def buying_power(self, ticker: str | None = None) -> int:
        """Cash not reserved by open orders -- other than ``ticker``'s, which a new order in
        ``ticker`` would replace (so, with one market, all the cash when asked for it)."""
        market = self._market
        if market is None or ticker == market.ticker:
            return self.ledger.cash
        position = self.ledger.quantity(market.ticker)
        reserved = sum(
            cash_required(order.side, order.price, order.remaining, position, self.fees)
            for order in self.open_orders(market.ticker)
        )
        return self.ledger.cash - reserved

    # -- requests ---------------------------------------------------------------------------
    def submit(self, request: OrderRequest, *, ts_ms: int, replacing: bool = False) -> Order:
        market = self._market
        if market is None or request.ticker != market.ticker:
            raise unknown_market(request.ticker)
        if request.count > MAX_COUNT:
            raise ExchangeError(f"order for {request.count} count units: the compiled exchange takes at most {MAX_COUNT}")
        slot = len(self._orders)
        requests = 1 + (int(self._state[k.OPEN]) if replacing else 0)
        if slot >= len(self._order_rows) or self._requests_sent + requests > len(self._request_rows):
            self._reserve(slot + 1, requests)
        order = pending_order(request, f"{self.id_prefix}-order-{slot + 1}", ts_ms)
        sent = k.submit(
            self._state, self._order_rows, self._open, self._request_rows, self._config,
            0 if request.side is _BID else 1, request.price, request.count,
            _TIME_IN_FORCE[request.time_in_force], request.reduce_only, request.post_only, ts_ms, replacing,
        )  # fmt: skip
        if sent < 0:
            raise self._too_early(request.ticker, ts_ms)
        self._orders.append(order)
        self._slots[order.order_id] = slot
        self._requests_sent += requests
        self._latest = slot
        if request.price % 100:  # off a cent: is it on the market's grid?
            reason = off_grid(self._grid, request.price)
            if reason is not None:  # refused as sent, as SimulatedExchange does
                self._latest = k.refuse(self._state, self._order_rows, self._open, self._resting, slot)
                order.status = _REJECTED
                self.rejections.append(Rejection(order, reason, ts_ms))
        return order

    def cancel(self, order_id: str, *, ts_ms: int) -> Order:
        """Send a cancel for an open order; it lands after the latency (if the order is still open)."""
        slot = self._slots.get(order_id, -1)
        if slot < 0 or not self._orders[slot].status.is_open:
            raise ExchangeError(f"no open order {order_id!r}")
        order = self._orders[slot]
        self._sending(order.ticker, ts_ms)
        self._reserve(len(self._orders), 1)
        k.cancel(self._state, self._request_rows, self._config, slot, ts_ms)
        self._requests_sent += 1
        return order

    def cancel_all(self, ticker: str, *, ts_ms: int) -> list[Order]:
        orders = self.open_orders(ticker)
        if not orders:
            return orders
        self._sending(ticker, ts_ms)
        self._reserve(len(self._orders), len(orders))
        self._requests_sent += k.cancel_all(self._state, self._open, self._request_rows, self._config, ts_ms)
        return orders

    # -- time -------------------------------------------------------------------------------
    def advance(self, ticker: str, row: int) -> list[Execution]:
        return self._advance(ticker, row, True)  # type: ignore[return-value]

    def advance_booking(self, ticker: str, row: int) -> list[tuple[int, int, int]]:
        """:meth:`advance`, returning each fill as ``(fee, closed, realized_pnl)`` instead of an
        :class:`Execution` (no :class:`~domain.orders.Fill` is built; the ledger and the orders
        change the same way): what training needs, at a third of the cost a fill."""
        return self._advance(ticker, row, False)  # type: ignore[return-value]

    def _advance(self, ticker: str, row: int, detailed: bool) -> list[Execution] | list[tuple[int, int, int]]:
        market = self._market
        if market is None or ticker != market.ticker:
            raise unknown_market(ticker)
        if not self._row <= row <= market.last_row:
            raise ExchangeError(f"{ticker}: cannot advance from row {self._row} to row {row}")
        if self._latest < 0:  # no open order, so nothing of ours in the market: the replay jumps
            state = self._state
            end, target = market.log_offset_list[row + 1], market.time_list[row]
            if state[k.CURSOR] < end:
                state[k.CURSOR] = end
            if state[k.NOW] < target:
                state[k.NOW] = target
            state[k.ROW] = self._row = row
            return []
        ledger = self.ledger
        while True:
            count, self._latest = k.advance(
                self._state, self._order_rows, self._open, self._resting, self._request_rows, self._taken,
                self._events, self._config, market.times, market.log_offsets, market.log, market.bids,
                market.level_offsets, market.level_entries, row, ledger.cash, ledger.quantity(ticker),
            )  # fmt: skip
            if count >= 0:
                break
            self._events = np.zeros((-2 * count, k.EVENT_FIELDS), dtype=np.int64)  # room, and again
        self._row = row
        return self._carry_out(self._events[:count].tolist(), detailed) if count else []

    def settle(self, ticker: str, result: Side) -> Settlement:
        self._check(ticker)
        k.cancel_everything(self._state, self._order_rows, self._open, self._resting, self._events_for_settle())
        self._carry_out(self._events[: self._state[k.EVENTS]].tolist(), True)
        self._latest = -1
        return settle_market(self.ledger, ticker, result)

    # -- internals --------------------------------------------------------------------------
    def _carry_out(
        self, events: list[list[int]], detailed: bool
    ) -> list[Execution] | list[tuple[int, int, int]]:
        """Turn the kernel's events into the orders' changes, fills booked in the ledger, and
        rejections -- in the order they happened, as :class:`SimulatedExchange` makes them. Each
        fill comes back as an :class:`Execution` (``detailed``) or ``(fee, closed, realized)``."""
        executions: list = []
        orders, ledger = self._orders, self.ledger
        for kind, slot, a, b, c, d, e, closed in events:
            order = orders[slot]
            if kind == k.E_FILL:
                self._fills += 1  # numbered alike either way: a later detailed fill's id is the same
                if detailed:
                    fill_id = f"{self.id_prefix}-fill-{self._fills}"
                    executions.append(book_fill(ledger, order, fill_id, a, b, e, c == 1, d, closed))
                else:
                    executions.append((e, closed, book_terms(ledger, order, a, b, e)))
            elif kind == k.E_REST:
                order.status = _RESTING
            elif kind == k.E_CANCEL:
                order.cancel()
            else:
                if a == k.R_CASH_TO_FILL:  # partly filled: the rest is cancelled
                    order.cancel()
                else:
                    order.status = _REJECTED
                self.rejections.append(Rejection(order, refusal_reason(_REFUSALS[a], order, b, c, e), d))
        return executions

    def _events_for_settle(self) -> np.ndarray:
        self._state[k.EVENTS] = 0
        needed = int(self._state[k.OPEN]) + 1
        if needed > len(self._events):
            self._events = np.zeros((2 * needed, k.EVENT_FIELDS), dtype=np.int64)
        return self._events

    def _reserve(self, orders: int, requests: int) -> None:
        """Room for ``orders`` orders and ``requests`` more requests (the arrays grow by doubling)."""
        if orders > len(self._order_rows):
            self._order_rows = _grown(self._order_rows, orders)
            self._open = _grown(self._open, orders)
            self._resting = _grown(self._resting, orders)
        if self._requests_sent + requests > len(self._request_rows):
            self._request_rows = _grown(self._request_rows, self._requests_sent + requests)

    def _check(self, ticker: str) -> None:
        if self._market is None or ticker != self._market.ticker:
            raise unknown_market(ticker)

    def _too_early(self, ticker: str, ts_ms: int) -> ExchangeError:
        return too_early(ticker, ts_ms, max(int(self._state[k.SENT]), int(self._state[k.NOW])))

    def _sending(self, ticker: str, ts_ms: int) -> None:
        self._check(ticker)
        state = self._state
        if ts_ms < state[k.SENT] or ts_ms < state[k.NOW]:
            raise self._too_early(ticker, ts_ms)


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    size = len(array)
    while size < needed:
        size *= 2
    grown = np.zeros((size,) + array.shape[1:], dtype=array.dtype)
    grown[: len(array)] = array
    return grown
