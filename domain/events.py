"""Market events: what a feed delivers and a recording stores, in domain units.

Wire payloads never get past the adapter that parsed them; these are what they become. Prices
are price units and counts are count units (see :mod:`domain.values`). Levels are bids only,
ascending by price, exactly as Kalshi sends them: the best bid is the last element.
"""

from __future__ import annotations

from typing import Union

import attrs

from domain.values import ONE_DOLLAR, Side

Level = tuple[int, int]  # (price, count)


@attrs.frozen
class BookSnapshot:
    """The whole book of one market, as sent at subscription or resynchronisation."""

    ticker: str
    seq: int | None
    ts_ms: int
    yes: tuple[Level, ...]
    no: tuple[Level, ...]
    sid: int | None = None


@attrs.frozen
class BookDelta:
    """A signed change in size at one price on one side. The level is gone at <= 0."""

    ticker: str
    seq: int | None
    ts_ms: int
    side: Side
    price: int
    delta: int
    sid: int | None = None
    client_order_id: str | None = None


@attrs.frozen
class PublicTrade:
    """A trade printed on the public tape. ``yes_price`` is the YES side's price."""

    ticker: str
    ts_ms: int
    trade_id: str
    yes_price: int
    count: int
    taker_side: Side
    seq: int | None = None
    sid: int | None = None

    @property
    def no_price(self) -> int:
        return ONE_DOLLAR - self.yes_price


@attrs.frozen
class MarketResolved:
    """The market settled: a YES contract pays $1 when ``result`` is YES, else $0."""

    ticker: str
    ts_ms: int
    result: Side


MarketEvent = Union[BookSnapshot, BookDelta, PublicTrade, MarketResolved]
