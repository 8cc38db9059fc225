"""The actor's record queue: decisions and orders on their way to storage, never lost.

The actor must not wait for a database between seeing a book and sending an order, so it hands
each record to :class:`RecordQueue` and moves on: :meth:`RecordQueue.put` is an append while
the queue has room. A background flusher (:meth:`RecordQueue.run`) writes records in batches,
in order, retrying a failed write with exponential backoff -- a database that is away delays
records, it does not lose them.

The queue is bounded. When it is full (the database has been away for a long while),
:meth:`put` waits for room instead of dropping: the actor slows down rather than trade without
a record. Each such wait is counted (``backpressure_waits``), so a status page shows it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random as _random
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import attrs

from domain.backoff import ExponentialBackoff
from domain.ports import EpisodeResult, TradingAction, TradingRecords

log = logging.getLogger(__name__)

T = TypeVar("T")
RecordWriter = Callable[[Sequence[T]], Awaitable[object]]

DEFAULT_CAPACITY = 10_000
DEFAULT_BATCH_SIZE = 200
DEFAULT_RETRY = ExponentialBackoff(initial_s=0.1, max_s=10.0)


class RecordQueueClosed(RuntimeError):
    """A record offered after the queue began draining."""


@attrs.frozen
class RecordQueueStats:
    accepted: int
    written: int
    pending: int  # accepted, not yet written (queued or in flight)
    depth: int  # queued now
    capacity: int
    backpressure_waits: int  # puts that had to wait for room
    write_errors: int  # failed writes (each retried)
    last_error: str | None


class RecordQueue(Generic[T]):
    def __init__(
        self,
        write: RecordWriter[T],
        *,
        capacity: int = DEFAULT_CAPACITY,
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry: ExponentialBackoff = DEFAULT_RETRY,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not (isinstance(capacity, int) and capacity >= batch_size):
            raise ValueError(f"capacity must be an integer >= batch_size ({batch_size}), got {capacity!r}")
        self._write = write
        self._capacity = capacity
        self._batch_size = batch_size
        self._retry = retry
        self._random = random
        self._records: collections.deque[T] = collections.deque()
        self._in_flight = 0
        self._ready = asyncio.Event()  # records are waiting
        self._room = asyncio.Event()  # the queue is below capacity
        self._room.set()
        self._idle = asyncio.Event()  # nothing queued or in flight
        self._idle.set()
        self._closed = False
        self.accepted = 0
        self.written = 0
        self.backpressure_waits = 0
        self.write_errors = 0
        self.last_error: str | None = None

    async def put(self, record: T) -> None:
        """Queue ``record``; returns at once unless the queue is full, then waits for room."""
        if self._closed:
            raise RecordQueueClosed("the record queue is draining; no more records are taken")
        if len(self._records) >= self._capacity:
            self.backpressure_waits += 1
            log.warning("record queue full (%d records): the actor waits for the database", self._capacity)
            while len(self._records) >= self._capacity:
                self._room.clear()
                await self._room.wait()
        self._records.append(record)
        self.accepted += 1
        self._idle.clear()
        self._ready.set()

    async def run(self) -> None:
        """The flusher: writes batches until cancelled (a batch in flight is retried until written)."""
        while True:
            await self._ready.wait()
            while self._records:
                batch = [self._records.popleft() for _ in range(min(self._batch_size, len(self._records)))]
                size = self._in_flight = len(batch)  # the writer may consume the batch as it writes it
                self._room.set()
                await self._write_batch(batch)
                self._in_flight = 0
                self.written += size
            self._ready.clear()
            self._idle.set()

    async def drain(self, timeout_s: float) -> int:
        """Stop taking records and wait until the flusher has written what it holds; returns how
        many records are still unwritten (0 when drained) after ``timeout_s``."""
        self._closed = True
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            log.error("record queue: %d records not written after %.1f s", self.pending, timeout_s)
        return self.pending

    @property
    def pending(self) -> int:
        return len(self._records) + self._in_flight

    def stats(self) -> RecordQueueStats:
        return RecordQueueStats(
            accepted=self.accepted,
            written=self.written,
            pending=self.pending,
            depth=len(self._records),
            capacity=self._capacity,
            backpressure_waits=self.backpressure_waits,
            write_errors=self.write_errors,
            last_error=self.last_error,
        )

    async def _write_batch(self, batch: list[T]) -> None:
        failures = 0
        while True:
            try:
                await self._write(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database is away or refused: wait and try again
                failures += 1
                self.write_errors += 1
                self.last_error = f"{type(error).__name__}: {error}"
                delay = self._retry.delay(failures, self._random())
                log.warning("record queue: writing %d records failed (%s); retry in %.2f s", len(batch), error, delay)
                await asyncio.sleep(delay)


# ---------------------------------------------------------------------------------------------
# What the actor records, and how it reaches the TradingRecords port
# ---------------------------------------------------------------------------------------------
@attrs.frozen
class EpisodeKey:
    """A paper-trading episode: one model trading one market, from when it starts there until
    it is replaced (hot reload) or the actor stops."""

    model_id: int
    ticker: str
    generation: int  # the actor's model generation: a reload of the same model is a new episode


@attrs.frozen
class ActionRecord:
    key: EpisodeKey
    started_ms: int  # the episode's start, used when this is its first record
    action: TradingAction


@attrs.frozen
class EpisodeEnd:
    key: EpisodeKey
    result: EpisodeResult


TradingRecord = ActionRecord | EpisodeEnd


class TradingRecordWriter:
    """Writes batches of :data:`TradingRecord` to the :class:`~domain.ports.TradingRecords` port:
    starts each episode on its first action, appends actions in order, finishes episodes.

    Safe to retry: a batch is consumed from its head as parts of it are written, so the
    :class:`RecordQueue` retrying the same (shortened) batch never writes a part twice; and a
    batch of actions whose commit was lost in transit (the store has them, we got an error) is
    recognised by its step numbers and skipped.
    """

    def __init__(self, records: TradingRecords, *, mode: str = "paper") -> None:
        self._records = records
        self._mode = mode
        self._episodes: dict[EpisodeKey, int] = {}
        self.episodes_started = 0
        self.episodes_finished = 0

    def episode_id(self, key: EpisodeKey) -> int | None:
        return self._episodes.get(key)

    async def __call__(self, batch: list[TradingRecord]) -> None:
        while batch:
            head = batch[0]
            if isinstance(head, EpisodeEnd):
                episode_id = self._episodes.pop(head.key, None)
                if episode_id is not None:
                    await self._records.finish_episode(episode_id, head.result)
                    self.episodes_finished += 1
                del batch[0]
                continue
            run = 1  # the actions of one episode, in a row
            while run < len(batch) and isinstance(batch[run], ActionRecord) and batch[run].key == head.key:
                run += 1
            episode_id = await self._episode(head)
            actions = [record.action for record in batch[:run]]  # type: ignore[union-attr]
            try:
                await self._records.record_actions(episode_id, actions)
            except ValueError:
                # Written by an attempt whose answer was lost? Keep only the steps not stored.
                stored = {action.step_number for action in await self._records.read_actions(episode_id)}
                missing = [action for action in actions if action.step_number not in stored]
                if len(missing) == len(actions):
                    raise
                if missing:
                    await self._records.record_actions(episode_id, missing)
            del batch[:run]

    async def _episode(self, record: ActionRecord) -> int:
        episode_id = self._episodes.get(record.key)
        if episode_id is None:
            episode = await self._records.start_episode(
                record.key.model_id, market_ticker=record.key.ticker, mode=self._mode, started_ms=record.started_ms
            )
            episode_id = self._episodes[record.key] = episode.episode_id
            self.episodes_started += 1
        return episode_id
