"""The matching engine: accounts' orders traded against the synthetic markets' own queues.

The synthetic simulation (:mod:`adapters.synthetic.market_model`) keeps, per market, a book and
a FIFO queue of ``[owner, count]`` entries at every price. The engine trades inside those very
queues, so account orders and synthetic participants share one price-time priority:

* **Crossing.** An order that crosses takes the opposite ladder's bids best first, FIFO within
  a level, up to its limit: a bid at ``p`` takes NO bids at ``>= $1 - p``, an ask at ``p`` takes
  YES bids at ``>= p``. Each level it takes prints a public trade and then a negative
  ``orderbook_delta`` carrying the taker's ``client_order_id``, as the synthetic takers do.
* **Resting.** The remainder of a good-till-canceled order joins the back of the queue at its
  price (behind every count already there, published or about to be), and is published as a
  positive delta with its ``client_order_id``.
* **Queue position.** Synthetic takers fill entries in queue order, so an account order fills
  only once everything ahead of it has traded. Cancels are exact, not modelled: a synthetic
  cancel removes that participant's own entries wherever they stand, so it advances an account
  order only by what really stood ahead of it -- never past anything still there. (Noise
  traders cancel their most recent order at a level; makers pull their whole quote.)
* **Self-trade prevention**, within one account: ``taker_at_cross`` (default) stops the taker
  at its own resting order and cancels the rest of the taker; ``maker`` cancels the resting
  order and goes on.
* **Amend** keeps the queue place only for a size decrease at the same price; anything else
  leaves the queue and comes back as a new order at the back (it may cross and trade).

Before touching a market the engine asks the flow to catch it up
(:meth:`SyntheticOrderFlow.catch_up`), so the simulation's book is exactly the published one;
fills of resting orders by synthetic takers are booked when the step that made them has been
published (:meth:`MatchingEngine.on_caught_up`), settlement when the resolution has.

Money follows :class:`domain.ledger.Ledger`; fees :class:`domain.fees.FeeSchedule`, charged per
fill (per level for a taker), the taker rate to takers and the maker rate to resting orders.

**Buying power.** An order needs: the exact cash its immediate fills cost (fees included),
plus, for what will rest, the price of the contracts on its own side (a bid's YES price, an
ask's NO price) for the part that opens a position, plus the maker fee at its price. The part
that closes the position held (and not already claimed by other open orders of the same side)
needs no cash. Every other open order holds back its full price and maker fee. So cash never
goes negative.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

import attrs

from adapters.local_exchange.market_feed import SyntheticOrderFlow
from adapters.local_exchange.markets import ExchangeMarkets
from adapters.local_exchange.trading import errors
from adapters.local_exchange.trading.accounts import ACCOUNT_OWNER, Account, AccountFill, AccountOrder
from adapters.local_exchange.trading.formats import dollars
from adapters.synthetic.market_model import MarketSimulation
from domain.events import BookDelta, PublicTrade
from domain.fees import FeeSchedule
from domain.ledger import Position
from domain.orders import Fill, Order, OrderSide, OrderStatus, TimeInForce
from domain.values import ONE_DOLLAR, Side, format_count, format_price

SELF_TRADE_PREVENTION = ("taker_at_cross", "maker")


@attrs.frozen
class OrderParams:
    """A create request, validated (see :mod:`adapters.local_exchange.trading.order_requests`)."""

    ticker: str
    client_order_id: str
    side: OrderSide
    price: int  # YES price
    count: int
    time_in_force: TimeInForce = TimeInForce.GOOD_TILL_CANCELED
    post_only: bool = False
    reduce_only: bool = False
    self_trade_prevention: str = "taker_at_cross"


@attrs.frozen
class AmendParams:
    ticker: str
    side: OrderSide
    price: int
    count: int  # the new total: filled + resting
    client_order_id: str
    updated_client_order_id: str


@attrs.frozen
class _Level:
    """One opposite level a planned taker reaches: what it takes there, and which of its own
    resting orders there ``maker`` self-trade prevention cancels first."""

    price: int  # on the opposite ladder
    count: int
    own_cancels: tuple[AccountOrder, ...] = ()


@attrs.frozen
class _Plan:
    levels: tuple[_Level, ...]
    rests: int  # count that will rest afterwards (the rest of an unfilled order is cancelled)


def _new_id() -> str:
    return str(uuid.uuid4())


def _open_price(side: OrderSide, price: int) -> int:
    """What one contract costs on the order's own side: a bid buys YES at p, an ask NO at $1 - p."""
    return price if side is OrderSide.BID else ONE_DOLLAR - price


class MatchingEngine:
    def __init__(
        self,
        flow: SyntheticOrderFlow,
        markets: ExchangeMarkets,
        fees: FeeSchedule,
        accounts: Mapping[str, Account],
        *,
        is_trading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.flow = flow
        self.markets = markets
        self.fees = fees
        self.accounts = dict(accounts)
        self._is_trading = is_trading
        # Resting account orders per market; and who owns each queue entry (by its identity).
        self._resting: dict[str, dict[str, tuple[Account, AccountOrder]]] = {}
        self._owners: dict[int, tuple[Account, AccountOrder]] = {}
        self._settled: set[str] = set()
        flow.on_caught_up = self.on_caught_up

    # -- reads -------------------------------------------------------------------------------
    def now_ms(self, ticker: str) -> int:
        """The market's clock: the time of its last published event (market time, which at
        ``speed`` 1 is the wall clock)."""
        return self.markets.market(ticker).last_ts_ms

    def is_trading(self) -> bool:
        """False once the run has ended: the books stand still, orders are refused."""
        return self._is_trading()

    def is_open(self, ticker: str) -> bool:
        return self._is_trading() and self.markets.market(ticker).result is None

    def queue_position(self, order: AccountOrder) -> int:
        """Count ahead of ``order`` in its queue (0 when it is first or no longer resting)."""
        if order.is_resting and self.is_open(order.ticker):
            self.flow.catch_up(order.ticker)
        if not order.is_resting:
            return 0
        queue = self.flow.simulation(order.ticker).queues[order.ladder].get(order.ladder_price, [])
        ahead = 0
        for entry in queue:
            if entry is order.entry:
                return ahead
            ahead += entry[1]
        raise AssertionError(f"order {order.order_id} is resting but not in its queue")

    # -- create, cancel, amend ---------------------------------------------------------------
    def create(self, account: Account, params: OrderParams) -> tuple[AccountOrder, list[AccountFill]]:
        simulation = self._market(params.ticker)
        self._check_price(simulation, params.price)
        if params.client_order_id in account.client_order_ids:
            raise errors.order_already_exists(params.client_order_id)
        if params.self_trade_prevention not in SELF_TRADE_PREVENTION:
            raise errors.bad_request(f"self_trade_prevention_type must be one of {', '.join(SELF_TRADE_PREVENTION)}")
        now = self.now_ms(params.ticker)
        order = AccountOrder(
            Order(
                _new_id(),
                params.client_order_id,
                params.ticker,
                params.side,
                params.price,
                params.count,
                now,
                params.time_in_force,
            ),
            post_only=params.post_only,
            self_trade_prevention=params.self_trade_prevention,
            reduce_only=params.reduce_only,
            last_update_ms=now,
        )
        plan = self._plan(simulation, account, order, params.price, params.count)
        account.orders[order.order_id] = order
        account.client_order_ids[params.client_order_id] = order.order_id
        return order, self._carry_out(simulation, account, order, plan)

    def cancel(self, account: Account, order_id: str) -> tuple[AccountOrder, int]:
        """Cancel what rests of ``order_id``; returns the order and the count taken off the book."""
        order = self._resting_order(account, order_id)
        reduced = self._withdraw(self.flow.simulation(order.ticker), order)
        order.order.cancel()
        return order, reduced

    def amend(
        self, account: Account, order_id: str, params: AmendParams
    ) -> tuple[AccountOrder, AccountOrder, list[AccountFill]]:
        """Change price and/or size; returns a copy of the order as it was, the order, and the
        fills the amendment caused."""
        order = self._resting_order(account, order_id)
        if params.ticker != order.ticker or params.side is not order.order.side:
            raise errors.bad_request(
                f"order {order_id} is a {order.order.side} on {order.ticker}; "
                f"the amendment names a {params.side} on {params.ticker}"
            )
        if params.client_order_id != order.order.client_order_id:
            raise errors.bad_request(
                f"client_order_id {params.client_order_id!r} is not order {order_id}'s "
                f"({order.order.client_order_id!r})"
            )
        if (
            params.updated_client_order_id != params.client_order_id
            and params.updated_client_order_id in account.client_order_ids
        ):
            raise errors.order_already_exists(params.updated_client_order_id)
        simulation = self.flow.simulation(order.ticker)
        self._check_price(simulation, params.price)
        filled = order.order.filled
        if params.count <= filled:
            raise errors.TradingError(
                400,
                "invalid_order",
                f"count {format_count(params.count)} must exceed what has filled ({format_count(filled)})",
            )
        old = attrs.evolve(order, order=attrs.evolve(order.order))
        remaining = params.count - filled
        now = self.now_ms(order.ticker)
        if params.price == order.order.price and remaining <= order.order.remaining:
            # A size decrease (or nothing): the order keeps its place in the queue.
            self._rename(account, order, params.updated_client_order_id)
            decrease = order.order.remaining - remaining
            if decrease:
                assert order.entry is not None
                order.entry[1] -= decrease
                simulation.book.apply_delta(order.ladder, order.ladder_price, -decrease)
                self._publish_delta(order, -decrease, now)
            order.order.count = params.count
            order.last_update_ms = now
            return old, order, []
        # Anything else loses the place: out of the queue, back in as a new order.
        plan = self._plan(simulation, account, order, params.price, remaining)
        self._withdraw(simulation, order)
        self._rename(account, order, params.updated_client_order_id)
        order.order.price = params.price
        order.order.count = params.count
        return old, order, self._carry_out(simulation, account, order, plan)

    # -- what the flow tells the engine -----------------------------------------------------------
    def on_caught_up(self, ticker: str) -> None:
        """Every event the simulation of ``ticker`` computed is published: book the fills its
        takers made against resting account orders, and settle the market once it resolved."""
        resting = self._resting.get(ticker)
        if resting:
            now = self.now_ms(ticker)
            for account, order in list(resting.values()):
                assert order.entry is not None
                traded = order.order.remaining - order.entry[1]
                if traded:
                    self._fill(account, order, order.order.price, traded, is_taker=False, ts_ms=now)
        result = self.markets.market(ticker).result
        if result is not None and ticker not in self._settled:
            self._settle(ticker, result)

    # -- internals -------------------------------------------------------------------------------
    def _market(self, ticker: str) -> MarketSimulation:
        if ticker not in self.markets:
            raise errors.not_found(f"market {ticker!r} not found")
        if not self.is_open(ticker):
            reason = "has resolved" if self.markets.market(ticker).result is not None else "is closed: the run ended"
            raise errors.market_closed(f"market {ticker} {reason}")
        self.flow.catch_up(ticker)
        return self.flow.simulation(ticker)

    def _check_price(self, simulation: MarketSimulation, price: int) -> None:
        if not (0 < price < ONE_DOLLAR and simulation.grid.contains(price)):
            raise errors.invalid_price(
                f"price {format_price(price)} is not on {simulation.ticker}'s tick grid "
                f"({simulation.config.tick_structure}, strictly between 0 and 1)"
            )

    def _resting_order(self, account: Account, order_id: str) -> AccountOrder:
        order = account.orders.get(order_id)
        if order is not None and order.is_resting and self.is_open(order.ticker):
            self.flow.catch_up(order.ticker)  # a pending step may fill it first
        if order is None or not order.is_resting:
            raise errors.not_found(f"order {order_id!r} not found or no longer resting")
        return order

    def _rename(self, account: Account, order: AccountOrder, client_order_id: str) -> None:
        account.client_order_ids[client_order_id] = order.order_id
        order.order.client_order_id = client_order_id

    def _plan(self, simulation: MarketSimulation, account: Account, order: AccountOrder, price: int, count: int) -> _Plan:
        """What ``count`` more of ``order`` at ``price`` would do; raises (changing nothing)
        when it may not: post-only cross, fill-or-kill short, reduce-only, buying power."""
        side = order.order.side
        ladder = 0 if side is OrderSide.BID else 1
        floor = ONE_DOLLAR - _open_price(side, price)  # opposite bids at or above it cross
        levels: list[_Level] = []
        need = count
        blocked = False
        queues = simulation.queues[1 - ladder]
        for level_price in sorted((p for p in queues if p >= floor), reverse=True):
            if not need or blocked:
                break
            taken = 0
            own: list[AccountOrder] = []
            for entry in queues[level_price]:
                if entry[0] == ACCOUNT_OWNER:
                    owner, resting = self._owners[id(entry)]
                    if owner is account:
                        if order.self_trade_prevention == "taker_at_cross":
                            blocked = True
                            break
                        own.append(resting)
                        continue
                take = min(entry[1], need - taken)
                taken += take
                if taken == need:
                    break
            if taken or own:
                levels.append(_Level(level_price, taken, tuple(own)))
            need -= taken
        crossing = bool(levels) or blocked
        if order.post_only and crossing:
            raise errors.post_only_cross(f"post-only {side} at {format_price(price)} would cross the book")
        if order.order.time_in_force is TimeInForce.FILL_OR_KILL and need:
            raise errors.fill_or_kill_unfilled(
                f"fill-or-kill for {format_count(count)} at {format_price(price)}: "
                f"only {format_count(count - need)} can fill now"
            )
        rests = need if order.order.time_in_force is TimeInForce.GOOD_TILL_CANCELED and not blocked else 0
        plan = _Plan(tuple(levels), rests)
        self._check_buying_power(account, order, price, count, plan)
        return plan

    def _check_buying_power(self, account: Account, order: AccountOrder, price: int, count: int, plan: _Plan) -> None:
        side, ticker = order.order.side, order.ticker
        claimed = sum(o.order.remaining for o in account.open_orders(ticker) if o is not order and o.order.side is side)
        held = account.ledger.position(ticker)
        if order.reduce_only and count > max(0, _held_against(held, side) - claimed):
            raise errors.TradingError(
                400,
                "invalid_order",
                f"reduce-only {side} for {format_count(count)} would open a position "
                f"(position {format_count(held.quantity)}, {format_count(claimed)} already being closed)",
                "reduce only",
            )
        scratch = Position(ticker, held.quantity, held.cost_basis)
        cash = 0
        for level in plan.levels:
            if level.count:
                yes_price = self._yes_price(side, level.price)
                fee = self.fees.fee(level.count, yes_price, is_taker=True)
                cash += scratch.apply(side, yes_price, level.count, fee)[0]
        needed = -cash
        if plan.rests:
            opening = max(0, plan.rests - max(0, _held_against(scratch, side) - claimed))
            needed += _open_price(side, price) * opening + self.fees.fee(plan.rests, price, is_taker=False)
        available = account.ledger.cash - sum(self._hold(o) for o in account.open_orders() if o is not order)
        if needed > available:
            raise errors.insufficient_balance(
                f"the order needs ${dollars(needed)} and ${dollars(max(available, 0))} is available"
            )

    def _hold(self, order: AccountOrder) -> int:
        """What a resting order holds back: its contracts' price on its own side and its maker fee."""
        remaining = order.order.remaining
        return _open_price(order.order.side, order.order.price) * remaining + self.fees.fee(
            remaining, order.order.price, is_taker=False
        )

    @staticmethod
    def _yes_price(side: OrderSide, opposite_price: int) -> int:
        """The YES price of a trade at ``opposite_price`` on the ladder a ``side`` taker takes."""
        return ONE_DOLLAR - opposite_price if side is OrderSide.BID else opposite_price

    def _carry_out(self, simulation: MarketSimulation, account: Account, order: AccountOrder, plan: _Plan) -> list[AccountFill]:
        fills: list[AccountFill] = []
        for level in plan.levels:
            fills.extend(self._take(simulation, account, order, level))
        now = self.now_ms(order.ticker)
        order.last_update_ms = now
        if plan.rests:
            entry = [ACCOUNT_OWNER, plan.rests]
            simulation.queues[order.ladder].setdefault(order.ladder_price, []).append(entry)
            simulation.book.apply_delta(order.ladder, order.ladder_price, plan.rests)
            order.entry = entry
            self._owners[id(entry)] = (account, order)
            self._resting.setdefault(order.ticker, {})[order.order_id] = (account, order)
            self._publish_delta(order, plan.rests, now)
        elif order.order.status is OrderStatus.RESTING:
            order.order.cancel()  # immediate-or-cancel remainder, or stopped at its own order
        return fills

    def _take(self, simulation: MarketSimulation, account: Account, order: AccountOrder, level: _Level) -> list[AccountFill]:
        ticker, side = order.ticker, order.order.side
        opposite = 1 - order.ladder
        for own in level.own_cancels:
            self._withdraw(simulation, own)
            own.order.cancel()
        if not level.count:
            return []
        now = self.now_ms(ticker)
        queue = simulation.queues[opposite][level.price]
        makers: list[tuple[Account, AccountOrder, int]] = []
        left = level.count
        index = 0
        while left:
            entry = queue[index]
            take = min(entry[1], left)
            entry[1] -= take
            left -= take
            owner = entry[0]
            if owner >= 0:  # a synthetic maker: keep its quote book straight, as the simulation does
                quotes = simulation.quotes[owner][opposite]
                quotes[level.price] -= take
                if not quotes[level.price]:
                    del quotes[level.price]
            elif owner == ACCOUNT_OWNER:
                maker_account, maker_order = self._owners[id(entry)]
                makers.append((maker_account, maker_order, take))
            if entry[1]:
                index += 1
            else:
                del queue[index]
        if not queue:
            del simulation.queues[opposite][level.price]
        simulation.book.apply_delta(opposite, level.price, -level.count)
        simulation.trades += 1
        yes_price = self._yes_price(side, level.price)
        taker_side = Side.YES if side is OrderSide.BID else Side.NO
        trade_id = f"{ticker}-T{simulation.trades:07d}"
        self.markets.publish(PublicTrade(ticker, now, trade_id, yes_price, level.count, taker_side))
        self.markets.publish(
            BookDelta(ticker, None, now, Side(opposite), level.price, -level.count, client_order_id=order.order.client_order_id)
        )
        fills = [self._fill(account, order, yes_price, level.count, is_taker=True, ts_ms=now)]
        for maker_account, maker_order, take in makers:
            self._fill(maker_account, maker_order, yes_price, take, is_taker=False, ts_ms=now)
        return fills

    def _fill(self, account: Account, order: AccountOrder, yes_price: int, count: int, *, is_taker: bool, ts_ms: int) -> AccountFill:
        fee = self.fees.fee(count, yes_price, is_taker=is_taker)
        order.order.record_fill(count)
        if is_taker:
            order.taker_fees += fee
            order.taker_filled += count
        else:
            order.maker_fees += fee
        order.fill_notional += yes_price * count
        order.last_update_ms = ts_ms
        if order.order.status is not OrderStatus.RESTING:
            self._forget(order)
        fill = Fill(_new_id(), order.order_id, order.ticker, order.order.side, yes_price, count, fee, is_taker, ts_ms)
        return account.book_fill(fill, order.order.client_order_id)

    def _withdraw(self, simulation: MarketSimulation, order: AccountOrder) -> int:
        """Take a resting order's entry out of its queue and the books; returns its count."""
        entry = order.entry
        assert entry is not None
        queues = simulation.queues[order.ladder]
        queue = queues[order.ladder_price]
        queue[:] = [other for other in queue if other is not entry]
        if not queue:
            del queues[order.ladder_price]
        count = entry[1]
        simulation.book.apply_delta(order.ladder, order.ladder_price, -count)
        now = self.now_ms(order.ticker)
        self._publish_delta(order, -count, now)
        order.last_update_ms = now
        self._forget(order)
        return count

    def _forget(self, order: AccountOrder) -> None:
        if order.entry is not None:
            self._owners.pop(id(order.entry), None)
            self._resting.get(order.ticker, {}).pop(order.order_id, None)
            order.entry = None

    def _publish_delta(self, order: AccountOrder, delta: int, ts_ms: int) -> None:
        self.markets.publish(
            BookDelta(
                order.ticker,
                None,
                ts_ms,
                Side(order.ladder),
                order.ladder_price,
                delta,
                client_order_id=order.order.client_order_id,
            )
        )

    def _settle(self, ticker: str, result: Side) -> None:
        """The market resolved: cancel what rests in it, pay out every position in it."""
        self._settled.add(ticker)
        simulation = self.flow.simulation(ticker)
        for _account, order in list(self._resting.get(ticker, {}).values()):
            self._withdraw(simulation, order)
            order.order.cancel()
        for account in self.accounts.values():
            if ticker in account.ledger.positions:
                account.ledger.settle(ticker, result)


def _held_against(position: Position, side: OrderSide) -> int:
    """Contracts of ``position`` an order on ``side`` would close: NO for a bid, YES for an ask."""
    return max(0, -position.quantity if side is OrderSide.BID else position.quantity)
