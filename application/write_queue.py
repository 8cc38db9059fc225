"""The write queue between live books and storage: never blocks the feed, never loses an event.

:meth:`OrderbookWriteQueue.offer` is a plain function call: it appends to memory and returns.
A background flusher writes batches to the :class:`~domain.ports.OrderbookStore` -- when
``batch_size`` events wait, or when the first of them has waited ``flush_interval_s`` -- in
order, one batch at a time.

**Ordinals.** Every event the queue keeps gets an ordinal, its position in the session's stream
(the store's event count when the queue started is the first). ``stored_through`` is the ordinal
after the last event the store holds. This one number makes every step idempotent: whatever
sits in memory or on disk below it is skipped, so nothing is written twice, whether a write
committed but its acknowledgement was lost, an event was spilled while its batch was in flight,
or a crashed process left a spill behind.

**Store outages.** A write that fails with a connection-type error is retried with exponential
backoff and jitter. Before each retry the queue asks the store how many events the session holds
(:meth:`~domain.ports.OrderbookStore.get_session`): if the failed batch is in, it was committed
and is not sent again. Errors that retrying cannot cure are told apart: the store refusing the
data (``ValueError``/``TypeError``) makes the queue retry that batch one event at a time and
leave out, loudly, only the events refused; a closed or unknown session stops the flusher.

**Memory bound and spill.** Past ``max_memory_events`` in memory, the oldest half moves to the
:class:`~domain.ports.SpillBuffer` (disk) on a background task, so the feed is neither blocked
nor dropped: memory holds at most the bound plus what arrives while one append is under way.
The spill is older than memory, so the flusher empties it first. Without a spill the queue
keeps buffering in memory (it never drops) and says so in the log.

**Drain.** :meth:`drain` (on SIGINT/SIGTERM, or when a recording ends) writes everything accepted
and returns. If the store does not take it within ``timeout_s``, or the flusher has failed, what
remains goes to the spill and :class:`DrainIncomplete` / :class:`WriteQueueFailed` say how much;
the next queue on that spill writes it first. Only what lived in memory when a process was
killed outright (kill -9, power cut: about ``max_memory_events`` at most) can be lost.

**Sampling** (``sample_every`` = RL_ORDERBOOK_SAMPLE_RATE): see :mod:`application.book_sampling`.
With N > 1 the queue stores one snapshot of the book per N deltas of a market instead of the
deltas -- never a subset of deltas, which would corrupt every replayed book.

**Counting the store.** The check after a failed write counts the session's snapshots, deltas
and trades, plus one per resolved market: it assumes a market resolves once per session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random as _random
import time
from collections.abc import Callable, Sequence

import attrs

from application.book_sampling import DeltaSampler
from domain.backoff import ExponentialBackoff
from domain.events import MarketEvent
from domain.ports import OrderbookStore, SessionClosed, SessionNotFound, SpillBuffer

log = logging.getLogger(__name__)

DEFAULT_RETRY = ExponentialBackoff(initial_s=0.1, max_s=30.0)
REFUSED_DATA = (ValueError, TypeError)  # the store refused the events: retrying cannot help
FATAL = (SessionClosed, SessionNotFound)  # nothing more can be written to this session


class QueueClosed(RuntimeError):
    """An event offered after :meth:`OrderbookWriteQueue.drain` began."""


class WriteQueueFailed(RuntimeError):
    """The flusher stopped for good (the session was closed or is unknown, or the store's
    count of events disagrees with the queue's). ``kept`` events are in the spill, ``lost`` not."""

    def __init__(self, message: str, *, kept: int, lost: int) -> None:
        super().__init__(message)
        self.kept = kept
        self.lost = lost


class DrainIncomplete(RuntimeError):
    """Drain timed out or was cancelled with events not yet stored; ``kept`` are in the spill."""

    def __init__(self, message: str, *, kept: int, lost: int) -> None:
        super().__init__(message)
        self.kept = kept
        self.lost = lost


@attrs.frozen
class WriteQueueStats:
    accepted: int  # events offered
    folded: int  # deltas stored as part of a sampled snapshot instead of one by one
    written: int  # events the store committed
    rejected: int  # events the store refused as invalid, left out (logged)
    missing: int  # ordinals found neither stored nor kept (logged)
    pending: int  # kept and not yet stored: memory, on the way to disk, on disk, in flight
    queue_depth: int  # in memory now
    memory_high_water: int
    spilled: int  # events ever moved to the spill
    spill_pending: int  # on disk now (some may be stored already, awaiting acknowledgement)
    batches: int
    retries: int
    errors: int  # failed store calls
    spill_errors: int
    failure: str | None


class OrderbookWriteQueue:
    """Buffers one session's events on their way to ``store``. ``await start()`` first."""

    def __init__(
        self,
        store: OrderbookStore,
        session_id: int,
        *,
        batch_size: int = 100,
        flush_interval_s: float | None = 1.0,
        max_memory_events: int = 100_000,
        spill: SpillBuffer | None = None,
        sample_every: int = 1,
        retry: ExponentialBackoff = DEFAULT_RETRY,
        on_written: Callable[[Sequence[MarketEvent]], None] | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if flush_interval_s is not None and not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0 or None, got {flush_interval_s!r}")
        if not (isinstance(max_memory_events, int) and max_memory_events >= 2 * batch_size):
            raise ValueError(
                f"max_memory_events must be an integer >= 2 * batch_size ({2 * batch_size}), got {max_memory_events!r}"
            )
        self._store = store
        self._session_id = session_id
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._max_memory = max_memory_events
        self._spill = spill
        self._sampler = DeltaSampler(sample_every) if sample_every != 1 else None
        self._retry = retry
        self._on_written = on_written
        self._random = random

        self._memory: collections.deque[MarketEvent] = collections.deque()
        self._next_ordinal = 0  # the ordinal the next kept event gets
        self._stored_through = 0  # the store holds every ordinal below this
        self._offset = 0  # ordinals the store will never hold (refused or missing)
        self._isolate_until = 0  # below this ordinal, write one event per batch
        self._flush_through = 0  # below this ordinal, write without waiting for a full batch
        self._spilling = 0  # events on their way from memory to the spill
        self._batch_started = 0.0  # monotonic time the oldest unwritten batch began
        self._failed_attempts = 0
        self._closed = False  # no more offers
        self._stopping = False  # background tasks are to end
        self._failure: BaseException | None = None
        self._warned_unbounded = False
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._spill_task: asyncio.Task[None] | None = None

        self._accepted = self._written = self._rejected = self._missing = 0
        self._spilled = self._batches = self._retries = self._errors = self._spill_errors = 0
        self._high_water = 0

    # -- the producer side: plain calls, never awaiting ------------------------------------------
    def offer(self, event: MarketEvent) -> None:
        """Accept ``event`` for storage. Raises :class:`QueueClosed` once draining has begun."""
        if self._closed:
            raise QueueClosed(f"the write queue of session {self._session_id} is drained; it takes no more events")
        self._accepted += 1
        sampler = self._sampler
        if sampler is not None:
            event = sampler.sample(event)  # type: ignore[assignment]
            if event is None:
                return
        self._enqueue(event)

    put_nowait = offer

    def _enqueue(self, event: MarketEvent) -> None:
        memory = self._memory
        memory.append(event)
        self._next_ordinal += 1
        depth = len(memory)
        if depth == 1:
            self._batch_started = time.monotonic()
            self._wakeup.set()
        elif depth == self._batch_size:
            self._wakeup.set()
        if depth > self._high_water:
            self._high_water = depth
        if depth > self._max_memory:
            self._overflow()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Reads where the session stands, then starts the flusher (spilled events go first)."""
        if self._flusher is not None:
            raise RuntimeError("the write queue is already started")
        stored = await self._stored_count()
        self._stored_through = stored
        spill_end = self._spill.end_ordinal if self._spill is not None else None
        self._next_ordinal = max(stored, spill_end or 0) + len(self._memory)
        if self._spill is not None and self._spill.pending:
            log.info(
                "session %d: %d spilled events found; writing them before new ones",
                self._session_id,
                self._spill.pending,
            )
        self._batch_started = time.monotonic()
        self._flusher = asyncio.create_task(self._flush_forever(), name=f"write-queue-{self._session_id}")
        if len(self._memory) > self._max_memory:
            self._overflow()

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stops taking events and returns once every accepted one is stored.

        Raises :class:`DrainIncomplete` if that takes longer than ``timeout_s`` and
        :class:`WriteQueueFailed` if the flusher failed; either way -- and if the drain is
        cancelled -- what was not stored has been moved to the spill first.
        """
        if self._flusher is None:
            raise RuntimeError("start() the write queue before draining it")
        if not self._closed:
            self._closed = True
            if self._sampler is not None:
                for snapshot in self._sampler.remainder():
                    self._enqueue(snapshot)
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout_s):
                while self.pending and self._failure is None:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            kept, lost = await self._shut_down()
            raise DrainIncomplete(
                f"session {self._session_id}: the store did not take {kept + lost} events within "
                f"{timeout_s} s; {kept} are kept in the spill for the next start, {lost} are lost",
                kept=kept,
                lost=lost,
            ) from None
        except asyncio.CancelledError:
            kept, lost = await self._shut_down()
            if kept or lost:
                log.error(
                    "session %d: drain cancelled; %d events kept in the spill, %d lost", self._session_id, kept, lost
                )
            raise
        kept, lost = await self._shut_down()
        if self._failure is not None:
            raise WriteQueueFailed(
                f"session {self._session_id}: writing stopped ({self._failure}); "
                f"{kept} events are kept in the spill, {lost} are lost",
                kept=kept,
                lost=lost,
            ) from self._failure

    async def flush(self, timeout_s: float | None = None) -> int:
        """Writes every event accepted so far without waiting for a full batch or the interval,
        and returns once the store holds them (or the flusher has failed: see :meth:`stats`).
        Returns how many events the store committed meanwhile. Deltas a sampler is folding
        are not events yet and stay where they are. Raises TimeoutError after ``timeout_s``."""
        if self._flusher is None:
            raise RuntimeError("start() the write queue before flushing it")
        target = self._next_ordinal
        written_before = self._written
        self._flush_through = max(self._flush_through, target)
        self._wakeup.set()
        async with asyncio.timeout(timeout_s):
            while self._stored_through < target and self._failure is None and not self._stopping:
                self._progress.clear()
                await self._progress.wait()
        return self._written - written_before

    # -- reading --------------------------------------------------------------------------------
    @property
    def session_id(self) -> int:
        return self._session_id

    @property
    def pending(self) -> int:
        """Events kept and not yet stored."""
        return self._next_ordinal - self._stored_through

    def stats(self) -> WriteQueueStats:
        return WriteQueueStats(
            accepted=self._accepted,
            folded=self._sampler.folded if self._sampler is not None else 0,
            written=self._written,
            rejected=self._rejected,
            missing=self._missing,
            pending=self.pending,
            queue_depth=len(self._memory),
            memory_high_water=self._high_water,
            spilled=self._spilled,
            spill_pending=self._spill.pending if self._spill is not None else 0,
            batches=self._batches,
            retries=self._retries,
            errors=self._errors,
            spill_errors=self._spill_errors,
            failure=None if self._failure is None else f"{type(self._failure).__name__}: {self._failure}",
        )

    # -- the flusher ------------------------------------------------------------------------------
    async def _flush_forever(self) -> None:
        try:
            while self._failure is None:
                first, events, from_spill = await self._next_batch()
                if await self._store_batch(first, events) and from_spill:
                    await self._acknowledge_spilled(len(events))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug: stop loudly, keep the events
            log.exception("session %d: the write queue's flusher failed", self._session_id)
            self._fail(error)

    async def _next_batch(self) -> tuple[int, list[MarketEvent], bool]:
        """The oldest unstored events: from the spill while it holds any, else from memory once a
        batch is full, its interval is up, or the queue is draining."""
        memory = self._memory
        while True:
            self._wakeup.clear()
            spill = self._spill
            if spill is not None and spill.pending:
                first, events = await spill.oldest(self._batch_limit())
                behind = self._stored_through - first
                if behind > 0:
                    if not await self._acknowledge_spilled(min(behind, len(events))):
                        await asyncio.sleep(self._retry.delay(min(self._spill_errors, 30), self._random()))
                    continue
                self._skip_missing(first)
                return first, events, True
            if self._spilling:  # events older than memory are on their way to disk
                await self._wakeup.wait()
                continue
            self._prune_memory()
            depth = len(memory)
            timeout = None
            if depth:
                first = self._next_ordinal - depth
                self._skip_missing(first)
                due = (
                    self._closed
                    or depth >= self._batch_size
                    or self._stored_through < self._isolate_until
                    or self._stored_through < self._flush_through
                )
                if not due and self._interval is not None:
                    timeout = self._batch_started + self._interval - time.monotonic()
                    due = timeout <= 0
                if due:
                    # What arrives from now on is timed from now, while this batch is written.
                    self._batch_started = time.monotonic()
                    return first, list(itertools.islice(memory, self._batch_limit())), False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    def _batch_limit(self) -> int:
        return 1 if self._stored_through < self._isolate_until else self._batch_size

    async def _store_batch(self, first: int, events: list[MarketEvent]) -> bool:
        """Writes one batch, retrying until it is stored; False if it was not (refused data,
        or a failure that stops the queue)."""
        while True:
            try:
                await self._store.write_events(self._session_id, events)
            except FATAL as error:
                self._fail(error)
                return False
            except REFUSED_DATA as error:
                if len(events) > 1:
                    log.warning(
                        "session %d: the store refused a batch of %d events (%s); writing them one "
                        "at a time to leave out only the bad ones",
                        self._session_id,
                        len(events),
                        error,
                    )
                    self._isolate_until = first + len(events)
                else:
                    self._refused(first, events[0], error)
                return False
            except Exception as error:
                self._errors += 1
                log.warning(
                    "session %d: writing %d events failed (%s: %s); retrying",
                    self._session_id,
                    len(events),
                    type(error).__name__,
                    error,
                )
                committed = await self._committed_after_failure(first, len(events))
                if committed is None:
                    return False
                if not committed:
                    continue
            self._stored(first, events)
            return True

    async def _committed_after_failure(self, first: int, size: int) -> bool | None:
        """Backs off, then asks the store whether the failed batch made it in. None: give up."""
        while True:
            await asyncio.sleep(self._retry.delay(self._failed_attempts, self._random()))
            self._failed_attempts += 1
            self._retries += 1
            try:
                stored = await self._stored_count()
            except FATAL as error:
                self._fail(error)
                return None
            except Exception as error:
                self._errors += 1
                log.warning(
                    "session %d: the store is still unavailable (%s: %s)", self._session_id, type(error).__name__, error
                )
                continue
            through = stored + self._offset
            if through == first + size:
                log.info(
                    "session %d: the failed write of %d events had been committed; not resending", self._session_id, size
                )
                return True
            if through == first:
                return False
            self._fail(
                RuntimeError(
                    f"the store holds {stored} events, the queue expected {first - self._offset} or "
                    f"{first + size - self._offset}: another writer is using the session"
                )
            )
            return None

    async def _stored_count(self) -> int:
        info = await self._store.get_session(self._session_id)
        return info.snapshots + info.deltas + info.trades + len(info.resolutions)

    def _stored(self, first: int, events: Sequence[MarketEvent]) -> None:
        self._stored_through = first + len(events)
        self._written += len(events)
        self._batches += 1
        self._failed_attempts = 0
        self._prune_memory()
        self._progress.set()
        if self._on_written is not None:
            try:
                self._on_written(events)
            except Exception:
                log.exception("session %d: the on_written callback failed", self._session_id)

    def _refused(self, ordinal: int, event: MarketEvent, error: Exception) -> None:
        log.error(
            "session %d: the store refused event %d, left out of the recording: %r (%s)",
            self._session_id,
            ordinal,
            event,
            error,
        )
        self._rejected += 1
        self._offset += 1
        self._stored_through = ordinal + 1
        self._prune_memory()
        self._progress.set()

    def _skip_missing(self, first: int) -> None:
        """The oldest event kept is past ``stored_through``: the ones between are neither stored
        nor kept (a spill segment removed by hand, a spill of another session). Say so and
        carry on after them rather than stall."""
        missing = first - self._stored_through
        if missing > 0:
            log.error(
                "session %d: events %d..%d are neither in the store nor in the spill; they are lost",
                self._session_id,
                self._stored_through,
                first - 1,
            )
            self._missing += missing
            self._offset += missing
            self._stored_through = first

    def _prune_memory(self) -> None:
        memory = self._memory
        stale = self._stored_through - (self._next_ordinal - len(memory))
        for _ in range(min(stale, len(memory))):
            memory.popleft()

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            log.error("session %d: the write queue stops writing: %s", self._session_id, error)
            self._failure = error
        self._progress.set()

    async def _acknowledge_spilled(self, count: int) -> bool:
        assert self._spill is not None
        try:
            await self._spill.acknowledge(count)
        except Exception:
            # Harmless: the ordinals let the next read skip what is already stored.
            self._spill_errors += 1
            log.exception("session %d: acknowledging %d spilled events failed", self._session_id, count)
            return False
        return True

    async def _acknowledge_stored_spill(self) -> None:
        """Forgets spilled events the store already holds (the flusher may have been stopped
        between a write and its acknowledgement)."""
        spill = self._spill
        if spill is None or not spill.pending:
            return
        with contextlib.suppress(Exception):  # harmless if it fails: readers skip them by ordinal
            first, _ = await spill.oldest(1)
            behind = min(self._stored_through - first, spill.pending)
            if behind > 0:
                await spill.acknowledge(behind)

    # -- spilling ---------------------------------------------------------------------------------
    def _overflow(self) -> None:
        if self._spill is None:
            if not self._warned_unbounded:
                self._warned_unbounded = True
                log.warning(
                    "session %d: more than %d events wait for the store and there is no spill; "
                    "buffering them in memory",
                    self._session_id,
                    self._max_memory,
                )
            return
        if self._flusher is None or self._stopping or (self._spill_task is not None and not self._spill_task.done()):
            return
        self._spill_task = asyncio.create_task(self._spill_overflow(), name=f"write-queue-spill-{self._session_id}")

    async def _spill_overflow(self) -> None:
        """Moves the oldest events in memory to disk until memory is back to half its bound."""
        failures = 0
        while len(self._memory) > self._max_memory and not self._stopping:
            if await self._spill_oldest(len(self._memory) - self._max_memory // 2):
                failures = 0
                continue
            await asyncio.sleep(self._retry.delay(failures, self._random()))
            failures += 1

    async def _spill_oldest(self, count: int) -> bool:
        assert self._spill is not None
        memory = self._memory
        self._prune_memory()
        first = self._next_ordinal - len(memory)
        end = self._spill.end_ordinal
        if end is not None and first < end:  # already on disk (an append that failed late)
            for _ in range(min(end - first, len(memory))):
                memory.popleft()
            first = end
        count = min(count, len(memory))
        if count <= 0:
            return True
        chunk = [memory.popleft() for _ in range(count)]
        self._spilling = count
        try:
            await self._spill.append(first, chunk)
        except Exception as error:
            memory.extendleft(reversed(chunk))
            self._spill_errors += 1
            log.error(
                "session %d: spilling %d events to disk failed (%s); keeping them in memory", self._session_id, count, error
            )
            return False
        finally:
            self._spilling = 0
            self._wakeup.set()
        self._spilled += count
        return True

    async def _shut_down(self) -> tuple[int, int]:
        """Stops the background tasks, then moves what memory still holds to the spill.
        Returns (kept on disk, lost)."""
        self._closed = True
        self._stopping = True
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._spill_task is not None:
            # Not cancelled: an append cut short could land on disk after we gave up on it.
            await asyncio.shield(self._spill_task)
        await self._acknowledge_stored_spill()
        self._prune_memory()
        left = len(self._memory)
        if not left:
            return (self.pending, 0)
        if self._spill is not None and await self._spill_oldest(left):
            return (self.pending, 0)
        log.error("session %d: %d events could not be stored or spilled and are lost", self._session_id, left)
        return (self.pending - left, left)
