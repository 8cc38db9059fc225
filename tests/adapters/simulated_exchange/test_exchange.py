"""Fills with hand-computed expectations. Money in micro-dollars: $1 = 1_000_000."""

import pytest

from adapters.simulated_exchange import SimulatedExchange
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.orders import OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.values import MONEY_SCALE, ONE_CONTRACT, Side

START = 100 * MONEY_SCALE
C = ONE_CONTRACT

# YES bids 0.45 x 20 and 0.44 x 10; NO bids 0.53 x 5 and 0.52 x 10, i.e. YES asks 0.47 x 5, 0.48 x 10.
YES_BIDS = [(4500, 20 * C), (4400, 10 * C)]
NO_BIDS = [(5300, 5 * C), (5200, 10 * C)]


def exchange(cash=START, fees=None):
    ledger = Ledger(cash)
    return SimulatedExchange(ledger, fees or FeeSchedule.kalshi_standard()), ledger


def order(side, price, count, ticker="T", **kwargs):
    return OrderRequest(ticker, side, price, count, "c", **kwargs)


def submit(venue, request, ts_ms=1):
    return venue.submit(request, yes_bids=YES_BIDS, no_bids=NO_BIDS, ts_ms=ts_ms)


def test_a_bid_at_the_ask_fills_at_the_touch_as_a_taker():
    venue, ledger = exchange()
    outcome = submit(venue, order(OrderSide.BID, 4700, 5 * C))
    (execution,) = outcome.executions
    fill = execution.fill
    assert (fill.price, fill.count, fill.is_taker) == (4700, 5 * C, True)
    # fee: 0.07 x 5 x 0.47 x 0.53 = $0.087185 -> $0.0872 -> $0.09
    assert fill.fee == 90_000
    assert ledger.cash == START - 5 * 470_000 - 90_000
    assert ledger.quantity("T") == 5 * C
    assert outcome.order.status is OrderStatus.EXECUTED and venue.resting_order("T") is None


def test_a_bid_through_two_levels_fills_each_at_its_price_for_a_vwap():
    venue, ledger = exchange()
    outcome = submit(venue, order(OrderSide.BID, 4800, 10 * C))
    fills = [execution.fill for execution in outcome.executions]
    assert [(f.price, f.count) for f in fills] == [(4700, 5 * C), (4800, 5 * C)]
    vwap = sum(f.price * f.count for f in fills) / sum(f.count for f in fills)
    assert vwap == 4750
    # fees: 5 at 0.47 -> $0.09; 5 at 0.48: 0.07 x 5 x 0.48 x 0.52 = $0.08736 -> $0.09
    assert [f.fee for f in fills] == [90_000, 90_000]
    assert ledger.cash == START - (5 * 470_000 + 5 * 480_000) - 180_000
    assert ledger.position("T").cost_basis == 4_750_000


def test_an_ask_walks_the_yes_bids_and_buys_no():
    venue, ledger = exchange()
    outcome = submit(venue, order(OrderSide.ASK, 4400, 25 * C))
    assert [(e.fill.price, e.fill.count) for e in outcome.executions] == [(4500, 20 * C), (4400, 5 * C)]
    # NO costs 1 - price: 20 x $0.55 + 5 x $0.56
    fees = sum(e.fill.fee for e in outcome.executions)
    assert ledger.cash == START - (20 * 550_000 + 5 * 560_000) - fees
    assert ledger.quantity("T") == -25 * C


def test_depth_that_runs_out_fills_partially_and_the_rest_rests():
    venue, ledger = exchange()
    outcome = submit(venue, order(OrderSide.BID, 4700, 8 * C))
    assert [e.fill.count for e in outcome.executions] == [5 * C]
    resting = venue.resting_order("T")
    assert resting is outcome.order and resting.status is OrderStatus.RESTING
    assert resting.remaining == 3 * C and resting.price == 4700


def test_an_immediate_or_cancel_remainder_is_cancelled():
    venue, _ = exchange()
    outcome = submit(venue, order(OrderSide.BID, 4700, 8 * C, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL))
    assert outcome.order.filled == 5 * C and outcome.order.status is OrderStatus.CANCELED
    assert venue.resting_order("T") is None


def test_fill_or_kill_is_refused_before_anything_fills_when_depth_is_short():
    venue, ledger = exchange()
    outcome = submit(venue, order(OrderSide.BID, 4800, 16 * C, time_in_force=TimeInForce.FILL_OR_KILL))
    assert outcome.order.status is OrderStatus.REJECTED and "fill-or-kill" in outcome.reason
    assert outcome.executions == () and ledger.cash == START


def test_a_resting_bid_fills_only_when_a_trade_prints_through_it():
    venue, ledger = exchange()
    submit(venue, order(OrderSide.BID, 4500, 10 * C))  # joins the YES bid: nothing crosses
    assert venue.resting_order("T") is not None and ledger.trades == 0
    assert venue.on_trade("T", 4500, 50 * C, ts_ms=2) is None  # at our price: we are last in line
    assert venue.on_trade("T", 4600, 50 * C, ts_ms=2) is None  # above a bid: not through it
    execution = venue.on_trade("T", 4400, 3 * C, ts_ms=3)
    assert (execution.fill.price, execution.fill.count, execution.fill.is_taker) == (4500, 3 * C, False)
    assert execution.fill.fee == 0  # standard series: makers pay nothing
    execution = venue.on_trade("T", 4300, 20 * C, ts_ms=4)
    assert execution.fill.count == 7 * C
    assert venue.resting_order("T") is None
    assert ledger.cash == START - 10 * 450_000 and ledger.quantity("T") == 10 * C


def test_a_resting_ask_fills_when_a_trade_prints_above_it_and_makers_pay_maker_fees():
    venue, ledger = exchange(fees=FeeSchedule.kalshi_with_maker_fees())
    submit(venue, order(OrderSide.ASK, 4700, 10 * C))  # above the 0.45 bid: rests
    execution = venue.on_trade("T", 4800, 10 * C, ts_ms=2)
    # maker fee: 0.0175 x 10 x 0.47 x 0.53 = $0.0435925 -> $0.0436 -> $0.05
    assert (execution.fill.price, execution.fill.fee) == (4700, 50_000)
    assert ledger.cash == START - 10 * 530_000 - 50_000 and ledger.quantity("T") == -10 * C


def test_a_new_order_replaces_the_resting_one():
    venue, _ = exchange()
    first = submit(venue, order(OrderSide.BID, 4500, 10 * C)).order
    second = submit(venue, order(OrderSide.ASK, 4700, 10 * C)).order
    assert first.status is OrderStatus.CANCELED
    assert venue.resting_order("T") is second
    assert venue.on_trade("T", 4400, 10 * C, ts_ms=2) is None  # the cancelled bid no longer fills


def test_closing_a_position_realises_its_pnl():
    venue, ledger = exchange()
    submit(venue, order(OrderSide.BID, 4700, 5 * C))  # 5 YES at 0.47
    outcome = submit(venue, order(OrderSide.ASK, 4500, 5 * C, reduce_only=True))  # sold at 0.45
    (execution,) = outcome.executions
    assert execution.closed == 5 * C and execution.realized_pnl == -5 * 20_000
    assert ledger.quantity("T") == 0


def test_settlement_pays_the_winning_side_and_cancels_the_resting_order():
    venue, ledger = exchange()
    submit(venue, order(OrderSide.BID, 4700, 8 * C))  # 5 filled at 0.47, 3 resting
    cash_before = ledger.cash
    settlement = venue.settle("T", Side.YES)
    assert settlement.payout == 5 * MONEY_SCALE
    assert settlement.closed == 5 * C and settlement.realized_pnl == 5 * MONEY_SCALE - 5 * 470_000
    assert ledger.cash == cash_before + 5 * MONEY_SCALE
    assert venue.resting_order("T") is None and ledger.quantity("T") == 0


def test_a_losing_side_settles_at_zero():
    venue, ledger = exchange()
    submit(venue, order(OrderSide.ASK, 4500, 10 * C))  # 10 NO at 0.55
    settlement = venue.settle("T", Side.YES)
    assert settlement.payout == 0 and settlement.realized_pnl == -10 * 550_000


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (order(OrderSide.ASK, 4500, 5 * C, reduce_only=True), "no position"),
        (order(OrderSide.BID, 4700, 5 * C, post_only=True), "post-only"),
        (order(OrderSide.BID, 4700, 50 * C), "needs"),  # 50 x $0.47 > $10
    ],
)
def test_impossible_orders_are_rejected_with_a_reason_and_touch_nothing(request_, reason):
    venue, ledger = exchange(cash=10 * MONEY_SCALE)
    outcome = submit(venue, request_)
    assert outcome.order.status is OrderStatus.REJECTED and reason in outcome.reason
    assert ledger.cash == 10 * MONEY_SCALE and ledger.trades == 0


def test_cash_reserved_by_a_resting_order_cannot_be_spent_in_another_market():
    venue, _ = exchange(cash=10 * MONEY_SCALE)
    submit(venue, order(OrderSide.BID, 4000, 20 * C, ticker="A"))  # rests: reserves $8 + fee bound
    assert venue.buying_power() < 2 * MONEY_SCALE
    assert venue.buying_power("A") == 10 * MONEY_SCALE  # a new order in A would replace it
    outcome = submit(venue, order(OrderSide.BID, 4700, 5 * C, ticker="B"))
    assert outcome.order.status is OrderStatus.REJECTED
