"""Sequence checking for book streams.

Kalshi numbers book messages per subscription (``sid``), starting at 1 with the snapshot, and
never replays: after a gap the book is invalid until a fresh snapshot arrives. The check reports
what it saw instead of applying anything, so a caller can resynchronise rather than corrupt a book.
"""

from __future__ import annotations

import enum


class SeqStatus(enum.Enum):
    IN_ORDER = "in_order"
    DUPLICATE = "duplicate"  # at or below the last seen: already applied, drop it
    GAP = "gap"  # ahead of the next expected: messages were lost, resynchronise
    UNSYNCED = "unsynced"  # no snapshot yet (or since the last gap): wait for one


class SequenceCheck:
    """Tracks one subscription's sequence numbers."""

    __slots__ = ("last", "gaps", "duplicates")

    def __init__(self) -> None:
        self.last: int | None = None
        self.gaps = 0
        self.duplicates = 0

    def start(self, seq: int) -> None:
        """A snapshot arrived with ``seq``: the stream is in sync from here."""
        self.last = seq

    def check(self, seq: int) -> SeqStatus:
        """Classify the next message; advances only when it is the expected one."""
        last = self.last
        if last is None:
            return SeqStatus.UNSYNCED
        if seq == last + 1:
            self.last = seq
            return SeqStatus.IN_ORDER
        if seq <= last:
            self.duplicates += 1
            return SeqStatus.DUPLICATE
        self.gaps += 1
        self.last = None  # nothing applies until a fresh snapshot
        return SeqStatus.GAP

    @property
    def in_sync(self) -> bool:
        return self.last is not None
