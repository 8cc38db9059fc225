"""Observations of a live market: the rows replay compiles, built from the live book as it runs.

Training sees a market through :func:`application.replay.compile_market`: at each decision time
the book's best ``depth_levels`` bids per side, the trades printed since the previous decision,
and the mark; :func:`domain.features.market_features` turns those rows into the market block of
the observation, and :class:`domain.features.ObservationBuilder` adds the account. A live actor
must see exactly that, or the model trades on inputs it never learned from. So
:class:`LiveMarketObservation` keeps the same rows -- sampled from the live
:class:`~domain.orderbook.OrderBook` (the one ``application.book_state`` keeps current) with the
same ``OrderBook.depth`` call replay uses -- for the last ``HISTORY_ROWS`` rows (all that any
feature looks back), and hands them to the same two domain functions. The parity test
(``tests/application/test_observation_parity.py``) runs one recorded stream through both paths
and compares every observation and every decoded order.

Use, per market: :meth:`~LiveMarketObservation.record_trade` for every public trade after the
book's first snapshot, :meth:`~LiveMarketObservation.sample` at each row time (the book must be
in sync), then -- the one live decision path, the actor's (``application.acting``) --
:meth:`~LiveMarketObservation.observe`, :meth:`~LiveMarketObservation.legal_actions` and
:meth:`~LiveMarketObservation.order_for`, all against the same sampled row and top of book.
Rows sit on replay's grid (multiples of ``step_ms`` on the Unix clock), so an order's age is
counted in rows, as the environment counts it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from application.replay import ReplayConfig
from domain.actions import ActionDecoder
from domain.events import PublicTrade
from domain.features import HISTORY_ROWS, ObservationBuilder, market_features
from domain.market_tape import NO_LEVEL, carried_mids, mark_prices
from domain.orderbook import OrderBook
from domain.orders import OrderRequest, OrderSide
from domain.values import ONE_DOLLAR


class ObservationError(ValueError):
    """A live observation asked for out of order: before a sample, time going back, past expiry."""


class LiveMarketObservation:
    """One live market's decision rows and its observations.

    ``replay`` must be the replay settings the model was trained with (its ``depth_levels``
    shape the depth features, its ``step_ms`` the row grid); ``expiry_ms`` is when the market
    closes.
    """

    def __init__(
        self,
        ticker: str,
        *,
        replay: ReplayConfig,
        expiry_ms: int,
    ) -> None:
        self.ticker = ticker
        self.depth_levels = replay.depth_levels
        self.step_ms = replay.step_ms
        self.expiry_ms = expiry_ms
        self._times: deque[int] = deque(maxlen=HISTORY_ROWS)
        self._bid_prices: deque[np.ndarray] = deque(maxlen=HISTORY_ROWS)  # [2, K] per row
        self._bid_counts: deque[np.ndarray] = deque(maxlen=HISTORY_ROWS)
        self._marks: deque[int] = deque(maxlen=HISTORY_ROWS)
        self._trades: deque[list[tuple[int, int]]] = deque(maxlen=HISTORY_ROWS)  # (count, taker) per row
        self._pending: list[tuple[int, int]] = []  # trades since the last sample
        self._row: np.ndarray | None = None
        self.rows = 0  # rows sampled so far
        self.yes_bid = self.yes_ask = -1  # the latest row's top of book (-1: none)
        # The last two-sided mid (carried over one-sided rows) and the mark it gives, as replay's.
        self._mid = ONE_DOLLAR // 2
        self.mark = ONE_DOLLAR // 2

    def record_trade(self, trade: PublicTrade) -> None:
        """A public trade in this market, in the order the feed delivered it."""
        self._pending.append((trade.count, int(trade.taker_side)))

    def sample(self, book: OrderBook, now_ms: int) -> None:
        """A decision row: ``book`` as it stands at ``now_ms``, after every event up to then."""
        if self._times and now_ms <= self._times[-1]:
            raise ObservationError(
                f"{self.ticker}: sample at {now_ms} ms is not after the last one ({self._times[-1]} ms)"
            )
        if now_ms > self.expiry_ms:
            raise ObservationError(
                f"{self.ticker}: sample at {now_ms} ms is past the market's expiry ({self.expiry_ms} ms)"
            )
        prices = np.full((2, self.depth_levels), NO_LEVEL, dtype=np.int32)
        counts = np.zeros((2, self.depth_levels), dtype=np.int64)
        for side in (0, 1):
            for level, (price, count) in enumerate(book.depth(side, self.depth_levels)):
                prices[side, level] = price
                counts[side, level] = count
        best_yes, best_no = int(prices[0, 0]), int(prices[1, 0])
        self.yes_bid = best_yes
        self.yes_ask = ONE_DOLLAR - best_no if best_no >= 0 else -1
        # The same carried-forward mid and mark replay computes over the whole tape.
        yes_bid, yes_ask = np.array([self.yes_bid]), np.array([self.yes_ask])
        self._mid = int(carried_mids(yes_bid, yes_ask, initial=self._mid)[0])
        self.mark = int(mark_prices(yes_bid, yes_ask, np.array([self._mid]))[0])
        self._times.append(now_ms)
        self._bid_prices.append(prices)
        self._bid_counts.append(counts)
        self._marks.append(self.mark)
        self._trades.append(self._pending)
        self._pending = []
        self._row = None
        self.rows += 1

    def market_row(self) -> np.ndarray:
        """The market block of the latest row (float32, ``MARKET_FEATURE_COUNT``)."""
        if self._row is None:
            if not self._times:
                raise ObservationError(f"{self.ticker}: no row sampled yet")
            trades = list(self._trades)
            offsets = np.zeros(len(trades) + 1, dtype=np.int64)
            np.cumsum([len(row) for row in trades], out=offsets[1:])
            flat = [trade for row in trades for trade in row]
            self._row = market_features(
                times=np.array(self._times, dtype=np.int64),
                expiry_ms=self.expiry_ms,
                bid_prices=np.array(self._bid_prices),
                bid_counts=np.array(self._bid_counts),
                marks=np.array(self._marks, dtype=np.int32),
                trade_offsets=offsets,
                trade_counts=np.array([count for count, _ in flat], dtype=np.int64),
                trade_takers=np.array([taker for _, taker in flat], dtype=np.int8),
            )[-1]
        return self._row

    @property
    def last_sample_ms(self) -> int | None:
        """The latest row's time (None: no row yet)."""
        return self._times[-1] if self._times else None

    def rows_since(self, ts_ms: int) -> int:
        """Rows from the one at ``ts_ms`` to the latest (0: the latest row is ``ts_ms``'s): the
        observation's order age, as the environment counts it (rows, not time)."""
        if not self._times:
            raise ObservationError(f"{self.ticker}: no row sampled yet")
        return max(0, (self._times[-1] - ts_ms) // self.step_ms)

    def observe(
        self,
        builder: ObservationBuilder,
        *,
        quantity: int,
        cost_basis: int,
        market_value: int,
        cash: int,
        order: tuple[OrderSide, int, int, int] | None,
    ) -> np.ndarray:
        """The observation of the latest row for the account: the market's signed position
        (count units) bought for ``cost_basis`` and worth ``market_value`` at :attr:`mark`, the
        account's cash, and the market's working order as ``(side, price, remaining,
        placed_ms)`` (None: none; its age is :meth:`rows_since` ``placed_ms``)."""
        row = self.market_row()
        if order is None:
            return builder.observe(row, self.mark, quantity, cost_basis, market_value, cash, None, 0, 0, 0)
        side, price, remaining, placed_ms = order
        return builder.observe(
            row, self.mark, quantity, cost_basis, market_value, cash,
            side is OrderSide.BID, price, remaining, self.rows_since(placed_ms),
        )  # fmt: skip

    def order_for(
        self,
        decoder: ActionDecoder,
        action: int,
        *,
        position: int,
        client_order_id: str,
        working: tuple[OrderSide, int, int] | None = None,
    ) -> OrderRequest | None:
        """The order ``action`` places, priced on the latest row's top of book, beside the
        market's ``working`` order ``(side, price, remaining)`` -- the actor's only open order
        there (see :meth:`ActionDecoder.decode`)."""
        return decoder.decode(
            action,
            ticker=self.ticker,
            yes_bid=self.yes_bid,
            yes_ask=self.yes_ask,
            position=position,
            client_order_id=client_order_id,
            working=working,
            **_open_remaining(working),
        )

    def legal_actions(
        self,
        decoder: ActionDecoder,
        *,
        position: int,
        buying_power: int,
        working: tuple[OrderSide, int, int] | None = None,
    ) -> list[bool]:
        """The action mask on the latest row's top of book, beside the market's ``working`` order."""
        return decoder.legal_actions(
            yes_bid=self.yes_bid, yes_ask=self.yes_ask, position=position, buying_power=buying_power,
            **_open_remaining(working),
        )  # fmt: skip


def _open_remaining(working: tuple[OrderSide, int, int] | None) -> dict[str, int]:
    """The decoder's ``open_bids``/``open_asks`` for a market whose one open order is ``working``."""
    if working is None:
        return {"open_bids": 0, "open_asks": 0}
    side, _, remaining = working
    return {"open_bids": remaining, "open_asks": 0} if side is OrderSide.BID else {"open_bids": 0, "open_asks": remaining}
