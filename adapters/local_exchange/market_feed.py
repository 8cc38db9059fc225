"""The exchange's order flow: the SYNTHETIC market model, played into the exchange's books in
(scaled) real time.

Event times of the model are paced against the event loop's clock: an event ``t`` ms after the
first one is published ``t / speed`` ms after the flow started. ``speed=0`` publishes as fast
as possible. Either way the flow yields to the event loop every ``yield_every`` events, so the
connections' writers keep running however far behind the schedule the flow is.

The opening snapshots (every market's first book) are published by
:meth:`SyntheticOrderFlow.open_markets` before any client can connect: a client never sees a
market without its book.

Each market's simulation is driven here, one stream per market, merged by time (ties: market
order -- the same sequence as :meth:`SyntheticMarketModel.events`). The simulation computes a
whole *step* (one participant's action: a quote refresh, a cancel, a sweep) when its first event
is pulled, so between that pull and the publication of the step's last event the simulation's
state is ahead of the published book. The matching engine must trade against exactly what was
published, so :meth:`SyntheticOrderFlow.catch_up` publishes a market's already computed step
at once (a little early: at most one step ahead of its schedule); after it the simulation's book
equals the exchange's. The next step of that market is only computed once the caught-up step's
scheduled time has come, so trading never speeds a market up.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import math
from collections.abc import Callable, Iterator

import attrs

from adapters.local_exchange.markets import ExchangeMarkets
from adapters.synthetic.market_model import MarketSimulation, SyntheticMarketModel
from domain.events import MarketEvent


class FlowEnd(enum.Enum):
    """Why the order flow stopped."""

    MAX_EVENTS = "max-events reached"
    MARKETS_RESOLVED = "every market resolved"


@attrs.define(eq=False)
class _Stream:
    """One market's events: pulled from its simulation, published in order."""

    index: int
    simulation: MarketSimulation
    events: Iterator[MarketEvent]
    last_ts: int  # of the last event published: a lower bound of the next one's time
    pulled: int = 0
    head: MarketEvent | None = None  # pulled, not yet published
    done: bool = False

    @property
    def generated(self) -> int:
        """Events the simulation has computed. ``emitted`` counts a step's events when the step
        runs, but reads 0 until the generator resumes after the opening snapshot."""
        return max(self.simulation.emitted, min(self.pulled, 1))

    @property
    def published(self) -> int:
        return self.pulled - (self.head is not None)

    def key(self) -> tuple[int, int]:
        return (self.head.ts_ms if self.head is not None else self.last_ts, self.index)


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
        self.published = 0  # synthetic events published (what max_events counts)
        self.finished = False  # run() has returned or was cancelled
        # Called with a ticker each time every event its simulation computed is published:
        # the moment the matching engine may look at the simulation (fills of resting orders).
        self.on_caught_up: Callable[[str], None] | None = None
        self._start_ms = model.config.start_ms
        self._streams = [
            _Stream(index, simulation, simulation.events(), self._start_ms)
            for index, simulation in enumerate(model.markets)
        ]
        self._by_ticker = {stream.simulation.ticker: stream for stream in self._streams}
        # Every stream's key, pushed whenever it changes; keys only grow, so an entry that no
        # longer matches its stream is stale and dropped when it reaches the top. (A min() over
        # the streams per event cost more than the market model itself.)
        self._keys: list[tuple[int, int]] = [stream.key() for stream in self._streams]
        heapq.heapify(self._keys)
        self._woken = asyncio.Event()

    def simulation(self, ticker: str) -> MarketSimulation:
        return self._by_ticker[ticker].simulation

    def _limit_reached(self) -> bool:
        return self.max_events is not None and self.published >= self.max_events

    def open_markets(self) -> None:
        """Publish every market's opening book."""
        for stream in self._streams:
            if self._limit_reached():
                return
            self._pull(stream)
            if stream.head is not None:
                self._publish_head(stream)

    def catch_up(self, ticker: str) -> None:
        """Publish what the simulation of ``ticker`` has computed and not yet published, so its
        book equals the exchange's. A no-op once the flow has finished (nothing moves then)."""
        stream = self._by_ticker[ticker]
        if self.finished:
            return
        caught_up = False
        while stream.published < stream.generated:
            if stream.head is None:
                self._pull(stream)
            self._publish_head(stream)
            caught_up = True
        if caught_up:
            self._woken.set()  # the flow may be sleeping until a time that no longer comes first

    async def run(self) -> FlowEnd:
        """Publish the rest of the flow; returns why it stopped. Cancel it to stop it early
        (it stops between two events, so the books are never half-updated)."""
        try:
            return await self._run()
        finally:
            self.finished = True

    async def _run(self) -> FlowEnd:
        loop = asyncio.get_running_loop()
        started = loop.time()
        speed, yield_every = self.speed, self.yield_every
        since_yield = 0
        while True:
            if self._limit_reached():
                return FlowEnd.MAX_EVENTS
            stream = self._earliest()
            if stream is None:
                return FlowEnd.MARKETS_RESOLVED
            if speed:
                due_ms = stream.key()[0]
                delay = started + (due_ms - self._start_ms) / 1000.0 / speed - loop.time()
                if delay > 0:
                    since_yield = 0
                    await self._sleep(delay)
                    continue  # a catch-up may have changed what comes next
            if stream.head is None:
                self._pull(stream)  # computes the market's next step when the last is all out
                continue
            since_yield += 1
            if since_yield >= yield_every:
                since_yield = 0
                await asyncio.sleep(0)
                if stream.head is None:  # caught up meanwhile
                    continue
            self._publish_head(stream)

    async def _sleep(self, seconds: float) -> None:
        self._woken.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._woken.wait()

    def _earliest(self) -> _Stream | None:
        """The stream whose next event comes first (ties: market order), None when all are done."""
        keys, streams = self._keys, self._streams
        while keys:
            key = keys[0]
            stream = streams[key[1]]
            if not stream.done and stream.key() == key:
                return stream
            heapq.heappop(keys)
        return None

    def _pull(self, stream: _Stream) -> None:
        event = next(stream.events, None)
        if event is None:
            stream.done = True
        else:
            stream.pulled += 1
            stream.head = event
            heapq.heappush(self._keys, (event.ts_ms, stream.index))

    def _publish_head(self, stream: _Stream) -> None:
        event = stream.head
        assert event is not None
        stream.head = None
        stream.last_ts = event.ts_ms
        heapq.heappush(self._keys, (event.ts_ms, stream.index))
        self.published += 1
        self.markets.publish(event)
        if self.on_caught_up is not None and stream.published == stream.generated:
            self.on_caught_up(stream.simulation.ticker)
