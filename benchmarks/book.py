"""Order-book speed: delta applies and top-of-book reads per second, one JSON line.

The deltas are a realistic mix drawn from the synthetic market (adds, cancels and consumption
near the top of book), replayed through the one OrderBook class used live and in replay.
"""

from __future__ import annotations

import json
import random
import time

from domain.orderbook import OrderBook
from domain.values import ONE_DOLLAR


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


def main() -> None:
    deltas = make_deltas(500_000)
    result = {
        "benchmark": "book",
        "deltas": len(deltas),
        "applies_per_s": round(bench_applies(deltas, rounds=5)),
        "tob_reads_per_s": round(bench_tob_reads(deltas, reads=2_000_000, rounds=5)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
