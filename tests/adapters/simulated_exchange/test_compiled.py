"""The compiled exchange does what the reference does: long random trajectories, stepped side by
side, must agree on every order, fill, rejection, ledger entry, observation and reward.

``test_exchange.py`` runs the hand-computed cases against both; these runs find what no one
thought to compute by hand (synthetic markets with thousands of book changes and trades).
"""

import random

import numpy as np
import pytest

from adapters.gym_env import OrderbookEnv
from adapters.simulated_exchange import ExchangeConfig, ReplayedMarket, SimulatedExchange
from adapters.simulated_exchange.compiled import CompiledExchange, CompiledMarket, supports
from adapters.simulated_exchange.queue_models import ProbabilisticQueueModel
from adapters.synthetic.market_model import SyntheticMarketConfig, generate
from application.replay import ReplayConfig, compile_session
from domain.actions import ActionConfig, ActionSpace
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.orders import OrderRequest, OrderSide, TimeInForce
from domain.values import MONEY_SCALE, ONE_CONTRACT, ONE_DOLLAR, Side


@pytest.fixture(scope="module")
def tapes():
    events = generate(SyntheticMarketConfig(seed=11, markets=2, duration_ms=15 * 60_000))
    return compile_session(events, session_id=11, config=ReplayConfig())


def _order(order):
    if order is None:
        return None
    return (order.order_id, order.client_order_id, order.ticker, order.side, order.price, order.count,
            order.created_ms, order.time_in_force, order.filled, order.status)  # fmt: skip


def _execution(execution):
    fill = execution.fill
    return (fill.fill_id, fill.order_id, fill.side, fill.price, fill.count, fill.fee, fill.is_taker, fill.ts_ms,
            execution.closed, execution.realized_pnl)  # fmt: skip


def _rejections(exchange):
    return [(_order(rejection.order), rejection.reason, rejection.ts_ms) for rejection in exchange.rejections]


CONFIGS = {
    "default": ({}, {}),
    "sized": ({"actions": ActionConfig(space=ActionSpace.SIZED, max_position=100 * ONE_CONTRACT)}, {}),
    "latency_0": ({"exchange": ExchangeConfig(latency_ms=0)}, {}),
    "latency_900": ({"exchange": ExchangeConfig(latency_ms=900)}, {}),
    "refill_300ms": ({"exchange": ExchangeConfig(latency_ms=30, liquidity_refill_ms=300)}, {}),
    "maker_fees_passive": (
        {"fees": FeeSchedule.kalshi_with_maker_fees(), "actions": ActionConfig(pricing="passive")},
        {},
    ),
    "mid_small_cash": ({"actions": ActionConfig(pricing="mid"), "initial_cash": 30 * MONEY_SCALE}, {}),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_environment_steps_identically_on_either_exchange(tapes, name):
    """And without step details (as training runs it: fills booked from their terms), the same."""
    kwargs, _ = CONFIGS[name]
    compiled, reference = OrderbookEnv(tapes, compiled=True, **kwargs), OrderbookEnv(tapes, compiled=False, **kwargs)
    lean = OrderbookEnv(tapes, compiled=True, step_details=False, **kwargs)
    rng = np.random.default_rng(5)
    _, info = compiled.reset(seed=9)
    _, reference_info = reference.reset(seed=9)
    _, lean_info = lean.reset(seed=9)
    episodes = 0
    for _ in range(6_000):
        mask = info["action_mask"]
        np.testing.assert_array_equal(mask, reference_info["action_mask"])
        np.testing.assert_array_equal(mask, lean_info["action_mask"])
        legal = np.flatnonzero(mask)
        action = int(legal[rng.integers(len(legal))]) if rng.random() < 0.9 else int(rng.integers(len(mask)))
        observation, reward, terminated, truncated, info = compiled.step(action)
        expected, reference_reward, *ends, reference_info = reference.step(action)
        lean_observation, *lean_outcome, lean_info = lean.step(action)
        np.testing.assert_array_equal(observation, expected)
        np.testing.assert_array_equal(lean_observation, expected)
        assert (reward, terminated, truncated) == (reference_reward, *ends) == tuple(lean_outcome)
        assert "fills" not in lean_info and "order" not in lean_info
        assert _order(lean.open_order) == _order(reference.open_order)
        assert [_order(f) for f in [info["order"]]] == [_order(f) for f in [reference_info["order"]]]
        assert [(f.fill_id, f.price, f.count, f.fee, f.is_taker, f.ts_ms) for f in info["fills"]] == [
            (f.fill_id, f.price, f.count, f.fee, f.is_taker, f.ts_ms) for f in reference_info["fills"]
        ]
        assert _order(compiled.open_order) == _order(reference.open_order)
        assert compiled.buying_power == reference.buying_power
        if terminated or truncated:
            episodes += 1
            assert compiled.ledger.snapshot() == reference.ledger.snapshot()
            assert _rejections(compiled._exchange) == _rejections(reference._exchange)
            assert lean.ledger.snapshot() == reference.ledger.snapshot()
            assert _rejections(lean._exchange) == _rejections(reference._exchange)
            summary = {k: v for k, v in reference_info.items() if k not in ("fills", "order", "action_mask")}
            assert {k: v for k, v in info.items() if k not in ("fills", "order", "action_mask")} == summary
            assert {k: v for k, v in lean_info.items() if k != "action_mask"} == summary
            _, info = compiled.reset()
            _, reference_info = reference.reset()
            _, lean_info = lean.reset()
    assert episodes >= 2


def _random_request(rng, tape, row, position):
    """Mostly near the touch (crossing one level or two, or joining a queue), sometimes anywhere."""
    side = rng.choice([OrderSide.BID, OrderSide.ASK])
    yes_bid, no_bid = int(tape.bid_prices[row, 0, 0]), int(tape.bid_prices[row, 1, 0])
    touch = (ONE_DOLLAR - no_bid if side is OrderSide.BID else yes_bid) if rng.random() < 0.5 else (
        yes_bid if side is OrderSide.BID else ONE_DOLLAR - no_bid
    )
    if touch <= 0 or touch >= ONE_DOLLAR or rng.random() < 0.2:
        price = rng.randrange(1, ONE_DOLLAR)
    else:
        price = min(ONE_DOLLAR - 1, max(1, touch + rng.randint(-3, 3) * 100))
    count = rng.choice([1, 5, 10, 40, 150]) * ONE_CONTRACT
    time_in_force = rng.choice(list(TimeInForce))
    reduce_only = rng.random() < 0.15
    post_only = rng.random() < 0.3 and time_in_force is TimeInForce.GOOD_TILL_CANCELED
    if reduce_only and position and rng.random() < 0.7:  # mostly reduce what there is
        side = OrderSide.ASK if position > 0 else OrderSide.BID
        count = min(count, abs(position))
    return OrderRequest(tape.ticker, side, price, count, f"c{rng.random()}", time_in_force, post_only, reduce_only)


@pytest.mark.parametrize("seed", range(12))
def test_random_requests_have_the_same_outcome_on_either_exchange(tapes, seed):
    """Every kind of request the compiled exchange takes -- good-till-cancelled, immediate-or-cancel,
    fill-or-kill, post-only, reduce-only, replacing, cancels -- at random prices, sizes and times.
    Seeds 8 and up start with little cash: the account's cash never goes negative on either."""
    tape = tapes[seed % len(tapes)]
    config = ExchangeConfig(latency_ms=[0, 100, 700, 2500][seed % 4], liquidity_refill_ms=[None, 400][seed % 2])
    fees = FeeSchedule.kalshi_with_maker_fees()
    cash = 200 * MONEY_SCALE if seed < 8 else [MONEY_SCALE // 2, 3 * MONEY_SCALE, 20 * MONEY_SCALE, 110_000][seed % 4]
    compiled_ledger, reference_ledger = Ledger(cash), Ledger(cash)
    compiled = CompiledExchange(compiled_ledger, fees, config=config)
    reference = SimulatedExchange(reference_ledger, fees, config=config)
    compiled.open_market(CompiledMarket(tape))
    reference.open_market(ReplayedMarket(tape))
    rng = random.Random(seed)
    row, last = 0, len(tape.times) - 1
    ticker, times = tape.ticker, tape.times.tolist()
    while row < last:
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            choice = rng.random()
            if choice < 0.7:
                request = _random_request(rng, tape, row, reference_ledger.quantity(ticker))
                replacing = rng.random() < 0.25  # the open orders cancelled as it is sent
                assert _order(compiled.submit(request, ts_ms=times[row], replacing=replacing)) == _order(
                    reference.submit(request, ts_ms=times[row], replacing=replacing)
                )
            elif choice < 0.85:
                open_orders = reference.open_orders(ticker)
                if open_orders:
                    order = rng.choice(open_orders)
                    assert _order(compiled.cancel(order.order_id, ts_ms=times[row])) == _order(
                        reference.cancel(order.order_id, ts_ms=times[row])
                    )
            else:
                assert [_order(o) for o in compiled.cancel_all(ticker, ts_ms=times[row])] == [
                    _order(o) for o in reference.cancel_all(ticker, ts_ms=times[row])
                ]
        row = min(last, row + rng.choice([1, 1, 1, 2, 5]))
        executions = reference.advance(ticker, row)
        if rng.random() < 0.5:
            assert [_execution(e) for e in compiled.advance(ticker, row)] == [_execution(e) for e in executions]
        else:  # the lean form: the same booking, each fill as (fee, closed, realised P&L)
            assert compiled.advance_booking(ticker, row) == [
                (e.fill.fee, e.closed, e.realized_pnl) for e in executions
            ]
        assert [_order(o) for o in compiled.open_orders(ticker)] == [_order(o) for o in reference.open_orders(ticker)]
        assert _order(compiled.latest_order(ticker)) == _order(reference.latest_order(ticker))
        assert compiled_ledger.snapshot() == reference_ledger.snapshot()
        assert reference_ledger.cash >= 0
        assert compiled.buying_power() == reference.buying_power()
        assert compiled.buying_power(ticker) == reference.buying_power(ticker)
    result = tape.result or Side.YES
    assert compiled.settle(ticker, result) == reference.settle(ticker, result)
    assert compiled_ledger.snapshot() == reference_ledger.snapshot()
    assert _rejections(compiled) == _rejections(reference)
    assert reference_ledger.cash >= 0
    reasons = {rejection.reason.split()[0] for rejection in reference.rejections}
    if seed < 8:
        assert {"fill-or-kill", "post-only", "reduce-only"} <= reasons  # the run did exercise refusals
        assert reference_ledger.trades > 100
    else:
        assert "needs" in reasons


def test_the_environment_takes_the_compiled_exchange_where_it_can():
    assert supports(ExchangeConfig())
    assert not supports(ExchangeConfig(queue_model=ProbabilisticQueueModel()))


def test_the_probabilistic_queue_model_is_refused_by_the_compiled_exchange(tapes):
    config = ExchangeConfig(queue_model=ProbabilisticQueueModel())
    assert not OrderbookEnv(tapes, exchange=config)._compiled  # the environment falls back to the reference
    with pytest.raises(ValueError, match="queue model"):
        OrderbookEnv(tapes, exchange=config, compiled=True)
    with pytest.raises(ValueError, match="queue model"):
        CompiledExchange(Ledger(MONEY_SCALE), FeeSchedule.kalshi_standard(), config=config)


def test_an_order_too_large_for_64_bit_fee_arithmetic_is_refused(tapes):
    exchange = CompiledExchange(Ledger(MONEY_SCALE), FeeSchedule.kalshi_standard())
    exchange.open_market(CompiledMarket(tapes[0]))
    with pytest.raises(ValueError, match="at most"):
        exchange.submit(OrderRequest(tapes[0].ticker, OrderSide.BID, ONE_DOLLAR // 2, 10**9, "c"), ts_ms=int(tapes[0].times[0]))


def test_the_kernel_stays_inside_its_arrays(tmp_path):
    """numba does not check indices: a wrong capacity would corrupt memory silently. Run this
    module's side-by-side tests again with bounds checking compiled in (its own cache)."""
    import os
    import subprocess
    import sys

    environment = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "not inside_its_arrays"],
        env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
