"""The reward function and episode statistics against hand-computed series."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.rewards import EpisodeStats, RewardFunction
from domain.values import ONE_CONTRACT

DOLLAR = 1_000_000  # micro-dollars


def stats_for(values: list[int], initial: int = 100 * DOLLAR) -> EpisodeStats:
    stats = EpisodeStats(initial)
    for value in values:
        stats.record_step(value)
    return stats


# -- reward -----------------------------------------------------------------------------------


def test_reward_is_the_value_change_in_dollars_by_default():
    assert RewardFunction().reward(1_500_000, 10 * ONE_CONTRACT) == 1.5


def test_reward_scales_and_penalises_inventory_on_either_side():
    reward = RewardFunction(scale=10.0, inventory_penalty=0.01)

    # 0.25 dollars x 10 - 0.01 x 3 contracts
    assert reward.reward(250_000, 3 * ONE_CONTRACT) == pytest.approx(2.5 - 0.03)
    assert reward.reward(250_000, -3 * ONE_CONTRACT) == pytest.approx(2.5 - 0.03)
    assert reward.reward(-100_000, 50) == pytest.approx(-1.0 - 0.005)  # half a contract


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": math.nan}, "scale must be a finite number"),
        ({"scale": "1"}, "scale must be a finite number"),
        ({"inventory_penalty": -0.1}, "inventory_penalty must not be negative"),
        ({"inventory_penalty": math.inf}, "inventory_penalty must be a finite number"),
    ],
)
def test_bad_reward_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewardFunction(**kwargs)


# -- episode statistics -----------------------------------------------------------------------


def test_total_return_in_dollars_and_as_a_fraction():
    summary = stats_for([101 * DOLLAR, 99 * DOLLAR, 110 * DOLLAR]).summary()

    assert summary.total_return == 10 * DOLLAR
    assert summary.total_return_dollars == 10.0
    assert summary.total_return_fraction == 0.10
    assert (summary.steps, summary.final_value) == (3, 110 * DOLLAR)


def test_sharpe_ratio_of_per_step_returns():
    # changes of +2, -1, +2, +1 dollars on $100: returns 0.02, -0.01, 0.02, 0.01
    # mean 0.01; sample variance (0.0001 + 0.0004 + 0.0001 + 0) / 3 = 0.0002
    stats = stats_for([102 * DOLLAR, 101 * DOLLAR, 103 * DOLLAR, 104 * DOLLAR])

    assert stats.sharpe_ratio() == pytest.approx(0.01 / math.sqrt(0.0002))
    annualised = 0.01 / math.sqrt(0.0002) * math.sqrt(252)
    assert stats.sharpe_ratio(periods_per_year=252) == pytest.approx(annualised)


@pytest.mark.parametrize("values", [[], [105 * DOLLAR], [101 * DOLLAR, 102 * DOLLAR, 103 * DOLLAR]])
def test_sharpe_ratio_is_zero_without_variation(values):
    assert stats_for(values).sharpe_ratio() == 0.0


def test_a_flat_episode():
    summary = stats_for([100 * DOLLAR] * 5).summary()

    assert (summary.total_return, summary.sharpe_ratio, summary.max_drawdown) == (0, 0.0, 0)
    assert summary.max_drawdown_fraction == 0.0
    assert summary.win_rate is None


def test_maximum_drawdown_in_dollars_and_as_a_fraction_of_the_peak():
    # the deepest trough is 20 under the peak of 120; the recovery to 60 does not shrink it
    values = [120, 90, 100, 40, 20, 60]
    summary = stats_for([v * DOLLAR for v in values]).summary()

    assert summary.max_drawdown == 100 * DOLLAR  # 120 -> 20
    assert summary.max_drawdown_dollars == 100.0
    assert summary.max_drawdown_fraction == pytest.approx(100 / 120)


def test_dollar_and_fractional_drawdowns_can_come_from_different_peaks():
    # 100 -> 60 loses 40 (40%); then a new peak of 200 -> 140 loses 60 (30%)
    summary = stats_for([v * DOLLAR for v in [60, 200, 140, 180]]).summary()

    assert summary.max_drawdown == 60 * DOLLAR
    assert summary.max_drawdown_fraction == pytest.approx(0.40)


def test_drawdown_counts_from_the_initial_value():
    summary = stats_for([95 * DOLLAR]).summary()

    assert summary.max_drawdown == 5 * DOLLAR
    assert summary.max_drawdown_fraction == pytest.approx(0.05)


def test_fills_fees_and_win_rate():
    stats = EpisodeStats(100 * DOLLAR)
    for fee in (10_000, 20_000, 20_000):
        stats.record_fill(fee)
    for realized in (500_000, 0, -200_000, 1):  # breakeven is not a win
        stats.record_closed_trade(realized)

    summary = stats.summary()
    assert (summary.trades, summary.fees_paid, summary.fees_paid_dollars) == (3, 50_000, 0.05)
    assert summary.win_rate == 0.5


def test_summary_as_a_dict_for_logging():
    stats = stats_for([101 * DOLLAR])
    stats.record_fill(10_000)
    stats.record_closed_trade(1)

    assert stats.summary().as_dict() == {
        "steps": 1,
        "trades": 1,
        "fees_paid": 0.01,
        "total_return": 1.0,
        "total_return_fraction": 0.01,
        "sharpe_ratio": 0.0,
        "max_drawdown": 0.0,
        "max_drawdown_fraction": 0.0,
        "win_rate": 1.0,
    }


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=2, max_size=60))
def test_statistics_agree_with_a_direct_computation(values):
    initial = 10**9
    stats = stats_for(values, initial)

    returns = [(b - a) / initial for a, b in zip([initial, *values], values)]
    stdev = statistics.stdev(returns)
    expected_sharpe = statistics.fmean(returns) / stdev if stdev > 0 else 0.0
    peaks = [max([initial, *values[: i + 1]]) for i in range(len(values))]

    assert stats.sharpe_ratio() == pytest.approx(expected_sharpe, rel=1e-6, abs=1e-9)
    assert stats.max_drawdown == max(p - v for p, v in zip(peaks, values))
    assert stats.max_drawdown_fraction == pytest.approx(max((p - v) / p for p, v in zip(peaks, values)))
    assert stats.total_return == values[-1] - initial


@pytest.mark.parametrize("initial", [0, -1, 1.5])
def test_initial_value_must_be_positive_micro_dollars(initial):
    with pytest.raises(ValueError, match="initial portfolio value"):
        EpisodeStats(initial)


def test_portfolio_values_must_be_micro_dollar_integers():
    with pytest.raises(ValueError, match="portfolio value must be an integer"):
        EpisodeStats(DOLLAR).record_step(1.5)


def test_annualisation_factor_must_be_positive():
    with pytest.raises(ValueError, match="periods_per_year must be positive"):
        EpisodeStats(DOLLAR).sharpe_ratio(periods_per_year=0)
