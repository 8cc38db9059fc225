"""The observation builder: the one place that turns market, portfolio and orders into floats.

An observation is ``OBSERVATION_SIZE`` float32s in three blocks:

* **market** (``MARKET_FEATURES``): top of book, depth and imbalance, recent price moves,
  volatility and trade flow, and the time left to expiry. They depend on the market alone, so
  replay computes them for a whole tape at once with :func:`market_features` (vectorised; row
  ``i`` reads rows ``<= i`` only). Live trading keeps a trailing window of the same inputs and
  takes the last row.
* **portfolio** (``PORTFOLIO_FEATURES``) and **orders** (``ORDER_FEATURES``): they change with
  every fill, so :func:`write_portfolio_features` and :func:`write_order_features` write them
  into the preallocated observation each step.

Nothing here names a market: the same model can trade any of them. Prices arrive in price units
and leave divided by ``ONE_DOLLAR`` (probability space); sizes go through ``log1p`` of
contracts; money is measured against the largest position allowed, so a feature means the same
thing whatever the account size. Every feature is clipped to ``[-FEATURE_BOUND, FEATURE_BOUND]``.
"""

from __future__ import annotations

import math

import numpy as np

from domain.values import COUNT_SCALE, ONE_DOLLAR

FEATURE_BOUND = 10.0

MARKET_FEATURES = (
    "yes_bid",  # best YES bid / $1 (0 when there is none)
    "yes_ask",  # best YES ask / $1 (1 when there is none)
    "mid",  # the mark price / $1
    "spread",  # (ask - bid) / $1 x 10
    "yes_bids_empty",  # 1 when no one bids YES
    "no_bids_empty",  # 1 when no one bids NO
    "depth_yes_top",  # log1p(contracts at the best YES bid) / log(1000)
    "depth_no_top",
    "depth_yes_near",  # log1p(contracts in the NEAR_LEVELS best YES bids) / log(1000)
    "depth_no_near",
    "imbalance_top",  # (YES - NO) / (YES + NO) contracts at the best bids; 0 if both empty
    "imbalance_near",  # the same over NEAR_LEVELS levels
    "move_short",  # mark change over SHORT_WINDOW steps / $1 x 10
    "move_medium",
    "move_long",
    "volatility",  # std of one-step mark changes over VOLATILITY_WINDOW steps, in cents
    "trade_flow",  # (YES-taker - NO-taker) / all contracts traded over FLOW_WINDOW steps
    "trade_volume",  # log1p(contracts traded over FLOW_WINDOW steps) / log(1000)
    "trade_volume_last",  # log1p(contracts traded in the last step) / log(1000)
    "time_left_fraction",  # time to expiry / the tape's whole span
    "time_left_log",  # log1p(minutes to expiry) / 10
)
PORTFOLIO_FEATURES = (
    "position",  # signed contracts (+YES, -NO) / max position
    "cash",  # cash / initial cash
    "unrealized_pnl",  # (market value - cost) / (max position x $1)
    "exposure",  # market value / (max position x $1)
    "pnl_per_contract",  # unrealised P&L per contract held / $1 x 10
    "episode_return",  # (portfolio value - initial cash) / (max position x $1)
)
ORDER_FEATURES = (
    "has_resting_bid",
    "has_resting_ask",
    "order_distance",  # (order price - mark) / $1 x 10
    "order_remaining",  # remaining / order size
    "order_age",  # steps resting / ORDER_AGE_SCALE, at most 1
)

MARKET_FEATURE_COUNT = len(MARKET_FEATURES)
PORTFOLIO_OFFSET = MARKET_FEATURE_COUNT
ORDER_OFFSET = PORTFOLIO_OFFSET + len(PORTFOLIO_FEATURES)
OBSERVATION_SIZE = ORDER_OFFSET + len(ORDER_FEATURES)
FEATURE_NAMES = MARKET_FEATURES + PORTFOLIO_FEATURES + ORDER_FEATURES

NEAR_LEVELS = 3
SHORT_WINDOW, MEDIUM_WINDOW, LONG_WINDOW = 1, 10, 60
VOLATILITY_WINDOW = 20
FLOW_WINDOW = 10
ORDER_AGE_SCALE = 100.0

_LOG_1000 = math.log(1000.0)
_MOVE_SCALE = 10.0 / ONE_DOLLAR
_CENTS = 100.0 / ONE_DOLLAR


def market_features(
    *,
    times: np.ndarray,
    expiry_ms: int,
    bid_prices: np.ndarray,
    bid_counts: np.ndarray,
    marks: np.ndarray,
    trade_offsets: np.ndarray,
    trade_counts: np.ndarray,
    trade_takers: np.ndarray,
) -> np.ndarray:
    """The market block of every row of a tape (see :class:`domain.market_tape.MarketTape`).

    Row ``i`` uses rows ``0..i`` and the trades up to ``times[i]`` only: trailing windows,
    shortened at the start of the tape.
    """
    times = np.asarray(times, dtype=np.int64)
    n = len(times)
    if n == 0:
        return np.zeros((0, MARKET_FEATURE_COUNT), dtype=np.float32)
    if expiry_ms < times[-1]:
        raise ValueError(f"expiry_ms {expiry_ms} is before the last step {int(times[-1])}")
    out = np.zeros((n, MARKET_FEATURE_COUNT), dtype=np.float64)
    column = {name: index for index, name in enumerate(MARKET_FEATURES)}

    best_yes = bid_prices[:, 0, 0].astype(np.int64)
    best_no = bid_prices[:, 1, 0].astype(np.int64)
    yes_bid = np.where(best_yes >= 0, best_yes, 0)
    yes_ask = np.where(best_no >= 0, ONE_DOLLAR - best_no, ONE_DOLLAR)
    out[:, column["yes_bid"]] = yes_bid / ONE_DOLLAR
    out[:, column["yes_ask"]] = yes_ask / ONE_DOLLAR
    out[:, column["mid"]] = np.asarray(marks, dtype=np.float64) / ONE_DOLLAR
    out[:, column["spread"]] = (yes_ask - yes_bid) * _MOVE_SCALE
    out[:, column["yes_bids_empty"]] = best_yes < 0
    out[:, column["no_bids_empty"]] = best_no < 0

    contracts = bid_counts.astype(np.float64) / COUNT_SCALE
    top = contracts[:, :, 0]
    near = contracts[:, :, :NEAR_LEVELS].sum(axis=2)
    out[:, column["depth_yes_top"]] = np.log1p(top[:, 0]) / _LOG_1000
    out[:, column["depth_no_top"]] = np.log1p(top[:, 1]) / _LOG_1000
    out[:, column["depth_yes_near"]] = np.log1p(near[:, 0]) / _LOG_1000
    out[:, column["depth_no_near"]] = np.log1p(near[:, 1]) / _LOG_1000
    out[:, column["imbalance_top"]] = _imbalance(top[:, 0], top[:, 1])
    out[:, column["imbalance_near"]] = _imbalance(near[:, 0], near[:, 1])

    mark = np.asarray(marks, dtype=np.float64)
    out[:, column["move_short"]] = _trailing_change(mark, SHORT_WINDOW) * _MOVE_SCALE
    out[:, column["move_medium"]] = _trailing_change(mark, MEDIUM_WINDOW) * _MOVE_SCALE
    out[:, column["move_long"]] = _trailing_change(mark, LONG_WINDOW) * _MOVE_SCALE
    steps = np.diff(mark, prepend=mark[0])
    out[:, column["volatility"]] = _trailing_std(steps, VOLATILITY_WINDOW) * _CENTS

    volume, signed = _interval_volumes(trade_offsets, trade_counts, trade_takers)
    window_volume = _trailing_sum(volume, FLOW_WINDOW)
    window_signed = _trailing_sum(signed, FLOW_WINDOW)
    out[:, column["trade_flow"]] = np.divide(
        window_signed, window_volume, out=np.zeros(n), where=window_volume > 0
    )
    out[:, column["trade_volume"]] = np.log1p(window_volume / COUNT_SCALE) / _LOG_1000
    out[:, column["trade_volume_last"]] = np.log1p(volume / COUNT_SCALE) / _LOG_1000

    left_ms = (expiry_ms - times).astype(np.float64)
    span_ms = float(max(expiry_ms - int(times[0]), 1))
    out[:, column["time_left_fraction"]] = left_ms / span_ms
    out[:, column["time_left_log"]] = np.log1p(left_ms / 60_000.0) / 10.0

    np.clip(out, -FEATURE_BOUND, FEATURE_BOUND, out=out)
    return out.astype(np.float32)


def write_portfolio_features(
    out: np.ndarray,
    *,
    quantity: int,
    cost_basis: int,
    market_value: int,
    cash: int,
    initial_cash: int,
    max_position: int,
) -> None:
    """Write the portfolio block into ``out`` (an observation). Money in micro-dollars,
    ``quantity`` and ``max_position`` in count units; ``market_value`` from the ledger."""
    full = max_position * ONE_DOLLAR  # micro-dollars: the most a position can be worth
    unrealized = market_value - cost_basis
    # micro-dollars / count units = price units: the P&L per contract held.
    per_contract = unrealized / abs(quantity) * _MOVE_SCALE if quantity else 0.0
    out[PORTFOLIO_OFFSET : ORDER_OFFSET] = (
        _clip(quantity / max_position),
        _clip(cash / initial_cash),
        _clip(unrealized / full),
        _clip(market_value / full),
        _clip(per_contract),
        _clip((cash + market_value - initial_cash) / full),
    )


def write_order_features(
    out: np.ndarray,
    *,
    is_bid: bool | None,
    price: int,
    remaining: int,
    age_steps: int,
    mark: int,
    order_size: int,
) -> None:
    """Write the resting-order block into ``out``. ``is_bid`` None: no resting order."""
    if is_bid is None:
        out[ORDER_OFFSET:OBSERVATION_SIZE] = 0.0
        return
    out[ORDER_OFFSET:OBSERVATION_SIZE] = (
        1.0 if is_bid else 0.0,
        0.0 if is_bid else 1.0,
        _clip((price - mark) * _MOVE_SCALE),
        _clip(remaining / order_size),
        min(age_steps / ORDER_AGE_SCALE, 1.0),
    )


def _clip(value: float) -> float:
    return FEATURE_BOUND if value > FEATURE_BOUND else -FEATURE_BOUND if value < -FEATURE_BOUND else value


def _imbalance(yes: np.ndarray, no: np.ndarray) -> np.ndarray:
    total = yes + no
    return np.divide(yes - no, total, out=np.zeros_like(total), where=total > 0)


def _trailing_change(values: np.ndarray, window: int) -> np.ndarray:
    """values[i] - values[max(i - window, 0)]."""
    earlier = np.concatenate((np.repeat(values[:1], window), values))[: len(values)]
    return values - earlier


def _trailing_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of values[max(i - window + 1, 0) .. i]."""
    cumulative = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
    index = np.arange(1, len(values) + 1)
    return cumulative[index] - cumulative[np.maximum(index - window, 0)]


def _trailing_std(values: np.ndarray, window: int) -> np.ndarray:
    """Population std over the trailing window (fewer rows at the start)."""
    count = np.minimum(np.arange(1, len(values) + 1), window).astype(np.float64)
    mean = _trailing_sum(values, window) / count
    mean_square = _trailing_sum(values * values, window) / count
    return np.sqrt(np.maximum(mean_square - mean * mean, 0.0))


def _interval_volumes(
    offsets: np.ndarray, counts: np.ndarray, takers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Contracts traded per step interval, and the same signed (+ YES taker, - NO taker)."""
    counts = np.asarray(counts, dtype=np.float64)
    signs = np.where(np.asarray(takers) == 0, 1.0, -1.0)
    cumulative = np.concatenate(([0.0], np.cumsum(counts)))
    cumulative_signed = np.concatenate(([0.0], np.cumsum(counts * signs)))
    offsets = np.asarray(offsets, dtype=np.int64)
    return (
        cumulative[offsets[1:]] - cumulative[offsets[:-1]],
        cumulative_signed[offsets[1:]] - cumulative_signed[offsets[:-1]],
    )
