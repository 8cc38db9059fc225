import math

import numpy as np
import pytest

from domain.features import (
    FEATURE_BOUND,
    FEATURE_NAMES,
    HISTORY_ROWS,
    MARKET_FEATURE_COUNT,
    MARKET_FEATURES,
    OBSERVATION_SIZE,
    ORDER_FEATURES,
    ORDER_OFFSET,
    PORTFOLIO_FEATURES,
    PORTFOLIO_OFFSET,
    UNKNOWN_TIME_LEFT_HOUR,
    UNKNOWN_TIME_LEFT_LOG,
    ObservationBuilder,
    market_features,
    write_order_features,
    write_portfolio_features,
)
from domain.market_tape import NO_LEVEL, carried_mids, mark_prices
from domain.values import MONEY_SCALE, ONE_CONTRACT, ONE_DOLLAR

COLUMN = {name: index for index, name in enumerate(MARKET_FEATURES)}
PORTFOLIO = {name: PORTFOLIO_OFFSET + index for index, name in enumerate(PORTFOLIO_FEATURES)}
ORDER = {name: ORDER_OFFSET + index for index, name in enumerate(ORDER_FEATURES)}


def book_rows(rows):
    """rows: [(yes levels, no levels)] best first -> bid_prices, bid_counts with 3 slots."""
    prices = np.full((len(rows), 2, 3), NO_LEVEL, dtype=np.int32)
    counts = np.zeros((len(rows), 2, 3), dtype=np.int64)
    for row, sides in enumerate(rows):
        for side, levels in enumerate(sides):
            for level, (price, count) in enumerate(levels):
                prices[row, side, level] = price
                counts[row, side, level] = count
    return prices, counts


def features_for(rows, *, trades=(), trade_rows=None, times=None, expiry_ms=None):
    prices, counts = book_rows(rows)
    n = len(rows)
    times = np.arange(n, dtype=np.int64) * 1000 if times is None else np.asarray(times)
    offsets = np.zeros(n + 1, dtype=np.int64)
    for row in trade_rows or []:
        offsets[row + 1 :] += 1
    best_yes = prices[:, 0, 0]
    best_no = prices[:, 1, 0]
    yes_ask = np.where(best_no >= 0, ONE_DOLLAR - best_no, -1)
    marks = mark_prices(best_yes, yes_ask)
    return market_features(
        times=times,
        expiry_ms=int(times[-1]) if expiry_ms is None else expiry_ms,
        bid_prices=prices,
        bid_counts=counts,
        marks=marks,
        trade_offsets=offsets,
        trade_counts=np.asarray([count for count, _ in trades], dtype=np.int64),
        trade_takers=np.asarray([taker for _, taker in trades], dtype=np.int8),
    )


def test_the_layout_is_one_flat_vector_of_named_features():
    assert len(FEATURE_NAMES) == OBSERVATION_SIZE == len(set(FEATURE_NAMES))
    assert PORTFOLIO_OFFSET == MARKET_FEATURE_COUNT
    assert ORDER_OFFSET == PORTFOLIO_OFFSET + len(PORTFOLIO_FEATURES)


def test_top_of_book_in_probability_space():
    # YES bid 0.45, NO bid 0.53 -> YES ask 0.47, mid 0.46, spread 2 cents.
    out = features_for([([(4500, 10 * ONE_CONTRACT)], [(5300, 30 * ONE_CONTRACT)])] * 2)
    row = out[0]
    assert out.dtype == np.float32 and out.shape == (2, MARKET_FEATURE_COUNT)
    assert row[COLUMN["yes_bid"]] == pytest.approx(0.45)
    assert row[COLUMN["yes_ask"]] == pytest.approx(0.47)
    assert row[COLUMN["mid"]] == pytest.approx(0.46)
    assert row[COLUMN["spread"]] == pytest.approx(0.2)  # 0.02 x 10
    assert row[COLUMN["yes_bids_empty"]] == 0 and row[COLUMN["no_bids_empty"]] == 0
    assert row[COLUMN["depth_yes_top"]] == pytest.approx(math.log1p(10) / math.log(1000))
    assert row[COLUMN["imbalance_top"]] == pytest.approx((10 - 30) / 40)


def test_an_empty_side_reads_as_no_bid_or_no_ask_and_is_flagged():
    out = features_for([([(4500, 100)], []), ([], [(5300, 100)])])
    assert out[0, COLUMN["yes_ask"]] == 1.0 and out[0, COLUMN["no_bids_empty"]] == 1.0
    assert out[1, COLUMN["yes_bid"]] == 0.0 and out[1, COLUMN["yes_bids_empty"]] == 1.0
    assert out[0, COLUMN["imbalance_top"]] == 1.0


def test_imbalance_near_sums_the_first_three_levels():
    yes = [(4500, 100), (4400, 200), (4300, 300)]
    no = [(5300, 600)]
    out = features_for([(yes, no)] * 2)
    assert out[0, COLUMN["imbalance_near"]] == pytest.approx(0.0)
    assert out[0, COLUMN["imbalance_top"]] == pytest.approx((100 - 600) / 700)


def test_price_moves_and_volatility_look_backwards_only():
    rows = [([(4500 + 100 * i, 100)], [(5300 - 100 * i, 100)]) for i in range(4)]  # mid +1c per step
    out = features_for(rows)
    assert out[0, COLUMN["move_short"]] == 0.0  # no earlier row
    assert out[1, COLUMN["move_short"]] == pytest.approx(0.1)  # one cent x 10
    assert out[3, COLUMN["move_medium"]] == pytest.approx(0.3)  # back to row 0 only
    assert out[3, COLUMN["volatility"]] == pytest.approx(np.std([0, 1, 1, 1]), rel=1e-6)  # cents


def test_no_row_depends_on_a_later_row():
    rng = np.random.default_rng(3)
    rows = [([(int(p), 100)], [(ONE_DOLLAR - int(p) - 200, 100)]) for p in rng.integers(3000, 6000, 80)]
    trades = [(int(c), int(t)) for c, t in zip(rng.integers(1, 500, 30), rng.integers(0, 2, 30))]
    trade_rows = sorted(rng.integers(0, 80, 30).tolist())
    full = features_for(rows, trades=trades, trade_rows=trade_rows, expiry_ms=200_000)
    cut = 50
    kept = sum(1 for row in trade_rows if row < cut)
    prefix = features_for(
        rows[:cut], trades=trades[:kept], trade_rows=trade_rows[:kept], expiry_ms=200_000
    )
    np.testing.assert_array_equal(full[:cut], prefix)


def test_trade_flow_is_signed_by_the_taker_over_the_window():
    rows = [([(4500, 100)], [(5300, 100)])] * 3
    # Row 1: a YES taker buys 3 contracts; row 2: a NO taker sells 1.
    out = features_for(rows, trades=[(300, 0), (100, 1)], trade_rows=[1, 2])
    assert out[0, COLUMN["trade_flow"]] == 0.0 and out[0, COLUMN["trade_volume"]] == 0.0
    assert out[1, COLUMN["trade_flow"]] == pytest.approx(1.0)
    assert out[2, COLUMN["trade_flow"]] == pytest.approx((3 - 1) / 4)
    assert out[2, COLUMN["trade_volume_last"]] == pytest.approx(math.log1p(1) / math.log(1000))


def test_time_left_counts_the_last_hour_down_to_zero_at_expiry():
    rows = [([(4500, 100)], [(5300, 100)])] * 4
    out = features_for(rows, times=[0, 1_800_000, 5_400_000, 7_200_000])  # expiry: the last row
    assert out[:, COLUMN["time_left_hour"]].tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0])
    assert out[3, COLUMN["time_left_log"]] == 0.0
    assert out[0, COLUMN["time_left_log"]] == pytest.approx(math.log1p(120.0) / 10)


def test_time_features_do_not_depend_on_when_the_rows_began():
    # The live actor's window starts when it started, a tape when the recording did: the same
    # row must give the same time features either way.
    rows = [([(4500, 100)], [(5300, 100)])] * 3
    early = features_for(rows, times=[0, 600_000, 1_200_000], expiry_ms=1_800_000)
    late = features_for(rows[:1], times=[1_200_000], expiry_ms=1_800_000)
    for name in ("time_left_hour", "time_left_log"):
        assert early[2, COLUMN[name]] == late[0, COLUMN[name]]
    assert late[0, COLUMN["time_left_hour"]] == pytest.approx(600_000 / 3_600_000)


def test_rows_past_the_close_have_no_time_left():
    out = features_for([([(4500, 100)], [])] * 3, times=[0, 1000, 2000], expiry_ms=500)
    assert out[:, COLUMN["time_left_hour"]].tolist() == pytest.approx([500 / 3_600_000, 0.0, 0.0])
    assert out[1:, COLUMN["time_left_log"]].tolist() == [0.0, 0.0]


def test_an_unknown_close_gives_every_row_the_same_neutral_time_features():
    rows = [([(4500, 100)], [(5300, 100)])] * 3
    market = dict(
        times=np.array([0, 30_000, 60_000], dtype=np.int64),
        bid_prices=np.array([[[4500], [5300]]] * 3, dtype=np.int32),
        bid_counts=np.array([[[100], [100]]] * 3, dtype=np.int64),
        marks=np.array([4600] * 3, dtype=np.int32),
        trade_offsets=np.zeros(4, dtype=np.int64),
        trade_counts=np.zeros(0, dtype=np.int64),
        trade_takers=np.zeros(0, dtype=np.int8),
    )
    out = market_features(expiry_ms=None, **market)
    assert out[:, COLUMN["time_left_hour"]].tolist() == [UNKNOWN_TIME_LEFT_HOUR] * len(rows)
    assert out[:, COLUMN["time_left_log"]].tolist() == [UNKNOWN_TIME_LEFT_LOG] * len(rows)
    known = market_features(expiry_ms=60_000, **market)
    np.testing.assert_array_equal(np.delete(out, [COLUMN["time_left_hour"], COLUMN["time_left_log"]], axis=1),
                                  np.delete(known, [COLUMN["time_left_hour"], COLUMN["time_left_log"]], axis=1))


def test_mark_is_the_floored_mid_carried_over_one_sided_books():
    yes_bid, yes_ask = np.array([-1, 4500, 4500, -1]), np.array([4700, 4800, -1, -1])
    mids = carried_mids(yes_bid, yes_ask)
    assert mids.tolist() == [5000, 4650, 4650, 4650]
    # Row 0 has only an ask at 0.47: the mark cannot sit above it.
    assert mark_prices(yes_bid, yes_ask, mids).tolist() == [4700, 4650, 4650, 4650]


def test_a_one_sided_book_holds_the_mark_within_its_quote():
    # The last mid was 0.50; then only a YES bid at 0.95 (nobody sells YES): a YES contract is
    # worth at least 0.95, and a NO contract bought at 0.05 is worth no more than 0.05.
    yes_bid, yes_ask = np.array([4900, 9500, 6000, -1, -1]), np.array([5100, -1, -1, 300, -1])
    mids = carried_mids(yes_bid, yes_ask)
    assert mids.tolist() == [5000] * 5
    assert mark_prices(yes_bid, yes_ask, mids).tolist() == [5000, 9500, 6000, 300, 5000]


def test_portfolio_features_measure_money_against_the_largest_position():
    out = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
    # 10 YES bought at 0.40 (cost $4), now marked 0.45 ($4.50); max position 50 contracts = $50.
    write_portfolio_features(
        out,
        quantity=10 * ONE_CONTRACT,
        cost_basis=4 * MONEY_SCALE,
        market_value=4_500_000,
        cash=96 * MONEY_SCALE,
        initial_cash=100 * MONEY_SCALE,
        max_position=50 * ONE_CONTRACT,
    )
    assert out[PORTFOLIO["position"]] == pytest.approx(0.2)
    assert out[PORTFOLIO["cash"]] == pytest.approx(0.96)
    assert out[PORTFOLIO["unrealized_pnl"]] == pytest.approx(0.5 / 50)
    assert out[PORTFOLIO["exposure"]] == pytest.approx(4.5 / 50)
    assert out[PORTFOLIO["pnl_per_contract"]] == pytest.approx(0.5)  # 5 cents a contract x 10
    assert out[PORTFOLIO["episode_return"]] == pytest.approx(0.5 / 50)
    assert not out[:PORTFOLIO_OFFSET].any() and not out[ORDER_OFFSET:].any()


def test_a_no_position_is_negative_and_a_flat_one_has_no_per_contract_pnl():
    out = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
    kwargs = dict(cost_basis=0, market_value=0, cash=100, initial_cash=100, max_position=100)
    write_portfolio_features(out, quantity=-50, **kwargs)
    assert out[PORTFOLIO["position"]] == pytest.approx(-0.5)
    write_portfolio_features(out, quantity=0, **kwargs)
    assert out[PORTFOLIO["pnl_per_contract"]] == 0.0


def test_portfolio_features_are_clipped():
    out = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
    write_portfolio_features(
        out, quantity=0, cost_basis=0, market_value=0, cash=10**12, initial_cash=1, max_position=100
    )
    assert out[PORTFOLIO["cash"]] == FEATURE_BOUND


def test_order_features_describe_the_resting_order_or_nothing():
    out = np.ones(OBSERVATION_SIZE, dtype=np.float32)
    write_order_features(out, is_bid=None, price=0, remaining=0, age_steps=0, mark=5000, order_size=1000)
    assert not out[ORDER_OFFSET:].any()
    write_order_features(out, is_bid=False, price=5200, remaining=500, age_steps=250, mark=5000, order_size=1000)
    assert out[ORDER["has_resting_bid"]] == 0.0 and out[ORDER["has_resting_ask"]] == 1.0
    assert out[ORDER["order_distance"]] == pytest.approx(0.2)
    assert out[ORDER["order_remaining"]] == pytest.approx(0.5)
    assert out[ORDER["order_age"]] == 1.0


def random_market(n, seed):
    """n rows of a random two-level book, marks, and trades: the arrays market_features takes."""
    rng = np.random.default_rng(seed)
    prices = np.full((n, 2, 3), NO_LEVEL, dtype=np.int32)
    counts = np.zeros((n, 2, 3), dtype=np.int64)
    for side in (0, 1):
        top = rng.integers(3000, 5000, size=n) // 100 * 100
        present = rng.random(n) > 0.1  # a side is empty now and then
        for level in range(2):
            prices[:, side, level] = np.where(present, top - 100 * level, NO_LEVEL)
            counts[:, side, level] = np.where(present, rng.integers(1, 500, size=n) * ONE_CONTRACT, 0)
    marks = mark_prices(prices[:, 0, 0], np.where(prices[:, 1, 0] >= 0, ONE_DOLLAR - prices[:, 1, 0], -1))
    per_row = rng.integers(0, 4, size=n)
    offsets = np.concatenate(([0], np.cumsum(per_row)))
    trades = int(offsets[-1])
    return {
        "times": np.arange(n, dtype=np.int64) * 1000 + 7,
        "bid_prices": prices,
        "bid_counts": counts,
        "marks": marks,
        "trade_offsets": offsets,
        "trade_counts": rng.integers(1, 10_000, size=trades).astype(np.int64),
        "trade_takers": rng.integers(0, 2, size=trades).astype(np.int8),
    }


def window(market, start, row):
    """Rows start..row of ``market``, with their trades."""
    offsets = market["trade_offsets"]
    first, last = offsets[start], offsets[row + 1]
    return {
        "times": market["times"][start : row + 1],
        "bid_prices": market["bid_prices"][start : row + 1],
        "bid_counts": market["bid_counts"][start : row + 1],
        "marks": market["marks"][start : row + 1],
        "trade_offsets": offsets[start : row + 2] - first,
        "trade_counts": market["trade_counts"][first:last],
        "trade_takers": market["trade_takers"][first:last],
    }


def test_a_row_needs_only_the_history_rows_before_it():
    """What the live actor relies on: the last row of a HISTORY_ROWS window is the tape's row,
    bit for bit, wherever the window starts."""
    n = 300
    market = random_market(n, 5)
    expiry = int(market["times"][-1]) + 60_000
    whole = market_features(expiry_ms=expiry, **market)
    for row in (HISTORY_ROWS - 1, 150, n - 1):
        rows = window(market, row - HISTORY_ROWS + 1, row)
        np.testing.assert_array_equal(market_features(expiry_ms=expiry, **rows)[-1], whole[row])
    # One row fewer is not enough: the long price move reaches back HISTORY_ROWS - 1 rows.
    short = market_features(expiry_ms=expiry, **window(market, 250 - HISTORY_ROWS + 2, 250))
    move_long = MARKET_FEATURES.index("move_long")
    assert short[-1][move_long] != whole[250][move_long]


def test_the_builder_rewrites_only_what_changed_and_always_returns_the_full_observation():
    builder = ObservationBuilder(initial_cash=100 * MONEY_SCALE, max_position=50 * ONE_CONTRACT, order_size=1000)
    row = np.linspace(0, 1, MARKET_FEATURE_COUNT, dtype=np.float32)
    inputs = [
        (row, 4600, 0, 0, 0, 100 * MONEY_SCALE, None, 0, 0, 0),
        (row, 4600, 1000, 4_700_000, 4_600_000, 95 * MONEY_SCALE, True, 4500, 500, 3),
        (row, 4700, 1000, 4_700_000, 4_700_000, 95 * MONEY_SCALE, True, 4500, 500, 4),
        (row, 4700, 0, 0, 0, 99 * MONEY_SCALE, None, 0, 0, 0),
        (row, 4700, 0, 0, 0, 99 * MONEY_SCALE, None, 0, 0, 0),
    ]
    for args in inputs * 2:
        observation = builder.observe(*args)
        fresh = ObservationBuilder(initial_cash=100 * MONEY_SCALE, max_position=50 * ONE_CONTRACT, order_size=1000)
        np.testing.assert_array_equal(observation, fresh.observe(*args))
    assert observation is not builder.observe(*inputs[-1])  # a new array each time: callers may keep it


def test_the_builder_refuses_a_bad_scale():
    with pytest.raises(ValueError, match="max_position"):
        ObservationBuilder(initial_cash=1, max_position=0, order_size=1)
