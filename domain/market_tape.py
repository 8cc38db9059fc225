"""One market's recording, compiled for replay: per-step arrays, read without touching a store.

A tape samples a market on a fixed time grid ``times[0] < times[1] < ... < times[n-1]``. Row ``i``
is the market as it stood at ``times[i]``, after every event stamped at or before it -- never
after. The grid is the session's clock, shared by every market: multiples of ``step_ms`` on the
Unix clock, from the first at or after the market's first snapshot (so row 0 holds it). The last
row is the end of the market: its resolution when the recording has one, otherwise its last
event (off the grid). That end is for stepping only; the time-left features count down to
``close_ms``, the scheduled close the recording learned in advance (None: not recorded).
Trades are kept per interval: ``trade_offsets[i]:trade_offsets[i+1]``
indexes the trades printed in ``(times[i-1], times[i]]`` (for row 0, everything up to
``times[0]``), so an agent that acted at row ``i - 1`` meets exactly those trades before row ``i``.

Between rows, the **market log** keeps what the simulated exchange needs to fill orders at any
moment, not only on the grid: every change of a bid level (its new size) and every trade, in the
order they were recorded, grouped per interval like the trades (``log_offsets[i]:log_offsets[i+1]``
covers ``(times[i-1], times[i]]``; interval 0 starts with the first snapshot's levels).
``log_kinds`` says what an entry is: ``LOG_YES_LEVEL`` / ``LOG_NO_LEVEL`` (``log_prices`` is that
side's bid price, ``log_counts`` the level's size after the change, 0 once it is gone) or
``LOG_TRADE_YES_TAKER`` / ``LOG_TRADE_NO_TAKER`` (``log_prices`` is the YES price, ``log_counts``
the size). Log times never decrease, so the book at a time ``t`` between rows is the row before
it updated by the log entries stamped at or before ``t``.

Everything is in domain units (prices in price units, counts in count units); only ``features``
holds normalised floats (see :mod:`domain.features`). An episode never spans two tapes.
"""

from __future__ import annotations

import hashlib

import attrs
import numpy as np

from domain.ticks import check_structure
from domain.values import ONE_DOLLAR, Side

NO_LEVEL = -1  # the price of a depth slot with no bid in it

# The kinds of market-log entries. A level entry's kind is its side (Side.YES / Side.NO); a
# trade's kind is 2 + its taker's side.
LOG_YES_LEVEL = 0
LOG_NO_LEVEL = 1
LOG_TRADE_YES_TAKER = 2
LOG_TRADE_NO_TAKER = 3


class TapeError(ValueError):
    """Arrays that do not make one consistent market tape."""


@attrs.frozen(eq=False)
class MarketTape:
    """A compiled market. Arrays are read-only by convention; build tapes with ``application.replay``."""

    session_id: int
    ticker: str
    step_ms: int
    times: np.ndarray  # int64 [n]: the sampling times, ms
    bid_prices: np.ndarray  # int32 [n, 2, K]: the K best bids of YES (0) and NO (1), best first
    bid_counts: np.ndarray  # int64 [n, 2, K]: their sizes; 0 where the price is NO_LEVEL
    marks: np.ndarray  # int32 [n]: the YES price positions are valued at (see mark_prices)
    trade_offsets: np.ndarray  # int64 [n + 1]
    trade_prices: np.ndarray  # int32 [T]: YES price of each printed trade
    trade_counts: np.ndarray  # int64 [T]
    trade_takers: np.ndarray  # int8 [T]: the taker's side (Side.YES / Side.NO)
    features: np.ndarray  # float32 [n, MARKET_FEATURE_COUNT]
    log_offsets: np.ndarray  # int64 [n + 1]: the market log, per interval (see the module docstring)
    log_times: np.ndarray  # int64 [E], never decreasing
    log_kinds: np.ndarray  # int8 [E]: LOG_YES_LEVEL, LOG_NO_LEVEL, LOG_TRADE_YES_TAKER, LOG_TRADE_NO_TAKER
    log_prices: np.ndarray  # int32 [E]: a level's bid price on its side; a trade's YES price
    log_counts: np.ndarray  # int64 [E]: a level's size after the change; a trade's size
    expiry_ms: int  # when the tape ends: its resolution time, or its last event (never a feature)
    result: Side | None  # how the market resolved; None when the recording has no resolution
    close_ms: int | None = None  # the scheduled close, known in advance; the time features' expiry
    # The market's tick grid (domain.ticks): the coarsest one holding every recorded price.
    price_levels: str = attrs.field(default="linear_cent", validator=lambda _i, _a, value: check_structure(value))

    def __attrs_post_init__(self) -> None:
        n = len(self.times)
        if n < 2:
            raise TapeError(f"{self.ticker}: a tape needs at least 2 steps (one action), got {n}")
        if self.bid_prices.shape[:2] != (n, 2) or self.bid_counts.shape != self.bid_prices.shape:
            raise TapeError(f"{self.ticker}: depth arrays must be [n, 2, K] with n = {n}")
        if self.marks.shape != (n,) or self.features.shape[0] != n:
            raise TapeError(f"{self.ticker}: marks and features must have one row per step ({n})")
        if self.trade_offsets.shape != (n + 1,):
            raise TapeError(f"{self.ticker}: trade_offsets must have n + 1 = {n + 1} entries")
        trades = int(self.trade_offsets[-1])
        if not (len(self.trade_prices) == len(self.trade_counts) == len(self.trade_takers) == trades):
            raise TapeError(f"{self.ticker}: trade arrays must hold trade_offsets[-1] = {trades} trades")
        if n > 1 and not bool(np.all(np.diff(self.times) > 0)):
            raise TapeError(f"{self.ticker}: times must increase strictly")
        if self.log_offsets.shape != (n + 1,):
            raise TapeError(f"{self.ticker}: log_offsets must have n + 1 = {n + 1} entries")
        entries = int(self.log_offsets[-1])
        log = (self.log_times, self.log_kinds, self.log_prices, self.log_counts)
        if any(len(array) != entries for array in log):
            raise TapeError(f"{self.ticker}: log arrays must hold log_offsets[-1] = {entries} entries")
        if entries and not bool(np.all(np.diff(self.log_times) >= 0)):
            raise TapeError(f"{self.ticker}: log times must never decrease")

    @property
    def steps(self) -> int:
        return len(self.times)

    @property
    def depth_levels(self) -> int:
        return int(self.bid_prices.shape[2])

    @property
    def resolved(self) -> bool:
        return self.result is not None

    def content_digest(self) -> str:
        """16 hex digits naming the market data itself (its sampled rows and its log), whatever
        session id it was recorded under: a market recorded twice from the same source -- the
        synthetic market with one seed -- has one digest, so held-out data can be told apart from
        training data by content, not by id."""
        digest = hashlib.sha256(self.ticker.encode())
        for array in (self.times, self.bid_prices, self.bid_counts, self.log_offsets, self.log_times,
                      self.log_kinds, self.log_prices, self.log_counts):  # fmt: skip
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def bids(self, row: int, side: int) -> list[tuple[int, int]]:
        """The visible bids of ``side`` at ``row``, best first, as ``(price, count)``."""
        prices = self.bid_prices[row, side].tolist()
        counts = self.bid_counts[row, side].tolist()
        return [(price, count) for price, count in zip(prices, counts) if price != NO_LEVEL]


def carried_mids(yes_bid: np.ndarray, yes_ask: np.ndarray, *, initial: int = ONE_DOLLAR // 2) -> np.ndarray:
    """Per row, the mid of the last two-sided row at or before it, rounded down to a price unit
    (``initial`` before the first one). ``-1`` marks an empty side."""
    yes_bid = np.asarray(yes_bid, dtype=np.int64)
    yes_ask = np.asarray(yes_ask, dtype=np.int64)
    two_sided = (yes_bid >= 0) & (yes_ask >= 0)
    mids = np.where(two_sided, (yes_bid + yes_ask) // 2, initial)
    # Forward fill: index of the last two-sided row at or before each row.
    last = np.where(two_sided, np.arange(len(mids)), -1)
    np.maximum.accumulate(last, out=last)
    return np.where(last >= 0, mids[np.maximum(last, 0)], initial)


def mark_prices(yes_bid: np.ndarray, yes_ask: np.ndarray, mids: np.ndarray | None = None) -> np.ndarray:
    """The YES price to value positions at, per row: the mid (``mids``; by default
    :func:`carried_mids` of the rows, which a live window carries from its earlier rows),
    held within the side of the book that is there when the other is empty -- a lone YES bid at
    $0.95 says a YES contract is worth at least that, whatever the last two-sided mid was (a
    stale mid would pay the agent for buying what the book values far higher). Uses only the
    row and the rows before it."""
    marks = np.asarray(carried_mids(yes_bid, yes_ask) if mids is None else mids, dtype=np.int64)
    yes_bid = np.asarray(yes_bid, dtype=np.int64)
    yes_ask = np.asarray(yes_ask, dtype=np.int64)
    marks = np.where(yes_bid >= 0, np.maximum(marks, yes_bid), marks)
    marks = np.where(yes_ask >= 0, np.minimum(marks, yes_ask), marks)
    return np.clip(marks, 0, ONE_DOLLAR).astype(np.int32)
