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


@attrs.frozen
class MarketScheduled:
    """What the exchange announced in advance about a market: when trading closes (``close_ms``;
    Kalshi's ``close_time``) and, if it says, when the market expires (``expiration_ms``).

    A recording writes one per market when it starts recording it (``ts_ms``: when it was
    learned, on the recorder's clock), before any of the market's book events. Replay counts
    the time left down to ``close_ms``, as the live actor does: a time known before the market
    ran, not the time its recording happened to end.
    """

    ticker: str
    ts_ms: int
    close_ms: int
    expiration_ms: int | None = None


MarketEvent = Union[BookSnapshot, BookDelta, PublicTrade, MarketResolved, MarketScheduled]
"""Everything a recorded session holds. Feeds deliver the first four; :class:`MarketScheduled`
comes from the exchange's market catalog, written by the recording itself."""
