"""The write queue on fakes: a store that can fail, hang or refuse, and a spill in memory (plus
the file spill, for the outage and crash paths)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from adapters.spill import FileSpillBuffer
from adapters.storage import PostgresOrderbookStore, SqliteOrderbookStore
from application.write_queue import (
    DrainIncomplete,
    OrderbookWriteQueue,
    QueueClosed,
    WriteQueueFailed,
)
from domain.backoff import ExponentialBackoff
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, PublicTrade
from domain.orderbook import OrderBook
from domain.ports import SessionClosed, SessionInfo, SessionNotFound, SpillBuffer
from domain.values import Side

FAST_RETRY = ExponentialBackoff(initial_s=0.002, max_s=0.01)


# ---------------------------------------------------------------------------------------------
# Fakes
# ---------------------------------------------------------------------------------------------
class FakeStore:
    """One session in memory.

    * ``down``: writes and counts raise ConnectionError (nothing is written);
    * ``commit_then_fail``: the next N writes commit, then raise (the acknowledgement is lost);
    * ``hold``: writes wait until the event is set;
    * ``refuse``: events for which it returns True make the whole batch raise ValueError;
    * ``closed``: writes raise SessionClosed.
    """

    def __init__(self, session_id: int = 7, stored: Sequence[MarketEvent] = ()) -> None:
        self.session_id = session_id
        self.events: list[MarketEvent] = list(stored)
        self.write_calls: list[int] = []
        self.down = False
        self.commit_then_fail = 0
        self.hold: asyncio.Event | None = None
        self.refuse = lambda event: False
        self.closed = False

    async def write_events(self, session_id: int, events: Sequence[MarketEvent]) -> int:
        self._check(session_id)
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            raise ConnectionError("connection refused")
        if self.closed:
            raise SessionClosed(session_id)
        if any(self.refuse(event) for event in events):
            raise ValueError("the database refused a row")
        self.events.extend(events)
        self.write_calls.append(len(events))
        if self.commit_then_fail:
            self.commit_then_fail -= 1
            raise ConnectionResetError("connection reset after COMMIT")
        return len(events)

    async def get_session(self, session_id: int) -> SessionInfo:
        self._check(session_id)
        if self.down:
            raise ConnectionError("connection refused")
        kinds = [type(event) for event in self.events]
        return SessionInfo(
            session_id=session_id,
            tickers=("T1",),
            source="test",
            started_ms=0,
            ended_ms=None,
            snapshots=kinds.count(BookSnapshot),
            deltas=kinds.count(BookDelta),
            trades=kinds.count(PublicTrade),
            resolutions={e.ticker: e.result for e in self.events if isinstance(e, MarketResolved)},
        )

    def _check(self, session_id: int) -> None:
        if session_id != self.session_id:
            raise SessionNotFound(session_id)


class MemorySpill:
    """The SpillBuffer port in a list; ``fail_appends`` makes appends raise OSError."""

    def __init__(self, held: Sequence[tuple[int, MarketEvent]] = ()) -> None:
        self.held: list[tuple[int, MarketEvent]] = list(held)
        self.appends: list[int] = []
        self.fail_appends = False
        self.closed = False

    @property
    def pending(self) -> int:
        return len(self.held)

    @property
    def end_ordinal(self) -> int | None:
        return self.held[-1][0] + 1 if self.held else None

    async def append(self, first_ordinal: int, events: Sequence[MarketEvent]) -> None:
        await asyncio.sleep(0)
        if self.fail_appends:
            raise OSError("disk full")
        if self.held and first_ordinal != self.end_ordinal:
            raise ValueError(f"append at {first_ordinal}, expected {self.end_ordinal}")
        self.held.extend((first_ordinal + i, event) for i, event in enumerate(events))
        self.appends.append(len(events))

    async def oldest(self, limit: int) -> tuple[int, list[MarketEvent]]:
        if not self.held:
            return (0, [])
        return self.held[0][0], [event for _, event in self.held[:limit]]

    async def acknowledge(self, count: int) -> None:
        del self.held[:count]

    async def close(self) -> None:
        self.closed = True


def deltas(count: int, ticker: str = "T1", start_seq: int = 2) -> list[MarketEvent]:
    """A snapshot, then ``count`` deltas that add and remove size around 0.45-0.55."""
    events: list[MarketEvent] = [BookSnapshot(ticker, start_seq - 1, 0, yes=((4500, 1000),), no=((5000, 200),))]
    for i in range(count):
        side = Side.YES if i % 2 else Side.NO
        price = 4400 + (i % 7) * 100
        events.append(BookDelta(ticker, start_seq + i, i, side, price, 100 if i % 3 else -50))
    return events


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def queue_for(store: FakeStore, **options) -> OrderbookWriteQueue:
    options.setdefault("retry", FAST_RETRY)
    return OrderbookWriteQueue(store, store.session_id, **options)


def test_the_fakes_implement_the_ports():
    assert isinstance(MemorySpill(), SpillBuffer)


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------
async def test_offer_returns_at_once_while_the_store_is_stuck_and_everything_is_written_in_order():
    store = FakeStore()
    store.hold = asyncio.Event()
    queue = queue_for(store, batch_size=10, flush_interval_s=None)
    await queue.start()
    events = deltas(300)

    for event in events[:15]:
        queue.offer(event)
    await until(lambda: queue.stats().queue_depth == 15)
    await asyncio.sleep(0.02)  # the first batch is now stuck in the store
    for event in events[15:]:
        queue.offer(event)  # a plain call: nothing here can wait for the store
    assert queue.pending == len(events)
    assert store.events == []

    store.hold.set()
    await queue.drain()

    assert store.events == events
    assert all(size <= 10 for size in store.write_calls)
    stats = queue.stats()
    assert (stats.accepted, stats.written, stats.pending, stats.queue_depth) == (301, 301, 0, 0)


async def test_batches_are_written_when_full_without_waiting_for_a_drain():
    store = FakeStore()
    queue = queue_for(store, batch_size=5, flush_interval_s=None)
    await queue.start()
    for event in deltas(11):  # 12 events: two full batches, two left over
        queue.offer(event)
    await until(lambda: len(store.events) == 10)
    await asyncio.sleep(0.05)
    assert store.write_calls == [5, 5]  # no interval: the partial batch waits for more or a drain

    await queue.drain()
    assert store.write_calls == [5, 5, 2]


async def test_a_partial_batch_is_written_once_its_first_event_has_waited_the_interval():
    store = FakeStore()
    queue = queue_for(store, batch_size=100, flush_interval_s=0.05)
    await queue.start()
    for event in deltas(2):
        queue.offer(event)

    await until(lambda: store.write_calls == [3], timeout=2)
    await queue.drain()
    assert store.write_calls == [3]


async def test_flush_writes_a_partial_batch_now_and_returns_once_it_is_stored():
    store = FakeStore()
    queue = queue_for(store, batch_size=100, flush_interval_s=None)
    await queue.start()
    for event in deltas(4):
        queue.offer(event)
    await asyncio.sleep(0.02)
    assert store.write_calls == []  # neither a full batch nor an interval: nothing is due

    assert await queue.flush(timeout_s=2) == 5
    assert store.write_calls == [5] and queue.pending == 0
    assert await queue.flush(timeout_s=2) == 0  # nothing new: nothing written

    for event in deltas(2, start_seq=6)[1:]:
        queue.offer(event)
    assert await queue.flush(timeout_s=2) == 2
    await queue.drain()
    assert store.write_calls == [5, 2]


async def test_flush_times_out_while_the_store_hangs():
    store = FakeStore()
    store.hold = asyncio.Event()
    queue = queue_for(store, batch_size=100, flush_interval_s=None)
    await queue.start()
    queue.offer(deltas(0)[0])
    with pytest.raises(TimeoutError):
        await queue.flush(timeout_s=0.05)
    store.hold.set()
    await queue.drain()
    assert len(store.events) == 1


# ---------------------------------------------------------------------------------------------
# Outages
# ---------------------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "file"])
async def spill(request, tmp_path):
    if request.param == "memory":
        yield MemorySpill()
    else:
        buffer = FileSpillBuffer.for_session(tmp_path, 7)
        yield buffer
        await buffer.close()


async def test_an_outage_spills_past_the_memory_bound_and_recovery_writes_every_event_once_in_order(spill):
    store = FakeStore()
    queue = queue_for(store, batch_size=5, flush_interval_s=0.01, max_memory_events=40, spill=spill)
    await queue.start()
    store.down = True  # after the start: a session is opened while the store is up
    events = deltas(999)

    for index, event in enumerate(events):
        queue.offer(event)
        if index % 10 == 0:
            await asyncio.sleep(0)  # a live feed yields between frames
    await until(lambda: queue.stats().spilled > 800)
    stats = queue.stats()
    assert stats.errors > 0
    assert stats.queue_depth < stats.pending
    assert store.events == []

    store.down = False
    await queue.drain()

    assert store.events == events  # every event, once, in the order offered
    stats = queue.stats()
    assert (stats.written, stats.pending, stats.spill_pending, stats.queue_depth) == (1000, 0, 0, 0)
    assert stats.retries > 0
    assert spill.pending == 0


async def test_memory_stays_bounded_while_events_pour_in_during_an_outage():
    store, spill = FakeStore(), MemorySpill()
    queue = queue_for(store, batch_size=10, flush_interval_s=None, max_memory_events=100, spill=spill)
    await queue.start()
    store.down = True  # after the start: a session is opened while the store is up

    for index, event in enumerate(deltas(20_000)):
        queue.offer(event)
        if index % 10 == 0:
            await asyncio.sleep(0)

    stats = queue.stats()
    # Past the bound the oldest half goes to disk; what arrives while one append runs (here one
    # turn of the loop) is the slack.
    assert stats.memory_high_water <= 100 + 2 * 10
    assert stats.spilled >= 19_800
    assert stats.pending == 20_001
    store.down = False
    await queue.drain()
    assert len(store.events) == 20_001


async def test_a_write_whose_acknowledgement_was_lost_is_not_sent_again():
    store = FakeStore()
    store.commit_then_fail = 2  # the first two writes commit, then the connection drops
    queue = queue_for(store, batch_size=4, flush_interval_s=None)
    await queue.start()
    events = deltas(11)
    for event in events:
        queue.offer(event)
    await queue.drain()

    assert store.events == events  # no batch twice
    assert store.write_calls == [4, 4, 4]
    assert queue.stats().retries >= 2


async def test_refused_events_are_left_out_alone_and_the_rest_is_written():
    store = FakeStore()
    bad = BookDelta("T1", 99, 0, Side.YES, 4500, 100, sid=13)
    store.refuse = lambda event: event is bad
    queue = queue_for(store, batch_size=5, flush_interval_s=None)
    await queue.start()
    events = deltas(8)
    events.insert(4, bad)
    for event in events:
        queue.offer(event)
    await queue.drain()

    assert store.events == [event for event in events if event is not bad]
    stats = queue.stats()
    assert (stats.rejected, stats.written, stats.pending) == (1, 9, 0)
    # The refused batch was retried one event at a time, then batching resumed.
    assert store.write_calls == [1, 1, 1, 1, 5]


async def test_a_closed_session_stops_the_queue_and_the_drain_keeps_the_events_in_the_spill():
    store, spill = FakeStore(), MemorySpill()
    store.closed = True
    queue = queue_for(store, batch_size=5, flush_interval_s=None, spill=spill)
    await queue.start()
    for event in deltas(9):
        queue.offer(event)

    with pytest.raises(WriteQueueFailed, match="10 events are kept in the spill, 0 are lost") as failure:
        await queue.drain()
    assert isinstance(failure.value.__cause__, SessionClosed)
    assert [event for _, event in spill.held] == deltas(9)
    assert queue.stats().failure is not None


async def test_the_spill_failing_keeps_events_in_memory_and_nothing_is_lost():
    store, spill = FakeStore(), MemorySpill()
    spill.fail_appends = True
    queue = queue_for(store, batch_size=5, flush_interval_s=None, max_memory_events=20, spill=spill)
    await queue.start()
    store.down = True  # after the start: a session is opened while the store is up
    events = deltas(99)
    for event in events:
        queue.offer(event)
        await asyncio.sleep(0)
    await until(lambda: queue.stats().spill_errors >= 2)
    stats = queue.stats()
    assert (stats.pending, stats.spilled, stats.spill_pending) == (100, 0, 0)

    spill.fail_appends = False
    store.down = False
    await queue.drain()
    assert store.events == events


# ---------------------------------------------------------------------------------------------
# Drain, shutdown, crash recovery
# ---------------------------------------------------------------------------------------------
async def test_drain_times_out_into_the_spill_and_a_new_queue_writes_it_first_exactly_once(spill):
    store = FakeStore()
    queue = queue_for(store, batch_size=4, flush_interval_s=None, spill=spill)
    await queue.start()
    store.down = True  # after the start: a session is opened while the store is up
    events = deltas(20)
    for event in events:
        queue.offer(event)

    with pytest.raises(DrainIncomplete, match="21 are kept in the spill for the next start, 0 are lost"):
        await queue.drain(timeout_s=0.1)
    assert spill.pending == 21
    with pytest.raises(QueueClosed):
        queue.offer(events[0])

    # A crash after a commit: the store got the first five before the acknowledgement was lost.
    store.down = False
    store.events.extend(events[:5])
    later = deltas(3, start_seq=100)
    recovering = queue_for(store, batch_size=4, flush_interval_s=None, spill=spill)
    for event in later:
        recovering.offer(event)  # accepted before start: written after the spilled ones
    await recovering.start()
    await recovering.drain()

    assert store.events == events + later
    assert recovering.stats().written == 16 + 4


async def test_events_neither_stored_nor_spilled_are_reported_missing_and_the_rest_written():
    # The store holds 3 events; the spill starts at ordinal 5: ordinals 3 and 4 are gone.
    events = deltas(8)
    store = FakeStore(stored=events[:3])
    spill = MemorySpill([(5 + i, event) for i, event in enumerate(events[5:])])
    queue = queue_for(store, batch_size=10, flush_interval_s=None, spill=spill)
    await queue.start()
    extra = BookDelta("T1", 50, 9, Side.YES, 4500, 100)
    queue.offer(extra)
    await queue.drain()

    assert store.events == events[:3] + events[5:] + [extra]
    assert queue.stats().missing == 2


async def test_drain_is_cancellable_and_spills_what_is_left():
    store, spill = FakeStore(), MemorySpill()
    queue = queue_for(store, batch_size=4, flush_interval_s=None, spill=spill)
    await queue.start()
    store.down = True  # after the start: a session is opened while the store is up
    for event in deltas(6):
        queue.offer(event)
    draining = asyncio.create_task(queue.drain())
    await asyncio.sleep(0.05)
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    assert [event for _, event in spill.held] == deltas(6)


async def test_a_failing_progress_callback_does_not_stop_the_writes():
    store = FakeStore()

    def explode(events):
        raise RuntimeError("listener bug")

    queue = queue_for(store, batch_size=2, flush_interval_s=None, on_written=explode)
    await queue.start()
    for event in deltas(5):
        queue.offer(event)
    await queue.drain()
    assert store.events == deltas(5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"flush_interval_s": 0}, "flush_interval_s must be > 0"),
        ({"batch_size": 100, "max_memory_events": 150}, r"max_memory_events must be an integer >= 2 \* batch_size"),
        ({"sample_every": 0}, "sample rate must be an integer >= 1"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        OrderbookWriteQueue(FakeStore(), 7, **options)


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------
async def test_sampling_writes_one_snapshot_per_n_deltas_equal_to_the_true_book():
    store = FakeStore()
    queue = queue_for(store, batch_size=50, flush_interval_s=None, sample_every=4)
    await queue.start()
    events = deltas(10) + deltas(5, ticker="T2")
    trade = PublicTrade("T1", 99, "tr-1", yes_price=4500, count=100, taker_side=Side.NO)
    events.insert(6, trade)
    true_books = {"T1": OrderBook("T1"), "T2": OrderBook("T2")}
    expected: list[MarketEvent] = []
    unsampled = {"T1": 0, "T2": 0}
    for event in events:
        queue.offer(event)
        if isinstance(event, (BookSnapshot, BookDelta)):
            true_books[event.ticker].apply(event)
        if isinstance(event, BookDelta):
            unsampled[event.ticker] += 1
            if unsampled[event.ticker] == 4:
                unsampled[event.ticker] = 0
                book = true_books[event.ticker]
                expected.append(BookSnapshot(event.ticker, event.seq, event.ts_ms, book.levels(0), book.levels(1)))
        else:
            expected.append(event)
    await queue.drain()

    # Deltas never reach the store; T1's last 2 and T2's last one are folded into a final snapshot.
    assert not any(isinstance(event, BookDelta) for event in store.events)
    assert store.events[: len(expected)] == expected
    finals = store.events[len(expected) :]
    assert [snapshot.ticker for snapshot in finals] == ["T1", "T2"]
    for snapshot in finals:
        replayed = OrderBook(snapshot.ticker)
        replayed.apply(snapshot)
        assert replayed == true_books[snapshot.ticker]
    stats = queue.stats()
    assert (stats.accepted, stats.folded) == (len(events), 15)


# ---------------------------------------------------------------------------------------------
# On the real stores: the count that decides "committed or not" is theirs
# ---------------------------------------------------------------------------------------------
class LosesAcknowledgements:
    """Wraps a real store: every ``every``-th write commits, then raises as if the connection
    dropped before the reply came back."""

    def __init__(self, store, every: int) -> None:
        self._store = store
        self._every = every
        self.writes = 0

    async def write_events(self, session_id: int, events: Sequence[MarketEvent]) -> int:
        written = await self._store.write_events(session_id, events)
        self.writes += 1
        if self.writes % self._every == 0:
            raise ConnectionResetError("connection lost before the COMMIT was acknowledged")
        return written

    async def get_session(self, session_id: int) -> SessionInfo:
        return await self._store.get_session(session_id)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def unopened_store(request, tmp_path):
    if request.param == "sqlite":
        return SqliteOrderbookStore(tmp_path / "recordings.db")
    dsn, schema = request.getfixturevalue("postgres_dsn"), request.getfixturevalue("postgres_schema")
    return PostgresOrderbookStore(dsn, schema=schema)


@pytest.fixture
async def real_store(unopened_store):
    await unopened_store.open()
    yield unopened_store
    await unopened_store.close()


async def test_lost_acknowledgements_on_a_real_store_leave_every_event_stored_once(real_store):
    session_id = await real_store.start_session(("T1", "T2"), started_ms=0, source="test")
    events = deltas(30) + deltas(12, ticker="T2")
    events.insert(9, PublicTrade("T1", 50, "tr-1", yes_price=4500, count=100, taker_side=Side.NO))
    events += [MarketResolved("T1", 60, Side.YES), MarketResolved("T2", 61, Side.NO)]
    flaky = LosesAcknowledgements(real_store, every=3)
    queue = OrderbookWriteQueue(flaky, session_id, batch_size=4, flush_interval_s=None, retry=FAST_RETRY)
    await queue.start()
    for event in events:
        queue.offer(event)
    await queue.drain()

    assert await real_store.read_events(session_id) == events
    assert queue.stats().written == len(events)
    assert flaky.writes == -(-len(events) // 4)  # one write per batch: none was sent twice
