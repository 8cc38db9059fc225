"""Kalshi's fee formula against hand-computed amounts."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.fees import FeeError, FeeSchedule
from domain.values import ONE_CONTRACT, ONE_DOLLAR, parse_count, parse_price

FOUR_DECIMAL_ACCOUNT = 100  # an account with $0.0001 precision


def fee(schedule: FeeSchedule, contracts: str, price: str, *, is_taker: bool = True) -> int:
    return schedule.fee(parse_count(contracts), parse_price(price), is_taker=is_taker)


@pytest.mark.parametrize(
    "contracts, price, account_increment, micros",
    [
        # 0.07 x 1 x 0.52 x 0.48 = 0.017472 -> 0.0175 (the recorded fee) -> 0.02 on a cent account
        ("1", "0.52", FOUR_DECIMAL_ACCOUNT, 17_500),
        ("1", "0.52", 10_000, 20_000),
        # 0.07 x 100 x 0.25 = 1.75 exactly: no rounding
        ("100", "0.50", 10_000, 1_750_000),
        ("100", "0.50", FOUR_DECIMAL_ACCOUNT, 1_750_000),
        # 0.07 x 1 x 0.01 x 0.99 = 0.000693 -> 0.0007 -> 0.01
        ("1", "0.01", FOUR_DECIMAL_ACCOUNT, 700),
        ("1", "0.01", 10_000, 10_000),
        # 0.07 x 0.5 x 0.52 x 0.48 = 0.008736 -> 0.0088 -> 0.01
        ("0.50", "0.52", FOUR_DECIMAL_ACCOUNT, 8_800),
        ("0.50", "0.52", 10_000, 10_000),
        # 0.07 x 10 x 0.3 x 0.7 = 0.147 -> 0.147 -> 0.15
        ("10", "0.30", FOUR_DECIMAL_ACCOUNT, 147_000),
        ("10", "0.30", 10_000, 150_000),
        # sub-cent price: 0.07 x 3 x 0.1234 x 0.8766 = 0.02271673... -> 0.0228 -> 0.03
        ("3", "0.1234", FOUR_DECIMAL_ACCOUNT, 22_800),
        ("3", "0.1234", 10_000, 30_000),
    ],
)
def test_taker_fee(contracts, price, account_increment, micros):
    schedule = FeeSchedule.kalshi_standard(account_increment_micros=account_increment)
    assert fee(schedule, contracts, price) == micros


@pytest.mark.parametrize(
    "contracts, price, account_increment, micros",
    [
        # 0.0175 x 1 x 0.52 x 0.48 = 0.004368 -> 0.0044 -> 0.01
        ("1", "0.52", FOUR_DECIMAL_ACCOUNT, 4_400),
        ("1", "0.52", 10_000, 10_000),
        # 0.0175 x 100 x 0.25 = 0.4375 -> 0.4375 -> 0.44
        ("100", "0.50", FOUR_DECIMAL_ACCOUNT, 437_500),
        ("100", "0.50", 10_000, 440_000),
    ],
)
def test_maker_fee_on_series_with_maker_fees(contracts, price, account_increment, micros):
    schedule = FeeSchedule.kalshi_with_maker_fees(account_increment_micros=account_increment)
    assert fee(schedule, contracts, price, is_taker=False) == micros


def test_makers_pay_nothing_on_standard_series():
    assert fee(FeeSchedule.kalshi_standard(), "100", "0.50", is_taker=False) == 0


def test_taker_fee_is_the_same_with_or_without_maker_fees():
    with_maker_fees = fee(FeeSchedule.kalshi_with_maker_fees(), "7", "0.37")
    assert with_maker_fees == fee(FeeSchedule.kalshi_standard(), "7", "0.37")


@pytest.mark.parametrize("price", [0, ONE_DOLLAR])
def test_no_fee_at_a_certain_price(price):
    assert FeeSchedule.kalshi_with_maker_fees().fee(100 * ONE_CONTRACT, price, is_taker=True) == 0


def test_zero_schedule_charges_nothing():
    assert FeeSchedule.zero().fee(100 * ONE_CONTRACT, 5000, is_taker=True) == 0


def test_zero_count_costs_nothing():
    assert FeeSchedule.kalshi_standard().fee(0, 5000, is_taker=True) == 0


@given(
    count=st.integers(min_value=0, max_value=10_000_000),
    price=st.integers(min_value=0, max_value=ONE_DOLLAR),
    taker=st.booleans(),
)
def test_fee_is_symmetric_in_yes_and_no_price(count, price, taker):
    schedule = FeeSchedule.kalshi_with_maker_fees(account_increment_micros=FOUR_DECIMAL_ACCOUNT)
    no_price = ONE_DOLLAR - price
    assert schedule.fee(count, price, is_taker=taker) == schedule.fee(count, no_price, is_taker=taker)


@given(
    count=st.integers(min_value=0, max_value=10_000_000),
    price=st.integers(min_value=0, max_value=ONE_DOLLAR),
    account_increment=st.sampled_from([100, 10_000]),
)
def test_fee_matches_the_formula_in_exact_fractions(count, price, account_increment):
    schedule = FeeSchedule.kalshi_standard(account_increment_micros=account_increment)
    p = Fraction(price, 10_000)
    dollars = Fraction(7, 100) * Fraction(count, 100) * p * (1 - p)
    to_fee_increment = Fraction(math.ceil(dollars * 10_000), 10_000)
    step = Fraction(account_increment, 1_000_000)
    expected = math.ceil(to_fee_increment / step) * step
    assert schedule.fee(count, price, is_taker=True) == expected * 1_000_000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"taker_rate": -1}, "taker_rate must be between 0 and 10000"),
        ({"taker_rate": 700, "maker_rate": 10_001}, "maker_rate must be between 0 and 10000"),
        ({"taker_rate": 0.07}, "taker_rate must be an integer"),
        ({"taker_rate": True}, "taker_rate must be an integer"),
        ({"taker_rate": 7, "fee_increment_micros": 0}, "fee_increment_micros must be a positive"),
        ({"taker_rate": 7, "account_increment_micros": -100}, "account_increment_micros must be a pos"),
        ({"taker_rate": 7, "account_increment_micros": 150}, "must be a multiple of fee_increment"),
    ],
)
def test_impossible_schedules_are_refused(kwargs, message):
    with pytest.raises(FeeError, match=message):
        FeeSchedule(**kwargs)


@pytest.mark.parametrize(
    "count, price, message",
    [
        (-100, 5000, "count must be a non-negative integer"),
        (1.5, 5000, "count must be a non-negative integer"),
        (100, -1, "price must be an integer of price units"),
        (100, ONE_DOLLAR + 1, "price must be an integer of price units"),
        (100, 0.5, "price must be an integer of price units"),
    ],
)
def test_impossible_trades_are_refused(count, price, message):
    with pytest.raises(FeeError, match=message):
        FeeSchedule.kalshi_standard().fee(count, price, is_taker=True)
