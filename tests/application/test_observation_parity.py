"""One recorded stream, two paths: replay (tape -> environment) and live (events applied one by
one to the live books, the actor's own decision code -- ``PaperTradingActor.decide`` over
``LiveMarketRows`` -- on each grid row). Every observation, every action mask and every decoded
order must be the same: the actor's gateway fills exactly what the environment's exchange filled,
so both accounts stay the same too. A quiet market (no book change, no trade, for longer than
any feature looks back) is run through the actor's own loops -- its sampler on the grid clock,
its decisions -- and must see what the tape compiled from the same events shows.

Both paths count time left down to the market's scheduled close: the live side is told it by its
catalog (``MarketInfo.close_ms``, as Kalshi's ``GET /markets`` would), the tape reads the
``MarketScheduled`` the recording holds -- the same number, never the resolution's time."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence

import attrs
import numpy as np
import pytest

from adapters.gym_env import OrderbookEnv
from adapters.simulated_exchange import ExchangeConfig
from adapters.synthetic.market_model import SyntheticMarketConfig, generate_recording
from application.acting import PaperTradingActor
from application.actor_config import ActorConfig, ActorState
from application.actor_observations import LiveMarketRows
from application.actor_policies import FixedModelSource, TradingModel
from application.actor_records import RecordQueue, TradingRecordWriter
from application.book_state import SharedBookState
from application.observation import LiveMarketObservation, ObservationError
from application.replay import ReplayConfig, compile_session
from domain.actions import Action, ActionConfig, ActionSpace, PricingStrategy
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.features import FEATURE_NAMES, HISTORY_ROWS, MARKET_FEATURE_COUNT
from domain.gateway_errors import OrderNotFound, OrderRejected, one_at_a_time
from domain.orderbook import OrderBook
from domain.orders import FeeCorrection, Fill, Order, OrderRequest
from domain.ports import MarketInfo, TradingEpisode
from domain.risk import RiskLimits
from domain.values import ONE_CONTRACT, Side

REPLAY = ReplayConfig(step_ms=1_000, depth_levels=4)


@pytest.fixture(scope="module")
def session() -> list[MarketEvent]:
    # Three minutes of two markets: 180 decisions each, well past the features' history window.
    # Recorded as collect records it: each market's scheduled close first, then the market data.
    return generate_recording(SyntheticMarketConfig(seed=11, markets=2, duration_ms=180_000, events_per_second=20.0))


def scheduled_close(events: Sequence[MarketEvent], ticker: str) -> int:
    """The market's close as recorded before its data (what the catalog says live)."""
    return next(e for e in events if e.ticker == ticker and isinstance(e, MarketScheduled)).close_ms


def live_stream(events: Sequence[MarketEvent], ticker: str, books: SharedBookState) -> Iterator[int]:
    """The live feed: the session's events in delivery order into ``books`` (the market's trades
    to ``books.trades``), pausing at each decision time of ``ticker`` -- the replay's grid:
    multiples of step_ms on the Unix clock, the first at or after the snapshot, the last the
    resolution -- with everything up to then delivered. Yields the time."""
    first = next(e for e in events if e.ticker == ticker and isinstance(e, BookSnapshot))
    end = next(e for e in events if e.ticker == ticker and isinstance(e, MarketResolved)).ts_ms
    step = REPLAY.step_ms
    decisions = [*range(-(-first.ts_ms // step) * step, end, step), end]
    started = False
    stream = iter(events)
    held: MarketEvent | None = None
    for now in decisions:
        while True:
            event = held if held is not None else next(stream, None)
            held = None
            if event is None:
                break
            if event.ticker == ticker and event.ts_ms > now:
                held = event  # our market's next event is in the future: decide now
                break
            if isinstance(event, (BookSnapshot, BookDelta)):
                books.apply(event)
                started = started or (event.ticker == ticker and isinstance(event, BookSnapshot))
            elif isinstance(event, PublicTrade) and event.ticker == ticker and started:
                books.trades.append(event)
        yield now


class Books(SharedBookState):
    """SharedBookState, plus the feed's public trades waiting to be handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.trades: list[PublicTrade] = []


def live_path(events: Sequence[MarketEvent], ticker: str, *, start_ms: int = 0) -> Iterator[LiveMarketObservation]:
    """The actor's live rows alone (LiveMarketRows) at each decision time, for an actor started at
    ``start_ms`` (the books are live before it: the feed's; trades reach it from its start)."""
    books = Books()
    rows = LiveMarketRows(books, replay=REPLAY)
    rows.set_close(ticker, scheduled_close(events, ticker))
    for now in live_stream(events, ticker, books):
        for trade in books.trades if now >= start_ms else ():
            rows.record_trade(trade)
        books.trades.clear()
        if now % REPLAY.step_ms == 0 and now >= start_ms:  # the tape's last row, its end, is off the grid: no decision there
            market = rows.sample(ticker, now)
            assert market is not None
            yield market


class MirrorGateway:
    """The OrderGateway and MarketCatalog ports for the actor under test: orders rest until the
    test books the fills the environment's exchange made (:meth:`mirror`)."""

    def __init__(self, cash: int, close_ms: int) -> None:
        self.cash, self.close_ms = cash, close_ms
        self.orders: dict[str, Order] = {}
        self.created: list[Order] = []
        self._ids = itertools.count(1)

    async def create_order(self, request: OrderRequest) -> Order:
        order = Order(f"live-{next(self._ids)}", request.client_order_id, request.ticker, request.side,
                      request.price, request.count, 0)  # fmt: skip
        self.orders[order.order_id] = order
        self.created.append(order)
        return attrs.evolve(order)

    async def cancel_order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None or not order.status.is_open:
            raise OrderNotFound(order_id)
        order.cancel()
        return attrs.evolve(order)

    async def amend_order(self, order_id: str, *, price: int, count: int, client_order_id: str) -> Order:
        old = await self.cancel_order(order_id)
        return await self.create_order(OrderRequest(old.ticker, old.side, price, count - old.filled, client_order_id))

    async def create_orders(self, requests: Sequence[OrderRequest]) -> list[Order | OrderRejected]:
        return await one_at_a_time(self.create_order, requests)

    async def cancel_orders(self, order_ids: Sequence[str]) -> list[Order | OrderRejected]:
        return await one_at_a_time(self.cancel_order, order_ids)

    async def get_order(self, order_id: str) -> Order:
        return attrs.evolve(self.orders[order_id])

    async def open_orders(self, ticker: str | None = None) -> list[Order]:
        return [attrs.evolve(o) for o in self.orders.values() if o.status.is_open]

    async def fills(self, since_ms: int = 0) -> list[Fill]:
        return []

    async def stream_fills(self, since_ms: int | None = None) -> AsyncIterator[Fill]:
        await asyncio.Future()  # the test books the fills itself (mirror)
        yield

    def fee_corrections(self) -> list[FeeCorrection]:
        return []

    async def positions(self) -> dict[str, int]:
        return {}

    async def balance(self) -> int:
        return self.cash

    async def close(self) -> None: ...

    async def market(self, ticker: str) -> MarketInfo:
        return MarketInfo(ticker, self.close_ms, self.close_ms, "active", None)

    def mirror(self, fill: Fill, order_id: str) -> Fill:
        """The environment's fill, as this exchange's fill of ``order_id`` (a replaced order can
        fill while its cancel travels: the exchange filled it before the cancel arrived)."""
        order = self.orders[order_id]
        if order.status.is_open:
            order.record_fill(fill.count)
        return attrs.evolve(fill, order_id=order_id)


class Clock:
    """The Clock port, and the actor's ``wait_until``: time moves when the test moves it."""

    def __init__(self) -> None:
        self.now = 0
        self._moved = asyncio.Event()

    def now_ms(self) -> int:
        return self.now

    def move_to(self, now: int) -> None:
        self.now = now
        self._moved.set()

    async def wait_until(self, ms: int) -> None:
        while self.now < ms:
            self._moved.clear()
            await self._moved.wait()


class MaskPolicy:
    """Chooses at random among the legal actions; remembers what it saw."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> int:
        assert action_mask is not None
        self.seen.append((observation, action_mask))
        return int(self.rng.choice(np.flatnonzero(action_mask)))


@pytest.mark.parametrize(
    "actions",
    [
        ActionConfig(),
        ActionConfig(pricing=PricingStrategy.PASSIVE, space=ActionSpace.SIZED, max_position=100 * ONE_CONTRACT),
        ActionConfig(pricing=PricingStrategy.MID, order_size=5 * ONE_CONTRACT),
    ],
    ids=["single-size-aggressive", "sized-passive", "single-size-mid"],
)
async def test_the_actor_and_the_environment_see_decide_and_order_the_same(session, actions):
    tapes = compile_session(session, session_id=1, config=REPLAY)
    assert len(tapes) == 2
    env = OrderbookEnv(tapes, actions=actions, exchange=ExchangeConfig(latency_ms=100))
    builder = env.observation_builder
    for episode, tape in enumerate(tapes):
        ticker = tape.ticker
        close = scheduled_close(session, ticker)
        gateway, clock, policy, books = MirrorGateway(env.initial_cash, close), Clock(), MaskPolicy(episode), Books()
        model = TradingModel(
            policy=policy, decoder=env.decoder, model_id=1, label="parity", contract_size=1,
            max_position=builder.max_position, order_size=builder.order_size, step_ms=REPLAY.step_ms,
        )  # fmt: skip
        rows = LiveMarketRows(books, replay=REPLAY)
        actor = PaperTradingActor(
            books=books, market_rows=rows, gateway=gateway, markets=gateway, models=FixedModelSource(model),
            records=RecordQueue(TradingRecordWriter(None), capacity=100_000),  # type: ignore[arg-type]
            clock=clock, config=ActorConfig(tickers=(ticker,), contract_size=1, limits=RiskLimits(10**15, 100, 10**15)),
        )  # fmt: skip
        await actor.start()
        observation, info = env.reset(seed=episode, options={"episode": episode})
        done, steps, orders, live_orders = False, 0, 0, {}  # env order id -> the gateway's
        for now in live_stream(session, ticker, books):
            for trade in books.trades:
                actor.record_trade(trade)
            books.trades.clear()
            clock.now = now
            created = len(gateway.created)
            decision = await actor.decide(ticker, now)
            if done:  # the last row, the market's close: neither path decides there
                assert decision is None and actor.status()["closed"] == [ticker]
                break
            assert decision is not None, f"{ticker} row {steps}: no live decision"
            seen, mask = policy.seen[-1]
            np.testing.assert_array_equal(seen, observation, err_msg=f"{ticker} row {steps}")
            assert mask.tolist() == info["action_mask"].tolist(), f"{ticker} row {steps}"
            action = decision.action_index
            replayed = env.decode(action)
            decoded = None if decision.order_side is None else (decision.order_side, decision.price, decision.quantity)
            assert decoded == (None if replayed is None else (replayed.side, replayed.price, replayed.count)), (
                f"{ticker} row {steps} action {action}"
            )
            orders += decoded is not None
            observation, _, terminated, truncated, info = env.step(action)
            sent = info["order"]
            assert (sent is not None) == (len(gateway.created) > created), f"{ticker} row {steps}: sent differently"
            if sent is not None:
                live_orders[sent.order_id] = gateway.created[-1].order_id
            for fill in info["fills"]:
                assert actor.book_fill(gateway.mirror(fill, live_orders[fill.order_id]))
            done = terminated or truncated
            steps += 1
        assert done and steps == tape.steps - 1 > HISTORY_ROWS
        assert orders > steps // 2  # the comparison covered real orders, not only HOLDs
        assert actor.counters.fills > 0  # the accounts compared (in every observation) moved


def test_a_window_of_history_gives_the_rows_of_the_whole_tape(session):
    """The live observer keeps HISTORY_ROWS rows only; its market rows still equal the tape's."""
    tape = compile_session(session, session_id=1, config=REPLAY)[0]
    rows = np.array([observer.market_row().copy() for observer in live_path(session, tape.ticker)])
    assert rows.shape[0] >= tape.steps - 1 > HISTORY_ROWS and rows.shape[1] == MARKET_FEATURE_COUNT
    np.testing.assert_array_equal(rows, tape.features[: len(rows)])  # every row on the grid


def test_an_actor_started_late_sees_the_tapes_rows_once_its_window_is_full(session):
    """Nothing in a row depends on when the rows began (the time left counts to the close): an
    actor started 100 s into the market has the tape's rows once it has HISTORY_ROWS of its own."""
    tape = compile_session(session, session_id=1, config=REPLAY)[0]
    late = 100
    observed = [o.market_row().copy() for o in live_path(session, tape.ticker, start_ms=int(tape.times[late]))]
    assert len(observed) > HISTORY_ROWS + 10
    np.testing.assert_array_equal(
        np.array(observed[HISTORY_ROWS:]), tape.features[late + HISTORY_ROWS : late + len(observed)]
    )


def test_a_live_observation_refuses_reads_and_samples_out_of_order():
    observer = LiveMarketObservation("T", replay=REPLAY, expiry_ms=5_000)
    with pytest.raises(ObservationError, match="no row sampled"):
        observer.market_row()
    book = OrderBook("T")
    book.apply_snapshot(((4500, 10 * ONE_CONTRACT),), ((5300, 10 * ONE_CONTRACT),))
    observer.sample(book, 1_000)
    assert (observer.yes_bid, observer.yes_ask, observer.mark) == (4500, 4700, 4600)
    with pytest.raises(ObservationError, match="not after"):
        observer.sample(book, 1_000)
    with pytest.raises(ObservationError, match="expiry"):
        observer.sample(book, 6_000)


def test_the_mark_carries_over_a_one_sided_live_book():
    observer = LiveMarketObservation("T", replay=REPLAY, expiry_ms=5_000)
    book = OrderBook("T")
    book.apply_snapshot(((4500, ONE_CONTRACT),), ())
    observer.sample(book, 0)
    assert observer.mark == 5000  # no two-sided row yet: replay's initial mark
    book.apply_snapshot(((4500, ONE_CONTRACT),), ((5300, ONE_CONTRACT),))
    observer.sample(book, 1_000)
    book.apply_delta(Side.NO, 5300, -ONE_CONTRACT)
    observer.sample(book, 2_000)
    assert observer.mark == 4600 and observer.yes_ask == -1
    # A lone YES bid above the carried mid holds the mark up to it, as replay's marks do.
    book.apply_delta(Side.YES, 4800, ONE_CONTRACT)
    observer.sample(book, 3_000)
    assert observer.mark == 4800
    book.apply_delta(Side.YES, 4800, -ONE_CONTRACT)
    observer.sample(book, 4_000)
    assert observer.mark == 4600  # the bid gone, back to the last two-sided mid


Q = "QUIET"


def quiet_session(start_ms: int) -> list[MarketEvent]:
    """One market that trades for ten seconds, then neither changes nor trades for 75 s (longer
    than any feature looks back), jumps, and is quiet again until it resolves."""
    yes, no = Side.YES, Side.NO
    c = ONE_CONTRACT
    events: list[MarketEvent] = [
        MarketScheduled(Q, start_ms - 60_000, close_ms=start_ms + 200_000),
        BookSnapshot(Q, 1, start_ms + 250, ((4000, 50 * c), (3900, 30 * c)), ((5500, 40 * c), (5400, 20 * c))),
    ]
    seq = itertools.count(2)
    for i in range(10):  # busy: the book moves and trades, several events a second
        t = start_ms + 1_000 * i + 400
        events.append(BookDelta(Q, next(seq), t, yes, 4000 + 100 * (i % 3 + 1), 5 * c))
        events.append(PublicTrade(Q, t + 100, f"t{i}", 4400, (i + 1) * c, yes if i % 2 else no))
        events.append(BookDelta(Q, next(seq), t + 300, no, 5500, -2 * c))
    t = start_ms + 85_600  # the jump, after 75 quiet seconds
    events += [
        BookDelta(Q, next(seq), t, no, 5700, 30 * c),
        PublicTrade(Q, t + 50, "jump", 4300, 25 * c, no),
        BookDelta(Q, next(seq), t + 100, yes, 4200, -5 * c),
    ]
    events.append(MarketResolved(Q, start_ms + 175_500, no))  # quiet again for 90 s
    return events


async def test_a_quiet_market_gives_the_actor_the_tapes_rows_on_the_grid_clock():
    """The actor's own loops -- a row of every market at every grid time, whether or not its
    book changed, and a decision on it -- against the environment over the same events: same
    observations (the order's age growing through the quiet spell), masks and orders."""
    step = REPLAY.step_ms
    events = quiet_session(1_700_000_000_000)
    [tape] = compile_session(events, session_id=1, config=REPLAY)
    actions = ActionConfig(pricing=PricingStrategy.PASSIVE)
    env = OrderbookEnv([tape], actions=actions, exchange=ExchangeConfig(latency_ms=100))
    builder = env.observation_builder
    # A passive buy at the first row, held for the whole market: it rests through the quiet spells.
    script = iter([Action.BUY_YES])
    policy = ScriptedMaskPolicy(lambda: int(next(script, Action.HOLD)))
    gateway, clock, books = MirrorGateway(env.initial_cash, scheduled_close(events, Q)), Clock(), Books()
    clock.now = int(tape.times[0]) - step
    model = TradingModel(
        policy=policy, decoder=env.decoder, model_id=1, label="parity", contract_size=1,
        max_position=builder.max_position, order_size=builder.order_size, step_ms=step,
    )  # fmt: skip
    actor = PaperTradingActor(
        books=books, market_rows=LiveMarketRows(books, replay=REPLAY), gateway=gateway, markets=gateway,
        models=FixedModelSource(model), records=RecordQueue(TradingRecordWriter(Unrecorded()), capacity=100_000),  # type: ignore[arg-type]
        clock=clock, config=ActorConfig(tickers=(Q,), contract_size=1, limits=RiskLimits(10**15, 100, 10**15)),
        wait_until=clock.wait_until,
    )  # fmt: skip
    running = asyncio.create_task(actor.run())
    async with asyncio.timeout(5):
        while actor.state is not ActorState.RUNNING:
            await asyncio.sleep(0.001)
    observation, info = env.reset(options={"episode": 0})
    pending = iter(events)
    event = next(pending)
    live_orders: dict[str, str] = {}  # env order id -> the gateway's
    try:
        for row, now in enumerate(tape.times[:-1].tolist()):  # every grid row; the last is the end
            while event is not None and event.ts_ms <= now:  # the feed, up to the row's time
                if isinstance(event, (BookSnapshot, BookDelta)):
                    books.apply(event)
                elif isinstance(event, PublicTrade):
                    actor.record_trade(event)
                event = next(pending, None)
            clock.move_to(now)
            async with asyncio.timeout(5):
                while len(policy.seen) <= row:  # the actor's sampler, then its decision, on this row
                    await asyncio.sleep(0.001)
            seen, mask = policy.seen[row]
            np.testing.assert_array_equal(seen, observation, err_msg=f"row {row}")
            assert mask.tolist() == info["action_mask"].tolist(), f"row {row}"
            observation, _, terminated, truncated, info = env.step(policy.chosen[row])
            if info["order"] is not None:
                async with asyncio.timeout(5):
                    while not gateway.created:
                        await asyncio.sleep(0.001)
                live_orders[info["order"].order_id] = gateway.created[-1].order_id
            for fill in info["fills"]:
                assert actor.book_fill(gateway.mirror(fill, live_orders[fill.order_id]))
        assert terminated or truncated
    finally:
        actor.stop()
        await asyncio.wait_for(running, 10)
    assert actor.counters.rows == actor.counters.decisions == tape.steps - 1  # one row and decision per grid time
    assert actor.counters.late_rows == 0 and len(gateway.created) == 1
    ages = [seen[FEATURE_NAMES.index("order_age")] for seen, _ in policy.seen]
    assert max(ages) > 0.5 and ages == sorted(ages)  # the order aged row by row, quiet or not


class Unrecorded:
    """The TradingRecords port, keeping nothing (the actor's records are not under test here)."""

    async def start_episode(self, model_id, *, market_ticker, mode, started_ms, session_id=None) -> TradingEpisode:
        return TradingEpisode(1, model_id, 1, market_ticker, mode, started_ms, session_id)

    async def record_actions(self, episode_id: int, actions) -> int:
        return len(actions)

    async def finish_episode(self, episode_id: int, result):
        return None


class ScriptedMaskPolicy:
    """Plays ``choose()`` when it is legal (else HOLD); remembers what it saw and chose."""

    def __init__(self, choose) -> None:
        self.choose = choose
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []
        self.chosen: list[int] = []

    def act(self, observation: np.ndarray, action_mask: np.ndarray | None = None) -> int:
        assert action_mask is not None
        self.seen.append((observation, action_mask))
        choice = self.choose()
        self.chosen.append(choice if action_mask[choice] else int(Action.HOLD))
        return self.chosen[-1]
