"""Recording a session: market events from a feed into an order-book store, in order.

The feed's events go through an :class:`~application.write_queue.OrderbookWriteQueue`: taking
an event never waits on the store, batches follow ``batch_size`` and ``flush_interval_ms``, a
store outage is retried and buffered (spilled to disk past ``max_memory_events`` when a
``spill`` is given), and ``sample_every`` > 1 stores one book snapshot per N deltas.

**What is known in advance.** Before the feed's first event, the session gets one
:class:`~domain.events.MarketScheduled` per market: its scheduled close (and expiration) as the
exchange's :class:`~domain.ports.MarketCatalog` gives it (Kalshi: ``GET /markets/{ticker}``), so
replay can count the time left down to a time the live actor also knows, never to the end of
the recording. A feed that describes its own markets (the synthetic feed) is its own catalog. A
market the catalog cannot describe is recorded without one (logged); replay's data-quality
report says so. These rows are written directly, not through the write queue (which counts
only the feed's events).

Whatever way the recording stops -- the feed ends, the task is cancelled (Ctrl-C, SIGTERM), the
feed fails -- the queue is drained (every accepted event written) and the session is ended
before the exception, if any, propagates. If the store cannot take the rest in time
(``drain_timeout_s``), the rest stays in the spill and the session is left open: the next
process to open that spill (:func:`recover_spilled_session`) writes it and ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import attrs

from application.write_queue import DEFAULT_RETRY, OrderbookWriteQueue
from domain.backoff import ExponentialBackoff
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.ports import Clock, MarketCatalog, MarketDataFeed, OrderbookStore, SpillBuffer

log = logging.getLogger(__name__)

DEFAULT_MAX_MEMORY_EVENTS = 100_000


@attrs.frozen
class RecordingSummary:
    """What a session holds so far: counts of events written to the store, by kind."""

    session_id: int
    snapshots: int = 0
    deltas: int = 0
    trades: int = 0
    resolutions: int = 0
    schedules: int = 0  # MarketScheduled rows: markets whose scheduled close was recorded

    @property
    def events(self) -> int:
        return self.snapshots + self.deltas + self.trades + self.resolutions + self.schedules


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
    sample_every: int = 1,
    max_memory_events: int = DEFAULT_MAX_MEMORY_EVENTS,
    spill: Callable[[int], SpillBuffer] | None = None,
    retry: ExponentialBackoff = DEFAULT_RETRY,
    drain_timeout_s: float | None = None,
    on_queue: Callable[[OrderbookWriteQueue], None] | None = None,
    catalog: MarketCatalog | None = None,
) -> RecordingSummary:
    """Record ``feed`` into a new session of ``store`` until the feed ends.

    ``store`` must be open. ``progress`` is called with the running totals after every batch
    written. ``spill`` opens the spill buffer of a session id (e.g.
    ``lambda session_id: FileSpillBuffer.for_session(root, session_id)``); it is closed at the
    end. ``on_queue`` is handed the write queue once it exists (a status page reads its
    ``stats()``). ``catalog`` gives each market's scheduled close (default: the feed itself,
    when it is a :class:`~domain.ports.MarketCatalog`). Returns the totals of the ended session.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if flush_interval_ms is not None and flush_interval_ms <= 0:
        raise ValueError(f"flush_interval_ms must be > 0 or None, got {flush_interval_ms}")
    if not tickers:
        raise ValueError("a session records at least one market; tickers is empty")
    if sample_every < 1:
        raise ValueError(f"sample_every must be >= 1 (1 keeps every delta), got {sample_every}")
    max_memory_events = max(max_memory_events, 2 * batch_size)
    started_ms = clock.now_ms()
    session_id = await store.start_session(tuple(tickers), started_ms=started_ms, source=source)
    try:
        buffer = spill(session_id) if spill is not None else None
    except BaseException:
        with contextlib.suppress(Exception):
            await store.end_session(session_id, ended_ms=max(started_ms, clock.now_ms()))
        raise
    tally = _Tally(RecordingSummary(session_id), progress)
    if catalog is None and isinstance(feed, MarketCatalog):
        catalog = feed
    try:
        if catalog is not None:
            tally.written(await _record_schedules(store, session_id, catalog, tickers, clock))
    except BaseException:
        with contextlib.suppress(Exception):
            if buffer is not None:
                await buffer.close()
            await store.end_session(session_id, ended_ms=max(started_ms, clock.now_ms()))
        raise
    queue = OrderbookWriteQueue(
        store,
        session_id,
        batch_size=batch_size,
        flush_interval_s=None if flush_interval_ms is None else flush_interval_ms / 1000,
        max_memory_events=max_memory_events,
        spill=buffer,
        sample_every=sample_every,
        retry=retry,
        on_written=tally.written,
    )
    if on_queue is not None:
        on_queue(queue)
    allowed = frozenset(tickers)
    try:
        await queue.start()
        async for event in feed.events():
            queue.offer(_checked(event, allowed))
    except BaseException:
        # Cancellation or failure: save what was accepted, close the session, then re-raise.
        # A failure here must not hide the original exception.
        try:
            await _finish(queue, store, started_ms, clock, drain_timeout_s)
        except Exception as error:
            log.error("session %d: stopping the recording: %s", session_id, error)
        raise
    else:
        await _finish(queue, store, started_ms, clock, drain_timeout_s)
    finally:
        if buffer is not None:
            with contextlib.suppress(Exception):
                await buffer.close()
    return tally.summary


async def _record_schedules(
    store: OrderbookStore, session_id: int, catalog: MarketCatalog, tickers: Sequence[str], clock: Clock
) -> list[MarketScheduled]:
    """Each market's scheduled close, written before any market data; a market the catalog
    cannot describe is logged and recorded without one."""
    # Asked all at once: an unreachable catalog delays the start of the recording by one
    # lookup's retries, not by one per market.
    answers = await asyncio.gather(*(catalog.market(ticker) for ticker in tickers), return_exceptions=True)
    schedules = []
    for ticker, info in zip(tickers, answers, strict=True):
        if isinstance(info, BaseException):
            if not isinstance(info, Exception):
                raise info  # cancellation and the like are not a catalog's answer
            log.warning(
                "session %d: no scheduled close for %s (%s: %s); its replay will have no time-left features",
                session_id,
                ticker,
                type(info).__name__,
                info,
            )
            continue
        schedules.append(MarketScheduled(ticker, clock.now_ms(), info.close_ms, info.expiration_ms))
    if schedules:
        await store.write_events(session_id, schedules)
    return schedules


async def _finish(
    queue: OrderbookWriteQueue, store: OrderbookStore, started_ms: int, clock: Clock, timeout_s: float | None
) -> None:
    """Drains the queue, then ends the session; a drain that left events in the spill raises
    and leaves the session open for the process that will write them."""
    await queue.drain(timeout_s)
    await store.end_session(queue.session_id, ended_ms=max(started_ms, clock.now_ms()))


async def recover_spilled_session(
    store: OrderbookStore,
    session_id: int,
    spill: SpillBuffer,
    *,
    batch_size: int = 1000,
    drain_timeout_s: float | None = None,
) -> RecordingSummary:
    """Writes what a previous process left in ``spill`` for ``session_id`` -- skipping what the
    store already holds -- and ends the session if it is still open (at its last event's time).
    Returns the totals written now."""
    info = await store.get_session(session_id)
    tally = _Tally(RecordingSummary(session_id), None)
    last_ms = [info.started_ms]

    def written(events: Sequence[MarketEvent]) -> None:
        tally.written(events)
        last_ms[0] = max(last_ms[0], max(event.ts_ms for event in events))

    queue = OrderbookWriteQueue(
        store,
        session_id,
        batch_size=batch_size,
        flush_interval_s=None,
        max_memory_events=2 * batch_size,
        spill=spill,
        on_written=written,
    )
    await queue.start()
    await queue.drain(drain_timeout_s)
    if not info.is_closed:
        await store.end_session(session_id, ended_ms=last_ms[0])
    log.info("session %d: %d spilled events recovered", session_id, tally.summary.events)
    return tally.summary


_EVENT_TYPES = (BookSnapshot, BookDelta, PublicTrade, MarketResolved)


def _checked(event: MarketEvent, allowed: frozenset[str]) -> MarketEvent:
    if not isinstance(event, _EVENT_TYPES):
        raise TypeError(f"the feed sent something that is not a market event: {event!r}")
    if event.ticker not in allowed:
        raise UnexpectedMarket(
            f"the feed sent an event for {event.ticker!r}, which is not one of this "
            f"session's markets {sorted(allowed)}"
        )
    return event


@attrs.define(eq=False)
class _Tally:
    summary: RecordingSummary
    progress: Callable[[RecordingSummary], None] | None

    def written(self, batch: Sequence[MarketEvent]) -> None:
        self.summary = _tally(self.summary, batch)
        if self.progress is not None:
            self.progress(self.summary)


def _tally(summary: RecordingSummary, batch: Sequence[MarketEvent]) -> RecordingSummary:
    snapshots = deltas = trades = resolutions = schedules = 0
    for event in batch:
        if isinstance(event, BookDelta):
            deltas += 1
        elif isinstance(event, BookSnapshot):
            snapshots += 1
        elif isinstance(event, PublicTrade):
            trades += 1
        elif isinstance(event, MarketScheduled):
            schedules += 1
        else:
            resolutions += 1
    return attrs.evolve(
        summary,
        snapshots=summary.snapshots + snapshots,
        deltas=summary.deltas + deltas,
        trades=summary.trades + trades,
        resolutions=summary.resolutions + resolutions,
        schedules=summary.schedules + schedules,
    )
