"""The :class:`~domain.ports.SpillBuffer` port in files: one directory per recording session.

Layout: ``<root>/session-<id>/`` holds a ``LOCK`` file and append-only segments named
``<first ordinal>-<count>.events``, one JSON line per event (:mod:`adapters.spill.event_codec`).

* An append writes one new segment: to a ``.tmp`` file, fsync, rename, fsync the directory.
  A segment is therefore whole or absent; a crash mid-append leaves only a ``.tmp``, removed on
  the next open (the queue still held those events in memory, so the crash took them anyway).
* Segments are read back in ordinal order. A segment is deleted once all its events are
  acknowledged. Acknowledging part of one is not persisted: after a crash the whole segment
  comes back, and the write queue skips the ordinals the store already holds.
* ``LOCK`` is held with ``flock`` while a buffer is open, so two processes never share a
  session's spill, and a recovering process takes only what nobody else owns.

File work runs on one worker thread per buffer, in submission order, off the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import attrs

from adapters.spill.event_codec import SpillDecodeError, decode_event, encode_event
from domain.events import MarketEvent

T = TypeVar("T")

_SEGMENT = re.compile(r"^(\d{20})-(\d{10})\.events$")
_SESSION_DIR = re.compile(r"^session-(\d+)$")
LOCK_NAME = "LOCK"


class SpillLocked(RuntimeError):
    """Another open buffer (this process or another) owns the session's spill directory."""


class SpillCorrupted(ValueError):
    """The spill directory holds something the buffer did not write: names the file and why."""


def session_directory(root: str | os.PathLike[str], session_id: int) -> Path:
    return Path(root) / f"session-{session_id}"


def spilled_sessions(root: str | os.PathLike[str]) -> list[int]:
    """Sessions with spilled events under ``root``, oldest id first (owned or not)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _SESSION_DIR.match(child.name)
        if match and child.is_dir() and any(_SEGMENT.match(entry.name) for entry in child.iterdir()):
            found.append(int(match.group(1)))
    return sorted(found)


@attrs.define
class _Segment:
    first: int
    count: int
    path: Path


class FileSpillBuffer:
    """One session's spill. Build it with :meth:`open`; :meth:`close` releases the lock."""

    def __init__(self, directory: Path, lock_fd: int, segments: list[_Segment]) -> None:
        self.directory = directory
        self._lock_fd: int | None = lock_fd
        self._segments = segments  # touched on the worker thread only
        self._head_events: list[MarketEvent] | None = None  # the decoded first segment
        self._head_offset = 0  # how many of the first segment are acknowledged
        # Read on the event loop, written on the worker (plain ints: each store is atomic).
        self._pending = sum(segment.count for segment in segments)
        self._end = segments[-1].first + segments[-1].count if segments else None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spill")

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> FileSpillBuffer:
        """Opens (creating it if needed) and locks the directory, and finds what a previous
        process left. Raises :class:`SpillLocked` if another buffer holds it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise SpillLocked(f"spill directory {directory} is in use by another writer") from None
        try:
            segments = _scan(directory)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(directory, lock_fd, segments)

    @classmethod
    def for_session(cls, root: str | os.PathLike[str], session_id: int) -> FileSpillBuffer:
        return cls.open(session_directory(root, session_id))

    # -- the port ------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending

    @property
    def end_ordinal(self) -> int | None:
        return self._end if self._pending else None

    async def append(self, first_ordinal: int, events: Sequence[MarketEvent]) -> None:
        if not events:
            return
        if self._pending and first_ordinal != self._end:
            raise ValueError(
                f"spill append must continue at ordinal {self._end}, got {first_ordinal}: "
                "the buffer would hold a hole or an overlap"
            )
        await self._run(self._append, first_ordinal, list(events))

    async def oldest(self, limit: int) -> tuple[int, list[MarketEvent]]:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if not self._pending:
            return (self._end or 0, [])
        return await self._run(self._oldest, limit)

    async def acknowledge(self, count: int) -> None:
        if not 0 <= count <= self._pending:
            raise ValueError(f"cannot acknowledge {count} events; the spill holds {self._pending}")
        if count:
            await self._run(self._acknowledge, count)

    # -- lifecycle -----------------------------------------------------------------------------
    async def close(self) -> None:
        """Releases the lock; an empty session directory is removed."""
        if self._lock_fd is None:
            return
        await self._run(self._release)
        self._worker.shutdown(wait=True)

    # -- on the worker thread ------------------------------------------------------------------
    async def _run(self, work: Callable[..., T], *args: object) -> T:
        if self._lock_fd is None:
            raise RuntimeError(f"spill buffer {self.directory} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._worker, functools.partial(work, *args))

    def _append(self, first: int, events: list[MarketEvent]) -> None:
        final = self.directory / f"{first:020d}-{len(events):010d}.events"
        temporary = final.with_suffix(".tmp")
        data = b"".join(encode_event(event) for event in events)
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
        # Counted as soon as it exists under its final name: it will be found after a crash.
        self._segments.append(_Segment(first, len(events), final))
        self._pending += len(events)
        self._end = first + len(events)
        _fsync_directory(self.directory)

    def _oldest(self, limit: int) -> tuple[int, list[MarketEvent]]:
        head = self._segments[0]
        if self._head_events is None:
            self._head_events = _read_segment(head)
        start = self._head_offset
        return head.first + start, self._head_events[start : start + limit]

    def _acknowledge(self, count: int) -> None:
        while count:
            head = self._segments[0]
            taken = min(count, head.count - self._head_offset)
            self._head_offset += taken
            self._pending -= taken
            count -= taken
            if self._head_offset == head.count:
                head.path.unlink()
                self._segments.pop(0)
                self._head_events = None
                self._head_offset = 0

    def _release(self) -> None:
        assert self._lock_fd is not None
        if not self._segments:
            # Removed while still locked, so no other process can take an emptied directory.
            (self.directory / LOCK_NAME).unlink(missing_ok=True)
            try:
                self.directory.rmdir()
            except OSError:
                pass  # someone else's file is in it
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = None


def _scan(directory: Path) -> list[_Segment]:
    segments = []
    for entry in directory.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.suffix == ".tmp":
            entry.unlink()  # an append that never finished: it was never confirmed
            continue
        match = _SEGMENT.match(entry.name)
        if match is None:
            raise SpillCorrupted(f"{entry} is not a spill segment; move it out of {directory}")
        segments.append(_Segment(int(match.group(1)), int(match.group(2)), entry))
    segments.sort(key=lambda segment: segment.first)
    for before, after in zip(segments, segments[1:]):
        if before.first + before.count != after.first:
            raise SpillCorrupted(
                f"spill segments {before.path.name} and {after.path.name} do not follow each other"
            )
    return segments


def _read_segment(segment: _Segment) -> list[MarketEvent]:
    lines = segment.path.read_bytes().splitlines()
    if len(lines) != segment.count:
        raise SpillCorrupted(f"{segment.path} holds {len(lines)} events, its name says {segment.count}")
    events = []
    for number, line in enumerate(lines, start=1):
        try:
            events.append(decode_event(line))
        except SpillDecodeError as error:
            raise SpillCorrupted(f"{segment.path} line {number}: {error}") from None
    return events


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
