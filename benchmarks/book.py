"""Order-book speed: delta applies, top-of-book reads, and wire deltas parsed and applied per
second, one JSON line.

The deltas are a realistic mix drawn from the synthetic market (adds, cancels and consumption
near the top of book), replayed through the one OrderBook class used live and in replay.
``parse_and_apply_per_s`` starts from the exact bytes Kalshi sends for each delta (current era)
and goes through the live parser (:func:`adapters.kalshi.parsing.parse_frame`) to the book.
"""

from __future__ import annotations

import json
import random
import time

from adapters.kalshi import wire
from adapters.kalshi.parsing import parse_frame
from domain.events import BookDelta
from domain.orderbook import OrderBook
from domain.values import ONE_DOLLAR, Side


def make_deltas(n: int, seed: int = 7) -> list[tuple[int, int, int]]:
    """Deltas clustered around a drifting mid, as a busy market produces them."""
    rng = random.Random(seed)
    book = OrderBook("BENCH")
    mid = 5000
    out = []
    for _ in range(n):
        mid = min(9000, max(1000, mid + rng.choice((-100, 0, 0, 100))))
        side = rng.randrange(2)
        # YES bids sit below the mid, NO bids below $1 - mid: never crossed.
        top = mid - 100 if side == 0 else ONE_DOLLAR - mid - 100
        price = top - 100 * rng.randrange(0, 8)
        have = book.quantity_at(side, price)
        if have and rng.random() < 0.45:
            delta = -have if rng.random() < 0.5 else -rng.randint(1, have)
        else:
            delta = rng.randint(1, 50) * 100
        book.apply_delta(side, price, delta)
        out.append((side, price, delta))
    return out


def bench_applies(deltas: list[tuple[int, int, int]], rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        book = OrderBook("BENCH")
        apply = book.apply_delta
        start = time.perf_counter()
        for side, price, delta in deltas:
            apply(side, price, delta)
        elapsed = time.perf_counter() - start
        best = max(best, len(deltas) / elapsed)
    return best


def bench_tob_reads(deltas: list[tuple[int, int, int]], reads: int, rounds: int) -> float:
    book = OrderBook("BENCH")
    for side, price, delta in deltas[:5000]:
        book.apply_delta(side, price, delta)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reads // 4):
            book.yes_bid
            book.yes_ask
            book.no_bid
            book.no_ask
        elapsed = time.perf_counter() - start
        best = max(best, reads / elapsed)
    return best


def delta_frames(deltas: list[tuple[int, int, int]], ticker: str = "BENCH", first_seq: int = 1) -> list[bytes]:
    """Each delta as the bytes of the ``orderbook_delta`` frame Kalshi would send (sid 1)."""
    market_id = wire.market_id_for(ticker)
    frames = []
    for seq, (side, price, delta) in enumerate(deltas, start=first_seq):
        event = BookDelta(ticker, seq, 1_781_159_489_957 + seq, Side(side), price, delta, 1)
        frames.append(wire.encode(wire.delta_message(event, 1, seq, market_id=market_id)))
    return frames


def bench_parse_and_apply(frames: list[bytes], rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        book = OrderBook("BENCH")
        apply = book.apply_delta
        start = time.perf_counter()
        for frame in frames:
            event = parse_frame(frame, 0)
            apply(event.side, event.price, event.delta)  # type: ignore[union-attr]
        elapsed = time.perf_counter() - start
        best = max(best, len(frames) / elapsed)
    return best


def main() -> None:
    deltas = make_deltas(500_000)
    result = {
        "benchmark": "book",
        "deltas": len(deltas),
        "applies_per_s": round(bench_applies(deltas, rounds=5)),
        "tob_reads_per_s": round(bench_tob_reads(deltas, reads=2_000_000, rounds=5)),
        "parse_and_apply_per_s": round(bench_parse_and_apply(delta_frames(deltas[:200_000]), rounds=3)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
