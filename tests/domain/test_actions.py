import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.actions import (
    ACTION_COUNT,
    Action,
    ActionConfig,
    ActionDecoder,
    ActionError,
    ActionSpace,
    ActionSpaceMismatch,
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
    # Closing 10 YES at 0.45 or better brings in $4.50 at least: the $0.18 fee comes out of it.
    assert cash_required(OrderSide.ASK, 4500, TEN, TEN, FEES) == 0
    # ... unless the sale brings in less than its fee: 10 YES at $0.01 bring $0.10, the fee
    # bounded at $0.50 is $0.18 (0.07 x 10 x 0.25 = $0.175, rounded up): $0.08 from cash.
    assert cash_required(OrderSide.ASK, 100, TEN, TEN, FEES) == 80_000
    # A bid of 10 while holding 4 NO: 4 close (at least $0.55 each: $2.20, more than the fee),
    # 6 open at 0.45.
    assert cash_required(OrderSide.BID, 4500, TEN, -4 * ONE_CONTRACT, FEES) == 6 * 450_000


def test_the_mask_allows_hold_and_what_is_possible():
    mask = np.zeros(ACTION_COUNT, dtype=bool)
    decoder().mask(mask, yes_bid=BID, yes_ask=ASK, position=0, buying_power=100 * MONEY_SCALE)
    assert mask.tolist() == [True, True, False, True, False]  # nothing to sell when flat
    decoder().mask(mask, yes_bid=BID, yes_ask=ASK, position=TEN, buying_power=100 * MONEY_SCALE)
    assert mask.tolist() == [True, True, True, True, False]
    decoder().mask(mask, yes_bid=-1, yes_ask=-1, position=TEN, buying_power=100 * MONEY_SCALE)
    assert mask.tolist() == [True, False, False, False, False]


def test_the_mask_refuses_what_the_account_cannot_pay_for():
    # The bound of one fee, plus a cent: an order that takes part of the touch and rests the rest
    # pays two fees, each rounded up to the cent.
    mask = np.zeros(ACTION_COUNT, dtype=bool)
    buy_yes = cash_required(OrderSide.BID, ASK, TEN, 0, FEES) + FEES.account_increment_micros
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


# ---------------------------------------------------------------------------------------------
# The sized (21-action) space, recording the space with a model, and the mask's definition
# ---------------------------------------------------------------------------------------------
def sized(pricing="aggressive", **kwargs):
    kwargs.setdefault("max_position", 200 * ONE_CONTRACT)
    return ActionDecoder(ActionConfig(pricing=pricing, space=ActionSpace.SIZED, **kwargs), FEES)


def test_the_sized_space_is_hold_and_four_directions_at_five_sizes():
    decoder = sized()
    assert decoder.action_count == 21
    assert decoder.action_names[:7] == (
        "HOLD", "BUY_YES_5", "BUY_YES_10", "BUY_YES_20", "BUY_YES_50", "BUY_YES_100", "SELL_YES_5",
    )  # fmt: skip
    assert decoder.action_names[-1] == "SELL_NO_100"
    assert decoder.order(5, BID, ASK, 0) == (OrderSide.BID, ASK, 100 * ONE_CONTRACT)  # BUY_YES_100
    assert decoder.order(14, BID, ASK, 0) == (OrderSide.ASK, BID, 50 * ONE_CONTRACT)  # BUY_NO_50
    assert decoder.direction(14) is Action.BUY_NO and decoder.direction(0) is Action.HOLD
    request = decoder.decode(8, ticker="T", yes_bid=BID, yes_ask=ASK, position=30 * ONE_CONTRACT, client_order_id="c")
    assert (request.side, request.price, request.count) == (OrderSide.ASK, BID, 20 * ONE_CONTRACT)  # SELL_YES_20
    assert request.reduce_only
    assert ActionConfig(space="sized", sizes=(10, 20, 50, 100)).action_count == 17


def test_a_sized_order_is_cut_to_the_holding_and_to_the_position_limit():
    decoder = sized(max_position=50 * ONE_CONTRACT)
    assert decoder.order(10, BID, ASK, 30 * ONE_CONTRACT)[2] == 30 * ONE_CONTRACT  # SELL_YES_100 sells what is held
    assert decoder.order(5, BID, ASK, 30 * ONE_CONTRACT)[2] == 20 * ONE_CONTRACT  # BUY_YES_100 up to the limit of 50
    assert decoder.order(5, BID, ASK, 50 * ONE_CONTRACT) is None


def test_an_unknown_action_of_the_sized_space_names_its_range():
    with pytest.raises(ActionError, match="0..20 of the 'sized' space"):
        sized().order(21, BID, ASK, 0)
    with pytest.raises(ActionError, match="0..20"):
        sized().order(-1, BID, ASK, 0)


def test_a_model_of_another_action_space_is_refused_with_a_clear_error():
    five, twenty_one = decoder(), sized()
    five.check_model(5)
    twenty_one.check_model(21)
    expected = r"model.zip chooses among 21 actions.*'single-size' action space of 5"
    with pytest.raises(ActionSpaceMismatch, match=expected):
        five.check_model(21, model="model.zip")
    with pytest.raises(ActionSpaceMismatch, match="5 actions.*'sized' action space of 21"):
        twenty_one.check_model(5)


def test_the_action_config_is_recorded_as_plain_values_and_read_back():
    config = ActionConfig(space="sized", pricing="mid", max_position=100 * ONE_CONTRACT)
    recorded = json.loads(json.dumps(config.as_dict()))
    assert recorded["space"] == "sized" and recorded["action_count"] == 21
    assert ActionConfig.from_dict(recorded) == config
    with pytest.raises(ActionSpaceMismatch, match="21 actions, but the record says 5"):
        ActionConfig.from_dict({**recorded, "action_count": 5})
    assert ActionConfig.from_dict(ActionConfig().as_dict()).action_count == ACTION_COUNT == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"space": "huge"}, "single-size, sized"),
        ({"space": "sized", "sizes": (20, 10)}, "ascending"),
        ({"space": "sized", "sizes": ()}, "sizes"),
        ({"space": "sized", "sizes": (1000, 2000), "max_position": 500}, "smallest order"),
    ],
)
def test_a_bad_action_space_config_is_refused(kwargs, message):
    with pytest.raises(ActionError, match=message):
        ActionConfig(**kwargs)


def test_the_sized_mask_allows_the_sizes_the_account_can_pay_for():
    decoder = sized()
    mask = np.zeros(decoder.action_count, dtype=bool)
    twenty = cash_required(OrderSide.BID, ASK, 20 * ONE_CONTRACT, 0, FEES) + FEES.account_increment_micros
    decoder.mask(mask, yes_bid=BID, yes_ask=ASK, position=0, buying_power=twenty)
    assert [decoder.action_names[a] for a in np.flatnonzero(mask)] == [
        "HOLD", "BUY_YES_5", "BUY_YES_10", "BUY_YES_20", "BUY_NO_5", "BUY_NO_10",  # NO at 0.55 costs more
    ]  # fmt: skip


MARKET_PRICES = st.one_of(st.just(-1), st.integers(0, 10_000))


@settings(max_examples=300, deadline=None)
@given(
    space=st.sampled_from(list(ActionSpace)),
    pricing=st.sampled_from(list(PricingStrategy)),
    yes_bid=MARKET_PRICES,
    yes_ask=MARKET_PRICES,
    position=st.integers(-120, 120).map(lambda contracts: contracts * ONE_CONTRACT // 2),
    buying_power=st.integers(0, 150 * MONEY_SCALE),
)
def test_an_action_is_legal_exactly_when_it_decodes_to_an_order_the_account_can_pay_for(
    space, pricing, yes_bid, yes_ask, position, buying_power
):
    decoder = ActionDecoder(ActionConfig(space=space, pricing=pricing, max_position=60 * ONE_CONTRACT), FEES)
    legal = decoder.legal_actions(yes_bid=yes_bid, yes_ask=yes_ask, position=position, buying_power=buying_power)
    expected = [True]
    for action in range(1, decoder.action_count):
        order = decoder.order(action, yes_bid, yes_ask, position)
        rounding = FEES.account_increment_micros  # a split order's second fee rounding
        expected.append(order is not None and cash_required(*order, position, FEES, fee_margin=rounding) <= buying_power)
    assert legal == expected


@settings(max_examples=200, deadline=None)
@given(
    space=st.sampled_from(list(ActionSpace)),
    pricing=st.sampled_from(list(PricingStrategy)),
    yes_bid=MARKET_PRICES,
    yes_ask=MARKET_PRICES,
    position=st.integers(-120, 120).map(lambda contracts: contracts * ONE_CONTRACT // 2),
    surplus=st.integers(0, 10**12),
)
def test_above_the_ample_buying_power_the_mask_no_longer_depends_on_it(
    space, pricing, yes_bid, yes_ask, position, surplus
):
    # The environment caches masks keyed on min(buying power, ample): that is only sound if this holds.
    decoder = ActionDecoder(ActionConfig(space=space, pricing=pricing, max_position=60 * ONE_CONTRACT), FEES)
    ample = decoder.ample_buying_power
    at_ample = decoder.legal_actions(yes_bid=yes_bid, yes_ask=yes_ask, position=position, buying_power=ample)
    above = decoder.legal_actions(yes_bid=yes_bid, yes_ask=yes_ask, position=position, buying_power=ample + surplus)
    assert at_ample == above
    # and it covers the dearest order there is: the largest size, opening at the fee's $0.50 peak
    largest = decoder.config.order_sizes[-1]
    assert cash_required(OrderSide.BID, 5000, largest, 0, FEES) <= ample


def test_orders_are_sized_to_hold_the_limit_whether_open_orders_fill_first_or_not():
    # Limit 50 (the default), 10 a order; 35 YES held and a bid with 10 left still open (its
    # cancel travels with the new order): a new buy gets the 5 that stay under the limit if both
    # fill, and a sale closes no more than would be left if an open ask of 30 filled first.
    d = decoder()
    held = 35 * ONE_CONTRACT
    assert d.order(Action.BUY_YES, BID, ASK, held, open_bids=TEN) == (OrderSide.BID, ASK, 5 * ONE_CONTRACT)
    assert d.order(Action.SELL_YES, BID, ASK, held, open_asks=30 * ONE_CONTRACT) == (OrderSide.ASK, BID, 5 * ONE_CONTRACT)
    assert d.order(Action.BUY_YES, BID, ASK, held, open_bids=15 * ONE_CONTRACT) is None  # no room left
    mask = d.legal_actions(yes_bid=BID, yes_ask=ASK, position=held, buying_power=10**9, open_bids=15 * ONE_CONTRACT)
    assert not mask[Action.BUY_YES] and mask[Action.SELL_YES]
    # The action that would place the working order itself keeps it, whatever the room.
    working = (OrderSide.BID, ASK, TEN)
    request = d.decode(Action.BUY_YES, ticker="T", yes_bid=BID, yes_ask=ASK, position=0, client_order_id="c",
                       working=working, open_bids=TEN)  # fmt: skip
    assert (request.side, request.price, request.count) == working
