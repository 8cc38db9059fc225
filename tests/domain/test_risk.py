import pytest

from domain.orders import OrderSide
from domain.risk import (
    DAY_MS,
    DailyLoss,
    RiskError,
    RiskLimits,
    check_account,
    check_order,
)
from domain.values import MONEY_SCALE, ONE_CONTRACT

LIMITS = RiskLimits(max_position=20 * ONE_CONTRACT, max_open_orders=2, max_daily_loss=5 * MONEY_SCALE)


@pytest.mark.parametrize("field", ["max_position", "max_open_orders", "max_daily_loss"])
@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_limits_refuse_non_positive_integers(field, bad):
    values = {"max_position": 1, "max_open_orders": 1, "max_daily_loss": 1, field: bad}
    with pytest.raises(RiskError, match=field):
        RiskLimits(**values)


def test_an_account_within_its_limits_passes():
    positions = {"A": 20 * ONE_CONTRACT, "B": -20 * ONE_CONTRACT}
    assert check_account(LIMITS, positions=positions, open_orders=2, daily_loss=5 * MONEY_SCALE) is None
    assert check_account(LIMITS, positions={}, open_orders=0, daily_loss=-100 * MONEY_SCALE) is None


def test_each_limit_passed_is_a_breach_naming_it():
    short = check_account(LIMITS, positions={"A": -20 * ONE_CONTRACT - 1}, open_orders=0, daily_loss=0)
    assert short is not None and short.limit == "max_position"
    assert "A" in short.reason and "-20.01" in short.reason and "RL_ACTOR_MAX_POSITION" in short.reason

    orders = check_account(LIMITS, positions={}, open_orders=3, daily_loss=0)
    assert orders is not None and orders.limit == "max_open_orders" and "3 orders" in orders.reason

    loss = check_account(LIMITS, positions={}, open_orders=0, daily_loss=5 * MONEY_SCALE + 1)
    assert loss is not None and loss.limit == "max_daily_loss"
    assert "$5.00" in loss.reason and "RL_ACTOR_MAX_DAILY_LOSS" in loss.reason


def test_an_order_that_could_pass_the_position_limit_is_refused_before_it_is_sent():
    ten = 10 * ONE_CONTRACT
    assert check_order(LIMITS, ticker="A", side=OrderSide.BID, count=ten, position=ten, other_open_orders=0) is None
    reason = check_order(LIMITS, ticker="A", side=OrderSide.BID, count=ten + 1, position=ten, other_open_orders=0)
    assert reason is not None and "20.01" in reason
    # Buying NO (an ask) grows a NO position the same way.
    assert check_order(LIMITS, ticker="A", side=OrderSide.ASK, count=ten + 1, position=-ten, other_open_orders=0)


def test_an_order_that_reduces_a_position_is_allowed_even_beyond_the_limit():
    over = 30 * ONE_CONTRACT  # adopted from the exchange, say
    assert check_order(LIMITS, ticker="A", side=OrderSide.ASK, count=ONE_CONTRACT, position=over, other_open_orders=0) is None


def test_an_order_beyond_the_open_order_limit_is_refused():
    assert check_order(LIMITS, ticker="A", side=OrderSide.BID, count=1, position=0, other_open_orders=1) is None
    reason = check_order(LIMITS, ticker="A", side=OrderSide.BID, count=1, position=0, other_open_orders=2)
    assert reason is not None and "3 open orders" in reason


def test_the_daily_loss_is_measured_from_the_first_valuation_of_each_utc_day():
    daily = DailyLoss()
    day = 20_000 * DAY_MS
    assert daily.update(day + 5, 100 * MONEY_SCALE) == 0
    assert daily.update(day + 10, 97 * MONEY_SCALE) == 3 * MONEY_SCALE
    assert daily.update(day + 20, 101 * MONEY_SCALE) == -1 * MONEY_SCALE
    assert daily.update(day + DAY_MS, 90 * MONEY_SCALE) == 0  # a new day starts from its first value
    assert daily.update(day + DAY_MS + 1, 89 * MONEY_SCALE) == 1 * MONEY_SCALE
