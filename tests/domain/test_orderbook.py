"""The order book: Kalshi semantics, hand-checked cases, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import BookDelta, BookSnapshot
from domain.orderbook import NO_PRICE, BookError, OrderBook
from domain.values import LADDER_SIZE, ONE_DOLLAR, Side

YES, NO = Side.YES, Side.NO


def book_from(yes, no) -> OrderBook:
    book = OrderBook("T")
    book.apply_snapshot(yes, no)
    return book


def test_empty_book_has_no_prices():
    book = OrderBook("T")
    assert book.yes_bid == book.no_bid == book.yes_ask == book.no_ask == NO_PRICE
    assert book.spread() is None and book.mid() is None
    assert not book.is_crossed() and not book.is_locked()
    assert book.depth(YES, 5) == []


def test_snapshot_from_the_protocol_page():
    # yes_dollars_fp [["0.4500","120.00"],["0.4700","3.00"]], no_dollars_fp [["0.4800","2.00"]]
    book = book_from([(4500, 12000), (4700, 300)], [(4800, 200)])
    assert book.yes_bid == 4700
    assert book.no_bid == 4800
    assert book.yes_ask == ONE_DOLLAR - 4800 == 5200
    assert book.no_ask == ONE_DOLLAR - 4700 == 5300
    assert book.spread() == 500
    assert book.mid() == 4950.0
    assert book.depth(YES, 5) == [(4700, 300), (4500, 12000)]
    assert book.levels(YES) == ((4500, 12000), (4700, 300))
    assert book.quantity_at(YES, 4500) == 12000
    assert book.quantity_at(YES, 4600) == 0


def test_mid_is_exact_on_half_units():
    book = book_from([(4501, 100)], [(5000, 100)])
    assert book.mid() == 4750.5


def test_delta_adds_reduces_and_removes_levels():
    book = book_from([(4500, 12000), (4700, 300)], [(4800, 200)])
    assert book.apply_delta(YES, 4700, -300) == 0  # the best level goes: next best takes over
    assert book.yes_bid == 4500
    assert book.apply_delta(YES, 4600, 150) == 150
    assert book.yes_bid == 4600
    assert book.apply_delta(YES, 4600, 25) == 175
    assert book.apply_delta(NO, 4800, -500) == 0  # below zero is gone, as on Kalshi
    assert book.no_bid == NO_PRICE and book.yes_ask == NO_PRICE
    assert book.spread() is None


def test_fractional_counts_accumulate_exactly():
    book = OrderBook("T")
    for _ in range(10):
        book.apply_delta(YES, 10, 1)  # 0.01 contracts at $0.0010, ten times
    assert book.quantity_at(YES, 10) == 10
    assert book.yes_bid == 10


def test_crossed_and_locked():
    assert book_from([(5000, 1)], [(5000, 1)]).is_locked()
    assert not book_from([(5000, 1)], [(5000, 1)]).is_crossed()
    assert book_from([(5100, 1)], [(5000, 1)]).is_crossed()
    assert book_from([(4900, 1)], [(5000, 1)]).spread() == 100


def test_snapshot_replaces_everything():
    book = book_from([(4500, 1)], [(4800, 2)])
    book.apply_snapshot([(100, 5)], [])
    assert book.levels(YES) == ((100, 5),)
    assert book.levels(NO) == ()
    assert book.no_bid == NO_PRICE


@pytest.mark.parametrize(
    "yes, message",
    [([(4500, 0)], "count 0"), ([(LADDER_SIZE, 5)], "off the ladder"), ([(10, 1), (10, 2)], "repeats price")],
)
def test_snapshot_refuses_corrupt_levels(yes, message):
    with pytest.raises(BookError, match=message):
        OrderBook("T").apply_snapshot(yes, [])


def test_apply_accepts_events():
    book = OrderBook("T")
    book.apply(BookSnapshot("T", 1, 0, ((4500, 100),), ((5000, 100),)))
    book.apply(BookDelta("T", 2, 0, Side.NO, 5100, 300))
    assert book.no_bid == 5100 and book.yes_ask == 4900
    with pytest.raises(BookError):
        book.apply("not an event")  # type: ignore[arg-type]


def test_copy_and_equality():
    book = book_from([(4500, 1)], [(4800, 2)])
    twin = book.copy()
    assert twin == book
    twin.apply_delta(YES, 4500, 1)
    assert twin != book
    assert book.quantity_at(YES, 4500) == 1


# -- properties ------------------------------------------------------------------------------
prices = st.integers(min_value=0, max_value=ONE_DOLLAR)
counts = st.integers(min_value=1, max_value=1_000_000)
levels = st.dictionaries(prices, counts, max_size=30).map(lambda d: sorted(d.items()))


@st.composite
def book_and_deltas(draw):
    """A snapshot, then deltas that never drive a level below zero (so each has an inverse)."""
    yes, no = draw(levels), draw(levels)
    book = book_from(yes, no)
    deltas = []
    for _ in range(draw(st.integers(0, 60))):
        side = draw(st.sampled_from([YES, NO]))
        existing = book.levels(side)
        if existing and draw(st.booleans()):
            price, have = draw(st.sampled_from(existing))
            delta = -draw(st.integers(1, have))
        else:
            price, delta = draw(prices), draw(counts)
        book.apply_delta(side, price, delta)
        deltas.append((side, price, delta))
    return yes, no, deltas


@settings(max_examples=300, deadline=None)
@given(book_and_deltas())
def test_deltas_then_inverses_restore_the_book(case):
    yes, no, deltas = case
    book = book_from(yes, no)
    original = book.copy()
    for side, price, delta in deltas:
        book.apply_delta(side, price, delta)
    for side, price, delta in reversed(deltas):
        book.apply_delta(side, price, -delta)
    assert book == original
    assert book.yes_bid == original.yes_bid and book.no_bid == original.no_bid
    assert book.levels(YES) == tuple(yes) and book.levels(NO) == tuple(no)


@settings(max_examples=300, deadline=None)
@given(book_and_deltas())
def test_asks_are_one_dollar_minus_the_other_sides_best_bid(case):
    yes, no, deltas = case
    book = book_from(yes, no)
    for side, price, delta in deltas:
        book.apply_delta(side, price, delta)
        for s in (YES, NO):
            bids = book.levels(s)
            best = bids[-1][0] if bids else NO_PRICE
            assert book.best_bid(s) == best  # the cached best is the true best
            other = book.levels(s.other)
            assert book.best_ask(s) == (ONE_DOLLAR - other[-1][0] if other else NO_PRICE)
        assert book.yes_ask == book.best_ask(YES) and book.no_ask == book.best_ask(NO)


@settings(max_examples=200, deadline=None)
@given(book_and_deltas())
def test_replaying_a_stream_matches_a_snapshot_of_its_end_state(case):
    yes, no, deltas = case
    live = book_from(yes, no)
    for side, price, delta in deltas:
        live.apply_delta(side, price, delta)
    rebuilt = book_from(live.levels(YES), live.levels(NO))
    assert rebuilt == live
    assert rebuilt.depth(YES, 5) == live.depth(YES, 5)
