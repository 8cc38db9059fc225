"""The data-quality report replay gives of a session: hand-built recordings, hand-counted findings."""

import pytest

from application.data_quality import check_session
from domain.events import BookDelta, BookSnapshot, MarketResolved, MarketScheduled, PublicTrade
from domain.values import Side

YES, NO = Side.YES, Side.NO


def clean(ticker: str = "A", sid: int = 1) -> list:
    return [
        MarketScheduled(ticker, 1_767_225_600_000, close_ms=3_000),  # the recorder's clock: not the market's
        BookSnapshot(ticker, 1, 0, yes=((4400, 100),), no=((5300, 300),), sid=sid),
        BookDelta(ticker, 2, 1_000, YES, 4500, 10, sid=sid),
        PublicTrade(ticker, 2_000, "t1", 4500, 10, NO),
        BookDelta(ticker, 3, 2_000, YES, 4500, -10, sid=sid),
        MarketResolved(ticker, 3_000, YES),
    ]


def only(report):
    (market,) = report.markets
    return market


def test_a_clean_recording_has_no_findings():
    report = check_session(clean(), session_id=7)
    market = only(report)
    assert report.is_clean and report.problems() == [] and market.problems(report.silence_ms) == []
    assert (market.events, market.snapshots, market.deltas, market.trades, market.span_ms) == (5, 1, 2, 1, 3_000)
    assert "A: 5 events" in report.format() and "clean" in report.format()


def test_sequence_gaps_repeats_and_resyncs_are_counted_per_subscription():
    events = [
        MarketScheduled("A", 0, close_ms=100),
        BookSnapshot("A", 1, 0, yes=((4400, 100),), no=((5300, 300),), sid=1),
        BookDelta("A", 2, 10, YES, 4400, 5, sid=1),
        BookDelta("A", 5, 20, YES, 4400, 5, sid=1),  # 3 and 4 never came: a gap
        BookDelta("A", 5, 30, YES, 4400, 5, sid=1),  # a repeat
        BookSnapshot("A", 6, 40, yes=((4400, 100),), no=((5300, 300),), sid=1),  # resync
        BookDelta("A", 7, 50, YES, 4400, 5, sid=1),
        BookDelta("B", 1, 60, YES, 4400, 5, sid=2),  # another subscription numbers on its own
        MarketResolved("A", 100, NO),
    ]
    report = check_session(events, session_id=1)
    market = report.markets[0]
    assert (market.sequence_gaps, market.sequence_repeats, market.resyncs) == (1, 1, 1)
    assert "A: 1 sequence gaps and 1 repeats (1 resynchronising snapshots" in report.problems()[0]


def test_deltas_and_trades_before_the_first_snapshot_are_reported_not_applied():
    events = [BookDelta("A", None, 0, YES, 4000, 100), PublicTrade("A", 0, "t0", 4500, 5, YES), *clean()]
    market = only(check_session(events, session_id=1))
    assert market.before_first_snapshot == 2 and market.deltas == 3 and market.trades == 2
    assert "2 book events and trades before the first snapshot (skipped)" in market.problems(60_000)


def test_time_crossed_locked_and_one_sided_is_measured_on_the_events_clock():
    events = [
        BookSnapshot("A", 1, 0, yes=((4400, 100),), no=((5300, 300),)),
        BookDelta("A", 2, 1_000, YES, 4700, 10),  # 4700 + 5300 = $1: locked
        BookDelta("A", 3, 3_000, YES, 4800, 10),  # crossed
        BookDelta("A", 4, 3_500, YES, 4800, -10),  # back to locked
        BookDelta("A", 5, 4_000, YES, 4700, -10),  # clean again
        BookDelta("A", 6, 5_000, NO, 5300, -300),  # the NO side empties
        PublicTrade("A", 9_000, "t", 4400, 1, NO),
        MarketResolved("A", 10_000, YES),
    ]
    report = check_session(events, session_id=1)
    market = only(report)
    assert (market.locked_ms, market.crossed_ms, market.one_sided_ms) == (2_500, 500, 5_000)
    problems = report.problems()
    assert "A: book crossed for 0.5 s" in problems and "A: book locked for 2.5 s" in problems
    assert "A: a side of the book empty for 5.0 s of 10.0 s" in problems


def test_silences_and_clock_steps_back_are_reported():
    events = [
        BookSnapshot("A", 1, 0, yes=((4400, 100),), no=((5300, 300),)),
        BookDelta("A", 2, 90_000, YES, 4400, 5),  # 90 s of nothing
        BookDelta("A", 3, 89_000, YES, 4400, 5),  # stamped before the one ahead of it
        BookDelta("A", 4, 200_000, YES, 4400, 5),  # 110 s after the latest time seen
        MarketResolved("A", 200_000, NO),
    ]
    report = check_session(events, session_id=1, silence_ms=60_000)
    market = only(report)
    assert (market.silences, market.longest_silence_ms, market.clock_steps_back) == (2, 110_000, 1)
    assert "A: 2 silences over 60.0 s (longest 110.0 s)" in report.problems()


def test_an_unresolved_market_and_one_without_a_book_are_reported():
    events = [*clean("A")[:-1], BookDelta("B", None, 0, YES, 4400, 5)]
    problems = check_session(events, session_id=1).problems()
    assert "A: no resolution: its episodes end without settlement" in problems
    assert "B: no book snapshot: the market cannot be replayed" in problems


def test_the_silence_threshold_is_checked():
    with pytest.raises(ValueError, match="silence_ms"):
        check_session(clean(), session_id=1, silence_ms=0)


def test_a_market_without_a_scheduled_close_before_its_first_snapshot_is_reported():
    events = [event for event in clean() if not isinstance(event, MarketScheduled)]
    late = [*events[:1], MarketScheduled("A", 0, close_ms=3_000), *events[1:]]  # after the snapshot: too late
    for recording in (events, late):
        market = only(check_session(recording, session_id=1))
        assert not market.scheduled
        assert market.problems(60_000) == [
            "no scheduled close recorded before the first snapshot: the time-left features are "
            "neutral (time_left_hour 0.5, time_left_log 0 on every row), not counted down"
        ]


def test_events_after_the_scheduled_close_are_counted():
    events = [MarketScheduled("A", 0, close_ms=1_500), *clean()[1:]]
    market = only(check_session(events, session_id=1))
    assert market.after_close == 2  # the trade and the delta at 2 s; the resolution is not market data
    assert "2 events after the scheduled close (time left reads 0)" in market.problems(60_000)


def test_a_delta_that_drives_a_level_below_zero_is_reported_and_the_level_is_gone():
    events = clean()
    events.insert(3, BookDelta("A", 3, 1_500, YES, 4400, -150))  # 100 rest: 50 too many -- a delta was lost
    events.insert(4, BookDelta("A", 4, 1_600, NO, 5300, -300))  # exactly to zero: gone, as Kalshi says
    market = only(check_session(events, session_id=1))
    assert market.below_zero == 1
    assert "1 deltas drove a level below zero (the level is dropped): a sign of a lost delta" in market.problems(60_000)


def test_events_after_the_resolution_are_reported_as_dropped():
    events = [*clean(), BookDelta("A", 4, 3_500, YES, 4500, 999), PublicTrade("A", 3_600, "t2", 4500, 1, YES)]
    market = only(check_session(events, session_id=1))
    assert market.after_resolution == 2
    assert "2 events after the resolution (dropped: the market ends there)" in market.problems(60_000)


def test_events_recorded_before_the_resolution_but_stamped_after_it_are_reported_as_dropped():
    events = clean()
    events.insert(-1, PublicTrade("A", 3_100, "late", 4500, 1, YES))  # recorded first, stamped later
    events.insert(-1, BookDelta("A", 4, 3_200, YES, 4500, 5))
    market = only(check_session(events, session_id=1))
    assert market.stamped_after_resolution == 2 and market.after_resolution == 0
    assert (
        "2 events recorded before the resolution but stamped after its time (dropped: the market ends at the "
        "resolution's time)"
    ) in market.problems(60_000)


def test_a_short_one_sided_spell_is_a_minor_line_not_left_out():
    events = clean()
    events.insert(3, BookDelta("A", 3, 2_800, NO, 5300, -300))  # the NO side empties 0.2 s before the end
    report = check_session(events, session_id=1)
    market = only(report)
    assert market.one_sided_ms == 200
    assert "A: a side of the book empty for 0.2 s of 3.0 s (minor: under 10%)" in report.problems()
