"""The live books of every market, in one place: written by the feed, read by everyone else.

The feed (:class:`~domain.ports.LiveBooks` port) applies snapshots and in-sequence deltas and,
after a gap or a lost connection, marks a book as awaiting its snapshot: such a book refuses
deltas until one arrives, so it is never silently wrong. Readers take :meth:`snapshot` (a
copy) or subscribe a listener, called after each applied update with ``(ticker, book)``.

Everything runs on the event loop's thread, so there is no lock: an update and the listener
calls that follow it finish before anyone else reads. Listeners get the live book, not a copy
(that would cost a ladder copy per delta): they must not modify it, and should copy it
(:meth:`OrderBook.copy`) to keep it. A listener that raises is logged and counted; the update
and the other listeners go on.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable

import attrs

from domain.events import BookDelta, BookSnapshot
from domain.orderbook import BookError, OrderBook

log = logging.getLogger(__name__)

BookListener = Callable[[str, OrderBook], None]


class BookStatus(enum.Enum):
    AWAITING_SNAPSHOT = "awaiting_snapshot"
    IN_SYNC = "in_sync"


class UnknownMarket(LookupError):
    """A read of a market the state has never heard of."""


@attrs.frozen
class MarketBookStats:
    ticker: str
    status: BookStatus
    snapshots: int  # applied
    deltas: int  # applied
    refused_deltas: int  # arrived while the book awaited a snapshot
    invalidations: int  # times the book was marked as awaiting a snapshot
    last_update_ms: int | None  # wall-clock time of the last applied update


@attrs.define(eq=False, slots=True)
class _Market:
    book: OrderBook
    in_sync: bool = False
    snapshots: int = 0
    deltas: int = 0
    refused_deltas: int = 0
    invalidations: int = 0
    last_update_ms: int | None = None
    listeners: tuple[BookListener, ...] = ()


class SharedBookState:
    """The books of all markets. ``tickers`` are registered up front as awaiting a snapshot;
    a snapshot of any other market registers it too."""

    def __init__(self, tickers: Iterable[str] = (), *, now_ms: Callable[[], int] | None = None) -> None:
        self._markets: dict[str, _Market] = {}
        self._listeners: tuple[BookListener, ...] = ()
        self._now_ms = now_ms or _wall_clock_ms
        self.listener_errors = 0
        for ticker in tickers:
            self._market(ticker)

    # -- writes (the feed) ---------------------------------------------------------------------
    def apply(self, event: BookSnapshot | BookDelta) -> bool:
        """Applies a snapshot, or a delta to a book in sync; False for a delta refused because
        its book awaits a snapshot. Listeners are called after each applied update."""
        if event.__class__ is BookDelta:
            market = self._markets.get(event.ticker)
            if market is None or not market.in_sync:
                if market is not None:
                    market.refused_deltas += 1
                return False
            market.book.apply_delta(event.side, event.price, event.delta)
            market.deltas += 1
        elif event.__class__ is BookSnapshot:
            market = self._market(event.ticker)
            try:
                market.book.apply_snapshot(event.yes, event.no)
            except BookError:
                # One side may already be replaced: the book is no longer anything we can trust.
                self.await_snapshot(event.ticker)
                raise
            market.in_sync = True
            market.snapshots += 1
        else:
            raise TypeError(f"not a book event: {event!r}")
        market.last_update_ms = self._now_ms()
        if self._listeners or market.listeners:
            self._notify(event.ticker, market)
        return True

    def await_snapshot(self, ticker: str) -> None:
        """Marks the book invalid until its next snapshot (a gap, a lost connection)."""
        market = self._market(ticker)
        if market.in_sync:
            market.in_sync = False
            market.invalidations += 1

    # -- listeners -----------------------------------------------------------------------------
    def subscribe(self, listener: BookListener, tickers: Iterable[str] | None = None) -> None:
        """Calls ``listener(ticker, book)`` after each applied update: of every market, or of
        ``tickers`` only. Subscribing a listener again adds it again."""
        if tickers is None:
            self._listeners = (*self._listeners, listener)
            return
        for ticker in tickers:
            market = self._market(ticker)
            market.listeners = (*market.listeners, listener)

    def unsubscribe(self, listener: BookListener) -> None:
        """Removes every subscription of ``listener``; raises ValueError if it had none."""
        found = listener in self._listeners
        self._listeners = tuple(other for other in self._listeners if other != listener)
        for market in self._markets.values():
            if listener in market.listeners:
                found = True
                market.listeners = tuple(other for other in market.listeners if other != listener)
        if not found:
            raise ValueError(f"{listener!r} is not subscribed")

    def _notify(self, ticker: str, market: _Market) -> None:
        # Tuples are replaced, never mutated, so a listener may (un)subscribe while called.
        for listener in self._listeners:
            self._call(listener, ticker, market.book)
        for listener in market.listeners:
            self._call(listener, ticker, market.book)

    def _call(self, listener: BookListener, ticker: str, book: OrderBook) -> None:
        try:
            listener(ticker, book)
        except Exception:
            self.listener_errors += 1
            log.exception("book listener %r failed on %s", listener, ticker)

    # -- reads ---------------------------------------------------------------------------------
    @property
    def tickers(self) -> tuple[str, ...]:
        return tuple(self._markets)

    def snapshot(self, ticker: str) -> OrderBook:
        """A copy of the book of ``ticker`` (whatever its status: check :meth:`status`)."""
        return self._known(ticker).book.copy()

    def status(self, ticker: str) -> BookStatus:
        return BookStatus.IN_SYNC if self._known(ticker).in_sync else BookStatus.AWAITING_SNAPSHOT

    def is_in_sync(self, ticker: str) -> bool:
        market = self._markets.get(ticker)
        return market is not None and market.in_sync

    def stats(self, ticker: str) -> MarketBookStats:
        market = self._known(ticker)
        return MarketBookStats(
            ticker=ticker,
            status=BookStatus.IN_SYNC if market.in_sync else BookStatus.AWAITING_SNAPSHOT,
            snapshots=market.snapshots,
            deltas=market.deltas,
            refused_deltas=market.refused_deltas,
            invalidations=market.invalidations,
            last_update_ms=market.last_update_ms,
        )

    def all_stats(self) -> list[MarketBookStats]:
        return [self.stats(ticker) for ticker in self._markets]

    # -- internals -----------------------------------------------------------------------------
    def _market(self, ticker: str) -> _Market:
        market = self._markets.get(ticker)
        if market is None:
            if not isinstance(ticker, str) or not ticker:
                raise ValueError(f"a market ticker must be non-empty text, got {ticker!r}")
            market = self._markets[ticker] = _Market(OrderBook(ticker))
        return market

    def _known(self, ticker: str) -> _Market:
        market = self._markets.get(ticker)
        if market is None:
            raise UnknownMarket(f"no book for market {ticker!r}; known: {sorted(self._markets)}")
        return market


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
