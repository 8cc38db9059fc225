"""The exchange's view of a tape: the book at any log cursor, exactly."""

from adapters.simulated_exchange import ReplayedMarket
from application.replay import ReplayConfig, compile_market
from domain.events import BookDelta, BookSnapshot, MarketResolved
from domain.values import Side

YES, NO = Side.YES, Side.NO


def market(depth_levels=2):
    events = [
        BookSnapshot("T", 1, 0, yes=((4300, 30), (4400, 10), (4500, 20)), no=((5300, 5),)),
        BookDelta("T", 2, 400, YES, 4500, -20),  # the best YES bid leaves
        BookDelta("T", 3, 600, NO, 5200, 7),
        BookDelta("T", 4, 1500, YES, 4600, 9),
        MarketResolved("T", 2000, YES),
    ]
    config = ReplayConfig(step_ms=1000, depth_levels=depth_levels)
    tape = compile_market(events, ticker="T", session_id=1, config=config)
    return ReplayedMarket(tape)


def test_the_size_of_any_level_at_any_cursor_comes_from_the_log():
    replayed = market()
    start = replayed.log_offsets[1]  # the book at row 0 (t = 0): the snapshot
    assert replayed.level_size(YES, 4500, start) == 20
    assert replayed.level_size(YES, 4300, start) == 30  # deeper than the 2 levels rows keep
    assert replayed.level_size(YES, 4700, start) == 0
    assert replayed.level_size(YES, 4500, start + 1) == 0  # after the delta at 400 ms
    assert replayed.level_size(YES, 4600, replayed.log_offsets[-1]) == 9


def test_the_bids_between_rows_are_the_row_updated_by_the_log_up_to_the_cursor():
    replayed = market()
    start = replayed.log_offsets[1]
    assert replayed.bids_at(YES, 0, start) == {4500: 20, 4400: 10}
    assert replayed.bids_at(YES, 0, start + 1) == {4400: 10}  # 4300 is deeper than the row kept
    assert replayed.bids_at(NO, 0, start + 2) == {5300: 5, 5200: 7}


def test_rows_are_kept_as_visible_levels_best_first():
    replayed = market()
    assert replayed.bids[0] == ([(4500, 20), (4400, 10)], [(5300, 5)])
    assert replayed.bids[1] == ([(4400, 10), (4300, 30)], [(5300, 5), (5200, 7)])
    assert replayed.times == [0, 1000, 2000] and replayed.last_row == 2
