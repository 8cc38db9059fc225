"""Ingestion hot path: Kalshi delta frames -> parsed, sequence-checked, applied to the shared
books, offered to the write queue. One JSON line.

The frames are the exact bytes Kalshi sends (:mod:`adapters.kalshi.wire`, current era) for a
realistic delta mix (:mod:`benchmarks.book`'s generator). They are handed to the feed's frame
handler directly, so the socket is left out: what is measured is our work per message, the same
span the feed's latency histogram records (read -> book updated), plus the queue's offer.
"""

from __future__ import annotations

import json
import time

from book import make_deltas  # run as a script (make bench): this directory is on the path

from adapters.kalshi import wire
from adapters.kalshi.market_data import KalshiMarketDataFeed
from adapters.kalshi.ws_client import KalshiWebSocketClient
from application.book_state import SharedBookState
from application.write_queue import OrderbookWriteQueue
from domain.events import BookDelta, BookSnapshot
from domain.values import Side

TICKER = "BENCH-1"


class _NoStore:
    """Never reached: the queue is not started, offers only buffer."""


def frames(count: int) -> list[bytes]:
    out = [wire.encode(wire.snapshot_message(BookSnapshot(TICKER, 1, 0, (), ()), sid=1, seq=1))]
    for seq, (side, price, delta) in enumerate(make_deltas(count), start=2):
        event = BookDelta(TICKER, seq, 1_781_159_489_957 + seq, Side(side), price, delta, 1)
        out.append(wire.encode(wire.delta_message(event, sid=1, seq=seq)))
    return out


def run(frames_: list[bytes]) -> dict[str, object]:
    client = KalshiWebSocketClient("ws://127.0.0.1:9/trade-api/ws/v2", None)
    books = SharedBookState([TICKER])
    feed = KalshiMarketDataFeed(client, [TICKER], books=books, channels=("orderbook_delta",))
    queue = OrderbookWriteQueue(_NoStore(), 1, max_memory_events=len(frames_) + 1)  # type: ignore[arg-type]
    # The subscription as a live connection would set it up.
    feed._connection_opened()
    feed._subscribe([TICKER], ["orderbook_delta"])
    feed._handle(wire.encode(wire.subscribed_message(1, "orderbook_delta", 1)), time.perf_counter_ns())
    handle, offer, clock = feed._handle, queue.offer, time.perf_counter_ns
    start = time.perf_counter()
    for frame in frames_:
        event = handle(frame, clock())
        if event is not None:
            offer(event)
    elapsed = time.perf_counter() - start
    stats = feed.stats()
    assert stats.deltas == len(frames_) - 1 and stats.gaps == 0, stats
    return {
        "messages_per_s": round(len(frames_) / elapsed),
        "read_to_book_p50_us": stats.latency_p50_us,
        "read_to_book_p99_us": stats.latency_p99_us,
    }


def main() -> None:
    frames_ = frames(200_000)
    best = max((run(frames_) for _ in range(3)), key=lambda result: result["messages_per_s"])
    print(json.dumps({"benchmark": "ingest", "messages": len(frames_), **best}))


if __name__ == "__main__":
    main()
