"""What one connection still has to send, bounded so a slow client cannot hold the exchange up.

The exchange never waits for a client: it appends to the queue and a writer task drains it to
the socket. Market data counts against ``capacity``; when a subscription's message does not
fit, :meth:`SendQueue.put_data` says so and the connection drops that subscription (Kalshi's
error 25). Replies to commands are not market data and get a separate, smaller allowance: a
client that sends commands without reading the replies is cut off (:class:`SendQueueFull`).

Beside frames the queue carries the writer's fault actions (stall, drop) and the final close,
in order with the frames around them.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque

import attrs


class ItemKind(enum.Enum):
    FRAME = "frame"
    STALL = "stall"  # value: seconds
    DROP = "drop"  # cut the TCP connection
    CLOSE = "close"  # value: (code, reason)


@attrs.frozen
class QueueItem:
    kind: ItemKind
    value: object  # a FRAME's text, a STALL's seconds, a CLOSE's (code, reason)
    sid: int | None = None  # market data only
    ticker: str | None = None


class SendQueueFull(Exception):
    """The client has let too many command replies pile up."""


class SendQueue:
    def __init__(self, capacity: int, control_allowance: int = 1_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if control_allowance < 1:
            raise ValueError(f"control_allowance must be >= 1, got {control_allowance}")
        self.capacity = capacity
        self.control_allowance = control_allowance
        self._items: deque[QueueItem] = deque()
        self._data = 0  # market-data frames in _items
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def data_queued(self) -> int:
        return self._data

    def put_data(self, frame: str, sid: int, ticker: str) -> bool:
        """Queue a market-data frame; False (and nothing queued) when the queue is full."""
        if self._data >= self.capacity:
            return False
        self._items.append(QueueItem(ItemKind.FRAME, frame, sid, ticker))
        self._data += 1
        self._ready.set()
        return True

    def put_control(self, frame: str) -> None:
        if len(self._items) - self._data >= self.control_allowance:
            raise SendQueueFull(f"{self.control_allowance} replies are waiting for the client to read them")
        self._put(QueueItem(ItemKind.FRAME, frame))

    def put_stall(self, seconds: float) -> None:
        self._put(QueueItem(ItemKind.STALL, seconds))

    def put_drop(self) -> None:
        self._put(QueueItem(ItemKind.DROP, None))

    def put_close(self, code: int, reason: str) -> None:
        self._put(QueueItem(ItemKind.CLOSE, (code, reason)))

    def _put(self, item: QueueItem) -> None:
        self._items.append(item)
        self._ready.set()

    def forget(self, sid: int, tickers: frozenset[str] | None = None) -> int:
        """Remove the queued market data of ``sid`` (only of ``tickers`` when given); returns
        how many frames went."""
        kept = deque(
            item
            for item in self._items
            if item.sid != sid or (tickers is not None and item.ticker not in tickers)
        )
        removed = len(self._items) - len(kept)
        self._items = kept
        self._data -= removed
        return removed

    def take_frames(self, limit: int) -> list[str]:
        """Up to ``limit`` frames from the head, without waiting: the run of frames before the
        next stall, drop or close, which the writer can send in one socket write."""
        items = self._items
        frames: list[str] = []
        while items and len(frames) < limit and items[0].kind is ItemKind.FRAME:
            item = items.popleft()
            if item.sid is not None:
                self._data -= 1
            frames.append(item.value)  # type: ignore[arg-type]
        return frames

    async def get(self) -> QueueItem:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if item.sid is not None:
            self._data -= 1
        return item
