"""Replayed liquidity our orders took: gone for later orders until the replay itself lets it go.

The replay is a recording made without us. When our order takes ``c`` from a replayed level,
the recorded level still shows those contracts; taking them again would be trading against
liquidity that no longer exists -- the exploit an earlier attempt's agents learned. So each
take is remembered per (book side, price) and subtracted from what later orders see there.

When is it given back? The rule:

* **The replay drains it.** The contracts we took were at the front of the level. Whenever the
  replayed level's size falls to ``s``, at most ``s`` of what we took can still be standing in
  the replay, so the consumed amount becomes ``min(consumed, s)``; once the level has emptied
  (a market maker pulling and re-quoting, the level traded through), the debt is gone. New size
  added to the level is new liquidity and is available at once; it does not cancel the debt.
* **Optionally, time** (``refill_ms``): the whole amount is given back that long after our last
  take at the level -- the market makers we took from have re-quoted by then. ``None`` (the
  default) never refills by time: only the replay gives liquidity back.
"""

from __future__ import annotations

from bisect import bisect_left

from adapters.simulated_exchange.replayed_market import ReplayedMarket
from domain.values import LADDER_SIZE


class ConsumedLiquidity:
    """What we took from one replayed market, per level; queried lazily at a log cursor."""

    __slots__ = ("market", "refill_ms", "taken")

    def __init__(self, market: ReplayedMarket, refill_ms: int | None) -> None:
        self.market = market
        self.refill_ms = refill_ms
        # side * LADDER_SIZE + price -> [amount, cursor it is drained up to, time of the last take];
        # empty when nothing is held (the exchange tests it before asking)
        self.taken: dict[int, list[int]] = {}

    def take(self, side: int, price: int, count: int, cursor: int, now_ms: int) -> None:
        """We took ``count`` from the ``side`` bid at ``price``, at ``cursor`` / ``now_ms``."""
        key = side * LADDER_SIZE + price
        record = self.taken.get(key)
        if record is not None and record[1] == cursor and now_ms == record[2]:  # just drained: add to it
            record[0] += count
            return
        held = self.remaining(side, price, cursor, now_ms)
        self.taken[key] = [held + count, cursor, now_ms]

    def remaining(self, side: int, price: int, cursor: int, now_ms: int) -> int:
        """How much of the ``side`` bid at ``price`` we hold taken at ``cursor`` / ``now_ms``."""
        key = side * LADDER_SIZE + price
        record = self.taken.get(key)
        if record is None:
            return 0
        if self.refill_ms is not None and now_ms - record[2] >= self.refill_ms:
            del self.taken[key]
            return 0
        amount = record[0]
        if record[1] < cursor:  # the level may have drained since: see its changes up to the cursor
            entries = self.market.level_entries(side, price)
            counts = self.market.log_counts
            first = bisect_left(entries, record[1])
            for position in range(first, bisect_left(entries, cursor, first)):
                count = counts[entries[position]]
                if count < amount:
                    amount = count
            if not amount:
                del self.taken[key]
                return 0
            record[0], record[1] = amount, cursor
        return amount
