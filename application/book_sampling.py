"""Sampling a recording (RL_ORDERBOOK_SAMPLE_RATE = N): one book state per N deltas.

Dropping deltas would corrupt every book replayed after the first one dropped, so sampling
never drops a change: it folds it. With N > 1 the sampler keeps each market's book, applies
every delta to it, and every N deltas of a market emits a :class:`BookSnapshot` of that book
(stamped with the N-th delta's ``seq``, ``ts_ms`` and ``sid``) in place of the N deltas.
Snapshots, trades and resolutions always pass. :meth:`remainder` gives a last snapshot of each
market with deltas not yet folded, so a drained recording ends on exact books.

What a sampled recording loses is resolution in time: between two stored snapshots a replay
sees the book as it was at the earlier one, so a trade may be replayed against a book up to
N - 1 deltas old. Every stored snapshot is exactly the live book at its moment.
"""

from __future__ import annotations

from domain.events import BookDelta, BookSnapshot, MarketEvent
from domain.orderbook import OrderBook
from domain.values import Side


class DeltaSampler:
    __slots__ = ("every", "folded", "_books", "_unsampled", "_last_delta")

    def __init__(self, every: int) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"sample rate must be an integer >= 1 (1 keeps every delta), got {every!r}")
        self.every = every
        self.folded = 0  # deltas represented by a snapshot instead of stored
        self._books: dict[str, OrderBook] = {}
        self._unsampled: dict[str, int] = {}
        self._last_delta: dict[str, BookDelta] = {}

    def sample(self, event: MarketEvent) -> MarketEvent | None:
        """What to store for ``event``: the event, a snapshot in its place, or None."""
        if event.__class__ is BookDelta:
            ticker = event.ticker
            book = self._books.get(ticker)
            if book is None:
                # A delta before any snapshot: a replay would apply it to an empty book too.
                book = self._books[ticker] = OrderBook(ticker)
            book.apply_delta(event.side, event.price, event.delta)
            count = self._unsampled.get(ticker, 0) + 1
            if count < self.every:
                self._unsampled[ticker] = count
                self._last_delta[ticker] = event
                return None
            self._unsampled[ticker] = 0
            self._last_delta.pop(ticker, None)
            self.folded += count
            return _snapshot_of(book, event)
        if event.__class__ is BookSnapshot:
            book = self._books.get(event.ticker)
            if book is None:
                book = self._books[event.ticker] = OrderBook(event.ticker)
            book.apply_snapshot(event.yes, event.no)
            # The deltas since the last stored snapshot are superseded: they need no snapshot.
            self.folded += self._unsampled.get(event.ticker, 0)
            self._unsampled[event.ticker] = 0
            self._last_delta.pop(event.ticker, None)
        return event

    def remainder(self) -> list[BookSnapshot]:
        """A snapshot of every market whose latest deltas are not folded yet; resets them."""
        snapshots = []
        for ticker, delta in self._last_delta.items():
            self.folded += self._unsampled[ticker]
            self._unsampled[ticker] = 0
            snapshots.append(_snapshot_of(self._books[ticker], delta))
        self._last_delta.clear()
        return snapshots


def _snapshot_of(book: OrderBook, delta: BookDelta) -> BookSnapshot:
    return BookSnapshot(delta.ticker, delta.seq, delta.ts_ms, book.levels(Side.YES), book.levels(Side.NO), delta.sid)
