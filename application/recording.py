"""Recording a session: market events from a feed into an order-book store, in order.

The recorder buffers events and writes them in batches (when ``batch_size`` events are waiting,
or ``flush_interval_ms`` after the last write, checked as events arrive). Writes are awaited
inline, so a slow store slows the consumption of the feed rather than losing data; a
non-blocking write queue that spills to disk under back-pressure is a separate, later piece.

Whatever way the recording stops -- the feed ends, the task is cancelled (Ctrl-C), the feed
fails -- every event already accepted is written and the session is ended before the
exception, if any, propagates. What cannot be saved is a batch the store itself refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import attrs

from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, PublicTrade
from domain.ports import Clock, MarketDataFeed, OrderbookStore


@attrs.frozen
class RecordingSummary:
    """What a session holds so far: counts of events written to the store, by kind."""

    session_id: int
    snapshots: int = 0
    deltas: int = 0
    trades: int = 0
    resolutions: int = 0

    @property
    def events(self) -> int:
        return self.snapshots + self.deltas + self.trades + self.resolutions


class UnexpectedMarket(ValueError):
    """The feed delivered an event for a market the session was not started for."""


async def record_session(
    feed: MarketDataFeed,
    store: OrderbookStore,
    *,
    tickers: Sequence[str],
    source: str,
    batch_size: int,
    clock: Clock,
    flush_interval_ms: int | None = None,
    progress: Callable[[RecordingSummary], None] | None = None,
) -> RecordingSummary:
    """Record ``feed`` into a new session of ``store`` until the feed ends.

    ``store`` must be open. ``progress`` is called with the running totals after every batch
    written. Returns the totals of the ended session.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if flush_interval_ms is not None and flush_interval_ms <= 0:
        raise ValueError(f"flush_interval_ms must be > 0 or None, got {flush_interval_ms}")
    if not tickers:
        raise ValueError("a session records at least one market; tickers is empty")
    recorder = _Recorder(store, frozenset(tickers), batch_size, flush_interval_ms, clock, progress)
    started_ms = clock.now_ms()
    recorder.summary = RecordingSummary(
        session_id=await store.start_session(tuple(tickers), started_ms=started_ms, source=source)
    )
    recorder.last_flush_ms = started_ms
    try:
        async for event in feed.events():
            await recorder.accept(event)
    except BaseException:
        # Cancellation or failure: save what was accepted, close the session, then re-raise.
        # A failure here must not hide the original exception.
        with contextlib.suppress(Exception):
            await recorder.flush()
        with contextlib.suppress(Exception):
            await store.end_session(recorder.summary.session_id, ended_ms=max(started_ms, clock.now_ms()))
        raise
    await recorder.flush()
    await store.end_session(recorder.summary.session_id, ended_ms=max(started_ms, clock.now_ms()))
    return recorder.summary


_EVENT_TYPES = (BookSnapshot, BookDelta, PublicTrade, MarketResolved)


@attrs.define(eq=False)
class _Recorder:
    store: OrderbookStore
    tickers: frozenset[str]
    batch_size: int
    flush_interval_ms: int | None
    clock: Clock
    progress: Callable[[RecordingSummary], None] | None
    summary: RecordingSummary = attrs.field(init=False)
    last_flush_ms: int = attrs.field(init=False, default=0)
    buffer: list[MarketEvent] = attrs.field(init=False, factory=list)

    async def accept(self, event: MarketEvent) -> None:
        if not isinstance(event, _EVENT_TYPES):
            raise TypeError(f"the feed sent something that is not a market event: {event!r}")
        if event.ticker not in self.tickers:
            raise UnexpectedMarket(
                f"the feed sent an event for {event.ticker!r}, which is not one of this "
                f"session's markets {sorted(self.tickers)}"
            )
        self.buffer.append(event)
        if len(self.buffer) >= self.batch_size or self._interval_elapsed():
            await self.flush()

    def _interval_elapsed(self) -> bool:
        if self.flush_interval_ms is None:
            return False
        return self.clock.now_ms() - self.last_flush_ms >= self.flush_interval_ms

    async def flush(self) -> None:
        if not self.buffer:
            return
        batch = self.buffer
        # Shielded: a write in flight when the task is cancelled is allowed to finish, so we know
        # whether the batch is stored and never write it twice (an adapter may write from a
        # thread that a cancellation does not stop).
        write = asyncio.ensure_future(self.store.write_events(self.summary.session_id, batch))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await write
            self._written(batch)
            raise
        self._written(batch)

    def _written(self, batch: list[MarketEvent]) -> None:
        # Only a written batch leaves the buffer: if the write fails, the events stay here.
        self.buffer = []
        self.last_flush_ms = self.clock.now_ms()
        self.summary = _tally(self.summary, batch)
        if self.progress is not None:
            self.progress(self.summary)


def _tally(summary: RecordingSummary, batch: Sequence[MarketEvent]) -> RecordingSummary:
    snapshots = deltas = trades = resolutions = 0
    for event in batch:
        if isinstance(event, BookDelta):
            deltas += 1
        elif isinstance(event, BookSnapshot):
            snapshots += 1
        elif isinstance(event, PublicTrade):
            trades += 1
        else:
            resolutions += 1
    return attrs.evolve(
        summary,
        snapshots=summary.snapshots + snapshots,
        deltas=summary.deltas + deltas,
        trades=summary.trades + trades,
        resolutions=summary.resolutions + resolutions,
    )
