"""The OrderbookStore contract: every implementation passes the same assertions."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig, generate_recording
from application.recording import record_session
from application.replay import ReplayConfig, compile_session, load_session_tapes
from adapters.storage import PostgresOrderbookStore, SqliteOrderbookStore

from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.ports import OrderbookStore, SessionClosed, SessionNotFound
from domain.values import Side

A, B = "KXTEST-A", "KXTEST-B"


def mixed_events(start_ms: int = 1_000) -> list[MarketEvent]:
    """One of everything, with every optional field both set and unset."""
    return [
        MarketScheduled(A, ts_ms=start_ms - 1, close_ms=start_ms + 60_000, expiration_ms=start_ms + 90_000),
        MarketScheduled(B, ts_ms=start_ms - 1, close_ms=start_ms + 30_000),
        BookSnapshot(A, seq=1, ts_ms=start_ms, yes=((100, 5), (4500, 12_000), (4550, 1)), no=((5000, 300),), sid=7),
        BookSnapshot(B, seq=None, ts_ms=start_ms, yes=(), no=(), sid=None),
        BookDelta(A, seq=2, ts_ms=start_ms + 1, side=Side.YES, price=4500, delta=-12_000, sid=7),
        BookDelta(A, seq=3, ts_ms=start_ms + 1, side=Side.NO, price=5100, delta=250, sid=7, client_order_id="c-1"),
        BookDelta(B, seq=None, ts_ms=start_ms + 2, side=Side.NO, price=0, delta=1, sid=None),
        PublicTrade(A, ts_ms=start_ms + 3, trade_id="t-1", yes_price=4550, count=100, taker_side=Side.YES, seq=4, sid=9),
        PublicTrade(B, ts_ms=start_ms + 3, trade_id="t-2", yes_price=10_000, count=1, taker_side=Side.NO),
        BookDelta(A, seq=4, ts_ms=start_ms + 4, side=Side.YES, price=10_000, delta=7, sid=7),
        MarketResolved(B, ts_ms=start_ms + 5, result=Side.NO),
        BookSnapshot(A, seq=5, ts_ms=start_ms + 6, yes=((4400, 200),), no=(), sid=8),
    ]


async def test_the_adapter_satisfies_the_port(storage):
    assert isinstance(await storage.open_store(), OrderbookStore)


async def test_events_read_back_equal_and_in_write_order(storage):
    store = await storage.open_store()
    session_id = await store.start_session([A, B], started_ms=1_000, source="synthetic")
    events = mixed_events()

    assert await store.write_events(session_id, events) == len(events)

    assert await store.read_events(session_id) == events


async def test_batches_and_store_instances_continue_one_order(storage):
    first = await storage.open_store()
    session_id = await first.start_session([A, B], started_ms=1_000, source="synthetic")
    events = mixed_events(1_000) + mixed_events(2_000) + mixed_events(3_000)
    await first.write_events(session_id, events[:4])
    await first.write_events(session_id, events[4:10])
    await first.close()

    second = await storage.open_store()  # reopening: ordinals continue from what is stored
    await second.write_events(session_id, events[10:])

    assert await second.read_events(session_id) == events


async def test_sessions_keep_their_own_events(storage):
    store = await storage.open_store()
    one = await store.start_session([A], started_ms=0, source="live")
    two = await store.start_session([B], started_ms=0, source="live")
    events = mixed_events()
    for event in events:  # interleaved writes
        await store.write_events(one, [event])
        await store.write_events(two, [event, event])

    assert await store.read_events(one) == events
    assert await store.read_events(two) == [event for event in events for _ in range(2)]


async def test_a_large_batch_round_trips_in_order(storage):
    store = await storage.open_store()
    session_id = await store.start_session([A], started_ms=0, source="synthetic")
    events: list[MarketEvent] = [BookSnapshot(A, 0, 0, yes=((4000, 500),), no=((5000, 500),), sid=1)]
    for i in range(20_000):
        events.append(BookDelta(A, i + 1, i, Side(i % 2), 1 + i % 9_999, (i % 7 - 3) * 100, sid=1))
        if i % 1_000 == 999:
            events.append(PublicTrade(A, i, f"t-{i}", yes_price=4000, count=100, taker_side=Side.NO, seq=i + 1))

    assert await store.write_events(session_id, events) == len(events)
    back = await store.read_events(session_id)

    assert back == events
    info = await store.get_session(session_id)
    assert (info.snapshots, info.deltas, info.trades) == (1, 20_000, 20)


async def test_a_batch_the_database_refuses_writes_nothing(storage):
    store = await storage.open_store()
    session_id = await store.start_session([A, B], started_ms=0, source="synthetic")
    kept = mixed_events(1_000)
    await store.write_events(session_id, kept)
    # Rows for three tables go in before the out-of-range price is reached.
    bad_batch = mixed_events(2_000) + [BookDelta(A, 99, 2_010, Side.YES, price=10_001, delta=1)]

    with pytest.raises(ValueError, match="none was written"):
        await store.write_events(session_id, bad_batch)

    assert await store.read_events(session_id) == kept
    info = await store.get_session(session_id)
    assert (info.snapshots, info.deltas, info.trades, dict(info.resolutions)) == (3, 4, 2, {B: Side.NO})
    # The refused batch took no ordinals: the next batch follows the kept one directly.
    later = mixed_events(3_000)
    await store.write_events(session_id, later)
    assert await store.read_events(session_id) == kept + later


@pytest.mark.parametrize(
    ("bad_event", "error", "message"),
    [
        (BookDelta(A, 1, 1.5, Side.YES, 4500, 1), ValueError, "timestamp_ms must be int"),
        (BookDelta(A, 1, 1, Side.YES, 4500.0, 1), ValueError, "price must be int"),
        (BookDelta(A, 1, 1, "yes", 4500, 1), ValueError, "side must be a Side"),
        (BookDelta(A, True, 1, Side.YES, 4500, 1), ValueError, "sequence_number must be int or None, got True"),
        (PublicTrade(A, 1, "t", 4500, 1.5, Side.YES), ValueError, "count must be int, got 1.5"),
        (BookSnapshot(A, 1, 1, yes=((0.45, 100),), no=()), ValueError, "not a \\(price, count\\) pair of ints"),
        (BookSnapshot(A, 1, 1, yes=((20_000, 100),), no=()), ValueError, "outside 0..10000"),
        (PublicTrade(A, 1, "t", 4500, 0, Side.YES), ValueError, "none was written"),
        (MarketScheduled(A, 1, close_ms=1.5), ValueError, "close_ms must be int, got 1.5"),
        (MarketScheduled(A, 1, close_ms=9, expiration_ms="soon"), ValueError, "expiration_ms must be int or None"),
        ({"ticker": A}, TypeError, "event 1 of the batch is a dict, not a market event"),
    ],
)
async def test_a_bad_event_is_refused_with_the_reason_and_nothing_is_written(storage, bad_event, error, message):
    store = await storage.open_store()
    session_id = await store.start_session([A], started_ms=0, source="synthetic")

    with pytest.raises(error, match=message):
        await store.write_events(session_id, [mixed_events()[0], bad_event])

    assert await store.read_events(session_id) == []
    assert (await store.get_session(session_id)).snapshots == 0


async def test_unknown_sessions_raise_session_not_found(storage):
    store = await storage.open_store()

    with pytest.raises(SessionNotFound, match="no recording session 404"):
        await store.get_session(404)
    with pytest.raises(SessionNotFound):
        await store.read_events(404)
    with pytest.raises(SessionNotFound):
        await store.write_events(404, mixed_events())
    with pytest.raises(SessionNotFound):
        await store.write_events(404, [])
    with pytest.raises(SessionNotFound):
        await store.end_session(404, ended_ms=1)


async def test_an_ended_session_takes_no_more_events(storage):
    store = await storage.open_store()
    session_id = await store.start_session([A, B], started_ms=1_000, source="synthetic")
    await store.write_events(session_id, mixed_events())
    await store.end_session(session_id, ended_ms=5_000)

    with pytest.raises(SessionClosed, match=f"session {session_id} already ended at 5000 ms"):
        await store.write_events(session_id, mixed_events())
    with pytest.raises(SessionClosed):
        await store.end_session(session_id, ended_ms=6_000)

    info = await store.get_session(session_id)
    assert info.ended_ms == 5_000 and info.is_closed
    assert await store.read_events(session_id) == mixed_events()


async def test_a_session_cannot_end_before_it_started(storage):
    store = await storage.open_store()
    session_id = await store.start_session([A], started_ms=1_000, source="synthetic")

    with pytest.raises(ValueError, match="cannot end at 999 ms, before it started at 1000 ms"):
        await store.end_session(session_id, ended_ms=999)
    assert not (await store.get_session(session_id)).is_closed


async def test_session_info_counts_events_and_carries_resolutions(storage):
    store = await storage.open_store()
    first = await store.start_session([A, B], started_ms=1_000, source="synthetic")
    second = await store.start_session((B,), started_ms=2_000, source="kalshi-demo")
    await store.write_events(first, mixed_events())
    await store.write_events(first, [MarketResolved(A, 9_000, Side.YES)])
    await store.end_session(first, ended_ms=10_000)

    info = await store.get_session(first)
    assert info.session_id == first
    assert info.tickers == (A, B)
    assert (info.source, info.started_ms, info.ended_ms) == ("synthetic", 1_000, 10_000)
    assert (info.snapshots, info.deltas, info.trades) == (3, 4, 2)
    assert dict(info.resolutions) == {B: Side.NO, A: Side.YES}

    empty = await store.get_session(second)
    assert (empty.tickers, empty.source, empty.ended_ms) == ((B,), "kalshi-demo", None)
    assert (empty.snapshots, empty.deltas, empty.trades, dict(empty.resolutions)) == (0, 0, 0, {})
    assert await store.list_sessions() == [info, empty]


async def test_list_sessions_of_an_empty_store_is_empty(storage):
    assert await (await storage.open_store()).list_sessions() == []


@pytest.mark.parametrize(
    ("tickers", "source", "error", "message"),
    [
        ("KXTEST-A", "synthetic", TypeError, "got the string 'KXTEST-A'"),
        ([], "synthetic", ValueError, "at least one market ticker"),
        ([A, ""], "synthetic", ValueError, "non-empty strings"),
        ([A, A], "synthetic", ValueError, "repeat"),
        ([A], "", ValueError, "source must be a non-empty string"),
    ],
)
async def test_start_session_refuses_bad_arguments(storage, tickers, source, error, message):
    store = await storage.open_store()

    with pytest.raises(error, match=message):
        await store.start_session(tickers, started_ms=0, source=source)
    assert await store.list_sessions() == []


async def test_timestamps_must_be_integer_milliseconds(storage):
    store = await storage.open_store()
    with pytest.raises(ValueError, match="started_ms must be an int of epoch milliseconds, got 1.5"):
        await store.start_session([A], started_ms=1.5, source="synthetic")
    session_id = await store.start_session([A], started_ms=1, source="synthetic")

    with pytest.raises(ValueError, match="ended_ms must be an int"):
        await store.end_session(session_id, ended_ms=2.9)
    assert [info.ended_ms for info in await store.list_sessions()] == [None]


async def test_opening_twice_is_harmless(storage):
    store = await storage.open_store()
    await store.open()
    session_id = await store.start_session([A], started_ms=0, source="synthetic")

    again = await storage.open_store()
    await again.open()

    assert [info.session_id for info in await again.list_sessions()] == [session_id]


async def test_two_stores_opening_one_new_database_at_once(storage):
    stores = [storage.new_store(), storage.new_store()]

    await asyncio.gather(*(store.open() for store in stores))

    session_id = await stores[0].start_session([A, B], started_ms=0, source="synthetic")
    await stores[1].write_events(session_id, mixed_events())
    assert await stores[0].read_events(session_id) == mixed_events()


async def test_a_store_refuses_work_before_open(storage):
    with pytest.raises(RuntimeError, match="not open"):
        await storage.new_store().list_sessions()


TAPE_ARRAYS = (
    "times", "bid_prices", "bid_counts", "marks", "trade_offsets", "trade_prices", "trade_counts", "trade_takers",
    "features", "log_offsets", "log_times", "log_kinds", "log_prices", "log_counts",
)  # fmt: skip


class _Clock:
    def now_ms(self) -> int:
        return 1_700_000_000_000


@pytest.mark.postgres
async def test_a_synthetic_session_recorded_into_sqlite_and_postgresql_replays_into_the_same_tapes(
    tmp_path, postgres_dsn, postgres_schema
):
    """Record -> real store -> read back -> compile, on both stores: the same tapes, and the
    same as compiling what collect records straight from the generator."""
    config = SyntheticMarketConfig(seed=9, markets=2, duration_ms=90_000, events_per_second=12.0)
    replay = ReplayConfig(step_ms=1_000, depth_levels=4)
    stores = {
        "sqlite": SqliteOrderbookStore(tmp_path / "kalshiflow.db"),
        "postgres": PostgresOrderbookStore(postgres_dsn, schema=postgres_schema),
    }
    compiled = []
    try:
        for name, store in stores.items():
            await store.open()
            feed = SyntheticMarketFeed(config)
            summary = await record_session(
                feed, store, tickers=feed.tickers, source="synthetic", batch_size=500, clock=_Clock()
            )
            assert summary.schedules == 2
            cache = tmp_path / f"cache-{name}"
            tapes = await load_session_tapes(store, summary.session_id, config=replay, cache_dir=cache)
            cached = await load_session_tapes(store, summary.session_id, config=replay, cache_dir=cache)
            compiled.append(tapes)
            compiled.append(cached)
    finally:
        for store in stores.values():
            await store.close()
    direct = compile_session(generate_recording(config), session_id=1, config=replay)
    for tapes in compiled:
        assert [(t.ticker, t.result, t.expiry_ms, t.close_ms) for t in tapes] == [
            (t.ticker, t.result, t.expiry_ms, t.close_ms) for t in direct
        ]
        assert all(t.close_ms == config.expiry_ms for t in tapes)
        for tape, reference in zip(tapes, direct, strict=True):
            for name in TAPE_ARRAYS:
                np.testing.assert_array_equal(getattr(tape, name), getattr(reference, name), err_msg=name)
