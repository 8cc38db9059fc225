"""The actor's market rows, from :mod:`application.observation` -- the code the parity test holds
to replay's.

:class:`LiveMarketRows` keeps one :class:`~application.observation.LiveMarketObservation` per
market and, at each decision, samples the live book into it and returns it: the actor reads the
observation, the action mask and the decoded order off that one object (the same
``domain.features`` builder and ``domain.actions`` decoder the environment uses).

Rows sit on the model's grid, as replay's: one per multiple of ``step_ms`` on the Unix clock,
whether or not the book changed -- the actor samples every market at every grid time
(``PaperTradingActor``'s sampler, which never waits for an order) and decides on those rows --
so every feature counted in rows (price moves, volatility, trade flow, order age) spans the
same time live as in training. A grid time the sampler woke too late for (the event loop was
held up) gets a row from the book as it is when it wakes: the window stays one row per step.

Two things come from outside the book: each market's close time (:meth:`LiveMarketRows.set_close`,
read from the exchange at start -- the time-left features count down to it, as training's
counted down to the tape's expiry; a market without one has no rows), and the public trades
(:meth:`LiveMarketRows.record_trade`, handed over by the ingestion as the feed delivers them --
the trade-flow features).
"""

from __future__ import annotations

import logging

from application.book_state import SharedBookState
from application.observation import LiveMarketObservation, ObservationError
from application.replay import ReplayConfig
from domain.events import PublicTrade
from domain.features import HISTORY_ROWS

log = logging.getLogger(__name__)


class LiveMarketRows:
    """``replay`` is the model's replay settings (depth levels, the row grid ``step_ms``)."""

    def __init__(self, books: SharedBookState, *, replay: ReplayConfig) -> None:
        self._books = books
        self._replay = replay
        self.step_ms = replay.step_ms
        self._closes: dict[str, int] = {}
        self._markets: dict[str, LiveMarketObservation] = {}
        self._without_close: set[str] = set()  # warned about once

    def set_close(self, ticker: str, close_ms: int) -> None:
        """When trading in ``ticker`` closes (Unix ms), as the exchange says."""
        self._closes[ticker] = close_ms
        market = self._markets.get(ticker)
        if market is not None:
            market.expiry_ms = close_ms

    def new_market(self, ticker: str, close_ms: int) -> LiveMarketObservation:
        """The observation object of a market's rows (the first time it is sampled)."""
        return LiveMarketObservation(ticker, replay=self._replay, expiry_ms=close_ms)

    def _market(self, ticker: str) -> LiveMarketObservation | None:
        market = self._markets.get(ticker)
        if market is None:
            close = self._closes.get(ticker)
            if close is None:
                return None
            market = self._markets[ticker] = self.new_market(ticker, close)
        return market

    def record_trade(self, trade: PublicTrade) -> None:
        """A public trade, in feed order. On the feed's path: an append, nothing more."""
        if self._books.is_in_sync(trade.ticker):
            market = self._market(trade.ticker)
            if market is not None:
                market.record_trade(trade)

    def sample(self, ticker: str, now_ms: int) -> LiveMarketObservation | None:
        """The row of ``ticker`` at the grid time ``now_ms``: taken from its live book now if it
        is not yet (with the grid times since the latest row, if any were missed), the same row
        if it is; None when there is none (book out of sync, no close time, past the close, off
        the grid, before the latest row)."""
        if not self._books.is_in_sync(ticker):
            return None
        market = self._market(ticker)
        if market is None:
            if ticker not in self._without_close:
                self._without_close.add(ticker)
                log.warning("actor: no close time known for %s: it has no observations and is not traded", ticker)
            return None
        step = self.step_ms
        if now_ms % step:
            log.warning("actor: no observation of %s at %d ms: not on the %d ms row grid", ticker, now_ms, step)
            return None
        last = market.last_sample_ms
        if last is not None and now_ms <= last:
            return market if now_ms == last else None  # sampled already; an older row is gone
        book = self._books.snapshot(ticker)
        try:
            if last is not None:
                # Grid times missed (the sampler was late): rows all the same, from the book as
                # it is now -- the window stays one row per step, as replay's.
                for missed in range(max(last + step, now_ms - HISTORY_ROWS * step), now_ms, step):
                    market.sample(book, missed)
            market.sample(book, now_ms)
        except ObservationError as error:  # a market past its close
            log.warning("actor: no observation of %s: %s", ticker, error)
            return None
        return market
