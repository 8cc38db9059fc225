"""The actor's market rows, from :mod:`application.observation` -- the code the parity test holds
to replay's.

:class:`LiveMarketRows` keeps one :class:`~application.observation.LiveMarketObservation` per
market and, at each decision, samples the live book into it and returns it: the actor reads the
observation, the action mask and the decoded order off that one object (the same
``domain.features`` builder and ``domain.actions`` decoder the environment uses).

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

log = logging.getLogger(__name__)


class LiveMarketRows:
    """``replay`` is the model's replay settings (depth levels)."""

    def __init__(self, books: SharedBookState, *, replay: ReplayConfig) -> None:
        self._books = books
        self._replay = replay
        self._closes: dict[str, int] = {}
        self._markets: dict[str, LiveMarketObservation] = {}
        self._without_close: set[str] = set()  # warned about once

    def set_close(self, ticker: str, close_ms: int) -> None:
        """When trading in ``ticker`` closes (Unix ms), as the exchange says."""
        self._closes[ticker] = close_ms
        market = self._markets.get(ticker)
        if market is not None:
            market.expiry_ms = close_ms

    def _market(self, ticker: str) -> LiveMarketObservation | None:
        market = self._markets.get(ticker)
        if market is None:
            close = self._closes.get(ticker)
            if close is None:
                return None
            market = self._markets[ticker] = LiveMarketObservation(ticker, replay=self._replay, expiry_ms=close)
        return market

    def record_trade(self, trade: PublicTrade) -> None:
        """A public trade, in feed order. On the feed's path: an append, nothing more."""
        if self._books.is_in_sync(trade.ticker):
            market = self._market(trade.ticker)
            if market is not None:
                market.record_trade(trade)

    def sample(self, ticker: str, now_ms: int) -> LiveMarketObservation | None:
        """A new row of ``ticker`` from its live book at ``now_ms``; None when there is none to
        take (book out of sync, no close time, past the close, time not moving on)."""
        if not self._books.is_in_sync(ticker):
            return None
        market = self._market(ticker)
        if market is None:
            if ticker not in self._without_close:
                self._without_close.add(ticker)
                log.warning("actor: no close time known for %s: it has no observations and is not traded", ticker)
            return None
        try:
            market.sample(self._books.snapshot(ticker), now_ms)
        except ObservationError as error:  # two decisions in one millisecond, a market past its close
            log.warning("actor: no observation of %s: %s", ticker, error)
            return None
        return market
