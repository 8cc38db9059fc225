"""The exchange's order flow: the SYNTHETIC market model, played into the exchange's books in
(scaled) real time.

Event times of the model are paced against the event loop's clock: an event ``t`` ms after the
first one is published ``t / speed`` ms after the flow started. ``speed=0`` publishes as fast
as possible. Either way the flow yields to the event loop every ``yield_every`` events, so the
connections' writers keep running however far behind the schedule the flow is.

The opening snapshots (every market's first book, all at the model's start time) are published
by :meth:`SyntheticOrderFlow.open_markets` before any client can connect: a client never sees a
market without its book.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Iterator

from adapters.local_exchange.markets import ExchangeMarkets
from adapters.synthetic.market_model import SyntheticMarketModel
from domain.events import MarketEvent


class FlowEnd(enum.Enum):
    """Why the order flow stopped."""

    MAX_EVENTS = "max-events reached"
    MARKETS_RESOLVED = "every market resolved"


class SyntheticOrderFlow:
    def __init__(
        self,
        model: SyntheticMarketModel,
        markets: ExchangeMarkets,
        *,
        speed: float = 1.0,
        max_events: int | None = None,
        yield_every: int = 16,
    ) -> None:
        if not (math.isfinite(speed) and speed >= 0):
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed!r}")
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1 (or None), got {max_events}")
        if yield_every < 1:
            raise ValueError(f"yield_every must be >= 1, got {yield_every}")
        self.markets = markets
        self.speed = speed
        self.max_events = max_events
        self.yield_every = yield_every
        self._events: Iterator[MarketEvent] = model.events()
        self._pending: MarketEvent | None = None  # read ahead, not yet published
        self._start_ms = model.config.start_ms

    def _limit_reached(self) -> bool:
        return self.max_events is not None and self.markets.published >= self.max_events

    def open_markets(self) -> None:
        """Publish every event at the model's start time: the opening books."""
        for event in self._events:
            if event.ts_ms > self._start_ms or self._limit_reached():
                self._pending = event
                return
            self.markets.publish(event)

    async def run(self) -> FlowEnd:
        """Publish the rest of the flow; returns why it stopped. Cancel it to stop it early
        (it stops between two events, so the books are never half-updated)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        speed, yield_every = self.speed, self.yield_every
        since_yield = 0
        while True:
            if self._limit_reached():
                return FlowEnd.MAX_EVENTS
            event = self._pending if self._pending is not None else next(self._events, None)
            self._pending = None
            if event is None:
                return FlowEnd.MARKETS_RESOLVED
            since_yield += 1
            if speed:
                delay = started + (event.ts_ms - self._start_ms) / 1000.0 / speed - loop.time()
                if delay > 0:
                    since_yield = 0
                    await asyncio.sleep(delay)
            if since_yield >= yield_every:
                since_yield = 0
                await asyncio.sleep(0)
            self.markets.publish(event)
