"""The paper-trading actor against an in-memory exchange, with scripted policies.

The exchange double (:class:`FakeExchange`) is the OrderGateway port in memory: orders rest
until the test fills them (:meth:`FakeExchange.fill`), fills are booked in the exchange's own
ledger and pushed to every fill stream, client order ids are never reused. Books are real
:class:`SharedBookState` books fed with snapshots, as the live feed feeds them. Time is the
test's (:class:`GridClock`): it stands still until the test moves it to the next grid time
(``await h.tick()``), when the actor samples its rows and decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence

import attrs
import numpy as np
import pytest

from application.acting import CadenceMismatch, PaperTradingActor
from application.actor_config import ActorConfig, ActorState
from application.actor_policies import (
    ContractSizeMismatch,
    FixedModelSource,
    ImbalancePolicy,
    TradingModel,
)
from application.actor_observations import LiveMarketRows
from application.actor_records import RecordQueue, TradingRecordWriter
from application.book_state import SharedBookState
from application.observation import LiveMarketObservation
from application.replay import ReplayConfig
from domain.actions import Action, ActionConfig, ActionDecoder, PricingStrategy
from domain.events import BookSnapshot, PublicTrade
from domain.features import FEATURE_NAMES, MARKET_FEATURE_COUNT
from domain.fees import FeeSchedule
from domain.gateway_errors import (
    DuplicateClientOrderId,
    ExchangeUnavailable,
    OrderNotFound,
    OrderRejected,
    one_at_a_time,
)
from domain.ledger import Ledger
from domain.orders import FeeCorrection, Fill, Order, OrderRequest, OrderSide, OrderStatus
from domain.ports import EpisodeResult, MarketInfo, TradingAction, TradingEpisode
from domain.risk import RiskLimits
from domain.values import MONEY_SCALE, ONE_CONTRACT, ONE_DOLLAR, Side

TEN = 10 * ONE_CONTRACT
STEP_MS = 1_000  # the models' training step: the actor's row grid
FEES = FeeSchedule.kalshi_standard()


# ---------------------------------------------------------------------------------------------
# Doubles
# ---------------------------------------------------------------------------------------------
class FakeExchange:
    """The OrderGateway port in memory: one account, orders rest until the test fills them."""

    def __init__(self, cash: int = 1_000 * MONEY_SCALE) -> None:
        self.ledger = Ledger(cash)
        self.orders: dict[str, Order] = {}
        self.client_ids: set[str] = set()
        self.all_fills: list[Fill] = []
        self.streams: list[asyncio.Queue[Fill | None]] = []
        self.created: list[Order] = []
        self.cancelled: list[str] = []
        self.now_ms = 1_000
        self.close_ms = 10**13  # every market's close (the MarketCatalog side)
        self.results: dict[str, Side] = {}
        self.lose_next_answer = False  # the next create is placed, but its answer never arrives
        self._ids = itertools.count(1)
        self._fill_ids = itertools.count(1)

    async def create_order(self, request: OrderRequest) -> Order:
        if request.client_order_id in self.client_ids:
            raise DuplicateClientOrderId(f"client order id {request.client_order_id} was used")
        self.client_ids.add(request.client_order_id)
        order = Order(
            f"ord-{next(self._ids)}", request.client_order_id, request.ticker, request.side,
            request.price, request.count, self.now_ms,
        )  # fmt: skip
        self.orders[order.order_id] = order
        self.created.append(attrs.evolve(order))
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise ExchangeUnavailable("timed out waiting for the answer")
        return attrs.evolve(order)

    async def cancel_order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None or not order.status.is_open:
            raise OrderNotFound(f"order {order_id} is not open")
        order.cancel()
        self.cancelled.append(order_id)
        return attrs.evolve(order)

    async def amend_order(self, order_id: str, *, price: int, count: int, client_order_id: str) -> Order:
        old = await self.cancel_order(order_id)
        request = OrderRequest(old.ticker, old.side, price, count - old.filled, client_order_id)
        return await self.create_order(request)

    async def create_orders(self, requests: Sequence[OrderRequest]) -> list[Order | OrderRejected]:
        return await one_at_a_time(self.create_order, requests)

    async def cancel_orders(self, order_ids: Sequence[str]) -> list[Order | OrderRejected]:
        return await one_at_a_time(self.cancel_order, order_ids)

    async def get_order(self, order_id: str) -> Order:
        if order_id not in self.orders:
            raise OrderNotFound(order_id)
        return attrs.evolve(self.orders[order_id])

    async def open_orders(self, ticker: str | None = None) -> list[Order]:
        return [
            attrs.evolve(order)
            for order in self.orders.values()
            if order.status.is_open and (ticker is None or order.ticker == ticker)
        ]

    async def fills(self, since_ms: int = 0) -> list[Fill]:
        return [fill for fill in self.all_fills if fill.ts_ms >= since_ms]

    async def stream_fills(self, since_ms: int | None = None) -> AsyncIterator[Fill]:
        queue: asyncio.Queue[Fill | None] = asyncio.Queue()
        self.streams.append(queue)
        while (fill := await queue.get()) is not None:
            yield fill

    def fee_corrections(self) -> list[FeeCorrection]:
        return []

    async def positions(self) -> dict[str, int]:
        return {ticker: p.quantity for ticker, p in self.ledger.positions.items() if p.quantity}

    async def balance(self) -> int:
        return self.ledger.cash

    async def close(self) -> None:
        for queue in self.streams:
            queue.put_nowait(None)

    # -- the MarketCatalog port ---------------------------------------------------------------
    async def market(self, ticker: str) -> MarketInfo:
        result = self.results.get(ticker)
        return MarketInfo(ticker, self.close_ms, self.close_ms, "finalized" if result else "active", result)

    # -- test controls ----------------------------------------------------------------------
    def fill(self, order_id: str, count: int | None = None, *, stream: bool = True, taker: bool = False) -> Fill:
        """Fill a resting order at its price (all of what is left by default); ``stream=False``
        books it without telling the streams (a fill lost in transit); ``taker`` charges the
        taker fee (makers pay none on standard markets)."""
        order = self.orders[order_id]
        count = order.remaining if count is None else count
        order.record_fill(count)
        fee = FEES.fee(count, order.price, is_taker=taker)
        fill = Fill(f"fill-{next(self._fill_ids)}", order_id, order.ticker, order.side, order.price, count, fee,
                    taker, self.now_ms)  # fmt: skip
        self.ledger.apply_fill(fill)
        self.all_fills.append(fill)
        if stream:
            for queue in self.streams:
                queue.put_nowait(fill)
        return fill

    def resolve(self, ticker: str, result: Side) -> None:
        """The market resolves: what rests there is cancelled, every position in it paid out."""
        for order in self.resting(ticker):
            order.cancel()
        self.ledger.settle(ticker, result)
        self.results[ticker] = result

    def resting(self, ticker: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.status is OrderStatus.RESTING and (ticker is None or o.ticker == ticker)]


class FakeTradingRecords:
    """The TradingRecords port in memory."""

    def __init__(self) -> None:
        self.episodes: dict[int, TradingEpisode] = {}
        self.actions: dict[int, list[TradingAction]] = {}
        self._ids = itertools.count(1)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def start_episode(self, model_id, *, market_ticker, mode, started_ms, session_id=None) -> TradingEpisode:
        episode_id = next(self._ids)
        number = 1 + sum(1 for e in self.episodes.values() if e.model_id == model_id)
        episode = TradingEpisode(episode_id, model_id, number, market_ticker, mode, started_ms, session_id)
        self.episodes[episode_id] = episode
        self.actions[episode_id] = []
        return episode

    async def record_actions(self, episode_id: int, actions: Sequence[TradingAction]) -> int:
        steps = {a.step_number for a in self.actions[episode_id]}
        if any(a.step_number in steps for a in actions):
            raise ValueError("duplicate step")
        self.actions[episode_id].extend(actions)
        return len(actions)

    async def finish_episode(self, episode_id: int, result: EpisodeResult) -> TradingEpisode:
        episode = self.episodes[episode_id] = attrs.evolve(self.episodes[episode_id], result=result)
        return episode

    async def get_episode(self, episode_id: int) -> TradingEpisode:
        return self.episodes[episode_id]

    async def list_episodes(self, model_id=None, *, mode=None) -> list[TradingEpisode]:
        return list(self.episodes.values())

    async def read_actions(self, episode_id: int) -> list[TradingAction]:
        return list(self.actions[episode_id])

    def all_actions(self) -> list[TradingAction]:
        return [action for actions in self.actions.values() for action in actions]


class ScriptedPolicy:
    """Returns ``choose(observation)``; remembers every call."""

    def __init__(self, choose: Callable[[np.ndarray], int]) -> None:
        self.choose = choose
        self.calls: list[tuple[np.ndarray, np.ndarray | None]] = []

    def act(self, observation, action_mask=None) -> int:
        self.calls.append((observation, action_mask))
        return self.choose(observation)


class ZeroRowObservation(LiveMarketObservation):
    """A real live observation (top of book, mark, account blocks, mask, decoding) whose market
    block is zeros but for a settable imbalance (enough for the hardcoded rule)."""

    imbalance = 0.0

    def market_row(self) -> np.ndarray:
        row = np.zeros(MARKET_FEATURE_COUNT, dtype=np.float32)
        row[FEATURE_NAMES.index("imbalance_top")] = self.imbalance
        return row


class ZeroRows(LiveMarketRows):
    """The actor's real market rows over the test's books, with zero market blocks; remembers
    the close times and trades it was given."""

    def __init__(self, books: SharedBookState) -> None:
        super().__init__(books, replay=ReplayConfig(step_ms=STEP_MS))
        self.imbalance: dict[str, float] = {}
        self.closes: dict[str, int] = {}
        self.trades: list[PublicTrade] = []
        self.markets: dict[str, ZeroRowObservation] = {}

    def set_close(self, ticker: str, close_ms: int) -> None:
        self.closes[ticker] = close_ms
        super().set_close(ticker, close_ms)

    def record_trade(self, trade: PublicTrade) -> None:
        self.trades.append(trade)
        super().record_trade(trade)

    def new_market(self, ticker: str, close_ms: int) -> LiveMarketObservation:
        market = self.markets[ticker] = ZeroRowObservation(ticker, replay=ReplayConfig(step_ms=STEP_MS), expiry_ms=close_ms)
        return market

    def sample(self, ticker: str, now_ms: int) -> LiveMarketObservation | None:
        market = super().sample(ticker, now_ms)
        if isinstance(market, ZeroRowObservation):
            market.imbalance = self.imbalance.get(ticker, 0.0)
        return market


class GridClock:
    """The Clock port and the actor's ``wait_until``: time stands still until :meth:`tick`
    moves it to the next grid time (and so wakes the actor's sampler)."""

    def __init__(self, start_ms: int = 1_000 * STEP_MS) -> None:
        self.now = start_ms
        self._moved: asyncio.Event | None = None

    def now_ms(self) -> int:
        return self.now

    async def wait_until(self, ms: int) -> None:
        while self.now < ms:
            self._moved = asyncio.Event()
            await self._moved.wait()

    def tick(self, rows: int = 1) -> int:
        """Move to the ``rows``-th next grid time; returns it."""
        self.now = (self.now // STEP_MS + rows) * STEP_MS
        if self._moved is not None:
            self._moved.set()
        return self.now


class MutableModelSource:
    def __init__(self, model: TradingModel) -> None:
        self.model = model
        self.gen = 1

    async def load(self) -> TradingModel:
        return self.model

    async def generation(self) -> int | None:
        return self.gen

    def publish(self, model: TradingModel) -> None:
        self.model = model
        self.gen += 1


def trading_model(policy, *, model_id: int = 7, contract_size: int = 10, pricing=PricingStrategy.PASSIVE) -> TradingModel:
    config = ActionConfig(order_size=contract_size * ONE_CONTRACT, pricing=pricing, max_position=50 * ONE_CONTRACT)
    return TradingModel(
        policy=policy, decoder=ActionDecoder(config, FEES), model_id=model_id, label=f"model {model_id}",
        contract_size=contract_size, max_position=config.max_position, order_size=config.order_size, step_ms=STEP_MS,
    )  # fmt: skip


def snapshot(ticker: str, yes_bid: int, no_bid: int, *, depth: int = 100 * ONE_CONTRACT, seq: int = 1) -> BookSnapshot:
    return BookSnapshot(ticker, seq, 0, ((yes_bid, depth),), ((no_bid, depth),))


@attrs.define
class Harness:
    actor: PaperTradingActor
    exchange: FakeExchange
    books: SharedBookState
    records: FakeTradingRecords
    rows: ZeroRows
    clock: GridClock
    task: asyncio.Task | None = None

    async def tick(self, rows: int = 1) -> int:
        """The next grid time (``rows`` on): the actor samples every market and decides. Returns
        once the actor's sampler has taken its rows (the decisions may still be on their way)."""
        sampled = self.actor.counters.rows
        now = self.clock.tick(rows)
        await settle(lambda: self.actor.counters.rows > sampled)
        return now

    async def start(self) -> None:
        self.task = asyncio.create_task(self.actor.run())
        for _ in range(200):
            if self.actor.state is not ActorState.STARTING or self.task.done():
                break
            await asyncio.sleep(0.005)
        if self.task.done():
            self.task.result()

    async def stop(self) -> None:
        self.actor.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


async def settle(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def make_harness():
    harnesses: list[Harness] = []

    def make(
        model_source,
        *,
        tickers=("A",),
        limits: RiskLimits | None = None,
        contract_size: int = 10,
        exchange: FakeExchange | None = None,
        capacity: int = 1000,
    ) -> Harness:
        exchange = exchange or FakeExchange()
        books = SharedBookState(tickers)
        records = FakeTradingRecords()
        rows = ZeroRows(books)
        clock = GridClock()
        config = ActorConfig(
            tickers=tickers,
            contract_size=contract_size,
            limits=limits or RiskLimits(50 * ONE_CONTRACT, 10, 100 * MONEY_SCALE),
            reconcile_interval_s=3600,
            reload_interval_s=0.02,
        )
        actor = PaperTradingActor(
            books=books, market_rows=rows, gateway=exchange, markets=exchange, models=model_source,
            records=RecordQueue(TradingRecordWriter(records), capacity=capacity, batch_size=10),
            clock=clock, config=config, wait_until=clock.wait_until,
        )  # fmt: skip
        harness = Harness(actor, exchange, books, records, rows, clock)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        if harness.task is not None and not harness.task.done():
            harness.task.cancel()


def always(action: int) -> Callable[[np.ndarray], int]:
    return lambda _observation: action


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
async def test_a_decision_places_one_order_and_the_same_decision_keeps_it(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 1)
    assert [(o.side, o.price, o.count) for o in h.exchange.resting("A")] == [(OrderSide.BID, 4000, TEN)]

    h.books.apply(snapshot("A", 4000, 5500, depth=200 * ONE_CONTRACT, seq=2))  # same best prices
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 2)
    assert len(h.exchange.created) == 1 and h.actor.counters.orders_kept == 1
    await h.stop()


async def test_a_changed_decision_replaces_the_resting_order(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.created) == 1)
    first = h.exchange.created[0]
    h.books.apply(snapshot("A", 4100, 5500, seq=2))  # the best bid moved: a passive buy follows it
    await h.tick()
    await settle(lambda: len(h.exchange.created) == 2)
    assert h.exchange.cancelled == [first.order_id]
    assert [(o.price, o.count) for o in h.exchange.resting("A")] == [(4100, TEN)]
    assert h.actor.counters.orders_replaced == 1
    assert set(h.actor.open_orders()) == {"A"}
    await h.stop()
    assert h.exchange.resting() == []  # nothing left resting after a stop


async def test_hold_leaves_the_resting_order_alone(make_harness):
    choices = iter([Action.BUY_YES, Action.HOLD])
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(lambda _o: next(choices)))))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 1)
    h.books.apply(snapshot("A", 4200, 5500, seq=2))
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 2)
    assert len(h.exchange.resting("A")) == 1 and h.exchange.cancelled == []
    await h.stop()


def decision_times(h: Harness) -> dict[str, list[int]]:
    times: dict[str, list[int]] = {}
    for episode_id, actions in h.records.actions.items():
        times.setdefault(h.records.episodes[episode_id].market_ticker, []).extend(a.timestamp_ms for a in actions)
    return {ticker: sorted(stamps) for ticker, stamps in times.items()}


async def test_every_market_decides_once_at_every_grid_time_changed_or_quiet(make_harness):
    policy = ScriptedPolicy(always(Action.HOLD))
    h = make_harness(FixedModelSource(trading_model(policy)), tickers=("A", "B"))
    await h.start()
    h.books.apply(snapshot("B", 3000, 6000))  # B's book never changes again: a quiet market
    grid = []
    for row in range(5):
        for seq in range(1, 11):  # a burst of updates on A between two grid times: one row
            h.books.apply(snapshot("A", 4000 + seq, 5500, seq=10 * row + seq))
        grid.append(await h.tick())
        await settle(lambda: h.actor.counters.decisions == 2 * len(grid))
    await asyncio.sleep(0.02)
    assert h.actor.counters.decisions == 10  # once per market and grid time, no more
    await h.stop()
    assert decision_times(h) == {"A": grid, "B": grid}
    assert all(t % STEP_MS == 0 for t in grid)  # the Unix clock's grid, as replay's rows
    assert h.actor.counters.rows == 5 and h.actor.counters.coalesced == 5 * 9
    [a_rows] = [h.rows.markets["A"]]
    assert a_rows.rows == 5 and a_rows.yes_bid == 4010  # each row: the book as of its grid time


async def test_a_slow_decision_delays_no_row_and_skips_the_rows_it_missed(make_harness):
    class SlowExchange(FakeExchange):
        answer = asyncio.Event()

        async def create_order(self, request):
            await self.answer.wait()  # the exchange takes its time answering
            return await super().create_order(request)

    choices = iter([Action.BUY_YES])
    exchange = SlowExchange()
    h = make_harness(
        FixedModelSource(trading_model(ScriptedPolicy(lambda _o: next(choices, Action.HOLD)))), exchange=exchange
    )
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    first = await h.tick()
    await settle(lambda: h.actor.counters.decisions == 1)  # its create is out, unanswered
    for row in range(3):  # three grid times pass while the decision waits
        h.books.apply(snapshot("A", 4100 + 100 * row, 5500, seq=2 + row))
        last = await h.tick()
    market = h.rows.markets["A"]
    assert market.rows == 4 and market.yes_bid == 4300  # every row on time, from its own book
    exchange.answer.set()
    await settle(lambda: h.actor.counters.decisions == 2)
    await asyncio.sleep(0.02)
    assert h.actor.counters.decisions == 2 and market.rows == 4
    await h.stop()
    assert decision_times(h) == {"A": [first, last]}  # the newest row; none decided twice


async def test_a_model_trained_at_another_step_is_refused_at_start_and_at_a_reload(make_harness):
    other = attrs.evolve(trading_model(ScriptedPolicy(always(Action.HOLD))), step_ms=250)
    h = make_harness(FixedModelSource(other))
    with pytest.raises(CadenceMismatch, match="every 250 ms, but the actor's rows are 1000 ms apart"):
        await h.actor.run()
    source = MutableModelSource(trading_model(ScriptedPolicy(always(Action.HOLD)), model_id=1))
    h = make_harness(source)
    await h.start()
    source.publish(attrs.evolve(other, model_id=2))
    await settle(lambda: h.actor.counters.reload_failures == 1)
    assert h.actor.model.model_id == 1
    await h.stop()


async def test_every_order_sent_has_its_recorded_decision(make_harness):
    choices = itertools.cycle([Action.BUY_YES, Action.HOLD, Action.BUY_NO])
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(lambda _o: next(choices)))), tickers=("A", "B"))
    await h.start()
    for seq in range(1, 13):
        h.books.apply(snapshot("A", 4000 + 10 * seq, 5000, seq=seq))
        h.books.apply(snapshot("B", 3000 + 10 * seq, 6000, seq=seq))
        await h.tick()
        await settle(lambda seq=seq: h.actor.counters.decisions == 2 * seq)
    await h.stop()
    recorded = {a.order_id: a for a in h.records.all_actions() if a.order_id is not None}
    assert len(h.exchange.created) > 4
    for order in h.exchange.created:
        action = recorded[order.order_id]
        assert action.client_order_id == order.client_order_id
        assert (action.order_side, action.price, action.quantity) == (order.side, order.price, order.count)
    assert len(h.records.all_actions()) == 24  # every decision, HOLD included
    assert all(e.is_finished for e in h.records.episodes.values())
    assert len({o.client_order_id for o in h.exchange.created}) == len(h.exchange.created)


async def test_fills_are_booked_once_and_the_ledger_matches_the_exchange(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    order = h.exchange.resting("A")[0]
    fill = h.exchange.fill(order.order_id, 4 * ONE_CONTRACT)
    await settle(lambda: h.actor.counters.fills == 1)
    assert h.actor.book_fill(fill) is False  # a replayed fill is not booked twice
    assert h.actor.account.quantity("A") == 4 * ONE_CONTRACT
    assert h.actor.account.cash == h.exchange.ledger.cash
    assert h.actor.open_orders()["A"].order_id == order.order_id
    assert await h.actor.reconcile() == []
    await h.stop()


async def test_each_market_sees_its_own_cash_from_its_training_budget(make_harness):
    # A $1,000 account trading A and B with a model trained on $100 episodes: A's fill moves A's
    # cash and return features as it moved them in training, and B's not at all.
    cash, ret = FEATURE_NAMES.index("cash"), FEATURE_NAMES.index("episode_return")
    policy = ScriptedPolicy(always(Action.BUY_YES))
    h = make_harness(FixedModelSource(trading_model(policy)), tickers=("A", "B"))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    h.books.apply(snapshot("B", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting()) == 2)
    h.exchange.fill(h.exchange.resting("A")[0].order_id)  # 10 YES at 0.40 in A: $4.00, no maker fee
    await settle(lambda: h.actor.counters.fills == 1)
    calls = len(policy.calls)
    await h.tick()
    await settle(lambda: len(policy.calls) == calls + 2)
    seen = {}
    for observation, _mask in policy.calls[calls:]:
        seen["A" if observation[cash] < 1.0 else "B"] = observation
    assert seen["A"][cash] == pytest.approx(0.96)  # $96 of its $100
    assert seen["B"][cash] == 1.0 and seen["B"][ret] == 0.0  # A's trade is not B's
    assert h.actor.account.cash == 996 * MONEY_SCALE  # the account itself paid for it
    await h.stop()


async def test_reconciliation_adopts_the_exchanges_numbers_once_confirmed(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    order = h.exchange.resting("A")[0]
    h.exchange.fill(order.order_id, stream=False)  # the stream never tells the actor
    assert await h.actor.reconcile() == []  # seen once: could be a fill on its way
    assert h.actor.account.quantity("A") == 0
    adopted = await h.actor.reconcile()
    assert {m.ticker for m in adopted} == {"A", None}
    assert h.actor.account.quantity("A") == TEN
    assert h.actor.account.cash == h.exchange.ledger.cash
    assert h.actor.account.position_adjustments == {"A": TEN}
    assert h.actor.open_orders() == {}  # the executed order is no longer open
    await h.stop()


async def test_a_position_adopted_beyond_the_limit_is_a_breach_that_cancels_and_halts(make_harness):
    limits = RiskLimits(max_position=TEN, max_open_orders=5, max_daily_loss=100 * MONEY_SCALE)
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))), tickers=("A", "B"), limits=limits)
    await h.start()
    h.books.apply(snapshot("B", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("B")) == 1)
    # An order placed by hand on the exchange fills beyond the limit.
    manual = await h.exchange.create_order(OrderRequest("A", OrderSide.BID, 4000, 30 * ONE_CONTRACT, "by-hand"))
    h.exchange.fill(manual.order_id, stream=False)
    await h.actor.reconcile(adopt_at_once=True)
    await settle(lambda: h.actor.state is ActorState.HALTED and not h.exchange.resting())
    assert "max_position" in h.actor.halt_reason and "A" in h.actor.halt_reason
    assert h.actor.status()["status"] == "halted"
    created = len(h.exchange.created)
    h.books.apply(snapshot("B", 4100, 5500, seq=2))
    await h.tick()
    await asyncio.sleep(0.02)
    assert len(h.exchange.created) == created  # no more orders once halted
    await h.stop()


async def test_a_daily_loss_beyond_the_limit_halts_trading(make_harness):
    limits = RiskLimits(max_position=50 * ONE_CONTRACT, max_open_orders=5, max_daily_loss=1 * MONEY_SCALE)
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))), limits=limits)
    await h.start()
    h.books.apply(snapshot("A", 5000, 4900))  # mark 0.505
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    h.exchange.fill(h.exchange.resting("A")[0].order_id)  # 10 YES at 0.50
    await settle(lambda: h.actor.counters.fills == 1)
    assert h.actor.state is ActorState.RUNNING
    h.books.apply(snapshot("A", 3000, 6900, seq=2))  # mark 0.305: 10 x $0.20 lost
    await h.tick()
    await settle(lambda: h.actor.state is ActorState.HALTED)
    assert "max_daily_loss" in h.actor.halt_reason
    await settle(lambda: h.exchange.resting() == [])
    await h.stop()


async def test_the_kill_switch_cancels_everything_and_stops_trading(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))), tickers=("A", "B"))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    h.books.apply(snapshot("B", 3000, 6500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting()) == 2)
    result = await h.actor.kill()
    assert result == {"halted": True, "reason": "kill switch", "orders_cancelled": 2}
    assert h.exchange.resting() == [] and h.actor.open_orders() == {}
    h.books.apply(snapshot("A", 4100, 5500, seq=2))
    await h.tick()
    await asyncio.sleep(0.02)
    assert len(h.exchange.created) == 2
    # Fills still get booked after a halt: the account stays true.
    await h.stop()
    assert h.actor.state is ActorState.STOPPED


async def test_hot_reload_swaps_the_policy_without_touching_orders(make_harness):
    old = ScriptedPolicy(always(Action.BUY_YES))
    new = ScriptedPolicy(always(Action.HOLD))
    source = MutableModelSource(trading_model(old, model_id=1))
    h = make_harness(source)
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    source.publish(trading_model(new, model_id=2))
    await settle(lambda: h.actor.counters.reloads == 1)
    assert h.actor.model.model_id == 2
    h.books.apply(snapshot("A", 4200, 5500, seq=2))
    await h.tick()
    await settle(lambda: len(new.calls) == 1)
    assert len(h.exchange.resting("A")) == 1 and h.exchange.cancelled == []  # the order survived
    assert h.books.is_in_sync("A")
    await h.stop()
    by_model = {}
    for episode in h.records.episodes.values():
        by_model.setdefault(episode.model_id, []).append(episode)
    assert set(by_model) == {1, 2} and all(e.is_finished for e in h.records.episodes.values())


async def test_a_reload_waits_for_the_decision_in_flight_which_stays_the_old_models(make_harness):
    class SlowExchange(FakeExchange):
        answer = asyncio.Event()

        async def create_order(self, request):
            await self.answer.wait()  # the exchange takes its time answering
            return await super().create_order(request)

    exchange = SlowExchange()
    source = MutableModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)), model_id=1))
    h = make_harness(source, exchange=exchange)
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 1)  # chosen; the create is out
    source.publish(trading_model(ScriptedPolicy(always(Action.HOLD)), model_id=2))
    await asyncio.sleep(0.1)  # several reload intervals
    assert h.actor.model.model_id == 1 and h.actor.counters.reloads == 0  # not mid-decision
    exchange.answer.set()
    await settle(lambda: h.actor.counters.reloads == 1)
    await h.stop()
    [episode] = [e for e in h.records.episodes.values() if e.model_id == 1]
    [action] = h.records.actions[episode.episode_id]
    assert action.action_type == "BUY_YES" and action.order_id is not None


async def test_episodes_split_the_markets_pnl_net_of_fees_without_gap_or_overlap(make_harness):
    choices = iter([Action.BUY_YES])
    source = MutableModelSource(trading_model(ScriptedPolicy(lambda _o: next(choices, Action.HOLD)), model_id=1))
    h = make_harness(source)
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))  # bid 0.40, ask 0.45: a passive buy of 10 at 0.40
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    fill = h.exchange.fill(h.exchange.resting("A")[0].order_id, taker=True)  # a fee to account for
    await settle(lambda: h.actor.counters.fills == 1)
    h.books.apply(snapshot("A", 4600, 4800, seq=2))  # mark 0.49
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 2)
    source.publish(trading_model(ScriptedPolicy(always(Action.HOLD)), model_id=2))
    await settle(lambda: h.actor.counters.reloads == 1)
    h.books.apply(snapshot("A", 5000, 4600, seq=3))  # mark 0.52, under the new model
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 3)
    await h.stop()

    results = {e.model_id: e.result for e in h.records.episodes.values()}
    contracts = TEN // ONE_CONTRACT
    dollars = MONEY_SCALE // ONE_DOLLAR  # micro-dollars per price unit and contract
    assert results[1].total_pnl == (4900 - 4000) * contracts * dollars - fill.fee
    assert results[1].fees_paid == fill.fee > 0
    assert results[2].total_pnl == (5200 - 4900) * contracts * dollars and results[2].fees_paid == 0
    assert results[1].total_pnl + results[2].total_pnl == (5200 - 4000) * contracts * dollars - fill.fee


async def test_a_reloaded_model_of_another_contract_size_is_refused(make_harness):
    source = MutableModelSource(trading_model(ScriptedPolicy(always(Action.HOLD)), model_id=1))
    h = make_harness(source)
    await h.start()
    source.publish(trading_model(ScriptedPolicy(always(Action.HOLD)), model_id=2, contract_size=5))
    await settle(lambda: h.actor.counters.reload_failures == 1)
    assert h.actor.model.model_id == 1
    await h.stop()


async def test_a_model_of_another_contract_size_is_refused_at_start(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.HOLD)), contract_size=5)))
    with pytest.raises(ContractSizeMismatch, match="RL_ACTOR_CONTRACT_SIZE=10"):
        await h.actor.run()
    assert h.actor.state is ActorState.FAILED


async def test_orders_left_by_an_earlier_run_are_cancelled_and_positions_read_at_start(make_harness):
    exchange = FakeExchange()
    left = await exchange.create_order(OrderRequest("A", OrderSide.BID, 3000, TEN, "old-run-1"))
    held = await exchange.create_order(OrderRequest("A", OrderSide.BID, 3000, TEN, "old-run-2"))
    exchange.fill(held.order_id)
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.HOLD)))), exchange=exchange)
    await h.start()
    assert exchange.cancelled == [left.order_id]
    assert h.actor.account.quantity("A") == TEN and h.actor.account.cash == exchange.ledger.cash
    assert h.actor.account.position_adjustments == {}  # an opening balance, not a correction
    await h.stop()


async def test_an_illegal_choice_holds(make_harness):
    # SELL_YES with nothing held is masked: the actor holds, as the environment does.
    policy = ScriptedPolicy(always(Action.SELL_YES))
    h = make_harness(FixedModelSource(trading_model(policy)))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: h.actor.counters.decisions == 1)
    assert h.exchange.created == [] and h.actor.counters.illegal_choices == 1
    assert policy.calls[0][1][Action.SELL_YES] == False  # noqa: E712 - numpy bool
    await h.stop()


async def test_the_hardcoded_rule_trades_on_imbalance_through_the_same_decoder(make_harness):
    decoder = ActionDecoder(ActionConfig(order_size=TEN, pricing=PricingStrategy.PASSIVE), FEES)
    model = attrs.evolve(trading_model(None), policy=ImbalancePolicy(decoder), decoder=decoder)
    h = make_harness(FixedModelSource(model))
    await h.start()
    h.rows.imbalance["A"] = 0.5
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    order = h.exchange.resting("A")[0]
    assert (order.side, order.price) == (OrderSide.BID, 4000)
    h.exchange.fill(order.order_id)
    await settle(lambda: h.actor.account.quantity("A") == TEN)
    h.rows.imbalance["A"] = 0.0
    h.books.apply(snapshot("A", 4000, 5500, seq=2))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    closing = h.exchange.resting("A")[0]
    assert (closing.side, closing.price, closing.count) == (OrderSide.ASK, 4500, TEN)  # sells YES passively
    await h.stop()


async def test_status_reports_the_account_and_counters(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    status = h.actor.status()
    assert status["status"] == "ok" and status["model_id"] == 7
    assert status["open_orders"] == {"A": {"side": "bid", "price": 4000, "remaining": TEN}}
    assert status["cash_dollars"] == "1000.00" and status["counters"]["orders_placed"] == 1
    await h.stop()
    with contextlib.suppress(Exception):
        await h.exchange.close()


# ---------------------------------------------------------------------------------------------
# Markets: close times, trades, settlements
# ---------------------------------------------------------------------------------------------
async def test_close_times_come_from_the_exchange_and_public_trades_reach_the_rows(make_harness):
    exchange = FakeExchange()
    exchange.close_ms = 5 * 10**12
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.HOLD)))), exchange=exchange)
    await h.start()
    assert h.rows.closes == {"A": 5 * 10**12}
    trade = PublicTrade("A", 1, "t-1", 4000, ONE_CONTRACT, Side.YES)
    h.actor.record_trade(trade)
    h.actor.record_trade(PublicTrade("OTHER", 1, "t-2", 4000, ONE_CONTRACT, Side.YES))  # not traded here
    assert h.rows.trades == [trade] and h.actor.counters.public_trades == 1
    await h.stop()


async def test_no_decision_is_made_once_a_market_has_closed(make_harness):
    exchange = FakeExchange()
    exchange.close_ms = 0  # closed before the first decision
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))), exchange=exchange)
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: h.actor.counters.markets_closed == 1)
    h.books.apply(snapshot("A", 4000, 5500, seq=2))
    await h.tick()
    await asyncio.sleep(0.02)
    assert exchange.created == [] and h.actor.counters.decisions == 0
    assert h.actor.status()["closed"] == ["A"]
    await h.stop()


async def test_a_resolved_market_is_booked_as_a_settlement_not_adopted(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))))
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: len(h.exchange.resting("A")) == 1)
    h.exchange.fill(h.exchange.resting("A")[0].order_id)
    await settle(lambda: h.actor.counters.fills == 1)
    h.exchange.resolve("A", Side.YES)  # pays $1 on each of the 10 YES contracts ($10)
    cash_before = h.actor.account.cash
    assert await h.actor.reconcile() == []  # booked at once: nothing left to differ
    account = h.actor.account
    assert account.settled == {"A": Side.YES} and account.positions() == {}
    assert account.cash == cash_before + TEN * ONE_DOLLAR == h.exchange.ledger.cash
    assert (account.cash_adjustment, account.position_adjustments) == (0, {})
    assert h.actor.counters.settlements == 1 and h.actor.status()["settlements"] == {"A": "yes"}
    assert await h.actor.reconcile() == []  # booked once
    await h.stop()


async def test_a_position_held_from_before_the_start_settles_too(make_harness):
    exchange = FakeExchange()
    earlier = await exchange.create_order(OrderRequest("A", OrderSide.ASK, 6000, TEN, "old-run-1"))
    exchange.fill(earlier.order_id)  # 10 NO, in the opening balance
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.HOLD)))), exchange=exchange)
    await h.start()
    assert h.actor.account.quantity("A") == -TEN
    exchange.resolve("A", Side.NO)
    assert await h.actor.reconcile() == []
    assert h.actor.account.positions() == {} and h.actor.account.cash == exchange.ledger.cash
    assert h.actor.account.outside_payouts == TEN * ONE_DOLLAR
    await h.stop()


async def test_fills_listed_before_the_start_are_in_the_opening_balance_and_never_booked(make_harness):
    exchange = FakeExchange()
    earlier = await exchange.create_order(OrderRequest("A", OrderSide.BID, 3000, TEN, "old-run-1"))
    old_fill = exchange.fill(earlier.order_id)
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.HOLD)))), exchange=exchange)
    await h.start()
    assert h.actor.book_fill(old_fill) is False  # a stream reconciling from a day back lists it again
    assert (h.actor.counters.fills, h.actor.counters.duplicate_fills) == (0, 0)
    assert h.actor.account.quantity("A") == TEN and h.actor.account.cash == exchange.ledger.cash
    await h.stop()


async def test_an_order_whose_answer_was_lost_is_adopted_and_its_decision_names_it(make_harness):
    h = make_harness(FixedModelSource(trading_model(ScriptedPolicy(always(Action.BUY_YES)))))
    h.exchange.lose_next_answer = True
    await h.start()
    h.books.apply(snapshot("A", 4000, 5500))
    await h.tick()
    await settle(lambda: h.actor.counters.orders_unknown == 1)
    placed = h.exchange.resting("A")[0]
    await h.actor.reconcile()
    assert h.actor.open_orders()["A"].order_id == placed.order_id  # the exchange's order, adopted
    await h.stop()
    decision = next(a for a in h.records.all_actions() if a.action_type == "BUY_YES")
    assert (decision.client_order_id, decision.order_id) == (placed.client_order_id, None)
