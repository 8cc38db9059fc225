import numpy as np
import pytest

from domain.actions import (
    ACTION_COUNT,
    Action,
    ActionConfig,
    ActionDecoder,
    ActionError,
    PricingStrategy,
    cash_required,
)
from domain.fees import FeeSchedule
from domain.orders import OrderSide
from domain.values import MONEY_SCALE, ONE_CONTRACT

TEN = 10 * ONE_CONTRACT
FEES = FeeSchedule.kalshi_standard()


def decoder(pricing="aggressive", **kwargs):
    return ActionDecoder(ActionConfig(pricing=pricing, **kwargs), FEES)


# YES bid 0.45, YES ask 0.48 (so NO bid 0.52, NO ask 0.55).
BID, ASK = 4500, 4800


@pytest.mark.parametrize(
    ("pricing", "action", "side", "price"),
    [
        # aggressive: a buy pays the ask, a sell takes the bid
        ("aggressive", Action.BUY_YES, OrderSide.BID, ASK),
        ("aggressive", Action.SELL_YES, OrderSide.ASK, BID),
        ("aggressive", Action.BUY_NO, OrderSide.ASK, BID),  # NO at its ask 0.55 = ask at 1 - 0.55
        ("aggressive", Action.SELL_NO, OrderSide.BID, ASK),  # NO at its bid 0.52 = bid at 1 - 0.52
        # passive: a buy joins the bid, a sell joins the ask
        ("passive", Action.BUY_YES, OrderSide.BID, BID),
        ("passive", Action.SELL_YES, OrderSide.ASK, ASK),
        ("passive", Action.BUY_NO, OrderSide.ASK, ASK),  # NO at its bid 0.52
        ("passive", Action.SELL_NO, OrderSide.BID, BID),  # NO at its ask 0.55
        # mid 0.465: a bid rounds down to 0.46, an ask up to 0.47
        ("mid", Action.BUY_YES, OrderSide.BID, 4600),
        ("mid", Action.SELL_YES, OrderSide.ASK, 4700),
        ("mid", Action.BUY_NO, OrderSide.ASK, 4700),  # NO at 0.53, never above the NO mid 0.535
        ("mid", Action.SELL_NO, OrderSide.BID, 4600),
    ],
)
def test_each_action_and_pricing_maps_to_one_order_on_the_yes_ladder(pricing, action, side, price):
    position = {Action.SELL_YES: TEN, Action.SELL_NO: -TEN}.get(action, 0)
    order = decoder(pricing).order(action, BID, ASK, position)
    assert order == (side, price, TEN)


def test_hold_places_nothing():
    assert decoder().order(Action.HOLD, BID, ASK, 0) is None


def test_decode_builds_the_order_request_and_sells_are_reduce_only():
    request = decoder().decode(Action.SELL_YES, ticker="T", yes_bid=BID, yes_ask=ASK, position=TEN, client_order_id="c1")
    assert (request.ticker, request.side, request.price, request.count) == ("T", OrderSide.ASK, BID, TEN)
    assert request.reduce_only and request.client_order_id == "c1"
    buy = decoder().decode(Action.BUY_NO, ticker="T", yes_bid=BID, yes_ask=ASK, position=0, client_order_id="c2")
    assert not buy.reduce_only


def test_sells_never_exceed_the_holding():
    assert decoder().order(Action.SELL_YES, BID, ASK, 3 * ONE_CONTRACT)[2] == 3 * ONE_CONTRACT
    assert decoder().order(Action.SELL_NO, BID, ASK, -250)[2] == 250


def test_buys_stop_at_the_position_limit_on_either_side():
    limited = decoder(max_position=25 * ONE_CONTRACT)
    assert limited.order(Action.BUY_YES, BID, ASK, 20 * ONE_CONTRACT)[2] == 5 * ONE_CONTRACT
    assert limited.order(Action.BUY_YES, BID, ASK, 25 * ONE_CONTRACT) is None
    assert limited.order(Action.BUY_NO, BID, ASK, -25 * ONE_CONTRACT) is None
    # buying YES while holding NO closes NO first: the limit is far away
    assert limited.order(Action.BUY_YES, BID, ASK, -25 * ONE_CONTRACT)[2] == TEN


def test_an_empty_side_has_no_price():
    assert decoder().order(Action.BUY_YES, BID, -1, 0) is None  # no ask to take
    assert decoder().order(Action.BUY_NO, -1, ASK, 0) is None  # no YES bid to sell into
    assert decoder("passive").order(Action.BUY_YES, -1, ASK, 0) is None
    assert decoder("mid").order(Action.BUY_YES, BID, -1, 0) is None


def test_an_unknown_action_is_refused_with_the_valid_range():
    with pytest.raises(ActionError, match="0..4"):
        decoder().order(7, BID, ASK, 0)


def test_cash_required_is_the_opening_cost_plus_the_dearest_fee():
    # 10 YES at 0.45: $4.50, fee 0.07 x 10 x 0.45 x 0.55 = $0.17325 -> $0.18.
    assert cash_required(OrderSide.BID, 4500, TEN, 0, FEES) == 4_500_000 + 180_000
    # 10 NO at 0.55 (an ask at 0.45): $5.50; fills at or above 0.45 can reach 0.50: fee $0.175 -> $0.18.
    assert cash_required(OrderSide.ASK, 4500, TEN, 0, FEES) == 5_500_000 + 180_000
    # closing 10 YES costs only the fee
    assert cash_required(OrderSide.ASK, 4500, TEN, TEN, FEES) == 180_000
    # a bid of 10 while holding 4 NO: 4 close, 6 open at 0.45
    assert cash_required(OrderSide.BID, 4500, TEN, -4 * ONE_CONTRACT, FEES) == 6 * 450_000 + 180_000


def test_the_mask_allows_hold_and_what_is_possible():
    mask = np.zeros(ACTION_COUNT, dtype=bool)
    decoder().mask(mask, yes_bid=BID, yes_ask=ASK, position=0, buying_power=100 * MONEY_SCALE)
    assert mask.tolist() == [True, True, False, True, False]  # nothing to sell when flat
    decoder().mask(mask, yes_bid=BID, yes_ask=ASK, position=TEN, buying_power=100 * MONEY_SCALE)
    assert mask.tolist() == [True, True, True, True, False]
    decoder().mask(mask, yes_bid=-1, yes_ask=-1, position=TEN, buying_power=100 * MONEY_SCALE)
    assert mask.tolist() == [True, False, False, False, False]


def test_the_mask_refuses_what_the_account_cannot_pay_for():
    mask = np.zeros(ACTION_COUNT, dtype=bool)
    buy_yes = cash_required(OrderSide.BID, ASK, TEN, 0, FEES)
    decoder().mask(mask, yes_bid=BID, yes_ask=ASK, position=0, buying_power=buy_yes)
    assert mask[Action.BUY_YES]
    decoder().mask(mask, yes_bid=BID, yes_ask=ASK, position=0, buying_power=buy_yes - 1)
    assert not mask[Action.BUY_YES]
    assert mask[Action.HOLD]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order_size": 0}, "order_size"),
        ({"max_position": 5, "order_size": 10}, "max_position"),
        ({"tick": 3}, "tick"),
        ({"pricing": "greedy"}, "greedy"),
    ],
)
def test_a_bad_action_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ActionConfig(**kwargs)


def test_pricing_accepts_its_name():
    assert ActionConfig(pricing="mid").pricing is PricingStrategy.MID
