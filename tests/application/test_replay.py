from collections.abc import Sequence

import attrs
import numpy as np
import pytest

from adapters.synthetic.market_model import SyntheticMarketConfig, generate_recording
from application.replay import ReplayConfig, compile_market, compile_session, load_session_tapes, load_tapes
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.features import (
    MARKET_FEATURE_COUNT,
    MARKET_FEATURES,
    UNKNOWN_TIME_LEFT_HOUR,
    UNKNOWN_TIME_LEFT_LOG,
)
from domain.market_tape import LOG_NO_LEVEL, LOG_TRADE_NO_TAKER, LOG_YES_LEVEL, NO_LEVEL, TapeError
from domain.ports import SessionInfo, SessionNotFound
from domain.values import Side

YES, NO = Side.YES, Side.NO
CONFIG = ReplayConfig(step_ms=1_000, depth_levels=2)
HOUR, TIME_LOG = MARKET_FEATURES.index("time_left_hour"), MARKET_FEATURES.index("time_left_log")
TAPE_ARRAYS = (
    "times", "bid_prices", "bid_counts", "marks", "trade_offsets", "trade_prices", "trade_counts", "trade_takers",
    "features", "log_offsets", "log_times", "log_kinds", "log_prices", "log_counts",
)  # fmt: skip


def scheduled(ticker="T", close_ms=10_000):
    """What the recording learns before the market's first event: its scheduled close."""
    return MarketScheduled(ticker, -5, close_ms=close_ms, expiration_ms=close_ms + 1_000)


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


@pytest.mark.parametrize("schedule", [True, False], ids=["scheduled", "no-schedule"])
def test_a_row_never_sees_an_event_after_its_time(schedule):
    base = [scheduled()] + market() if schedule else market()
    changed = list(base)
    # Change everything after t=1000: rows 0 and 1 must not move.
    offset = 1 if schedule else 0
    changed[6 + offset] = PublicTrade("T", 2500, "t2", 4000, 9999, YES)
    changed[7 + offset] = BookDelta("T", 5, 2500, YES, 4500, -200)
    one = compile_market(base, ticker="T", session_id=1, config=CONFIG)
    two = compile_market(changed, ticker="T", session_id=1, config=CONFIG)
    np.testing.assert_array_equal(one.features[:2], two.features[:2])
    np.testing.assert_array_equal(one.bid_counts[:2], two.bid_counts[:2])
    assert not np.array_equal(one.features[2:], two.features[2:])


def _shifted(events, after_ms, by_ms):
    """The same events with every one stamped after ``after_ms`` -- the resolution too -- moved
    ``by_ms`` later: the future changes, nothing at or before ``after_ms`` does."""
    return [attrs.evolve(event, ts_ms=event.ts_ms + by_ms) if event.ts_ms > after_ms else event for event in events]


@pytest.mark.parametrize("resolve", [True, False], ids=["resolved", "unresolved"])
@pytest.mark.parametrize("schedule", [True, False], ids=["scheduled", "no-schedule"])
@pytest.mark.parametrize("after_ms", [0, 1000, 2000])
def test_moving_only_future_events_and_the_resolution_leaves_the_rows_up_to_now_unchanged(resolve, schedule, after_ms):
    """The look-ahead test: the tape's end (the resolution, or an unresolved market's last event)
    is the future too. Moving it -- and every event after ``after_ms`` -- must not change a row
    at or before ``after_ms``: not its book, its trades, its mark nor any feature."""
    base = ([scheduled()] if schedule else []) + market(resolve=resolve)
    for by_ms in (4_000, 6_500):  # the future ends later, off the old grid too
        one = compile_market(base, ticker="T", session_id=1, config=CONFIG)
        two = compile_market(_shifted(base, after_ms, by_ms), ticker="T", session_id=1, config=CONFIG)
        assert one.expiry_ms != two.expiry_ms  # the end moved ...
        rows = int(np.searchsorted(one.times, after_ms, side="right"))
        assert rows >= 1 and one.times[:rows].tolist() == two.times[:rows].tolist()
        for name in ("bid_prices", "bid_counts", "marks", "features"):  # ... no row up to now did
            np.testing.assert_array_equal(getattr(one, name)[:rows], getattr(two, name)[:rows], err_msg=name)
        np.testing.assert_array_equal(one.trade_offsets[: rows + 1], two.trade_offsets[: rows + 1])
        np.testing.assert_array_equal(one.log_offsets[: rows + 1], two.log_offsets[: rows + 1])


def test_cutting_off_the_future_of_a_synthetic_recording_leaves_every_earlier_row_unchanged():
    """Every row of a real-sized session, against the same session recorded only up to a time:
    whatever comes after (the rest of the market, its end, its resolution) is invisible."""
    config = SyntheticMarketConfig(seed=3, markets=2, duration_ms=120_000, events_per_second=15.0)
    recording = generate_recording(config)
    full = {tape.ticker: tape for tape in compile_session(recording, session_id=1, config=CONFIG)}
    for cut_ms in (config.start_ms + 30_500, config.start_ms + 90_000):
        cut = [event for event in recording if isinstance(event, MarketScheduled) or event.ts_ms <= cut_ms]
        for tape in compile_session(cut, session_id=1, config=CONFIG):
            whole = full[tape.ticker]
            rows = tape.steps - 1  # its last row is the cut recording's end, off the grid
            assert tape.times[:rows].tolist() == whole.times[:rows].tolist() and tape.times[rows - 1] <= cut_ms
            for name in ("bid_prices", "bid_counts", "marks", "features"):
                np.testing.assert_array_equal(getattr(tape, name)[:rows], getattr(whole, name)[:rows], err_msg=name)
            np.testing.assert_array_equal(tape.trade_offsets[: rows + 1], whole.trade_offsets[: rows + 1])


def test_the_time_left_counts_down_to_the_scheduled_close_not_to_the_tapes_end():
    tape = compile_market([scheduled(close_ms=10_000)] + market(), ticker="T", session_id=1, config=CONFIG)
    assert (tape.expiry_ms, tape.close_ms) == (3000, 10_000)  # the tape steps to its resolution
    assert tape.features[:, HOUR].tolist() == pytest.approx([10 / 3600, 9 / 3600, 8 / 3600, 7 / 3600])
    assert tape.features[0, TIME_LOG] == pytest.approx(np.log1p(10_000 / 60_000) / 10)


def test_rows_past_the_scheduled_close_have_no_time_left():
    tape = compile_market([scheduled(close_ms=1_500)] + market(), ticker="T", session_id=1, config=CONFIG)
    assert tape.features[:, HOUR].tolist() == pytest.approx([1.5 / 3600, 0.5 / 3600, 0.0, 0.0])
    assert tape.features[2:, TIME_LOG].tolist() == [0.0, 0.0]


def test_the_latest_schedule_before_the_first_snapshot_is_the_one_replay_uses():
    events = [scheduled(close_ms=8_000), scheduled(close_ms=10_000)] + market() + [scheduled(close_ms=4_000)]
    tape = compile_market(events, ticker="T", session_id=1, config=CONFIG)
    assert tape.close_ms == 10_000  # the one recorded after the snapshot is ignored


def test_without_a_scheduled_close_the_time_features_are_neutral_on_every_row():
    for resolve in (True, False):
        tape = compile_market(market(resolve=resolve), ticker="T", session_id=1, config=CONFIG)
        assert tape.close_ms is None
        assert set(tape.features[:, HOUR].tolist()) == {UNKNOWN_TIME_LEFT_HOUR}
        assert set(tape.features[:, TIME_LOG].tolist()) == {UNKNOWN_TIME_LEFT_LOG}


def test_markets_of_a_session_share_the_sessions_clock_whatever_their_first_snapshot():
    a = [scheduled("A")] + market("A")
    b = [
        scheduled("B"),
        BookSnapshot("B", 1, 1_300, yes=((1000, 7),), no=((8000, 9),)),
        PublicTrade("B", 1_600, "b1", 1000, 7, NO),
        BookDelta("B", 2, 1_700, YES, 1000, 50),
        BookDelta("B", 3, 2_100, NO, 8000, 5),
        MarketResolved("B", 4_200, NO),
    ]
    session = sorted(a + b, key=lambda event: event.ts_ms)
    tapes = {tape.ticker: tape for tape in compile_session(session, session_id=1, config=CONFIG)}
    assert tapes["A"].times.tolist() == [0, 1000, 2000, 3000]
    assert tapes["B"].times.tolist() == [2000, 3000, 4000, 4200]  # the first grid time after 1300, ...
    assert set(tapes["A"].times[:-1]) & set(tapes["B"].times[:-1]) == {2000}
    b0 = tapes["B"]
    # ... and its first row holds the snapshot and everything up to 2000 -- nothing after
    assert b0.bids(0, YES) == [(1000, 57)] and b0.bids(0, NO) == [(8000, 9)]
    assert b0.trade_offsets[:2].tolist() == [0, 1] and b0.trade_prices.tolist() == [1000]
    assert b0.bids(1, NO) == [(8000, 14)]
    # the time left counts down to B's own close, as A's to A's (both scheduled at 10 s)
    assert b0.features[0, HOUR] == pytest.approx(8 / 3600) and tapes["A"].features[2, HOUR] == b0.features[0, HOUR]


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
    store.add(1, [scheduled("A")] + market("A") + market("B"))
    first = await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    second = await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    assert store.reads == 1
    assert len(list(tmp_path.glob("replay-s1-*.npz"))) == 1
    assert [tape.close_ms for tape in second] == [10_000, None]
    for cached, compiled in zip(second, first):
        assert (cached.ticker, cached.result, cached.expiry_ms, cached.close_ms, cached.step_ms) == (
            compiled.ticker,
            compiled.result,
            compiled.expiry_ms,
            compiled.close_ms,
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
        assert "A: 1 book events and trades before the first snapshot" in caplog.text and "A: no resolution" in caplog.text
    assert store.reads == 1


async def test_a_clean_session_loads_without_a_warning(tmp_path, caplog):
    store = FakeStore()
    book = BookSnapshot("A", 1, 0, yes=((4400, 100),), no=((5300, 300),))
    events = [scheduled("A", 3000), book, BookDelta("A", 2, 1500, YES, 4500, 10), MarketResolved("A", 3000, NO)]
    store.add(1, events)
    with caplog.at_level("WARNING", logger="application.replay"):
        await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    assert caplog.text == ""


async def test_a_recording_without_a_scheduled_close_is_reported_on_load(tmp_path, caplog):
    store = FakeStore()
    store.add(1, market("A"))
    with caplog.at_level("WARNING", logger="application.replay"):
        (tape,) = await load_session_tapes(store, 1, config=CONFIG, cache_dir=tmp_path)
    assert "A: no scheduled close recorded before the first snapshot" in caplog.text
    assert tape.close_ms is None
