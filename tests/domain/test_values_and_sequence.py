"""Fixed-point parsing and the sequence check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.sequence import SeqStatus, SequenceCheck
from domain.values import (
    FixedPointError,
    Side,
    count_from_contracts,
    format_fixed,
    format_money,
    parse_count,
    parse_fixed,
    parse_price,
    price_from_cents,
)


@pytest.mark.parametrize(
    "wire, units",
    [("0.4500", 4500), ("0.0010", 10), ("1.0000", 10000), ("0", 0), (0.45, 4500), (1, 10000), ("0.45", 4500)],
)
def test_prices_parse_exactly(wire, units):
    assert parse_price(wire) == units


@pytest.mark.parametrize("wire, units", [("120.00", 12000), ("-3.00", -300), ("0.5", 50), (2, 200), (-1.25, -125)])
def test_counts_parse_exactly(wire, units):
    assert parse_count(wire) == units


@pytest.mark.parametrize(
    "bad, message",
    [
        ("0.45001", "more than 4 decimal places"),
        ("1.0001", "outside"),
        ("-0.01", "outside"),
        ("abc", "not a decimal"),
        ("", "not a decimal"),
        (None, "expected a decimal"),
        (True, "expected a decimal"),
        (float("nan"), "not a finite"),
    ],
)
def test_bad_prices_are_refused_with_the_reason(bad, message):
    with pytest.raises(FixedPointError, match=message):
        parse_price(bad)


def test_trailing_zeros_beyond_precision_are_not_rounding():
    assert parse_fixed("0.450000", 4) == 4500


def test_legacy_units():
    assert price_from_cents(45) == 4500
    assert count_from_contracts(3) == 300
    with pytest.raises(FixedPointError):
        price_from_cents(101)
    with pytest.raises(FixedPointError):
        price_from_cents(45.0)  # type: ignore[arg-type]


@given(st.integers(-10**12, 10**12), st.integers(0, 8))
def test_format_and_parse_round_trip(number, decimals):
    assert parse_fixed(format_fixed(number, decimals), decimals) == number


def test_money_formatting_rounds_half_away_from_zero():
    assert format_money(17_500, 4) == "0.0175"
    assert format_money(1_005_000) == "1.01"
    assert format_money(-1_005_000) == "-1.01"


def test_side_parsing():
    assert Side.parse("yes") is Side.YES and Side.parse("no") is Side.NO
    assert Side.YES.other is Side.NO
    with pytest.raises(ValueError, match="'maybe'"):
        Side.parse("maybe")


def test_sequence_in_order_duplicate_and_gap():
    check = SequenceCheck()
    assert check.check(5) is SeqStatus.UNSYNCED
    check.start(1)
    assert check.check(2) is SeqStatus.IN_ORDER
    assert check.check(2) is SeqStatus.DUPLICATE
    assert check.check(1) is SeqStatus.DUPLICATE
    assert check.check(3) is SeqStatus.IN_ORDER
    assert check.check(5) is SeqStatus.GAP
    assert not check.in_sync
    assert check.check(6) is SeqStatus.UNSYNCED  # nothing applies until a fresh snapshot
    check.start(1)
    assert check.check(2) is SeqStatus.IN_ORDER
    assert (check.gaps, check.duplicates) == (1, 2)
