from collections.abc import Sequence

import attrs
import numpy as np
import pytest

from application.replay import ReplayConfig, compile_market, compile_session, load_session_tapes, load_tapes
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, PublicTrade
from domain.features import MARKET_FEATURE_COUNT, MARKET_FEATURES
from domain.market_tape import LOG_NO_LEVEL, LOG_TRADE_NO_TAKER, LOG_YES_LEVEL, NO_LEVEL, TapeError
from domain.ports import SessionInfo, SessionNotFound
from domain.values import Side

YES, NO = Side.YES, Side.NO
CONFIG = ReplayConfig(step_ms=1_000, depth_levels=2)


def market(ticker="T", resolve=True):
    """A book at t=0, a few changes, two trades, resolution at t=3000."""
    events: list[MarketEvent] = [
        BookDelta(ticker, None, 0, YES, 4000, 100),  # before any snapshot: cannot apply
        BookSnapshot(ticker, 1, 0, yes=((4400, 100), (4500, 200)), no=((5300, 300),)),
        BookDelta(ticker, 2, 400, YES, 4600, 50),  # improves the YES bid
        PublicTrade(ticker, 900, "t1", 4600, 50, NO),  # someone sells into it
        BookDelta(ticker, 3, 900, YES, 4600, -50),
        BookDelta(ticker, 4, 1000, NO, 5300, -300),  # the NO side empties at exactly t=1000
        PublicTrade(ticker, 2500, "t2", 4500, 20, NO),
        BookDelta(ticker, 5, 2500, YES, 4500, -20),
    ]
    if resolve:
        events.append(MarketResolved(ticker, 3000, YES))
        events.append(BookDelta(ticker, 6, 3500, YES, 4500, 999))  # after the end: ignored
    return events


def test_a_market_is_sampled_on_the_grid_after_the_events_at_or_before_each_time():
    tape = compile_market(market(), ticker="T", session_id=7, config=CONFIG)
    assert tape.times.tolist() == [0, 1000, 2000, 3000]
    assert (tape.session_id, tape.ticker, tape.result, tape.expiry_ms) == (7, "T", YES, 3000)
    # t=0: the snapshot (the delta before it is dropped)
    assert tape.bids(0, YES) == [(4500, 200), (4400, 100)] and tape.bids(0, NO) == [(5300, 300)]
    # t=1000: the 0.46 bid came and went; the NO side emptied at t=1000 exactly
    assert tape.bids(1, YES) == [(4500, 200), (4400, 100)] and tape.bids(1, NO) == []
    assert tape.bid_prices[1, NO].tolist() == [NO_LEVEL, NO_LEVEL]
    assert tape.bids(3, YES) == [(4500, 180), (4400, 100)]  # the delta after resolution never lands
    assert tape.marks.tolist() == [4600, 4600, 4600, 4600]  # (4500 + 4700) / 2, then carried
    assert tape.features.shape == (4, MARKET_FEATURE_COUNT)


def test_trades_are_kept_per_interval_between_samples():
    tape = compile_market(market(), ticker="T", session_id=1, config=CONFIG)
    # row 0: up to t=0; row 1: (0, 1000]; row 2: (1000, 2000]; row 3: (2000, 3000]
    assert tape.trade_offsets.tolist() == [0, 0, 1, 1, 2]
    assert tape.trade_prices.tolist() == [4600, 4500]
    assert tape.trade_counts.tolist() == [50, 20]
    assert tape.trade_takers.tolist() == [int(NO), int(NO)]


def test_an_unresolved_market_ends_at_its_last_event():
    tape = compile_market(market(resolve=False), ticker="T", session_id=1, config=CONFIG)
    assert tape.result is None and tape.expiry_ms == 2500
    assert tape.times.tolist() == [0, 1000, 2000, 2500]


def test_markets_without_a_snapshot_or_a_single_step_are_skipped():
    no_snapshot = [BookDelta("A", 1, 0, YES, 4000, 100), MarketResolved("A", 5000, NO)]
    instant = [BookSnapshot("B", 1, 0, yes=((4000, 1),), no=()), MarketResolved("B", 0, NO)]
    tapes = compile_session(no_snapshot + instant + market("C"), session_id=1, config=CONFIG)
    assert [tape.ticker for tape in tapes] == ["C"]


def test_markets_are_compiled_separately_and_in_order_of_appearance():
    a, b = market("A"), market("B")
    interleaved = [event for pair in zip(a, b) for event in pair]
    tapes = compile_session(interleaved, session_id=1, config=CONFIG)
    assert [tape.ticker for tape in tapes] == ["A", "B"]
    np.testing.assert_array_equal(tapes[0].bid_counts, tapes[1].bid_counts)


def test_a_row_never_sees_an_event_after_its_time():
    base = market()
    changed = list(base)
    # Change everything after t=1000: rows 0 and 1 must not move.
    changed[6] = PublicTrade("T", 2500, "t2", 4000, 9999, YES)
    changed[7] = BookDelta("T", 5, 2500, YES, 4500, -200)
    one = compile_market(base, ticker="T", session_id=1, config=CONFIG)
    two = compile_market(changed, ticker="T", session_id=1, config=CONFIG)
    np.testing.assert_array_equal(one.features[:2], two.features[:2])
    np.testing.assert_array_equal(one.bid_counts[:2], two.bid_counts[:2])
    assert not np.array_equal(one.features[2:], two.features[2:])


def test_a_tape_is_one_market_lifetime_whatever_else_the_session_holds():
    """Market A's tape ends at A's resolution and holds nothing of B -- not B's book, trades or
    clock -- however the two are interleaved or whatever B does after A resolved."""
    alone = compile_market(market("A"), ticker="A", session_id=1, config=CONFIG)
    other = [
        BookSnapshot("B", 1, 0, yes=((1000, 7),), no=((8000, 9),)),
        PublicTrade("B", 950, "b1", 1000, 7, NO),
        BookDelta("B", 2, 1000, YES, 1000, 50),
        PublicTrade("B", 2500, "b2", 1000, 3, NO),
        BookDelta("B", 3, 7000, NO, 8000, 5),  # B goes on long after A resolved
        MarketResolved("B", 9000, NO),
    ]
    interleaved = sorted(market("A") + other, key=lambda event: event.ts_ms)  # stable: recorded order kept
    tapes = {tape.ticker: tape for tape in compile_session(interleaved, session_id=1, config=CONFIG)}
    a, b = tapes["A"], tapes["B"]
    assert a.times.tolist() == alone.times.tolist() == [0, 1000, 2000, 3000]
    assert b.times[-1] == b.expiry_ms == 9000 and b.result is NO
    for name in ("bid_prices", "bid_counts", "marks", "trade_offsets", "trade_prices", "features", "log_counts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(alone, name), err_msg=name)


def test_the_market_log_keeps_level_changes_and_trades_in_recorded_order_per_interval():
    tape = compile_market(market(), ticker="T", session_id=1, config=CONFIG)
    entries = list(
        zip(tape.log_times.tolist(), tape.log_kinds.tolist(), tape.log_prices.tolist(), tape.log_counts.tolist())
    )
    assert entries == [
        (0, LOG_YES_LEVEL, 4400, 100),  # the snapshot's levels, as changes from an empty book
        (0, LOG_YES_LEVEL, 4500, 200),
        (0, LOG_NO_LEVEL, 5300, 300),
        (400, LOG_YES_LEVEL, 4600, 50),  # a level's size after the change
        (900, LOG_TRADE_NO_TAKER, 4600, 50),
        (900, LOG_YES_LEVEL, 4600, 0),  # gone
        (1000, LOG_NO_LEVEL, 5300, 0),
        (2500, LOG_TRADE_NO_TAKER, 4500, 20),
        (2500, LOG_YES_LEVEL, 4500, 180),
    ]
    assert tape.log_offsets.tolist() == [0, 3, 7, 7, 9]  # up to t=0, (0, 1000], (1000, 2000], (2000, 3000]


def test_a_snapshot_mid_stream_logs_only_the_levels_it_changed():
    events = [
        BookSnapshot("T", 1, 0, yes=((4400, 100), (4500, 200)), no=((5300, 300),)),
        BookSnapshot("T", 9, 1500, yes=((4500, 200), (4600, 10)), no=((5300, 250),)),
        MarketResolved("T", 2000, YES),
    ]
    tape = compile_market(events, ticker="T", session_id=1, config=CONFIG)
    start, stop = tape.log_offsets[2], tape.log_offsets[3]
    kinds, prices, counts = (array[start:stop].tolist() for array in (tape.log_kinds, tape.log_prices, tape.log_counts))
    changed = list(zip(kinds, prices, counts))
    assert changed == [(LOG_YES_LEVEL, 4400, 0), (LOG_YES_LEVEL, 4600, 10), (LOG_NO_LEVEL, 5300, 250)]


def test_log_times_never_decrease_and_stay_in_their_interval_when_the_clock_steps_back():
    events = [
        BookSnapshot("T", 1, 0, yes=((4400, 100),), no=()),
        BookDelta("T", 2, 1200, YES, 4400, 5),
        BookDelta("T", 3, 900, YES, 4400, 5),  # recorded after the one stamped 1200
        MarketResolved("T", 3000, YES),
    ]
    tape = compile_market(events, ticker="T", session_id=1, config=CONFIG)
    assert tape.log_times.tolist() == [0, 1200, 1200]
    assert tape.log_offsets.tolist() == [0, 1, 1, 3, 3]


def test_a_tape_refuses_a_market_log_that_does_not_fit_it():
    tape = compile_market(market(), ticker="T", session_id=1, config=CONFIG)
    with pytest.raises(TapeError, match="log arrays"):
        attrs.evolve(tape, log_counts=tape.log_counts[:-1])
    with pytest.raises(TapeError, match="never decrease"):
        attrs.evolve(tape, log_times=tape.log_times[::-1].copy())
    with pytest.raises(TapeError, match="log_offsets"):
        attrs.evolve(tape, log_offsets=tape.log_offsets[:-1])


def test_the_trade_flow_feature_sees_the_interval_trades():
    tape = compile_market(market(), ticker="T", session_id=1, config=CONFIG)
    flow = tape.features[:, MARKET_FEATURES.index("trade_flow")]
    assert flow.tolist() == [0.0, -1.0, -1.0, -1.0]  # NO takers only


@attrs.define
class FakeStore:
    """The OrderbookStore port, in memory, counting reads."""

    sessions: dict[int, tuple[SessionInfo, list[MarketEvent]]] = attrs.field(factory=dict)
    reads: int = 0

    def add(self, session_id: int, events: Sequence[MarketEvent], *, ended: bool = True) -> None:
        info = SessionInfo(
            session_id=session_id,
            tickers=tuple(sorted({event.ticker for event in events})),
            source="test",
            started_ms=0,
            ended_ms=10_000 if ended else None,
            snapshots=sum(isinstance(e, BookSnapshot) for e in events),
            deltas=sum(isinstance(e, BookDelta) for e in events),
            trades=sum(isinstance(e, PublicTrade) for e in events),
        )
        self.sessions[session_id] = (info, list(events))

    async def get_session(self, session_id: int) -> SessionInfo:
        if session_id not in self.sessions:
            raise SessionNotFound(session_id)
        return self.sessions[session_id][0]

    async def read_events(self, session_id: int) -> list[MarketEvent]:
        self.reads += 1
        return list(self.sessions[session_id][1])


async def test_a_session_is_read_once_then_served_from_the_cache(tmp_path):
    store = FakeStore()
    store.add(1, market("A") + market("B"))
    first = await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    second = await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    assert store.reads == 1
    assert len(list(tmp_path.glob("replay-s1-*.npz"))) == 1
    for cached, compiled in zip(second, first):
        assert (cached.ticker, cached.result, cached.expiry_ms, cached.step_ms) == (
            compiled.ticker,
            compiled.result,
            compiled.expiry_ms,
            compiled.step_ms,
        )
        for name in (
            "times",
            "bid_prices",
            "bid_counts",
            "marks",
            "trade_offsets",
            "trade_prices",
            "features",
            "log_offsets",
            "log_times",
            "log_kinds",
            "log_prices",
            "log_counts",
        ):
            np.testing.assert_array_equal(getattr(cached, name), getattr(compiled, name))


async def test_the_cache_is_keyed_by_what_the_session_holds_and_the_replay_settings(tmp_path):
    store = FakeStore()
    store.add(1, market("A"))
    await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    store.add(1, market("A") + market("B"))  # a different session 1 (say, a new store file)
    tapes = await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    assert [tape.ticker for tape in tapes] == ["A", "B"] and store.reads == 2
    await load_session_tapes(store, 1, config=ReplayConfig(step_ms=500, depth_levels=2), cache_dir=tmp_path)
    assert store.reads == 3


async def test_a_session_still_recording_is_never_cached(tmp_path):
    store = FakeStore()
    store.add(1, market("A"), ended=False)
    await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    assert store.reads == 2 and not list(tmp_path.iterdir())


async def test_load_tapes_concatenates_sessions_and_unknown_ids_fail_clearly():
    store = FakeStore()
    store.add(1, market("A"))
    store.add(2, market("B"))
    tapes = await load_tapes(store, [2, 1], config=CONFIG)
    assert [(tape.session_id, tape.ticker) for tape in tapes] == [(2, "B"), (1, "A")]
    with pytest.raises(SessionNotFound):
        await load_tapes(store, [3], config=CONFIG)


def test_replay_settings_are_checked():
    with pytest.raises(ValueError, match="step_ms"):
        ReplayConfig(step_ms=0)


async def test_data_quality_findings_are_logged_on_every_load_cached_or_not(tmp_path, caplog):
    store = FakeStore()
    store.add(1, market("A", resolve=False))
    for attempt in range(2):  # compiled, then from the cache: the finding is not forgotten
        caplog.clear()
        with caplog.at_level("WARNING", logger="application.replay"):
            await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
        assert "session 1 data quality" in caplog.text, attempt
        assert "A: 1 book events before the first snapshot" in caplog.text and "A: no resolution" in caplog.text
    assert store.reads == 1


async def test_a_clean_session_loads_without_a_warning(tmp_path, caplog):
    store = FakeStore()
    book = BookSnapshot("A", 1, 0, yes=((4400, 100),), no=((5300, 300),))
    store.add(1, [book, BookDelta("A", 2, 1500, YES, 4500, 10), MarketResolved("A", 3000, NO)])
    with caplog.at_level("WARNING", logger="application.replay"):
        await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    assert caplog.text == ""
