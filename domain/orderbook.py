"""The order book of one binary market, with Kalshi's semantics.

Kalshi's book holds bids only: bids on YES and bids on NO. A NO bid at q is a YES offer at
$1 - q, so the YES ask is ``ONE_DOLLAR - best NO bid`` and the NO ask is ``ONE_DOLLAR - best YES
bid``.

This is the hottest object in the system, and the same class serves live ingestion and replay.
Each side is a fixed list over the whole price ladder (every price unit from $0 to $1), indexed
by price: a delta is one list store, no tree and no dict. Beside each list a ``bytearray`` marks
the occupied levels, so when the best level empties the next one is found by
``bytearray.rfind`` -- a C-speed scan -- instead of a Python loop. The best bid of each side is
cached, which makes top-of-book reads attribute loads.

Sides are the ints of :class:`domain.values.Side` (YES = 0, NO = 1); prices and counts are the
integer units of :mod:`domain.values`.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.events import BookDelta, BookSnapshot, Level
from domain.values import LADDER_SIZE, ONE_DOLLAR, Side

NO_PRICE = -1  # what a best-price read returns for an empty side


class BookError(ValueError):
    """Book input that cannot be applied without corrupting the book."""


class OrderBook:
    __slots__ = ("ticker", "_qty", "_occupied", "_best")

    def __init__(self, ticker: str = "") -> None:
        self.ticker = ticker
        self._qty: tuple[list[int], list[int]] = ([0] * LADDER_SIZE, [0] * LADDER_SIZE)
        self._occupied: tuple[bytearray, bytearray] = (bytearray(LADDER_SIZE), bytearray(LADDER_SIZE))
        self._best: list[int] = [NO_PRICE, NO_PRICE]

    # -- writes -----------------------------------------------------------------------------
    def apply_snapshot(self, yes: Iterable[Level], no: Iterable[Level]) -> None:
        """Replace the whole book. Levels are (price, count) bids, in any order."""
        for side, levels in ((Side.YES, yes), (Side.NO, no)):
            qty = [0] * LADDER_SIZE
            occupied = bytearray(LADDER_SIZE)
            best = NO_PRICE
            for price, count in levels:
                if not 0 <= price < LADDER_SIZE:
                    raise BookError(f"{self.ticker}: snapshot price {price} is off the ladder")
                if count <= 0:
                    raise BookError(f"{self.ticker}: snapshot level {price} has count {count} <= 0")
                if occupied[price]:
                    raise BookError(f"{self.ticker}: snapshot repeats price {price} on {side.name}")
                qty[price] = count
                occupied[price] = 1
                if price > best:
                    best = price
            self._qty[side][:] = qty
            self._occupied[side][:] = occupied
            self._best[side] = best

    def apply_delta(self, side: int, price: int, delta: int) -> int:
        """Add ``delta`` (signed) at ``price`` on ``side``; returns the level's new count.

        As on Kalshi, a level is gone once its count reaches zero or below.
        """
        qty = self._qty[side]
        count = qty[price] + delta
        if count > 0:
            qty[price] = count
            if count == delta:  # the level is new
                self._occupied[side][price] = 1
                if price > self._best[side]:
                    self._best[side] = price
            return count
        qty[price] = 0
        occupied = self._occupied[side]
        if occupied[price]:
            occupied[price] = 0
            if price == self._best[side]:
                self._best[side] = occupied.rfind(1, 0, price)
        return 0

    def apply(self, event: BookSnapshot | BookDelta) -> None:
        """Apply a snapshot or delta event (the convenient, not the fastest, path)."""
        if isinstance(event, BookDelta):
            self.apply_delta(event.side, event.price, event.delta)
        elif isinstance(event, BookSnapshot):
            self.apply_snapshot(event.yes, event.no)
        else:
            raise BookError(f"{self.ticker}: not a book event: {type(event).__name__}")

    def clear(self) -> None:
        self.apply_snapshot((), ())

    # -- top of book ------------------------------------------------------------------------
    def best_bid(self, side: int) -> int:
        return self._best[side]

    def best_ask(self, side: int) -> int:
        """The best ask of ``side``: $1 minus the best bid of the other side."""
        other = self._best[1 - side]
        return ONE_DOLLAR - other if other >= 0 else NO_PRICE

    @property
    def yes_bid(self) -> int:
        return self._best[0]

    @property
    def no_bid(self) -> int:
        return self._best[1]

    @property
    def yes_ask(self) -> int:
        no = self._best[1]
        return ONE_DOLLAR - no if no >= 0 else NO_PRICE

    @property
    def no_ask(self) -> int:
        yes = self._best[0]
        return ONE_DOLLAR - yes if yes >= 0 else NO_PRICE

    def spread(self) -> int | None:
        """YES ask minus YES bid (the same number as NO ask minus NO bid); None if a side is empty."""
        yes, no = self._best
        if yes < 0 or no < 0:
            return None
        return ONE_DOLLAR - no - yes

    def mid(self) -> float | None:
        """The YES mid price in price units. Exact: a half-integer is representable in a float."""
        yes, no = self._best
        if yes < 0 or no < 0:
            return None
        return (yes + ONE_DOLLAR - no) / 2

    def is_locked(self) -> bool:
        """YES bid equals YES ask: someone would trade with themselves at one price."""
        yes, no = self._best
        return yes >= 0 and no >= 0 and yes + no == ONE_DOLLAR

    def is_crossed(self) -> bool:
        """YES bid above YES ask: a state a matching engine never leaves standing."""
        yes, no = self._best
        return yes >= 0 and no >= 0 and yes + no > ONE_DOLLAR

    # -- depth ------------------------------------------------------------------------------
    def quantity_at(self, side: int, price: int) -> int:
        return self._qty[side][price]

    def depth(self, side: int, levels: int) -> list[Level]:
        """Up to ``levels`` bids of ``side``, best first."""
        qty = self._qty[side]
        occupied = self._occupied[side]
        out: list[Level] = []
        price = self._best[side]
        while price >= 0 and len(out) < levels:
            out.append((price, qty[price]))
            price = occupied.rfind(1, 0, price)
        return out

    def total_quantity(self, side: int) -> int:
        return sum(self._qty[side])

    def levels(self, side: int) -> tuple[Level, ...]:
        """Every bid of ``side`` ascending by price -- the order Kalshi sends snapshots in."""
        out = self.depth(side, LADDER_SIZE)
        out.reverse()
        return tuple(out)

    def level_count(self, side: int) -> int:
        return self._occupied[side].count(1)

    # -- comparison and copies ---------------------------------------------------------------
    def copy(self) -> OrderBook:
        other = OrderBook(self.ticker)
        for side in (0, 1):
            other._qty[side][:] = self._qty[side]
            other._occupied[side][:] = self._occupied[side]
        other._best[:] = self._best
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self._qty == other._qty

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.ticker!r}, yes={list(self.levels(Side.YES))}, "
            f"no={list(self.levels(Side.NO))})"
        )
