"""Fills with hand-computed expectations. Money in micro-dollars: $1 = 1_000_000.

Each test runs against both implementations: the reference :class:`SimulatedExchange` and the
compiled one (:class:`CompiledExchange`), except those about what only the reference does
(amends, several markets, the probabilistic queue model), marked ``reference_only``.

Every market starts from the same book -- YES bids 0.45 x 20 and 0.44 x 10; NO bids 0.53 x 5 and
0.52 x 10, i.e. YES asks 0.47 x 5 and 0.48 x 10 -- and resolves at t = 10 s; the replay grid is
one row per second. Latency is 0 unless a test is about latency.
"""

import random

import pytest

from adapters.simulated_exchange import (
    ExchangeConfig,
    ExchangeError,
    PowerProbability,
    ProbabilisticQueueModel,
    ReplayedMarket,
    RiskAverseQueueModel,
    SimulatedExchange,
)
from adapters.simulated_exchange.compiled import CompiledExchange, CompiledMarket
from application.replay import ReplayConfig, compile_market
from domain.events import BookDelta, BookSnapshot, MarketResolved, PublicTrade
from domain.actions import cash_required
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.orders import OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.values import MONEY_SCALE, ONE_CONTRACT, Side

START = 100 * MONEY_SCALE
C = ONE_CONTRACT
YES, NO = Side.YES, Side.NO


def book(ticker="T"):
    return BookSnapshot(ticker, 1, 0, yes=((4400, 10 * C), (4500, 20 * C)), no=((5200, 10 * C), (5300, 5 * C)))


def delta(t, side, price, change, ticker="T"):
    return BookDelta(ticker, None, t, side, price, change)


def trade(t, yes_price, count, taker, ticker="T"):
    return PublicTrade(ticker, t, f"trade-{t}", yes_price, count, taker)


IMPLEMENTATIONS = ["reference", "compiled"]
_chosen = {"compiled": False}
reference_only = pytest.mark.parametrize("implementation", ["reference"], indirect=True)


@pytest.fixture(autouse=True, params=IMPLEMENTATIONS)
def implementation(request):
    _chosen["compiled"] = request.param == "compiled"
    return request.param


def market(*events, ticker="T", result=YES):
    recorded = [book(ticker), *events, MarketResolved(ticker, 10_000, result)]
    tape = compile_market(recorded, ticker=ticker, session_id=1, config=ReplayConfig(step_ms=1000, depth_levels=5))
    return CompiledMarket(tape) if _chosen["compiled"] else ReplayedMarket(tape)


def venue(*events, latency_ms=0, queue_model=None, refill_ms=None, cash=START, fees=None, rng=None, grid="linear_cent"):
    ledger = Ledger(cash)
    config = ExchangeConfig(latency_ms, queue_model or RiskAverseQueueModel(), refill_ms)
    fees = fees or FeeSchedule.kalshi_standard()
    if _chosen["compiled"]:
        exchange = CompiledExchange(ledger, fees, config=config)
    else:
        exchange = SimulatedExchange(ledger, fees, config=config, rng=rng)
    exchange.open_market(market(*events), price_levels=grid)
    return exchange, ledger


def bid(price, count, ticker="T", **kwargs):
    return OrderRequest(ticker, OrderSide.BID, price, count, "c", **kwargs)


def ask(price, count, ticker="T", **kwargs):
    return OrderRequest(ticker, OrderSide.ASK, price, count, "c", **kwargs)


def send(exchange, request, row):
    """Send ``request`` at row ``row``'s time (the exchange is there already) and replay the row."""
    order = exchange.submit(request, ts_ms=row * 1000)
    return order, exchange.advance(request.ticker, row)


def fills(executions):
    return [(e.fill.price, e.fill.count, e.fill.is_taker) for e in executions]


# ---------------------------------------------------------------------------------------------
# Crossing the book
# ---------------------------------------------------------------------------------------------
def test_a_bid_at_the_ask_fills_at_the_touch_as_a_taker():
    exchange, ledger = venue()
    order, executions = send(exchange, bid(4700, 5 * C), 0)
    assert fills(executions) == [(4700, 5 * C, True)]
    # fee: 0.07 x 5 x 0.47 x 0.53 = $0.087185 -> $0.0872 -> $0.09
    assert executions[0].fill.fee == 90_000
    assert ledger.cash == START - 5 * 470_000 - 90_000 and ledger.quantity("T") == 5 * C
    assert order.status is OrderStatus.EXECUTED and exchange.open_orders("T") == []


def test_a_bid_through_two_levels_fills_each_at_its_price_for_a_vwap():
    exchange, ledger = venue()
    _, executions = send(exchange, bid(4800, 10 * C), 0)
    assert fills(executions) == [(4700, 5 * C, True), (4800, 5 * C, True)]
    vwap = sum(e.fill.price * e.fill.count for e in executions) / (10 * C)
    assert vwap == 4750
    # fees: 5 at 0.47 -> $0.09; 5 at 0.48: 0.07 x 5 x 0.48 x 0.52 = $0.08736 -> $0.09
    assert [e.fill.fee for e in executions] == [90_000, 90_000]
    assert ledger.cash == START - (5 * 470_000 + 5 * 480_000) - 180_000
    assert ledger.position("T").cost_basis == 4_750_000


def test_an_ask_walks_the_yes_bids_and_buys_no():
    exchange, ledger = venue()
    _, executions = send(exchange, ask(4400, 25 * C), 0)
    assert fills(executions) == [(4500, 20 * C, True), (4400, 5 * C, True)]
    # fees: 0.07 x 20 x 0.45 x 0.55 = $0.3465 -> $0.35; 0.07 x 5 x 0.44 x 0.56 = $0.08624 -> $0.09
    assert [e.fill.fee for e in executions] == [350_000, 90_000]
    assert ledger.cash == START - (20 * 550_000 + 5 * 560_000) - 440_000  # NO costs 1 - price
    assert ledger.quantity("T") == -25 * C


def test_depth_that_runs_out_fills_partially_and_the_rest_rests():
    exchange, _ = venue()
    order, executions = send(exchange, bid(4700, 8 * C), 0)
    assert fills(executions) == [(4700, 5 * C, True)]
    assert order.status is OrderStatus.RESTING and order.remaining == 3 * C
    assert exchange.open_orders("T") == [order]


def test_an_immediate_or_cancel_remainder_is_cancelled():
    exchange, _ = venue()
    order, _ = send(exchange, bid(4700, 8 * C, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL), 0)
    assert order.filled == 5 * C and order.status is OrderStatus.CANCELED
    assert exchange.open_orders("T") == []


def test_fill_or_kill_is_refused_before_anything_fills_when_depth_is_short():
    exchange, ledger = venue()
    order, executions = send(exchange, bid(4800, 16 * C, time_in_force=TimeInForce.FILL_OR_KILL), 0)
    assert order.status is OrderStatus.REJECTED and executions == [] and ledger.cash == START
    (rejection,) = exchange.rejections
    assert rejection.order is order and "fill-or-kill" in rejection.reason


# ---------------------------------------------------------------------------------------------
# Consumed liquidity
# ---------------------------------------------------------------------------------------------
IOC = TimeInForce.IMMEDIATE_OR_CANCEL


def test_liquidity_we_took_cannot_be_taken_again_while_the_replay_still_shows_it():
    exchange, _ = venue()
    send(exchange, bid(4700, 5 * C), 0)  # takes the whole 0.47 ask
    exchange.advance("T", 1)
    # The replay still shows NO 0.53 x 5; it is ours already, so the next buyer walks to 0.48.
    _, executions = send(exchange, bid(4800, 5 * C), 1)
    assert fills(executions) == [(4800, 5 * C, True)]
    order, executions = send(exchange, bid(4700, 5 * C, time_in_force=IOC), 1)
    assert executions == [] and order.status is OrderStatus.CANCELED


def test_consumed_liquidity_returns_when_the_replayed_level_empties_and_is_quoted_again():
    exchange, _ = venue(delta(1500, NO, 5300, -5 * C), delta(1600, NO, 5300, 5 * C))  # pulled, re-quoted
    send(exchange, bid(4700, 5 * C), 0)
    exchange.advance("T", 1)
    assert send(exchange, bid(4700, 5 * C, time_in_force=IOC), 1)[1] == []
    exchange.advance("T", 2)
    _, executions = send(exchange, bid(4700, 5 * C, time_in_force=IOC), 2)
    assert fills(executions) == [(4700, 5 * C, True)]


def test_a_level_that_shrinks_and_grows_gives_back_only_the_new_liquidity():
    # We take 5 of 0.47; the replay then shows it fall to 3 (so at most 3 of ours can still
    # stand there) and grow by 4: 7 shown, 3 of them taken, 4 to take.
    exchange, _ = venue(delta(1500, NO, 5300, -2 * C), delta(1600, NO, 5300, 4 * C))
    send(exchange, bid(4700, 5 * C), 0)
    exchange.advance("T", 2)
    _, executions = send(exchange, bid(4800, 10 * C, time_in_force=IOC), 2)
    assert fills(executions) == [(4700, 4 * C, True), (4800, 6 * C, True)]


def test_a_level_that_shrinks_to_just_below_what_we_took_keeps_only_that_much_taken():
    # We take 5 of 0.47; the level falls by one count unit, to 4.99 (so 4.99 of ours may stand),
    # and then grows by 6: 10.99 shown, 6 of them new.
    exchange, _ = venue(delta(1500, NO, 5300, -1), delta(1600, NO, 5300, 6 * C))
    send(exchange, bid(4700, 5 * C), 0)
    exchange.advance("T", 2)
    _, executions = send(exchange, bid(4700, 10 * C, time_in_force=IOC), 2)
    assert fills(executions) == [(4700, 6 * C, True)]


def test_with_a_refill_time_the_liquidity_is_back_exactly_that_long_after_the_take():
    exchange, _ = venue(refill_ms=1000)
    send(exchange, bid(4700, 5 * C), 0)  # taken at 0 ms
    exchange.advance("T", 1)
    _, executions = send(exchange, bid(4700, 5 * C, time_in_force=IOC), 1)  # at 1000 ms
    assert fills(executions) == [(4700, 5 * C, True)]


def test_with_a_refill_time_consumed_liquidity_returns_that_long_after_the_take():
    exchange, _ = venue(refill_ms=1500)
    send(exchange, bid(4700, 5 * C), 0)
    exchange.advance("T", 1)
    assert send(exchange, bid(4700, 5 * C, time_in_force=IOC), 1)[1] == []  # 1000 ms after: not yet
    exchange.advance("T", 2)
    _, executions = send(exchange, bid(4700, 5 * C, time_in_force=IOC), 2)  # 2000 ms after
    assert fills(executions) == [(4700, 5 * C, True)]


# ---------------------------------------------------------------------------------------------
# Resting orders and queue position
# ---------------------------------------------------------------------------------------------
def test_a_resting_bid_advances_in_the_queue_only_by_trades_at_its_price_risk_averse():
    exchange, ledger = venue(
        delta(1200, YES, 4500, 30 * C),  # joins behind us: level 50
        trade(1500, 4500, 15 * C, NO),  # a seller takes 15 of the 20 ahead
        delta(1500, YES, 4500, -15 * C),
        delta(2200, YES, 4500, -10 * C),  # a cancellation: risk-averse, never ahead of us
        trade(3500, 4500, 8 * C, NO),  # 5 still ahead, then 3 for us
        delta(3500, YES, 4500, -8 * C),
        trade(4500, 4400, 20 * C, NO),  # a sale below our bid: we are met first
    )
    order, executions = send(exchange, bid(4500, 10 * C), 0)  # joins behind the 20 at 0.45
    assert executions == [] and order.status is OrderStatus.RESTING
    assert exchange.advance("T", 3) == []
    (first,) = exchange.advance("T", 4)
    assert (first.fill.price, first.fill.count, first.fill.is_taker, first.fill.ts_ms) == (4500, 3 * C, False, 3500)
    assert first.fill.fee == 0  # standard series: makers pay nothing
    (second,) = exchange.advance("T", 5)
    assert (second.fill.count, second.fill.ts_ms) == (7 * C, 4500)
    assert order.status is OrderStatus.EXECUTED
    assert ledger.cash == START - 10 * 450_000 and ledger.quantity("T") == 10 * C


def test_a_level_that_shrinks_below_the_queue_ahead_of_us_shortens_it_to_the_level():
    exchange, _ = venue(
        delta(1200, YES, 4500, -1),  # 20 -> 19.99: at most 19.99 can be ahead of us now
        trade(1500, 4500, 20 * C, NO),  # 19.99 for the queue, 0.01 for us
    )
    order, _ = send(exchange, bid(4500, 10 * C), 0)  # joins behind the 20 at 0.45
    (execution,) = exchange.advance("T", 2)
    assert (execution.fill.count, execution.fill.ts_ms) == (1, 1500) and order.filled == 1


@pytest.mark.parametrize("trade_first", [True, False])
def test_a_trade_and_the_level_decrease_it_causes_advance_the_queue_once_in_either_order(trade_first):
    """20 ahead of our bid; a seller takes 15 at our price; the level's 20 -> 5 is logged before
    or after the trade (Kalshi's two channels are not ordered): nothing fills either way; a later
    8-lot eats the 5 still ahead, then 3 for us."""
    pair = [trade(1500, 4500, 15 * C, NO), delta(1500, YES, 4500, -15 * C)]
    exchange, _ = venue(*(pair if trade_first else pair[::-1]), trade(3500, 4500, 8 * C, NO))
    order, _ = send(exchange, bid(4500, 10 * C), 0)
    assert exchange.advance("T", 2) == [] and order.filled == 0
    (execution,) = exchange.advance("T", 4)
    assert (execution.fill.count, execution.fill.ts_ms) == (3 * C, 3500)


def test_trades_whose_taker_buys_beside_us_or_prints_above_our_bid_never_fill_it():
    exchange, _ = venue(trade(1500, 4400, 50 * C, YES), trade(1600, 4600, 50 * C, NO))
    order, _ = send(exchange, bid(4500, 10 * C), 0)
    assert exchange.advance("T", 5) == [] and order.filled == 0


def test_a_resting_ask_fills_when_a_purchase_prints_above_it_and_makers_pay_maker_fees():
    exchange, ledger = venue(trade(1500, 4800, 10 * C, YES), fees=FeeSchedule.kalshi_with_maker_fees())
    order, _ = send(exchange, ask(4700, 10 * C), 0)  # a NO bid at 0.53, behind the 5 there
    (execution,) = exchange.advance("T", 2)
    # maker fee: 0.0175 x 10 x 0.47 x 0.53 = $0.0435925 -> $0.0436 -> $0.05
    assert (execution.fill.price, execution.fill.count, execution.fill.fee) == (4700, 10 * C, 50_000)
    assert ledger.cash == START - 10 * 530_000 - 50_000 and ledger.quantity("T") == -10 * C


def test_liquidity_that_arrives_across_a_resting_order_fills_it_as_a_maker():
    exchange, _ = venue(delta(1500, NO, 5400, 4 * C))  # a NO bid at 0.54: a YES offer at 0.46
    order, _ = send(exchange, bid(4600, 10 * C), 0)  # inside the spread
    (execution,) = exchange.advance("T", 2)
    assert fills([execution]) == [(4600, 4 * C, False)] and order.remaining == 6 * C


def hidden_queue_market():
    """We join behind 20 at 0.45; 20 join behind us; 10 cancel; then a seller takes 15."""
    return (
        delta(1200, YES, 4500, 20 * C),
        delta(1500, YES, 4500, -10 * C),
        trade(2500, 4500, 15 * C, NO),
        delta(2500, YES, 4500, -15 * C),
    )


class FixedDraw:
    """A generator whose every draw is ``value``: the probabilistic model's coin, fixed."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


@reference_only
@pytest.mark.parametrize(
    ("draw", "filled"),
    [
        # 20 ahead, 20 behind: p_behind = 20^2 / (20^2 + 20^2) = 0.5
        (0.4, 0),  # the cancellation came from behind: 20 still ahead, the 15 never reach us
        (0.6, 5 * C),  # it came from ahead: 10 ahead, 5 of the 15 reach us
    ],
)
def test_a_probabilistic_queue_attributes_a_cancellation_ahead_or_behind_by_a_draw(draw, filled):
    model = ProbabilisticQueueModel(PowerProbability(2))
    exchange, _ = venue(*hidden_queue_market(), queue_model=model, rng=FixedDraw(draw))
    order, _ = send(exchange, bid(4500, 10 * C), 0)
    exchange.advance("T", 3)
    assert order.filled == filled


def test_the_risk_averse_queue_never_credits_a_cancellation():
    exchange, _ = venue(*hidden_queue_market())
    order, _ = send(exchange, bid(4500, 10 * C), 0)
    exchange.advance("T", 3)
    assert order.filled == 0


@reference_only
def test_a_seeded_probabilistic_queue_fills_the_same_way_every_time():
    def run(seed):
        model = ProbabilisticQueueModel(PowerProbability(1))
        exchange, _ = venue(*hidden_queue_market(), queue_model=model, rng=random.Random(seed))
        order, _ = send(exchange, bid(4500, 10 * C), 0)
        exchange.advance("T", 3)
        return order.filled

    outcomes = [run(seed) for seed in range(40)]
    assert outcomes == [run(seed) for seed in range(40)]
    assert set(outcomes) == {0, 5 * C}  # both attributions happen across seeds


# ---------------------------------------------------------------------------------------------
# Latency, cancel and amend
# ---------------------------------------------------------------------------------------------
def test_an_order_acts_after_the_latency_on_the_book_as_it_stands_then():
    # The 0.47 offer goes at 200 ms; our bid lands at 500 ms and pays 0.48; the 0.48 offer
    # leaving at 700 ms (after we landed) changes nothing.
    exchange, _ = venue(delta(200, NO, 5300, -5 * C), delta(700, NO, 5200, -10 * C), latency_ms=500)
    order = exchange.submit(bid(4800, 5 * C), ts_ms=0)
    assert exchange.advance("T", 0) == [] and order.status is OrderStatus.PENDING
    (execution,) = exchange.advance("T", 1)
    assert fills([execution]) == [(4800, 5 * C, True)] and execution.fill.ts_ms == 500


def test_a_resting_order_meets_no_trade_before_it_lands():
    exchange, _ = venue(trade(200, 4400, 3 * C, NO), trade(400, 4400, 4 * C, NO), latency_ms=300)
    order = exchange.submit(bid(4500, 10 * C), ts_ms=0)  # lands at 300 ms
    (execution,) = exchange.advance("T", 1)
    assert (execution.fill.count, execution.fill.ts_ms) == (4 * C, 400) and order.remaining == 6 * C


def test_a_cancel_lands_after_the_latency_and_the_order_can_fill_until_then():
    through = [trade(t, 4400, c * C, NO) for t, c in ((1200, 2), (1250, 3), (1400, 4))]
    exchange, _ = venue(*through, latency_ms=300)
    order = exchange.submit(bid(4500, 10 * C), ts_ms=0)
    exchange.advance("T", 1)
    exchange.cancel(order.order_id, ts_ms=1000)  # lands at 1300
    executions = exchange.advance("T", 2)
    assert [e.fill.count for e in executions] == [2 * C, 3 * C]
    assert order.status is OrderStatus.CANCELED and order.filled == 5 * C
    assert exchange.open_orders("T") == []


def test_a_replacing_order_cancels_the_open_ones_as_it_is_sent():
    through = [trade(t, 4400, c * C, NO) for t, c in ((1200, 2), (1250, 3), (1400, 4))]
    exchange, _ = venue(*through, latency_ms=300)
    old = exchange.submit(bid(4500, 10 * C), ts_ms=0)
    exchange.advance("T", 1)
    new = exchange.submit(bid(4300, 4 * C), ts_ms=1000, replacing=True)  # both land at 1300
    assert exchange.open_orders("T") == [old, new]
    executions = exchange.advance("T", 2)
    assert [e.fill.order_id for e in executions] == [old.order_id] * 2  # until its cancel landed
    assert old.status is OrderStatus.CANCELED and old.filled == 5 * C
    assert new.status is OrderStatus.RESTING and exchange.open_orders("T") == [new]
    with pytest.raises(ExchangeError, match="earlier than the market's clock"):
        exchange.submit(bid(4300, C), ts_ms=500, replacing=True)  # refused whole: nothing cancelled
    assert new.status is OrderStatus.RESTING and exchange.open_orders("T") == [new]


def priority_market():
    """We join behind 20 at 0.45; 30 join behind us; a seller takes 20; later another takes 10."""
    return (
        delta(1200, YES, 4500, 30 * C),
        trade(1500, 4500, 20 * C, NO),
        delta(1500, YES, 4500, -20 * C),
        trade(2500, 4500, 10 * C, NO),
        delta(2500, YES, 4500, -10 * C),
    )


def test_an_order_kept_in_place_fills_at_the_front_of_its_queue():
    exchange, _ = venue(*priority_market())
    order, _ = send(exchange, bid(4500, 10 * C), 0)
    exchange.advance("T", 3)
    assert order.filled == 10 * C


@reference_only
def test_an_amend_is_cancel_and_replace_and_loses_queue_priority_unless_it_decreases_the_size():
    exchange, _ = venue(*priority_market())
    old, _ = send(exchange, bid(4500, 10 * C), 0)
    exchange.advance("T", 2)  # the 20 ahead have traded: we are first in line
    new = exchange.amend(old.order_id, price=4500, count=10 * C, ts_ms=2000)
    assert new.order_id != old.order_id and new.status is OrderStatus.PENDING
    assert exchange.advance("T", 3) == []  # the replacement joined behind the 30
    assert old.status is OrderStatus.CANCELED and new.status is OrderStatus.RESTING and new.filled == 0


@reference_only
def test_an_amend_that_only_decreases_the_size_at_the_same_price_keeps_queue_priority():
    exchange, ledger = venue(*priority_market())
    old, _ = send(exchange, bid(4500, 10 * C), 0)
    exchange.advance("T", 2)  # the 20 ahead have traded: we are first in line
    new = exchange.amend(old.order_id, price=4500, count=6 * C, ts_ms=2000)
    exchange.advance("T", 2)
    assert old.status is OrderStatus.CANCELED and new.status is OrderStatus.RESTING
    assert exchange.open_orders("T") == [new]
    (execution,) = exchange.advance("T", 3)  # still first in line: the 10-lot fills us
    assert (execution.fill.order_id, execution.fill.count) == (new.order_id, 6 * C)
    assert new.status is OrderStatus.EXECUTED and ledger.quantity("T") == 6 * C
    assert exchange.buying_power() == ledger.cash


@reference_only
def test_an_amend_to_another_price_loses_queue_priority():
    exchange, _ = venue(*priority_market())
    old, _ = send(exchange, bid(4500, 10 * C), 0)
    exchange.advance("T", 2)
    new = exchange.amend(old.order_id, price=4400, count=6 * C, ts_ms=2000)
    exchange.advance("T", 3)
    assert new.status is OrderStatus.RESTING and new.filled == 0  # behind the 10 at 0.44


@reference_only
def test_an_amend_count_is_the_new_total_filled_included():
    exchange, _ = venue()
    old, _ = send(exchange, bid(4700, 8 * C), 0)  # 5 filled, 3 resting
    new = exchange.amend(old.order_id, price=4600, count=9 * C, ts_ms=0)
    exchange.advance("T", 0)
    assert (new.price, new.count, new.remaining) == (4600, 4 * C, 4 * C)
    with pytest.raises(ExchangeError, match="must exceed"):
        exchange.amend(new.order_id, price=4600, count=0, ts_ms=0)


@reference_only
def test_an_amend_that_lands_after_the_order_filled_is_refused():
    exchange, _ = venue(trade(1200, 4400, 10 * C, NO), latency_ms=300)
    old = exchange.submit(bid(4500, 10 * C), ts_ms=0)
    exchange.advance("T", 1)
    new = exchange.amend(old.order_id, price=4400, count=10 * C, ts_ms=1000)  # lands at 1300
    exchange.advance("T", 2)  # the sale at 1200 filled the old order first
    assert old.status is OrderStatus.EXECUTED and new.status is OrderStatus.REJECTED
    assert "no longer open" in exchange.rejections[0].reason


@reference_only
@pytest.mark.parametrize("traded", [25, 27])  # the old order fills 5 (the new total) or 7 (past it)
def test_a_size_decrease_that_lands_after_fills_reaching_the_new_total_is_refused(traded):
    # Our bid 0.45 x 10 joins behind 20; a sale of `traded` at 0.45 eats those 20 and then ours,
    # while an amend to a total of 5 travels. Nothing is left to keep: the amend is refused.
    exchange, _ = venue(trade(1100, 4500, traded * C, NO), latency_ms=200)
    old = exchange.submit(bid(4500, 10 * C), ts_ms=0)
    exchange.advance("T", 1)
    new = exchange.amend(old.order_id, price=4500, count=5 * C, ts_ms=1000)  # lands at 1200
    exchange.advance("T", 2)
    assert old.filled == (traded - 20) * C and new.status is OrderStatus.REJECTED
    assert "is not above the" in exchange.rejections[0].reason
    assert old.status is OrderStatus.RESTING and exchange.open_orders("T") == [old]  # it stands
    exchange.advance("T", 9)  # and nothing breaks later


@reference_only
def test_a_refused_amend_leaves_the_old_order_standing():
    # A post-only bid 0.45 x 5 amended to 0.47 would cross the ask: refused, the bid still rests.
    exchange, _ = venue()
    old, _ = send(exchange, bid(4500, 5 * C, post_only=True), 0)
    new = exchange.amend(old.order_id, price=4700, count=5 * C, ts_ms=0)
    exchange.advance("T", 0)
    assert new.status is OrderStatus.REJECTED and exchange.rejections[0].reason == "post-only order would cross the book"
    assert old.status is OrderStatus.RESTING and exchange.open_orders("T") == [old]
    # $3 of cash: a bid 0.20 x 5 ($1 + fee reserved) amended to 20 contracts ($4) is refused.
    exchange, _ = venue(cash=3 * MONEY_SCALE)
    old, _ = send(exchange, bid(2000, 5 * C), 0)
    new = exchange.amend(old.order_id, price=2000, count=20 * C, ts_ms=0)
    exchange.advance("T", 0)
    assert new.status is OrderStatus.REJECTED and old.status is OrderStatus.RESTING
    # Its reservation counts for the replacement: 0.20 x 12 ($2.40 + fee) fits in the $3.
    new = exchange.amend(old.order_id, price=2000, count=12 * C, ts_ms=0)
    exchange.advance("T", 0)
    assert new.status is OrderStatus.RESTING and old.status is OrderStatus.CANCELED


# ---------------------------------------------------------------------------------------------
# Settlement, money and errors
# ---------------------------------------------------------------------------------------------
def test_settlement_pays_the_winning_side_and_cancels_open_orders():
    exchange, ledger = venue(latency_ms=0)
    resting, _ = send(exchange, bid(4700, 8 * C), 0)  # 5 filled at 0.47, 3 resting
    pending = exchange.submit(ask(4900, 1 * C), ts_ms=0)
    cash_before = ledger.cash
    settlement = exchange.settle("T", YES)
    assert settlement.payout == 5 * MONEY_SCALE
    assert settlement.closed == 5 * C and settlement.realized_pnl == 5 * MONEY_SCALE - 5 * 470_000
    assert ledger.cash == cash_before + 5 * MONEY_SCALE and ledger.quantity("T") == 0
    assert resting.status is OrderStatus.CANCELED and pending.status is OrderStatus.CANCELED
    assert exchange.open_orders("T") == []


def test_a_losing_side_settles_at_zero():
    exchange, _ = venue()
    send(exchange, ask(4500, 10 * C), 0)  # 10 NO at 0.55
    settlement = exchange.settle("T", YES)
    assert settlement.payout == 0 and settlement.realized_pnl == -10 * 550_000


def test_closing_a_position_realises_its_pnl():
    exchange, ledger = venue()
    send(exchange, bid(4700, 5 * C), 0)  # 5 YES at 0.47
    _, (execution,) = send(exchange, ask(4500, 5 * C, reduce_only=True), 0)  # sold at 0.45
    assert execution.closed == 5 * C and execution.realized_pnl == -5 * 20_000
    assert ledger.quantity("T") == 0


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (ask(4500, 5 * C, reduce_only=True), "no position"),
        (bid(4700, 5 * C, post_only=True), "post-only"),
        (bid(4700, 50 * C), "needs"),  # 50 x $0.47 > $10
    ],
)
def test_impossible_orders_are_refused_with_a_reason_and_touch_nothing(request_, reason):
    exchange, ledger = venue(cash=10 * MONEY_SCALE)
    order, executions = send(exchange, request_, 0)
    assert order.status is OrderStatus.REJECTED and executions == []
    assert reason in exchange.rejections[0].reason
    assert ledger.cash == 10 * MONEY_SCALE and ledger.trades == 0


@reference_only
def test_cash_held_by_an_open_order_cannot_be_spent_in_another_market():
    ledger = Ledger(10 * MONEY_SCALE)
    exchange = SimulatedExchange(ledger, FeeSchedule.kalshi_standard(), config=ExchangeConfig(latency_ms=0))
    exchange.open_market(market(ticker="A"))
    exchange.open_market(market(ticker="B"))
    send(exchange, bid(4000, 20 * C, ticker="A"), 0)  # rests: holds $8 + the fee bound
    assert exchange.buying_power() < 2 * MONEY_SCALE
    assert exchange.buying_power("A") == 10 * MONEY_SCALE  # a new order in A would replace it
    order, _ = send(exchange, bid(4700, 5 * C, ticker="B"), 0)
    assert order.status is OrderStatus.REJECTED


def test_requests_out_of_time_order_and_unknown_markets_or_orders_are_errors():
    exchange, _ = venue()
    exchange.advance("T", 2)
    with pytest.raises(ExchangeError, match="earlier than the market's clock"):
        exchange.submit(bid(4500, C), ts_ms=1000)
    with pytest.raises(ExchangeError, match="not being replayed"):
        exchange.submit(bid(4500, C, ticker="X"), ts_ms=2000)
    with pytest.raises(ExchangeError, match="no open order"):
        exchange.cancel("nope", ts_ms=2000)
    with pytest.raises(ExchangeError, match="cannot advance"):
        exchange.advance("T", 1)


# ---------------------------------------------------------------------------------------------
# Cash never goes negative: fees are charged, and rounded, per fill
# ---------------------------------------------------------------------------------------------
def test_a_crossing_order_is_checked_at_its_per_level_cost_with_each_fee_rounded_as_charged():
    # asks 0.049 x 1 and 0.050 x 1 (NO bids 0.951 and 0.950)
    exchange, ledger = venue(delta(0, NO, 9510, C), delta(0, NO, 9500, C), cash=110_000)
    order, executions = send(exchange, bid(500, 2 * C), 0)
    # $0.049 + $0.050 = $0.099; fees 0.07 x 0.049 x 0.951 = $0.0033 -> $0.01 and
    # 0.07 x 0.05 x 0.95 = $0.0033 -> $0.01: $0.119 > $0.11 (one rounding on 2 contracts, $0.01, said $0.109)
    assert order.status is OrderStatus.REJECTED and executions == []
    assert exchange.rejections[0].reason == "needs 119000 micro-dollars, has 110000 to spend"
    assert ledger.cash == 110_000
    exchange, ledger = venue(delta(0, NO, 9510, C), delta(0, NO, 9500, C), cash=119_000)
    order, executions = send(exchange, bid(500, 2 * C), 0)
    assert fills(executions) == [(490, C, True), (500, C, True)] and ledger.cash == 0


def test_a_passive_fill_the_cash_cannot_pay_fills_what_it_pays_for_and_cancels_the_rest():
    exchange, ledger = venue(
        trade(1500, 500, C, NO),  # sellers hit our bid at 0.05 (nothing ahead of it)
        trade(2500, 500, C, NO),
        cash=110_000,
        fees=FeeSchedule.kalshi_with_maker_fees(),
    )
    # rests: 2 x $0.05 + the taker-fee bound $0.01 = $0.11
    order, executions = send(exchange, bid(500, 2 * C), 0)
    assert order.status is OrderStatus.RESTING and executions == []
    (first,) = exchange.advance("T", 2)  # $0.05 + maker fee 0.0175 x 0.05 x 0.95 -> $0.01
    assert (first.fill.count, first.fill.fee) == (C, 10_000) and ledger.cash == 50_000
    (second,) = exchange.advance("T", 3)
    # $0.05 pays for 0.80 contracts: $0.04 + the $0.01 fee
    assert (second.fill.count, second.fill.fee, second.fill.ts_ms) == (80, 10_000, 2500)
    assert ledger.cash == 0 and order.status is OrderStatus.CANCELED and order.filled == C + 80
    assert exchange.open_orders("T") == []
    (rejection,) = exchange.rejections
    assert rejection.order is order and rejection.ts_ms == 2500
    assert rejection.reason == (
        "cash of 50000 micro-dollars pays for only 80 of a passive fill of 100 (fee included): "
        "filled 80, the rest of the order cancelled"
    )


def test_cash_never_goes_negative_however_small_fills_round_their_fees():
    """Random small trades and liquidity hitting resting orders on an account holding just what
    they reserved: every fill's fee is rounded up on its own, and the cash still never goes below 0."""
    cuts = 0
    for seed in range(12):
        rng = random.Random(seed)
        events, t = [], 1000
        for _ in range(60):
            t += rng.randint(0, 130)
            if rng.random() < 0.8:
                events.append(trade(t, rng.choice([4200, 4300, 4400]), rng.randint(1, 60), NO))
            else:
                events.append(delta(t, NO, rng.choice([5600, 5700]), rng.randint(1, 60)))
        fees = FeeSchedule.kalshi_with_maker_fees()
        cash = rng.randint(0, 30_000)
        requests = [bid(price, rng.randint(1, 5) * C) for price in (4200, 4300, 4400)]
        for request in requests:
            cash += cash_required(request.side, request.price, request.count, 0, fees)
        exchange, ledger = venue(*events, cash=cash, fees=fees)
        for request in requests:
            exchange.submit(request, ts_ms=0)
        exchange.advance("T", 0)
        for row in range(1, 10):
            exchange.advance("T", row)
            assert ledger.cash >= 0
        assert all("pays for only" in rejection.reason for rejection in exchange.rejections)  # all three rested
        cuts += len(exchange.rejections)
    assert cuts > 0  # some runs did cut a fill short


# ---------------------------------------------------------------------------------------------
# One trade's volume, shared out among our orders
# ---------------------------------------------------------------------------------------------
def test_one_trade_fills_our_orders_in_price_time_priority_up_to_its_volume_only():
    exchange, ledger = venue(trade(1500, 4400, 10 * C, NO))  # one 10-lot sale at 0.44
    worse, _ = send(exchange, bid(4500, 10 * C), 0)  # rests first, behind the 20 at 0.45
    better, _ = send(exchange, bid(4600, 10 * C), 0)  # rests later, at a better price
    executions = exchange.advance("T", 2)
    assert [(e.fill.order_id, e.fill.price, e.fill.count) for e in executions] == [(better.order_id, 4600, 10 * C)]
    assert worse.filled == 0 and ledger.quantity("T") == 10 * C


def test_orders_at_one_price_share_a_trade_oldest_first():
    exchange, _ = venue(trade(1500, 4400, 10 * C, NO))
    first, _ = send(exchange, bid(4600, 6 * C), 0)
    second, _ = send(exchange, bid(4600, 6 * C), 0)
    third, _ = send(exchange, bid(4500, 6 * C), 0)
    executions = exchange.advance("T", 2)
    assert [(e.fill.order_id, e.fill.count) for e in executions] == [(first.order_id, 6 * C), (second.order_id, 4 * C)]
    assert third.filled == 0


def test_a_trade_at_our_price_reaches_our_second_order_only_with_what_the_first_left():
    exchange, _ = venue(trade(1500, 4600, 10 * C, NO))  # 0.46 is empty: nothing ahead of us
    first, _ = send(exchange, bid(4600, 4 * C), 0)
    second, _ = send(exchange, bid(4600, 10 * C), 0)
    executions = exchange.advance("T", 2)
    assert [(e.fill.order_id, e.fill.count) for e in executions] == [(first.order_id, 4 * C), (second.order_id, 6 * C)]


# ---------------------------------------------------------------------------------------------
# The tick grid
# ---------------------------------------------------------------------------------------------
def test_an_order_off_the_tick_grid_is_refused_as_sent_naming_the_price_and_the_tick():
    exchange, ledger = venue(latency_ms=100)
    order = exchange.submit(bid(4550, C), ts_ms=0)
    assert order.status is OrderStatus.REJECTED and exchange.open_orders("T") == []
    assert exchange.latest_order("T") is None
    (rejection,) = exchange.rejections
    assert rejection.order is order and rejection.ts_ms == 0
    assert rejection.reason == "price $0.4550 is off the tick grid: a linear_cent market has ticks of $0.0100 there"
    assert exchange.advance("T", 1) == [] and ledger.trades == 0
    on_grid = exchange.submit(bid(4700, C), ts_ms=1000)
    assert on_grid.status is OrderStatus.PENDING


@pytest.mark.parametrize(
    ("grid", "price", "tick"),
    [("deci_cent", 4555, "$0.0010"), ("tapered_deci_cent", 4550, "$0.0100"), ("tapered_deci_cent", 955, "$0.0010")],
)
def test_each_price_level_structure_has_its_grid(grid, price, tick):
    exchange, _ = venue(grid=grid)
    order, _ = send(exchange, bid(price, C), 0)
    assert order.status is OrderStatus.REJECTED and exchange.rejections[0].reason.endswith(f"ticks of {tick} there")
    assert send(exchange, bid({"deci_cent": 4550, "tapered_deci_cent": 950}[grid], C), 0)[0].status is OrderStatus.RESTING


def test_an_unknown_grid_is_refused():
    with pytest.raises(ValueError, match="price_levels"):
        venue(grid="cent")


def test_a_market_is_replayed_on_its_tapes_grid():
    recorded = [book("D"), BookDelta("D", None, 500, YES, 4450, C), MarketResolved("D", 10_000, YES)]
    tape = compile_market(recorded, ticker="D", session_id=1, config=ReplayConfig(step_ms=1000, depth_levels=5))
    assert tape.price_levels == "deci_cent"  # a $0.445 bid was recorded
    market = CompiledMarket(tape) if _chosen["compiled"] else ReplayedMarket(tape)
    exchange = (CompiledExchange if _chosen["compiled"] else SimulatedExchange)(
        Ledger(START), FeeSchedule.kalshi_standard(), config=ExchangeConfig(latency_ms=0)
    )
    exchange.open_market(market)
    assert send(exchange, bid(4450, C, ticker="D"), 0)[0].status is OrderStatus.RESTING


@reference_only
def test_a_market_can_have_its_own_grid():
    exchange = SimulatedExchange(Ledger(START), FeeSchedule.kalshi_standard(), config=ExchangeConfig(latency_ms=0))
    exchange.open_market(market(ticker="A"), price_levels="deci_cent")
    exchange.open_market(market(ticker="B"))
    assert send(exchange, bid(4050, C, ticker="A"), 0)[0].status is OrderStatus.RESTING
    assert send(exchange, bid(4050, C, ticker="B"), 0)[0].status is OrderStatus.REJECTED
