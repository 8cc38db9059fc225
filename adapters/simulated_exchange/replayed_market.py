"""A market tape in the shape the simulated exchange reads it: plain lists, built once per tape.

Indexing a Python list is several times cheaper than indexing a numpy array, and the exchange
reads the market log entry by entry. Beside the tape's arrays it keeps, per bid level, the
indices of the log entries that changed it, so the size of any level at any moment is one
bisection away -- exactly, however deep the level (the log starts with the first snapshot's
levels).

A *cursor* is a position in the market log: "the book after log entries ``0 .. cursor - 1``".
"""

from __future__ import annotations

from bisect import bisect_left

from domain.events import Level
from domain.market_tape import NO_LEVEL, MarketTape
from domain.values import LADDER_SIZE


class ReplayedMarket:
    __slots__ = (
        "ticker",
        "price_levels",
        "last_row",
        "times",
        "bids",
        "log_offsets",
        "log_times",
        "log_kinds",
        "log_prices",
        "log_counts",
        "_level_entries",
    )

    def __init__(self, tape: MarketTape) -> None:
        self.ticker = tape.ticker
        self.price_levels = tape.price_levels  # the tick grid orders must be on
        self.times: list[int] = tape.times.tolist()
        self.last_row = len(self.times) - 1
        prices, counts = tape.bid_prices.tolist(), tape.bid_counts.tolist()
        # bids[row][side]: the row's visible bids, best first, as (price, count)
        self.bids: list[tuple[list[Level], list[Level]]] = [
            tuple(  # type: ignore[misc]
                [(p, c) for p, c in zip(prices[row][side], counts[row][side]) if p != NO_LEVEL] for side in (0, 1)
            )
            for row in range(len(self.times))
        ]
        self.log_offsets: list[int] = tape.log_offsets.tolist()
        self.log_times: list[int] = tape.log_times.tolist()
        self.log_kinds: list[int] = tape.log_kinds.tolist()
        self.log_prices: list[int] = tape.log_prices.tolist()
        self.log_counts: list[int] = tape.log_counts.tolist()
        entries: dict[int, list[int]] = {}
        for index, (kind, price) in enumerate(zip(self.log_kinds, self.log_prices)):
            if kind < 2:
                entries.setdefault(kind * LADDER_SIZE + price, []).append(index)
        self._level_entries = entries

    def level_entries(self, side: int, price: int) -> list[int]:
        """Indices of the log entries that changed the ``side`` bid at ``price``, ascending."""
        return self._level_entries.get(side * LADDER_SIZE + price, _NONE)

    def level_size(self, side: int, price: int, cursor: int) -> int:
        """The size of the ``side`` bid at ``price`` at ``cursor``."""
        entries = self._level_entries.get(side * LADDER_SIZE + price)
        if not entries:
            return 0
        last = bisect_left(entries, cursor) - 1
        return self.log_counts[entries[last]] if last >= 0 else 0

    def bids_at(self, side: int, row: int, cursor: int) -> dict[int, int]:
        """The bids of ``side`` at ``cursor`` (price -> size), from the ``row`` before it.

        ``row``'s visible levels, updated by the log entries after the row up to the cursor:
        exact for the levels the row shows and any level that changed since; a level deeper than
        the row keeps, untouched since, is not seen (this is the visible depth).
        """
        levels = dict(self.bids[row][side])
        kinds, prices, counts = self.log_kinds, self.log_prices, self.log_counts
        for index in range(self.log_offsets[row + 1], cursor):
            if kinds[index] == side:
                if counts[index]:
                    levels[prices[index]] = counts[index]
                else:
                    levels.pop(prices[index], None)
        return levels


_NONE: list[int] = []
