"""The observation builder: the one place that turns market, portfolio and orders into floats.

An observation is ``OBSERVATION_SIZE`` float32s in three blocks:

* **market** (``MARKET_FEATURES``): top of book, depth and imbalance, recent price moves,
  volatility and trade flow, and the time left to expiry. They depend on the market alone, so
  replay computes them for a whole tape at once with :func:`market_features` (vectorised; row
  ``i`` reads rows ``<= i`` only, and no more than ``HISTORY_ROWS`` of them). Live trading
  (``application.observation``) keeps a trailing window of ``HISTORY_ROWS`` rows of the same
  inputs and takes the last row: the same numbers, because every window sum here is over
  integers (counts, price changes), exact in float64 whatever row the window starts at.
* **portfolio** (``PORTFOLIO_FEATURES``) and **orders** (``ORDER_FEATURES``): they change with
  every fill, so :class:`ObservationBuilder` writes them, after the market row, into one
  preallocated observation each step -- for the environment and the live actor alike.

Nothing here names a market: the same model can trade any of them. Prices arrive in price units
and leave divided by ``ONE_DOLLAR`` (probability space); sizes go through ``log1p`` of
contracts; money is measured against the largest position allowed, so a feature means the same
thing whatever the account size. Every feature is clipped to ``[-FEATURE_BOUND, FEATURE_BOUND]``.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from domain.ledger import Position
from domain.orders import Order, OrderSide
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
    "time_left_hour",  # time to the scheduled close in hours, at most 1 (0 past it)
    "time_left_log",  # log1p(minutes to the scheduled close) / 10 (0 past it)
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
# The rows a row's market features read: itself and the LONG_WINDOW before it (the longest look-back).
HISTORY_ROWS = max(LONG_WINDOW, VOLATILITY_WINDOW + 1, FLOW_WINDOW) + 1

# The time-left features of a market whose scheduled close is unknown (a recording made before
# schedules were recorded): the same on every row, so they say nothing about where in its life a
# row is -- and nothing about when the recording ends. The hour feature sits mid-range.
UNKNOWN_TIME_LEFT_HOUR = 0.5
UNKNOWN_TIME_LEFT_LOG = 0.0
_HOUR_MS = 3_600_000.0

_LOG_1000 = math.log(1000.0)
_BID = OrderSide.BID  # a module constant: enum members read through the class cost a call on 3.11
_MOVE_SCALE = 10.0 / ONE_DOLLAR
_CENTS = 100.0 / ONE_DOLLAR


def market_features(
    *,
    times: np.ndarray,
    expiry_ms: int | None,
    bid_prices: np.ndarray,
    bid_counts: np.ndarray,
    marks: np.ndarray,
    trade_offsets: np.ndarray,
    trade_counts: np.ndarray,
    trade_takers: np.ndarray,
) -> np.ndarray:
    """The market block of every row of a tape (see :class:`domain.market_tape.MarketTape`).

    Row ``i`` uses rows ``i - HISTORY_ROWS + 1 .. i`` and the trades up to ``times[i]`` only:
    trailing windows, shortened at the start of the tape. ``expiry_ms`` is the market's
    scheduled close -- a time known in advance, never when its recording happens to end -- and
    the time left is 0 on rows past it; None (unknown) gives every row the neutral
    ``UNKNOWN_TIME_LEFT_*`` values. Both time features depend on the row's time and the close
    only -- not on when a recording or a live actor happened to start -- so a live window and a
    replayed tape give the same numbers whenever each began.
    """
    times = np.asarray(times, dtype=np.int64)
    n = len(times)
    if n == 0:
        return np.zeros((0, MARKET_FEATURE_COUNT), dtype=np.float32)
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

    if expiry_ms is None:
        out[:, column["time_left_hour"]] = UNKNOWN_TIME_LEFT_HOUR
        out[:, column["time_left_log"]] = UNKNOWN_TIME_LEFT_LOG
    else:
        left_ms = np.maximum(expiry_ms - times, 0).astype(np.float64)
        out[:, column["time_left_hour"]] = np.minimum(left_ms / _HOUR_MS, 1.0)
        out[:, column["time_left_log"]] = np.log1p(left_ms / 60_000.0) / 10.0

    np.clip(out, -FEATURE_BOUND, FEATURE_BOUND, out=out)
    return out.astype(np.float32)


class ObservationBuilder:
    """Assembles observations: a market row, then the portfolio and open-order blocks.

    The environment and the live actor each hold one and call :meth:`observe` with the same
    inputs -- a row of :func:`market_features`, the market's position and mark, the account's
    cash, the open order -- so a model sees in trading exactly what it saw in training.
    ``order_size`` is the size order remainders are measured against (the largest order size
    of the action space). Writes into one preallocated buffer and returns a copy of it.
    """

    __slots__ = (
        "initial_cash",
        "max_position",
        "order_size",
        "_out",
        "_out_bytes",
        "_portfolio_key",
        "_order_key",
        "_portfolio",
        "_order",
    )

    def __init__(self, *, initial_cash: int, max_position: int, order_size: int) -> None:
        for name, value in (("initial_cash", initial_cash), ("max_position", max_position), ("order_size", order_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.initial_cash = initial_cash
        self.max_position = max_position
        self.order_size = order_size
        self._out = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
        self._out_bytes = memoryview(self._out).cast("B")  # where _ACCOUNT_BLOCKS packs into
        # The inputs the buffer's portfolio and order blocks were last written from: most steps
        # change neither (no fill, no order), and rewriting them is most of an observation's cost.
        self._portfolio_key: tuple[int, int, int, int] | None = None
        self._order_key: tuple[bool, int, int, int, int] | None = None
        self._portfolio: tuple[float, ...] = (0.0,) * len(PORTFOLIO_FEATURES)  # the blocks last written
        self._order: tuple[float, ...] = _NO_ORDER

    def observe(
        self,
        market_row: np.ndarray,
        mark: int,
        quantity: int,
        cost_basis: int,
        market_value: int,
        cash: int,
        order_is_bid: bool | None,
        order_price: int,
        order_remaining: int,
        order_age_steps: int,
    ) -> np.ndarray:
        """The observation (a new array). Positional: this runs every environment step.

        ``market_row``: ``MARKET_FEATURE_COUNT`` floats; ``mark``: the YES price the position is
        valued at; ``quantity`` signed count units (+YES, -NO) worth ``market_value`` and bought
        for ``cost_basis`` (micro-dollars); ``order_is_bid`` None when no order is open.
        """
        out = self._out
        out[:MARKET_FEATURE_COUNT] = market_row
        changed = False
        portfolio = (quantity, cost_basis, market_value, cash)
        if portfolio != self._portfolio_key:
            self._portfolio = _portfolio_block(
                quantity, cost_basis, market_value, cash, self.initial_cash, self.max_position
            )
            self._portfolio_key = portfolio
            changed = True
        order = None if order_is_bid is None else (order_is_bid, order_price, order_remaining, order_age_steps, mark)
        if order != self._order_key:  # (the buffer starts as "no order": all zeros, key None)
            self._order = _order_block(
                order_is_bid, order_price, order_remaining, order_age_steps, mark, self.order_size
            )
            self._order_key = order
            changed = True
        if changed:
            _ACCOUNT_BLOCKS.pack_into(self._out_bytes, _ACCOUNT_BLOCKS_OFFSET, *self._portfolio, *self._order)
        return out.copy()

    def observe_account(
        self,
        market_row: np.ndarray,
        mark: int,
        position: Position | None,
        cash: int,
        order: Order | None,
        order_age_steps: int,
    ) -> np.ndarray:
        """:meth:`observe` from the domain's own objects: the market's ledger position (None:
        never traded), valued at ``mark``, and its latest open order (None: none)."""
        if position is None:
            quantity = cost_basis = market_value = 0
        else:
            quantity, cost_basis = position.quantity, position.cost_basis
            market_value = position.market_value(mark) if quantity else 0
        if order is None:
            return self.observe(market_row, mark, quantity, cost_basis, market_value, cash, None, 0, 0, 0)
        return self.observe(
            market_row, mark, quantity, cost_basis, market_value, cash,
            order.side is _BID, order.price, order.remaining, order_age_steps,
        )  # fmt: skip


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
    out[PORTFOLIO_OFFSET:ORDER_OFFSET] = _portfolio_block(
        quantity, cost_basis, market_value, cash, initial_cash, max_position
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
    out[ORDER_OFFSET:OBSERVATION_SIZE] = _order_block(is_bid, price, remaining, age_steps, mark, order_size)


def _portfolio_block(
    quantity: int, cost_basis: int, market_value: int, cash: int, initial_cash: int, max_position: int
) -> tuple[float, ...]:
    full = max_position * ONE_DOLLAR  # micro-dollars: the most a position can be worth
    unrealized = market_value - cost_basis
    # micro-dollars / count units = price units: the P&L per contract held.
    per_contract = unrealized / abs(quantity) * _MOVE_SCALE if quantity else 0.0
    return (
        _clip(quantity / max_position),
        _clip(cash / initial_cash),
        _clip(unrealized / full),
        _clip(market_value / full),
        _clip(per_contract),
        _clip((cash + market_value - initial_cash) / full),
    )


_NO_ORDER = (0.0,) * len(ORDER_FEATURES)

# The portfolio and order blocks, packed into the observation's buffer in one call: numpy takes
# ~0.7 us to convert a tuple of floats into a slice, struct a fraction of that. Native float32
# ("f" rounds a double exactly as numpy's cast does), at the blocks' byte offset.
_ACCOUNT_BLOCKS = struct.Struct(f"={OBSERVATION_SIZE - PORTFOLIO_OFFSET}f")
_ACCOUNT_BLOCKS_OFFSET = PORTFOLIO_OFFSET * np.dtype(np.float32).itemsize


def _order_block(
    is_bid: bool | None, price: int, remaining: int, age_steps: int, mark: int, order_size: int
) -> tuple[float, ...]:
    if is_bid is None:
        return _NO_ORDER
    return (
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
