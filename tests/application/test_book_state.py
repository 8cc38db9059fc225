"""The shared book state: what the feed writes, what readers and listeners see."""

from __future__ import annotations

import pytest

from application.book_state import BookStatus, SharedBookState, UnknownMarket
from domain.events import BookDelta, BookSnapshot, PublicTrade
from domain.orderbook import BookError, OrderBook
from domain.ports import LiveBooks
from domain.values import Side


def snapshot(ticker: str = "T1", yes=((4500, 1000),), no=((5000, 200),)) -> BookSnapshot:
    return BookSnapshot(ticker, 1, 0, yes=yes, no=no)


def delta(ticker: str = "T1", side: Side = Side.YES, price: int = 4600, size: int = 300) -> BookDelta:
    return BookDelta(ticker, 2, 0, side, price, size)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


def test_it_is_the_port_a_feed_writes():
    assert isinstance(SharedBookState(), LiveBooks)


def test_markets_await_a_snapshot_and_refuse_deltas_until_one_arrives():
    state = SharedBookState(["T1", "T2"])
    assert state.tickers == ("T1", "T2")
    assert state.status("T1") is BookStatus.AWAITING_SNAPSHOT

    assert state.apply(delta()) is False
    assert state.apply(snapshot()) is True
    assert state.apply(delta()) is True

    expected = OrderBook("T1")
    expected.apply_snapshot(((4500, 1000), (4600, 300)), ((5000, 200),))
    assert state.snapshot("T1") == expected
    assert state.status("T1") is BookStatus.IN_SYNC and state.is_in_sync("T1")
    stats = state.stats("T1")
    assert (stats.snapshots, stats.deltas, stats.refused_deltas, stats.invalidations) == (1, 1, 1, 0)


def test_an_invalidated_book_refuses_deltas_until_the_next_snapshot():
    clock = Clock()
    state = SharedBookState(["T1"], now_ms=clock)
    state.apply(snapshot())
    state.await_snapshot("T1")
    state.await_snapshot("T1")  # once invalid, it stays invalid: counted once

    assert state.apply(delta(size=999)) is False
    assert state.snapshot("T1").quantity_at(Side.YES, 4600) == 0
    assert not state.is_in_sync("T1")

    state.apply(snapshot(yes=((4000, 5),)))
    assert state.apply(delta()) is True
    stats = state.stats("T1")
    assert (stats.status, stats.invalidations, stats.refused_deltas) == (BookStatus.IN_SYNC, 1, 1)
    assert stats.last_update_ms == clock.now


def test_a_snapshot_registers_a_market_it_did_not_know():
    state = SharedBookState()
    state.apply(snapshot("NEW"))
    assert state.tickers == ("NEW",)
    assert state.apply(delta("NEW")) is True
    assert state.apply(delta("NEVER-SEEN")) is False  # a delta alone registers nothing
    assert state.tickers == ("NEW",)


def test_snapshot_is_a_copy_the_reader_cannot_use_to_change_the_state():
    state = SharedBookState()
    state.apply(snapshot())
    copy = state.snapshot("T1")
    copy.apply_delta(Side.YES, 4500, -1000)
    assert state.snapshot("T1").quantity_at(Side.YES, 4500) == 1000


def test_listeners_see_each_applied_update_with_the_live_book():
    state = SharedBookState()
    seen_by_all: list[tuple[str, int]] = []
    seen_by_t2: list[tuple[str, int]] = []
    everything = lambda ticker, book: seen_by_all.append((ticker, book.yes_bid))  # noqa: E731
    only_t2 = lambda ticker, book: seen_by_t2.append((ticker, book.yes_bid))  # noqa: E731
    state.subscribe(everything)
    state.subscribe(only_t2, tickers=["T2"])

    state.apply(snapshot("T1"))
    state.apply(delta("T1"))
    state.apply(snapshot("T2", yes=((100, 1),)))
    state.apply(delta("T3"))  # refused: nobody hears of it

    assert seen_by_all == [("T1", 4500), ("T1", 4600), ("T2", 100)]
    assert seen_by_t2 == [("T2", 100)]

    state.unsubscribe(everything)
    state.apply(delta("T1", price=4700))
    state.apply(delta("T2", price=200))
    assert len(seen_by_all) == 3
    assert seen_by_t2[-1] == ("T2", 200)

    state.unsubscribe(only_t2)
    with pytest.raises(ValueError, match="is not subscribed"):
        state.unsubscribe(only_t2)


def test_a_failing_listener_is_counted_and_does_not_stop_the_update_or_the_others(caplog):
    state = SharedBookState()
    heard: list[str] = []

    def broken(ticker: str, book: OrderBook) -> None:
        raise RuntimeError("listener bug")

    state.subscribe(broken)
    state.subscribe(lambda ticker, book: heard.append(ticker))
    assert state.apply(snapshot()) is True

    assert heard == ["T1"]
    assert state.listener_errors == 1
    assert "listener bug" in caplog.text


def test_a_listener_may_unsubscribe_itself_while_it_is_called():
    state = SharedBookState()
    calls: list[str] = []

    def once(ticker: str, book: OrderBook) -> None:
        calls.append(ticker)
        state.unsubscribe(once)

    state.subscribe(once)
    state.apply(snapshot())
    state.apply(delta())
    assert calls == ["T1"]


def test_a_snapshot_the_book_cannot_hold_leaves_the_market_awaiting_a_good_one():
    state = SharedBookState()
    state.apply(snapshot())
    with pytest.raises(BookError):
        state.apply(snapshot(yes=((4500, 10),), no=((5000, 0),)))
    assert state.status("T1") is BookStatus.AWAITING_SNAPSHOT
    assert state.apply(delta()) is False


def test_reads_of_an_unknown_market_and_non_book_events_are_refused():
    state = SharedBookState(["T1"])
    with pytest.raises(UnknownMarket, match="no book for market 'T9'; known: \\['T1'\\]"):
        state.snapshot("T9")
    with pytest.raises(TypeError, match="not a book event"):
        state.apply(PublicTrade("T1", 0, "t", 4500, 100, Side.YES))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty text"):
        SharedBookState([""])
