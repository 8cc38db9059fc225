"""The recording use case, on an in-memory store and finite feeds (fakes, not mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import attrs
import pytest

from adapters.spill import FileSpillBuffer, spilled_sessions
from application.recording import RecordingSummary, UnexpectedMarket, record_session, recover_spilled_session
from application.write_queue import DrainIncomplete
from domain.backoff import ExponentialBackoff
from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig, generate
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.gateway_errors import ExchangeUnavailable
from domain.ports import MarketCatalog, MarketInfo, OrderbookStore, SessionClosed, SessionInfo, SessionNotFound
from domain.values import Side


# ---------------------------------------------------------------------------------------------
# Fakes
# ---------------------------------------------------------------------------------------------
@attrs.define(eq=False)
class _FakeSession:
    tickers: tuple[str, ...]
    source: str
    started_ms: int
    ended_ms: int | None = None
    events: list[MarketEvent] = attrs.field(factory=list)


class FakeOrderbookStore:
    """The OrderbookStore port in memory. ``fail_writes`` makes the next writes raise;
    ``write_delay`` makes writes take that long (to cancel one in flight)."""

    def __init__(self) -> None:
        self.sessions: dict[int, _FakeSession] = {}
        self.write_calls: list[int] = []
        self.fail_writes = False
        self.write_delay = 0.0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def start_session(self, tickers: Sequence[str], *, started_ms: int, source: str) -> int:
        session_id = len(self.sessions) + 1
        self.sessions[session_id] = _FakeSession(tuple(tickers), source, started_ms)
        return session_id

    async def end_session(self, session_id: int, *, ended_ms: int) -> None:
        session = self._open_session(session_id)
        session.ended_ms = ended_ms

    async def write_events(self, session_id: int, events: Sequence[MarketEvent]) -> int:
        session = self._open_session(session_id)
        if self.write_delay:
            await asyncio.sleep(self.write_delay)
        if self.fail_writes:
            raise ConnectionError("the store is down")
        session.events.extend(events)
        self.write_calls.append(len(events))
        return len(events)

    async def read_events(self, session_id: int) -> list[MarketEvent]:
        return list(self._session(session_id).events)

    async def list_sessions(self) -> list[SessionInfo]:
        return [await self.get_session(session_id) for session_id in self.sessions]

    async def get_session(self, session_id: int) -> SessionInfo:
        session = self._session(session_id)
        kinds = [type(event) for event in session.events]
        return SessionInfo(
            session_id=session_id,
            tickers=session.tickers,
            source=session.source,
            started_ms=session.started_ms,
            ended_ms=session.ended_ms,
            snapshots=kinds.count(BookSnapshot),
            deltas=kinds.count(BookDelta),
            trades=kinds.count(PublicTrade),
            resolutions={e.ticker: e.result for e in session.events if isinstance(e, MarketResolved)},
        )

    def _session(self, session_id: int) -> _FakeSession:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    def _open_session(self, session_id: int) -> _FakeSession:
        session = self._session(session_id)
        if session.ended_ms is not None:
            raise SessionClosed(session_id)
        return session


class FakeClock:
    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class ListFeed:
    """Yields its events, then either ends or (``then_wait``) waits forever like a live feed.
    ``step_ms`` advances the clock before each event; ``pauses`` maps an event's index to
    seconds slept (really) before it; ``then_raise`` fails after the events."""

    def __init__(
        self,
        events: Sequence[MarketEvent],
        *,
        clock: FakeClock | None = None,
        step_ms: int = 0,
        then_wait: bool = False,
        then_raise: BaseException | None = None,
        pauses: dict[int, float] | None = None,
    ) -> None:
        self._events = events
        self._pauses = pauses or {}
        self._clock = clock
        self._step_ms = step_ms
        self._then_wait = then_wait
        self._then_raise = then_raise
        self.delivered = 0
        self.waiting = asyncio.Event()

    async def events(self) -> AsyncIterator[MarketEvent]:
        for index, event in enumerate(self._events):
            if index in self._pauses:
                await asyncio.sleep(self._pauses[index])
            if self._clock is not None:
                self._clock.now += self._step_ms
            self.delivered += 1
            yield event
        if self._then_raise is not None:
            raise self._then_raise
        if self._then_wait:
            self.waiting.set()
            await asyncio.Event().wait()


def market_events(ticker: str = "T1", deltas: int = 10) -> list[MarketEvent]:
    events: list[MarketEvent] = [BookSnapshot(ticker, 1, 0, yes=((4500, 1000),), no=((5000, 200),))]
    for i in range(deltas):
        events.append(BookDelta(ticker, 2 + i, i, Side.YES if i % 2 else Side.NO, 4500, 100 if i % 3 else -100))
        if i % 4 == 3:
            events.append(PublicTrade(ticker, i, f"tr-{i}", yes_price=4500, count=100, taker_side=Side.NO))
    events.append(MarketResolved(ticker, deltas + 1, Side.YES))
    return events


def test_the_fake_store_implements_the_port():
    assert isinstance(FakeOrderbookStore(), OrderbookStore)


# ---------------------------------------------------------------------------------------------
# A feed that ends
# ---------------------------------------------------------------------------------------------
async def test_records_every_event_in_order_in_batches_and_ends_the_session():
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events("T1", deltas=10) + market_events("T2", deltas=3)
    feed = ListFeed(events, clock=clock, step_ms=5)

    summary = await record_session(
        feed, store, tickers=["T1", "T2"], source="synthetic", batch_size=4, clock=clock
    )

    session = store.sessions[summary.session_id]
    assert session.events == events
    assert len(events) == 19
    assert store.write_calls == [4, 4, 4, 4, 3]  # batches of 4, then the rest
    assert (session.tickers, session.source) == (("T1", "T2"), "synthetic")
    assert session.started_ms == 1_000_000
    assert session.ended_ms == clock.now
    assert summary == RecordingSummary(summary.session_id, snapshots=2, deltas=13, trades=2, resolutions=2)
    info = await store.get_session(summary.session_id)
    assert info.resolutions == {"T1": Side.YES, "T2": Side.YES}


async def test_progress_sees_running_totals_after_each_batch():
    store, clock = FakeOrderbookStore(), FakeClock()
    seen: list[int] = []
    await record_session(
        ListFeed(market_events(deltas=6)),
        store,
        tickers=["T1"],
        source="synthetic",
        batch_size=3,
        clock=clock,
        progress=lambda summary: seen.append(summary.events),
    )
    assert seen == [3, 6, 9]  # 1 snapshot + 6 deltas + 1 trade + 1 resolution


async def test_flush_interval_writes_a_partial_batch_once_the_interval_has_passed():
    store, clock = FakeOrderbookStore(), FakeClock()
    # 7 events: three, a pause well past the interval, three more, a pause, the last one.
    feed = ListFeed(market_events(deltas=4), pauses={3: 0.4, 6: 0.4})

    await record_session(
        feed, store, tickers=["T1"], source="s", batch_size=100, clock=clock, flush_interval_ms=100
    )

    # Each pause lets the interval run out on a partial batch; the drain writes the last one.
    assert store.write_calls == [3, 3, 1]


async def test_an_empty_feed_still_opens_and_ends_a_session():
    store, clock = FakeOrderbookStore(), FakeClock()
    summary = await record_session(ListFeed([]), store, tickers=["T1"], source="s", batch_size=10, clock=clock)
    assert summary.events == 0
    assert store.sessions[summary.session_id].ended_ms == clock.now
    assert store.write_calls == []


async def test_ended_time_never_precedes_the_start_even_if_the_wall_clock_steps_back():
    store, clock = FakeOrderbookStore(), FakeClock()
    feed = ListFeed(market_events(deltas=2), clock=clock, step_ms=-10)
    summary = await record_session(feed, store, tickers=["T1"], source="s", batch_size=10, clock=clock)
    session = store.sessions[summary.session_id]
    assert session.ended_ms == session.started_ms


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"flush_interval_ms": 0}, "flush_interval_ms must be > 0"),
        ({"tickers": []}, "tickers is empty"),
    ],
)
async def test_bad_arguments_are_refused_before_a_session_starts(kwargs, message):
    store = FakeOrderbookStore()
    arguments = {"tickers": ["T1"], "source": "s", "batch_size": 10, "clock": FakeClock()} | kwargs
    with pytest.raises(ValueError, match=message):
        await record_session(ListFeed([]), store, **arguments)
    assert store.sessions == {}


# ---------------------------------------------------------------------------------------------
# Interruptions: nothing accepted is lost, the session is ended, the exception propagates
# ---------------------------------------------------------------------------------------------
async def test_cancellation_mid_stream_writes_what_was_accepted_and_ends_the_session():
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events(deltas=10)  # 14 events
    feed = ListFeed(events, then_wait=True)
    recording = asyncio.create_task(
        record_session(feed, store, tickers=["T1"], source="live", batch_size=5, clock=clock)
    )
    await asyncio.wait_for(feed.waiting.wait(), timeout=5)
    clock.now += 60_000
    recording.cancel()

    with pytest.raises(asyncio.CancelledError):
        await recording

    (session,) = store.sessions.values()
    assert session.events == events  # two full batches plus the four still buffered
    assert store.write_calls == [5, 5, 4]
    assert session.ended_ms == 1_060_000


async def test_keyboard_interrupt_from_the_feed_flushes_and_ends_the_session():
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events(deltas=3)
    feed = ListFeed(events, then_raise=KeyboardInterrupt())

    with pytest.raises(KeyboardInterrupt):
        await record_session(feed, store, tickers=["T1"], source="live", batch_size=100, clock=clock)

    (session,) = store.sessions.values()
    assert session.events == events
    assert session.ended_ms is not None


async def test_a_failing_feed_keeps_what_it_delivered_and_its_error_propagates():
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events(deltas=3)
    feed = ListFeed(events, then_raise=ConnectionResetError("socket closed"))

    with pytest.raises(ConnectionResetError, match="socket closed"):
        await record_session(feed, store, tickers=["T1"], source="live", batch_size=2, clock=clock)

    (session,) = store.sessions.values()
    assert session.events == events
    assert session.ended_ms is not None


async def test_a_write_in_flight_when_cancelled_is_stored_exactly_once():
    store, clock = FakeOrderbookStore(), FakeClock()
    store.write_delay = 0.2
    events = market_events(deltas=4)  # 7 events: one batch of 4 in flight, 3 more after it
    feed = ListFeed(events, then_wait=True)
    recording = asyncio.create_task(
        record_session(feed, store, tickers=["T1"], source="live", batch_size=4, clock=clock)
    )
    await asyncio.wait_for(feed.waiting.wait(), timeout=5)
    await asyncio.sleep(0.05)
    recording.cancel()  # the first write is sleeping in the store

    with pytest.raises(asyncio.CancelledError):
        await recording

    (session,) = store.sessions.values()
    assert session.events == events  # the batch in flight once, then the three accepted after it
    assert store.write_calls == [4, 3]
    assert session.ended_ms is not None


async def test_an_event_for_another_market_stops_the_recording_after_saving_the_rest():
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events("T1", deltas=2) + market_events("T9", deltas=1)
    feed = ListFeed(events)

    with pytest.raises(UnexpectedMarket, match="'T9'"):
        await record_session(feed, store, tickers=["T1"], source="live", batch_size=100, clock=clock)

    (session,) = store.sessions.values()
    assert session.events == market_events("T1", deltas=2)
    assert session.ended_ms is not None


async def test_a_store_outage_is_retried_until_every_event_is_written_once():
    store, clock = FakeOrderbookStore(), FakeClock()
    store.fail_writes = True
    events = market_events(deltas=6)

    async def recover_later() -> None:
        await asyncio.sleep(0.2)
        store.fail_writes = False

    recovery = asyncio.create_task(recover_later())
    summary = await record_session(
        ListFeed(events), store, tickers=["T1"], source="s", batch_size=3, clock=clock, retry=_FAST_RETRY
    )
    await recovery

    session = store.sessions[summary.session_id]
    assert session.events == events
    assert session.ended_ms is not None
    assert summary.events == len(events)


async def test_a_store_down_at_the_end_leaves_the_rest_spilled_and_a_later_process_recovers_it(tmp_path):
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events(deltas=8)
    feed = ListFeed(events)
    store.fail_writes = True

    with pytest.raises(DrainIncomplete, match=f"{len(events)} are kept in the spill"):
        await record_session(
            feed,
            store,
            tickers=["T1"],
            source="live",
            batch_size=4,
            clock=clock,
            retry=_FAST_RETRY,
            spill=lambda session_id: FileSpillBuffer.for_session(tmp_path, session_id),
            drain_timeout_s=0.2,
        )

    (session_id,) = store.sessions
    assert store.sessions[session_id].events == []
    assert store.sessions[session_id].ended_ms is None  # left open for the recovery
    assert spilled_sessions(tmp_path) == [session_id]

    store.fail_writes = False  # the database is back; a new process starts
    spill = FileSpillBuffer.for_session(tmp_path, session_id)
    recovered = await recover_spilled_session(store, session_id, spill)
    await spill.close()

    assert store.sessions[session_id].events == events
    assert recovered.events == len(events)
    # Ended at its last event's time, never before it started (these events are stamped 0..9).
    session = store.sessions[session_id]
    assert session.ended_ms == max(session.started_ms, *(event.ts_ms for event in events))
    assert spilled_sessions(tmp_path) == []


async def test_sampling_stores_one_snapshot_per_n_deltas():
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events(deltas=9)
    queues = []
    summary = await record_session(
        ListFeed(events),
        store,
        tickers=["T1"],
        source="s",
        batch_size=100,
        clock=clock,
        sample_every=3,
        on_queue=queues.append,
    )
    (queue,) = queues
    assert (queue.stats().accepted, queue.stats().folded) == (len(events), 9)
    stored = store.sessions[summary.session_id].events
    assert [type(event).__name__ for event in stored].count("BookDelta") == 0
    # The first snapshot, one per 3 deltas, the two trades and the resolution pass as they are.
    assert (summary.snapshots, summary.deltas, summary.trades, summary.resolutions) == (4, 0, 2, 1)


_FAST_RETRY = ExponentialBackoff(initial_s=0.005, max_s=0.02)


# ---------------------------------------------------------------------------------------------
# What is known in advance: each market's scheduled close, from the catalog
# ---------------------------------------------------------------------------------------------
class FakeCatalog:
    """The MarketCatalog port: close times by ticker; a ticker it lacks is an outage."""

    def __init__(self, closes: dict[str, int]) -> None:
        self.closes = closes
        self.asked: list[str] = []

    async def market(self, ticker: str) -> MarketInfo:
        self.asked.append(ticker)
        if ticker not in self.closes:
            raise ExchangeUnavailable(f"GET /markets/{ticker}: 503")
        return MarketInfo(ticker=ticker, close_ms=self.closes[ticker], expiration_ms=self.closes[ticker] + 60_000)


async def test_each_markets_scheduled_close_is_recorded_before_the_first_event():
    store, clock = FakeOrderbookStore(), FakeClock()
    catalog = FakeCatalog({"T1": 5_000_000, "T2": 6_000_000})
    assert isinstance(catalog, MarketCatalog)
    events = market_events("T1", deltas=2) + market_events("T2", deltas=1)

    summary = await record_session(
        ListFeed(events), store, tickers=["T1", "T2"], source="kalshi", batch_size=2, clock=clock, catalog=catalog
    )

    recorded = store.sessions[summary.session_id].events
    assert recorded == [
        MarketScheduled("T1", clock.now, 5_000_000, 5_060_000),
        MarketScheduled("T2", clock.now, 6_000_000, 6_060_000),
        *events,
    ]
    assert summary.schedules == 2 and summary.events == len(recorded)


async def test_a_market_the_catalog_cannot_describe_is_recorded_without_a_schedule(caplog):
    store, clock = FakeOrderbookStore(), FakeClock()
    events = market_events("T1", deltas=1) + market_events("T2", deltas=1)
    with caplog.at_level("WARNING", logger="application.recording"):
        summary = await record_session(
            ListFeed(events), store, tickers=["T1", "T2"], source="kalshi", batch_size=10, clock=clock,
            catalog=FakeCatalog({"T2": 6_000_000}),
        )  # fmt: skip
    recorded = store.sessions[summary.session_id].events
    assert recorded == [MarketScheduled("T2", clock.now, 6_000_000, 6_060_000), *events]
    assert "no scheduled close for T1 (ExchangeUnavailable" in caplog.text


async def test_the_synthetic_feed_is_its_own_catalog():
    config = SyntheticMarketConfig(seed=2, markets=2, events_per_market=50)
    feed = SyntheticMarketFeed(config)
    store, clock = FakeOrderbookStore(), FakeClock()

    summary = await record_session(feed, store, tickers=feed.tickers, source="synthetic", batch_size=64, clock=clock)

    recorded = store.sessions[summary.session_id].events
    expiry = config.expiry_ms
    assert recorded[:2] == [MarketScheduled(ticker, clock.now, expiry, expiry) for ticker in config.tickers]
    assert [attrs.evolve(e, seq=None, sid=None) if hasattr(e, "sid") else e for e in recorded[2:]] == [
        attrs.evolve(e, seq=None, sid=None) if hasattr(e, "sid") else e for e in generate(config)
    ]
