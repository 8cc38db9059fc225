"""The simulated exchange: Kalshi's limit orders, filled against replayed markets.

Used in training and evaluation, where the market is a recording (a
:class:`~domain.market_tape.MarketTape`) that cannot react to us. The exchange walks each
market's log (every level change and trade, in recorded order) forward in time and fills our
orders the way Kalshi's matching engine would have, as far as the recording can tell:

* **Latency.** A request -- submit, cancel, amend -- is sent at ``ts_ms`` and takes effect at
  ``ts_ms + latency_ms`` (:class:`ExchangeConfig`), in the order sent. Until then the order is
  ``PENDING`` and the market moves without it; a cancel can arrive after the order filled. An
  order acts on the book *as it stands at that moment*: the row before it plus the log entries
  stamped at or before it -- never anything later.
* **Crossing.** An order that crosses the book fills at once against the visible depth, best
  level first, each level at its own price (one :class:`~domain.orders.Fill` per level, so the
  average is the VWAP and the ledger stays exact), as a taker paying Kalshi's fee. When the
  crossing levels run out it fills partially; a good-till-cancelled remainder rests, an
  immediate-or-cancel one is cancelled, and a fill-or-kill order that cannot fill whole is
  refused before anything fills. A bid at ``p`` takes NO bids ``q`` with ``1 - q <= p`` at the
  YES price ``1 - q``; an ask at ``p`` takes YES bids ``b >= p`` at ``b``.
* **Consumed liquidity.** What we take stays taken (:mod:`~adapters.simulated_exchange.liquidity`):
  a later order does not see it again until the replayed level drains below it, or, with
  ``liquidity_refill_ms``, until that long after our last take there.
* **Resting.** A resting order joins the back of its level (a bid joins the YES bids at its
  price, an ask the NO bids at ``1 - price``) and a :mod:`queue model
  <adapters.simulated_exchange.queue_models>` tracks how much is ahead of it. It fills, as a
  maker at its own price, when

  - a trade hits bids on its side *at* its price and the queue ahead is used up (what the
    trade has left after the queue reaches us);
  - a trade hits bids on its side *through* its price (a sale below our bid: its
    counterparty would have met us first), up to the trade's size;
  - liquidity that crosses it appears in the replay (a NO bid at ``1 - p`` or above against
    our YES bid at ``p``): it would have matched us on arrival, up to its size, and that
    liquidity is then consumed.

  Trades whose taker is on our side (buyers beside our bid) never fill us. One trade's volume
  is shared out among our orders in price-time priority -- the best price first, then the order
  that came to rest first -- each fill using up what the trade has left (an order at the trade's
  price sees only that remainder reach its queue); arriving liquidity is shared out the same way.
* **Cancel and amend.** A cancel takes effect after the latency. An amend is a cancel and a new
  order, as the live gateway does it; ``count`` is the new total (filled + resting), as on Kalshi.
  As on Kalshi, queue priority survives only a size decrease: an amend of a resting order at the
  same price to a smaller total keeps its place in the queue (the replacement takes it); any
  other amend joins the back of its level. An amend refused when it lands changes nothing.
* **Money.** Every fill is booked in the :class:`~domain.ledger.Ledger`, and the cash never goes
  negative. An order is refused when it takes effect unless the account can pay for it in full,
  counting what the other open orders have reserved: its crossing part at what it will cost (each
  level's fill at its own price, each fee rounded up as it is charged, per fill) and a remainder
  that will rest at :func:`domain.actions.cash_required`. Fees are rounded per fill, so a resting
  order's later fills can cost more than that bound: a passive fill the cash cannot pay in full
  (fee included) fills only what the cash pays for, and the rest of the order is cancelled and
  recorded as a rejection. Reduce-only and post-only are checked when the order takes effect too. At resolution, :meth:`SimulatedExchange.settle`
  cancels the market's orders and settles it through the ledger.

* **Tick grid.** An order (or an amend) at a price off its market's tick grid
  (Kalshi's ``price_level_structure``: the replayed tape's, :attr:`MarketTape.price_levels`, unless
  :meth:`~SimulatedExchange.open_market` is given another) is refused as it is sent, as
  Kalshi answers ``invalid_price``; the reason names the price and the tick.

One order book per market, one account. Orders are refused at effect time with a reason in
:attr:`SimulatedExchange.rejections`; programming errors (an unknown market, time running
backwards) raise :class:`ExchangeError` at once.

This is the reference implementation. The training environment runs the same rules compiled
(:mod:`~adapters.simulated_exchange.kernel`, one market, the risk-averse queue model): a change
to a rule here goes there too, and ``tests/adapters/simulated_exchange/test_compiled.py`` says
whether the two still agree.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import deque

import attrs

from adapters.simulated_exchange.liquidity import ConsumedLiquidity
from adapters.simulated_exchange.queue_models import QueueModel, QueuePosition, RiskAverseQueueModel
from adapters.simulated_exchange.replayed_market import ReplayedMarket
from domain.actions import cash_required
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.market_tape import LOG_TRADE_NO_TAKER
from domain.orders import Fill, Order, OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.ticks import CENT, check_structure, off_grid
from domain.values import ONE_DOLLAR, Side

DEFAULT_LATENCY_MS = 100

# Enum members looked up through their class cost a Python-level call on 3.11 (~0.15 us);
# the per-order paths below compare against these module constants instead.
_BID = OrderSide.BID
_PENDING, _RESTING, _REJECTED = OrderStatus.PENDING, OrderStatus.RESTING, OrderStatus.REJECTED
_GOOD_TILL_CANCELED, _FILL_OR_KILL = TimeInForce.GOOD_TILL_CANCELED, TimeInForce.FILL_OR_KILL


class ExchangeError(ValueError):
    """A request the simulated exchange cannot take: an unknown market or order, time going back."""


def _latency(_instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer of milliseconds, got {value!r}")


def _refill(_instance: object, attribute: attrs.Attribute, value: int | None) -> None:  # type: ignore[type-arg]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{attribute.name} must be None or a positive integer of milliseconds, got {value!r}")


@attrs.frozen
class ExchangeConfig:
    """How the simulated exchange fills: latency, queue model, when consumed liquidity returns
    (each market's tick grid is its tape's)."""

    latency_ms: int = attrs.field(default=DEFAULT_LATENCY_MS, validator=_latency)  # from sending to effect
    queue_model: QueueModel = attrs.field(factory=RiskAverseQueueModel)
    liquidity_refill_ms: int | None = attrs.field(default=None, validator=_refill)  # None: the replay decides


@attrs.frozen
class Execution:
    """A fill and what it did to the position: how much it closed and the P&L that realised."""

    fill: Fill
    closed: int  # count units of the fill that closed an open position
    realized_pnl: int  # micro-dollars, before fees


@attrs.frozen
class Rejection:
    """An order the exchange refused when it took effect."""

    order: Order
    reason: str
    ts_ms: int


@attrs.frozen
class Settlement:
    ticker: str
    result: Side
    payout: int  # micro-dollars paid for the winning contracts
    closed: int  # count units the resolution closed
    realized_pnl: int  # payout minus what the settled contracts cost


def pending_order(request: OrderRequest, order_id: str, ts_ms: int) -> Order:
    """The order ``request`` becomes when sent at ``ts_ms``: ``PENDING`` until it takes effect."""
    return Order(
        order_id,
        request.client_order_id,
        request.ticker,
        request.side,
        request.price,
        request.count,
        ts_ms,
        request.time_in_force,
        status=_PENDING,
    )


def book_fill(
    ledger: Ledger, order: Order, fill_id: str, price: int, count: int, fee: int, is_taker: bool, ts_ms: int,
    closed: int | None = None,
) -> Execution:  # fmt: skip
    """A fill of ``order``, booked in ``ledger``; ``closed``, how much of it closes the position,
    is asked of the ledger unless the caller knows it already."""
    fill = Fill(fill_id, order.order_id, order.ticker, order.side, price, count, fee, is_taker, ts_ms)
    if closed is None:
        closed = ledger.closing_count(fill)
    realized = ledger.apply_fill(fill)
    order.record_fill(count)
    return Execution(fill, closed, realized)


def book_terms(ledger: Ledger, order: Order, price: int, count: int, fee: int) -> int:
    """:func:`book_fill` without the :class:`Fill`: the exchange's own fill of ``order`` booked
    in ``ledger`` from its terms; returns the realised P&L."""
    realized = ledger.book(order.ticker, order.side, price, count, fee)
    order.record_fill(count)
    return realized


def settle_market(ledger: Ledger, ticker: str, result: Side) -> Settlement:
    """Pay ``ticker``'s position out through ``ledger`` (its orders already cancelled)."""
    position = ledger.position(ticker)
    closed = abs(position.quantity)
    realized_before = position.realized_pnl
    payout = ledger.settle(ticker, result)
    realized = ledger.position(ticker).realized_pnl - realized_before
    return Settlement(ticker, result, payout, closed, realized)


# Why an order is refused when it takes effect: the refusal's kind and its numbers.
NOTHING_TO_REDUCE, REDUCE_TOO_BIG, POST_ONLY_CROSSES, FILL_OR_KILL_SHORT, CASH_SHORT, CASH_SHORT_TO_FILL = range(6)


def refusal_reason(kind: int, order: Order, a: int = 0, b: int = 0, c: int = 0) -> str:
    if kind == NOTHING_TO_REDUCE:
        return "reduce-only order with no position to reduce"
    if kind == REDUCE_TOO_BIG:
        return f"reduce-only order for {order.count} exceeds the position of {a}"
    if kind == POST_ONLY_CROSSES:
        return "post-only order would cross the book"
    if kind == FILL_OR_KILL_SHORT:
        return f"fill-or-kill order for {order.count} sees only {a} to take"
    if kind == CASH_SHORT_TO_FILL:
        return (
            f"cash of {b} micro-dollars pays for only {a} of a passive fill of {c} (fee included): "
            f"filled {a}, the rest of the order cancelled"
        )
    return f"needs {a} micro-dollars, has {b} to spend"


def unknown_market(ticker: str) -> ExchangeError:
    return ExchangeError(f"market {ticker} is not being replayed; open_market() it first")


def too_early(ticker: str, ts_ms: int, clock_ms: int) -> ExchangeError:
    return ExchangeError(
        f"{ticker}: a request sent at {ts_ms} ms is earlier than the market's clock "
        f"({clock_ms} ms): requests must be sent in time order"
    )


# What a request does (plain ints: compared on every request carried out).
_NEW = 0
_CANCEL = 1
_REPLACE = 2  # the new half of an amend


class _Request:
    __slots__ = ("kind", "active_ms", "order", "request", "replaces", "total")

    def __init__(
        self,
        kind: int,
        active_ms: int,
        order: Order,
        request: OrderRequest | None = None,
        replaces: Order | None = None,
        total: int = 0,
    ) -> None:
        self.kind = kind
        self.active_ms = active_ms
        self.order = order  # the order placed, or the one to cancel
        self.request = request
        self.replaces = replaces
        self.total = total  # an amend's new total count


class _Resting:
    """An order in the book: the bid it makes on one side, and its place in that level's queue."""

    __slots__ = ("order", "side", "price", "crossed_from", "queue")

    def __init__(self, order: Order, queue: QueuePosition) -> None:
        self.order = order
        if order.side is _BID:
            self.side, self.price = 0, order.price  # a YES bid
        else:
            self.side, self.price = 1, ONE_DOLLAR - order.price  # a NO bid at 1 - p
        self.crossed_from = ONE_DOLLAR - self.price  # other-side bids at or above this cross it
        self.queue = queue


class _Replay:
    """One market being replayed: where its clock and log cursor are, and our orders in it."""

    __slots__ = ("market", "row", "now", "sent_ms", "cursor", "requests", "open", "resting", "consumed", "grid")

    def __init__(self, market: ReplayedMarket, refill_ms: int | None, grid: str) -> None:
        self.market = market
        self.grid = grid  # the market's price_level_structure
        self.row = 0
        self.now = market.times[0]
        self.sent_ms = self.now
        self.cursor = market.log_offsets[1]  # row 0 holds everything up to its time
        self.requests: deque[_Request] = deque()
        self.open: list[Order] = []  # pending and resting, in the order sent
        self.resting: list[_Resting] = []
        self.consumed = ConsumedLiquidity(market, refill_ms)


def _best_first(entry: tuple) -> int:  # type: ignore[type-arg]
    return -entry[2]  # the higher bid on its side first (sorted stably: then time)


class SimulatedExchange:
    """One account trading replayed markets."""

    def __init__(
        self,
        ledger: Ledger,
        fees: FeeSchedule,
        *,
        config: ExchangeConfig | None = None,
        rng: random.Random | None = None,
        id_prefix: str = "sim",
    ) -> None:
        self.ledger = ledger
        self.fees = fees
        self.config = config or ExchangeConfig()
        self.rng = rng if rng is not None else random.Random(0)  # the probabilistic queue model's draws
        self.id_prefix = id_prefix
        self.rejections: list[Rejection] = []
        self._latency = self.config.latency_ms
        self._queue_model = self.config.queue_model
        self._replays: dict[str, _Replay] = {}
        self._requests: dict[str, OrderRequest] = {}  # open order id -> what it was placed with
        self._orders = 0
        self._fills = 0
        self._fees: dict[tuple[int, int, bool], int] = {}  # (count, price, is taker) -> fee

    # -- markets ----------------------------------------------------------------------------
    def open_market(self, market: ReplayedMarket, *, price_levels: str | None = None) -> None:
        """Start replaying ``market`` from its first row; ``price_levels``, its tick grid (Kalshi's
        ``price_level_structure``), defaults to the tape's."""
        if market.ticker in self._replays:
            raise ExchangeError(f"market {market.ticker} is already being replayed")
        grid = check_structure(market.price_levels if price_levels is None else price_levels, name="price_levels")
        self._replays[market.ticker] = _Replay(market, self.config.liquidity_refill_ms, grid)

    # -- state ------------------------------------------------------------------------------
    def open_orders(self, ticker: str) -> list[Order]:
        """``ticker``'s pending and resting orders, oldest first."""
        return list(self._replay(ticker).open)

    def latest_order(self, ticker: str) -> Order | None:
        """``ticker``'s most recently sent open order, if any."""
        orders = self._replay(ticker).open
        return orders[-1] if orders else None

    def buying_power(self, ticker: str | None = None) -> int:
        """Cash not reserved by open orders -- other than ``ticker``'s, which a new order in
        ``ticker`` would replace."""
        reserved = 0
        for replay_ticker, replay in self._replays.items():
            if replay_ticker != ticker:
                for order in replay.open:
                    reserved += self._reservation(order)
        return self.ledger.cash - reserved

    # -- requests ---------------------------------------------------------------------------
    def submit(self, request: OrderRequest, *, ts_ms: int, replacing: bool = False) -> Order:
        """Send ``request`` at ``ts_ms``; it takes effect after the latency. Returns the order,
        ``PENDING`` until then. ``replacing``: a cancel of every open order of the market goes
        first, at the same time (:meth:`cancel_all`, then this)."""
        replay = self._sending(request.ticker, ts_ms)
        if replacing:
            self.cancel_all(request.ticker, ts_ms=ts_ms)
        order = self._new_order(request, ts_ms)
        if request.price % CENT and self._refused_off_grid(replay, order, ts_ms):
            return order
        replay.open.append(order)
        replay.requests.append(_Request(_NEW, ts_ms + self._latency, order, request))
        return order

    def cancel(self, order_id: str, *, ts_ms: int) -> Order:
        """Send a cancel for an open order; it lands after the latency (if the order is still open)."""
        order = self._open_order(order_id)
        self._sending(order.ticker, ts_ms).requests.append(_Request(_CANCEL, ts_ms + self._latency, order))
        return order

    def cancel_all(self, ticker: str, *, ts_ms: int) -> list[Order]:
        """Send a cancel for every open order of ``ticker``."""
        orders = list(self._replay(ticker).open)
        for order in orders:
            self.cancel(order.order_id, ts_ms=ts_ms)
        return orders

    def amend(
        self, order_id: str, *, price: int, count: int, ts_ms: int, client_order_id: str | None = None
    ) -> Order:
        """Cancel-and-replace: ``order_id`` is cancelled and a new order at ``price`` joins the back
        of its level, for ``count`` (the new total, filled + resting) minus what the old order has
        filled by then; a same-price size decrease keeps the old order's place. An amend refused
        when it lands (post-only cross, cash, nothing left above the filled) changes nothing: the
        old order stands, as on Kalshi. Returns the new order, ``PENDING``."""
        old = self._open_order(order_id)
        if count <= old.filled:
            raise ExchangeError(f"amend of {order_id}: new total {count} must exceed the {old.filled} already filled")
        placed = self._requests[order_id]
        request = attrs.evolve(
            placed, price=price, count=count - old.filled, client_order_id=client_order_id or old.client_order_id
        )
        replay = self._sending(old.ticker, ts_ms)
        order = self._new_order(request, ts_ms)
        if price % CENT and self._refused_off_grid(replay, order, ts_ms):
            return order  # refused as sent: the old order stands
        replay.open.append(order)
        replay.requests.append(_Request(_REPLACE, ts_ms + self._latency, order, request, old, count))
        return order

    def _refused_off_grid(self, replay: _Replay, order: Order, ts_ms: int) -> bool:
        """An order off its market's tick grid is refused as it is sent (Kalshi answers 400
        ``invalid_price`` at once): ``REJECTED``, with the reason in :attr:`rejections`."""
        reason = off_grid(replay.grid, order.price)
        if reason is None:
            return False
        self._requests.pop(order.order_id, None)
        order.status = _REJECTED
        self.rejections.append(Rejection(order, reason, ts_ms))
        return True

    # -- time -------------------------------------------------------------------------------
    def advance(self, ticker: str, row: int) -> list[Execution]:
        """Replay ``ticker`` up to its row ``row`` (inclusive), carrying out the requests that take
        effect on the way; returns the executions, in time order."""
        replay = self._replay(ticker)
        market = replay.market
        if not replay.row <= row <= market.last_row:
            raise ExchangeError(f"{ticker}: cannot advance from row {replay.row} to row {row}")
        target = market.times[row]
        end = market.log_offsets[row + 1]  # the entries stamped at or before the row's time
        requests = replay.requests
        executions: list[Execution] = []
        if not requests and not replay.resting:  # nothing of ours in the market: jump
            replay.cursor, replay.now, replay.row = max(replay.cursor, end), max(replay.now, target), row
            return executions
        while True:
            request = requests[0] if requests and requests[0].active_ms <= target else None
            until = target if request is None else request.active_ms
            if replay.resting:
                self._replay_log(replay, until, end, executions)
            elif replay.cursor < end:
                replay.cursor = bisect_right(market.log_times, until, replay.cursor, end)
            if until > replay.now:
                replay.now = until
            if request is None:
                break
            requests.popleft()
            self._carry_out(replay, request, executions)
        replay.row = row
        return executions

    def advance_booking(self, ticker: str, row: int) -> list[tuple[int, int, int]]:
        """:meth:`advance`, each fill given as ``(fee, closed, realized_pnl)`` (the compiled
        exchange's lean form, which training asks for; here, the executions' numbers)."""
        return [(execution.fill.fee, execution.closed, execution.realized_pnl) for execution in self.advance(ticker, row)]

    def settle(self, ticker: str, result: Side) -> Settlement:
        """The market resolved: cancel its orders and pay out through the ledger."""
        replay = self._replay(ticker)
        replay.requests.clear()
        for order in list(replay.open):
            self._close(replay, order)
            order.cancel()
        return settle_market(self.ledger, ticker, result)

    # -- carrying out requests --------------------------------------------------------------
    def _carry_out(self, replay: _Replay, request: _Request, executions: list[Execution]) -> None:
        order = request.order
        if request.kind == _CANCEL:
            if order.status.is_open:
                self._close(replay, order)
                order.cancel()
            return
        if not order.status.is_open:  # closed before it could take effect
            return
        if request.kind == _REPLACE:
            old = request.replaces
            assert old is not None
            if not old.status.is_open:
                self._reject(replay, order, f"order {old.order_id} is no longer open: nothing to amend")
                return
            # A refused amend changes nothing: the old order stands (as on Kalshi).
            count = request.total - old.filled
            if count <= 0:  # it filled past the new total while the amend travelled
                self._reject(replay, order, f"amend total {request.total} is not above the {old.filled} filled")
                return
            if old.status is _RESTING and order.price == old.price and request.total < old.count:
                self._keep_place(replay, old, order, count)
                return
            if count < order.count:
                order.count = count  # positive, checked above (Order validates at construction only)
            assert request.request is not None
            taking = self._take_effect(replay, order, request.request, freeing=old)
            if taking is not None:
                self._close(replay, old)
                old.cancel()
                self._fill_and_rest(replay, order, taking, executions)
            return
        assert request.request is not None
        taking = self._take_effect(replay, order, request.request)
        if taking is not None:
            self._fill_and_rest(replay, order, taking, executions)

    def _take_effect(
        self, replay: _Replay, order: Order, request: OrderRequest, *, freeing: Order | None = None
    ) -> list[tuple[int, int, int]] | None:
        """Whether ``order`` may take effect now: the crossing levels it would take, best first
        (``(other side's bid price, YES price, available)``), or None when it is refused (and
        rejected). ``freeing``: an order this one replaces, whose reservation it may use."""
        market, now, cursor = replay.market, replay.now, replay.cursor
        is_bid = order.side is _BID
        side, price = (0, order.price) if is_bid else (1, ONE_DOLLAR - order.price)  # the bid it makes
        other = 1 - side
        row = bisect_right(market.times, now) - 1  # the last row at or before now
        lowest = ONE_DOLLAR - price  # the other side's bids at or above this cross the order
        if market.log_offsets[row + 1] == cursor:  # nothing logged since the row: its levels stand
            crossing: list[tuple[int, int]] = []
            for q, size in market.bids[row][other]:
                if q < lowest:
                    break
                crossing.append((q, size))
        else:
            crossing = sorted(
                ((q, size) for q, size in market.bids_at(other, row, cursor).items() if q >= lowest), reverse=True
            )
        levels = []  # (other side's bid price, YES price, available), best first
        available = 0
        consumed = replay.consumed
        taken = consumed.taken
        for q, size in crossing:
            yes_price = ONE_DOLLAR - q if is_bid else q
            if not 0 < yes_price < ONE_DOLLAR:  # a $1 bid on the other side is not a tradable level
                continue
            if taken:
                size -= consumed.remaining(other, q, cursor, now)
            if size > 0:
                levels.append((q, yes_price, size))
                available += size

        position = self.ledger.quantity(order.ticker)
        problem = None
        if request.reduce_only and (position >= 0 if is_bid else position <= 0):
            problem = refusal_reason(NOTHING_TO_REDUCE, order)
        elif request.reduce_only and order.count > abs(position):
            problem = refusal_reason(REDUCE_TOO_BIG, order, abs(position))
        elif request.post_only and levels:
            problem = refusal_reason(POST_ONLY_CROSSES, order)
        elif order.time_in_force is _FILL_OR_KILL and available < order.count:
            problem = refusal_reason(FILL_OR_KILL_SHORT, order, available)
        else:
            spendable = self.ledger.cash - self._reserved_by_others(order, freeing)
            # else affordable whatever the prices, the position and the per-fill fee roundings
            if spendable < self._dearest(order.count) + (len(levels) + 1) * self.fees.account_increment_micros:
                required = self._cost_to_take_effect(order, levels, position)
                if required > spendable:
                    problem = refusal_reason(CASH_SHORT, order, required, spendable)
        if problem is not None:
            self._reject(replay, order, problem)
            return None
        return levels

    def _fill_and_rest(
        self, replay: _Replay, order: Order, levels: list[tuple[int, int, int]], executions: list[Execution]
    ) -> None:
        """``order`` takes effect: it takes the crossing ``levels``, then rests (good till
        cancelled) or is done."""
        market, now, cursor, consumed = replay.market, replay.now, replay.cursor, replay.consumed
        is_bid = order.side is _BID
        side, price = (0, order.price) if is_bid else (1, ONE_DOLLAR - order.price)  # the bid it makes
        other = 1 - side
        left = order.count - order.filled
        for q, yes_price, size in levels:
            take = size if size < left else left
            executions.append(self._execute(order, yes_price, take, True, now))
            consumed.take(other, q, take, cursor, now)
            left -= take
            if not left:
                break
        if not left:
            self._close(replay, order)
        elif order.time_in_force is _GOOD_TILL_CANCELED:
            order.status = _RESTING
            level = market.level_size(side, price, cursor)
            ahead = level - consumed.remaining(side, price, cursor, now) if consumed.taken else level
            replay.resting.append(_Resting(order, self._queue_model.join(level, ahead)))
        else:
            self._close(replay, order)
            order.cancel()

    def _keep_place(self, replay: _Replay, old: Order, order: Order, count: int) -> None:
        """An amend that only decreases a resting order's size at its price: the replacement
        takes the old order's place in the queue (Kalshi keeps its priority)."""
        for working in replay.resting:
            if working.order is old:
                working.order = order
                break
        replay.open.remove(old)
        self._requests.pop(old.order_id, None)
        old.cancel()
        order.count = count  # positive: the new total exceeds what the old order filled
        order.status = _RESTING

    # -- the market log ---------------------------------------------------------------------
    def _replay_log(self, replay: _Replay, until: int, end: int, executions: list[Execution]) -> None:
        """Walk the log entries stamped at or before ``until`` (below ``end``) past our resting orders."""
        market = replay.market
        times, kinds, prices, counts = market.log_times, market.log_kinds, market.log_prices, market.log_counts
        model, rng = self._queue_model, self.rng
        resting = replay.resting
        # Per order, what the hot loop compares against, unpacked once; in price-time priority
        # (the best bid on its side first, then the order that came to rest first), the order in
        # which a trade's volume or arriving liquidity reaches them.
        watch = [(w, w.side, w.price, w.crossed_from, LOG_TRADE_NO_TAKER - w.side) for w in resting]
        if len(watch) > 1:
            watch.sort(key=_best_first)
        index = replay.cursor
        while index < end and times[index] <= until:
            kind, price, count = kinds[index], prices[index], counts[index]
            index += 1
            finished = False
            volume = count  # a trade's volume not yet used up by our fills
            for working, side, bid_price, crossed_from, hits_us in watch:
                if kind == side:  # our level changed
                    if price == bid_price:
                        model.on_level(working.queue, count, rng, times[index - 1])
                    continue
                order = working.order
                if kind < 2:  # the other side changed
                    if price < crossed_from or not count:
                        continue
                    # Liquidity that crosses us arrived: it would have met our order first.
                    now = times[index - 1]
                    fill = min(order.remaining, count - replay.consumed.remaining(kind, price, index, now))
                    if fill <= 0:
                        continue
                    paid = self._affordable(order, fill)
                    if paid:
                        replay.consumed.take(kind, price, paid, index, now)
                    working.queue.ahead = 0
                elif kind == hits_us:  # a trade whose taker sold to bids on our side
                    at = price if side == 0 else ONE_DOLLAR - price  # its price on our side
                    if at < bid_price:  # through our price
                        fill = min(order.remaining, volume)
                        working.queue.ahead = 0
                        if not fill:
                            continue
                    elif at == bid_price:
                        fill = min(order.remaining, model.on_trade(working.queue, volume, rng, times[index - 1]))
                        if not fill:
                            continue
                    else:
                        continue
                else:
                    continue
                if kind >= 2:
                    paid = self._affordable(order, fill)
                    volume -= paid
                cash = self.ledger.cash
                if paid:
                    executions.append(self._execute(order, order.price, paid, False, times[index - 1]))
                if paid < fill:  # the cash cannot pay for the whole fill: the rest of the order goes
                    order.cancel()
                    self.rejections.append(
                        Rejection(order, refusal_reason(CASH_SHORT_TO_FILL, order, paid, cash, fill), times[index - 1])
                    )
                    finished = True
                elif not order.remaining:
                    finished = True
            if finished:
                for working in [working for working in resting if not working.order.remaining]:
                    self._close(replay, working.order)
                if not resting:
                    break
                watch = [entry for entry in watch if entry[0].order.remaining]
        if not resting:  # nothing left to fill: skip to the end of the span
            index = bisect_right(times, until, index, end)
        replay.cursor = index

    # -- internals --------------------------------------------------------------------------
    def _replay(self, ticker: str) -> _Replay:
        replay = self._replays.get(ticker)
        if replay is None:
            raise unknown_market(ticker)
        return replay

    def _sending(self, ticker: str, ts_ms: int) -> _Replay:
        replay = self._replay(ticker)
        if ts_ms < replay.sent_ms or ts_ms < replay.now:
            raise too_early(ticker, ts_ms, max(replay.sent_ms, replay.now))
        replay.sent_ms = ts_ms
        return replay

    def _open_order(self, order_id: str) -> Order:
        if order_id not in self._requests:
            raise ExchangeError(f"no open order {order_id!r}")
        replay = self._replay(self._requests[order_id].ticker)
        for order in replay.open:
            if order.order_id == order_id:
                return order
        raise ExchangeError(f"no open order {order_id!r}")  # unreachable: _requests holds open orders only

    def _new_order(self, request: OrderRequest, ts_ms: int) -> Order:
        self._orders += 1
        order = pending_order(request, f"{self.id_prefix}-order-{self._orders}", ts_ms)
        self._requests[order.order_id] = request
        return order

    def _execute(self, order: Order, price: int, count: int, is_taker: bool, ts_ms: int) -> Execution:
        self._fills += 1
        fill_id = f"{self.id_prefix}-fill-{self._fills}"
        return book_fill(self.ledger, order, fill_id, price, count, self._fee(count, price, is_taker), is_taker, ts_ms)

    def _fee(self, count: int, price: int, is_taker: bool) -> int:
        """:meth:`FeeSchedule.fee`, remembered: fills repeat the same sizes and prices."""
        key = (count, price, is_taker)
        fee = self._fees.get(key)
        if fee is None:
            if len(self._fees) > 4096:
                self._fees.clear()
            fee = self._fees[key] = self.fees.fee(count, price, is_taker=is_taker)
        return fee

    def _cost_to_take_effect(self, order: Order, levels: list[tuple[int, int, int]], position: int) -> int:
        """The most cash ``order`` can take when it takes effect and after: its crossing part at
        what it will cost (each level's fill at its own price, each fee rounded as charged) and,
        for a remainder that will rest, :func:`~domain.actions.cash_required` at the position the
        crossing leaves. Contracts that close a position bring their proceeds in, which pay the
        fill's fee first (as in ``cash_required``); a fill that brings cash in costs nothing."""
        is_bid = order.side is _BID
        left = order.count - order.filled
        cost = 0
        for _q, yes_price, size in levels:
            take = size if size < left else left
            if is_bid:
                closing = min(take, -position) if position < 0 else 0
                fill_cost = (take - closing) * yes_price - closing * (ONE_DOLLAR - yes_price)
                position += take
            else:
                closing = min(take, position) if position > 0 else 0
                fill_cost = (take - closing) * (ONE_DOLLAR - yes_price) - closing * yes_price
                position -= take
            fill_cost += self._fee(take, yes_price, True)
            cost += fill_cost if fill_cost > 0 else 0
            left -= take
            if not left:
                break
        if left and order.time_in_force is _GOOD_TILL_CANCELED:
            cost += cash_required(order.side, order.price, left, position, self.fees)
        return cost

    def _affordable(self, order: Order, count: int) -> int:
        """How much of a passive fill of ``count`` at ``order``'s price the cash pays for, fee
        included (``count`` itself when it can all be paid)."""
        cash = self.ledger.cash
        if cash >= self._dearest(count):
            return count
        position = self.ledger.quantity(order.ticker)
        price = order.price
        if order.side is _BID:
            held, opening = (-position if position < 0 else 0), price
        else:
            held, opening = (position if position > 0 else 0), ONE_DOLLAR - price

        def pays(n: int) -> bool:
            closed = n if n < held else held
            return cash - self._fee(n, price, False) + (ONE_DOLLAR - opening) * closed - opening * (n - closed) >= 0

        if pays(count):
            return count
        lo, hi = 0, count  # lo is paid for (cash is never negative), hi is not
        while hi - lo > 1:
            middle = (lo + hi) // 2
            if pays(middle):
                lo = middle
            else:
                hi = middle
        return lo

    def _dearest(self, count: int) -> int:
        """The most an order for ``count`` can cost: $1 a contract and the taker fee at its $0.50
        peak -- an upper bound of :func:`~domain.actions.cash_required` at any price and position."""
        return count * ONE_DOLLAR + self._fee(count, ONE_DOLLAR // 2, True)

    def _reject(self, replay: _Replay, order: Order, reason: str) -> None:
        self._close(replay, order)
        order.status = _REJECTED
        self.rejections.append(Rejection(order, reason, replay.now))

    def _close(self, replay: _Replay, order: Order) -> None:
        """``order`` leaves the book (filled, cancelled or refused): forget it (its cash is free)."""
        if order in replay.open:
            replay.open.remove(order)
        resting = replay.resting
        for index, working in enumerate(resting):
            if working.order is order:
                del resting[index]
                break
        self._requests.pop(order.order_id, None)

    def _reservation(self, order: Order) -> int:
        """The cash an open order holds back: what it could still cost, at the position now."""
        position = self.ledger.quantity(order.ticker)
        return cash_required(order.side, order.price, order.remaining, position, self.fees)

    def _reserved_by_others(self, order: Order, freeing: Order | None = None) -> int:
        reserved = 0
        for replay in self._replays.values():
            for other in replay.open:
                if other is not order and other is not freeing:
                    reserved += self._reservation(other)
        return reserved
