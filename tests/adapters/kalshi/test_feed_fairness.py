"""A burst of frames already buffered never suspends the reader, since ``recv()`` returns at once;
the feed must still hand the event loop to other tasks (the write queue's flusher) while it reads."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

from websockets.exceptions import ConnectionClosedOK

from adapters.kalshi import wire
from adapters.kalshi.market_data import BOOK_CHANNEL, KalshiMarketDataFeed
from domain.events import BookDelta, BookSnapshot
from domain.values import Side

TICKER = "KXA-1"


class BufferedConnection:
    """What a websockets connection is after one large socket read: every frame is there."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = collections.deque(frames)
        self.sent: list[bytes] = []

    async def recv(self, decode: bool | None = None) -> bytes:
        if not self.frames:
            raise ConnectionClosedOK(None, None)
        return self.frames.popleft()

    async def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    async def close(self) -> None:
        self.frames.clear()


class OneConnectionClient:
    """The client side of KalshiWebSocketClient the feed uses, over one buffered connection."""

    def __init__(self, connection: BufferedConnection) -> None:
        self.connection = connection
        self.reconnects = 0
        self._next_id = 0

    async def connections(self) -> AsyncIterator[BufferedConnection]:
        yield self.connection

    def command(self, cmd: str, params: dict | None = None) -> tuple[int, bytes]:
        self._next_id += 1
        return self._next_id, wire.encode({"id": self._next_id, "cmd": cmd, "params": params})

    def mark_healthy(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def burst(deltas: int) -> list[bytes]:
    frames = [wire.subscribed_message(1, BOOK_CHANNEL, 1)]
    frames.append(wire.snapshot_message(BookSnapshot(TICKER, None, 0, ((4000, 100),), ()), 1, 1))
    for seq in range(2, deltas + 2):
        event = BookDelta(TICKER, seq, 1_781_159_489_957 + seq, Side.YES, 4000 + seq % 50, 100, 1)
        frames.append(wire.delta_message(event, 1, seq))
    return [wire.encode(frame) for frame in frames]


async def test_reading_a_buffered_burst_lets_other_tasks_run():
    connection = BufferedConnection(burst(20_000))
    client = OneConnectionClient(connection)
    feed = KalshiMarketDataFeed(client, [TICKER], channels=(BOOK_CHANNEL,))  # type: ignore[arg-type]
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    other = asyncio.create_task(other_task())
    events = [event async for event in feed.events()]
    other.cancel()

    assert len(events) == 20_001 and feed.stats().gaps == 0
    # 20,000 messages take well over the feed's 1 ms between turns; without them: 0.
    assert turns >= 2
