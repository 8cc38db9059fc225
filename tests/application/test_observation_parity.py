"""One recorded stream, two paths: replay (tape -> environment) and live (events applied one by
one to the live books, the actor's own decision code -- ``PaperTradingActor.decide`` over
``LiveMarketRows`` -- on each grid row). Every observation, every action mask and every decoded
order must be the same: the actor's gateway fills exactly what the environment's exchange filled,
so both accounts stay the same too."""

import itertools
from collections.abc import AsyncIterator, Iterator, Sequence

import attrs
import numpy as np
import pytest

from adapters.gym_env import OrderbookEnv
from adapters.simulated_exchange import ExchangeConfig
from adapters.synthetic.market_model import SyntheticMarketConfig, generate_recording
from application.acting import PaperTradingActor
from application.actor_config import ActorConfig
from application.actor_observations import LiveMarketRows
from application.actor_policies import FixedModelSource, TradingModel
from application.actor_records import RecordQueue, TradingRecordWriter
from application.book_state import SharedBookState
from application.observation import LiveMarketObservation, ObservationError
from application.replay import ReplayConfig, compile_session
from domain.actions import ActionConfig, ActionSpace, PricingStrategy
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.features import HISTORY_ROWS, MARKET_FEATURE_COUNT, ObservationBuilder
from domain.gateway_errors import OrderNotFound, OrderRejected, one_at_a_time
from domain.orderbook import OrderBook
from domain.orders import FeeCorrection, Fill, Order, OrderRequest
from domain.ports import MarketInfo
from domain.risk import RiskLimits
from domain.values import ONE_CONTRACT, Side

REPLAY = ReplayConfig(step_ms=1_000, depth_levels=4)


@pytest.fixture(scope="module")
def session() -> list[MarketEvent]:
    # Three minutes of two markets: 180 decisions each, well past the features' history window.
    # Recorded as collect records it: each market's scheduled close first, then the market data.
    return generate_recording(SyntheticMarketConfig(seed=11, markets=2, duration_ms=180_000, events_per_second=20.0))


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


def live_path(events: Sequence[MarketEvent], ticker: str) -> Iterator[LiveMarketObservation]:
    """The live rows alone: a LiveMarketObservation sampled at each decision time."""
    books = Books()
    close = next(e for e in events if e.ticker == ticker and isinstance(e, MarketScheduled)).close_ms
    observer = LiveMarketObservation(ticker, replay=REPLAY, expiry_ms=close)
    for now in live_stream(events, ticker, books):
        for trade in books.trades:
            observer.record_trade(trade)
        books.trades.clear()
        observer.sample(books.snapshot(ticker), now)
        yield observer


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
        return
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
    now = 0

    def now_ms(self) -> int:
        return self.now


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
        close = next(e for e in session if e.ticker == ticker and isinstance(e, MarketScheduled)).close_ms
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
    rows = [observer.market_row().copy() for observer in live_path(session, tape.ticker)]
    np.testing.assert_array_equal(np.array(rows), tape.features)
    assert np.array(rows).shape == (tape.steps, MARKET_FEATURE_COUNT)


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
