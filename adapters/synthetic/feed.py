"""A :class:`~domain.ports.MarketDataFeed` over the SYNTHETIC market model.

Each generated event is written as the exact Kalshi WebSocket message (:mod:`adapters.kalshi.wire`)
and parsed back with :mod:`adapters.kalshi.parsing`, so synthetic data takes the same parsing path
as live data and the events carry real ``sid``/``seq`` numbers:

* one ``orderbook_delta`` subscription (``book_sid``) covers every market; its ``seq`` counts
  from 1 with the first snapshot and is shared by the markets, as Kalshi does;
* one ``trade`` subscription (``trade_sid``); trade messages carry no ``seq`` unless
  ``trade_seq`` is set.

Resolutions have no message in the protocol we speak, so :class:`MarketResolved` events pass
through as they are. Snapshots carry no time on the wire; the generator's time is given to the
parser as the receive time.

The feed also describes its markets as Kalshi's ``GET /markets/{ticker}`` would (it satisfies
:class:`~domain.ports.MarketCatalog`): each closes, and resolves, at the config's expiry. The
recording writes that schedule into the session before the first event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from adapters.kalshi import wire
from adapters.kalshi.parsing import parse_frame
from adapters.synthetic.market_model import SyntheticMarketConfig, SyntheticMarketModel
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, PublicTrade
from domain.gateway_errors import MarketNotFound
from domain.ports import MarketInfo


class SyntheticMarketFeed:
    """Synthetic market events, through the wire and back.

    ``speed``: None replays as fast as possible (yielding to the event loop every
    ``yield_every`` events); a number paces event times against the loop clock, ``speed``
    times faster than real time.
    """

    def __init__(
        self,
        config: SyntheticMarketConfig,
        *,
        era: wire.Era = "current",
        speed: float | None = None,
        book_sid: int = 1,
        trade_sid: int = 2,
        trade_seq: bool = False,
        yield_every: int = 256,
    ) -> None:
        if era not in wire.ERAS:
            raise ValueError(f"era must be 'current' or 'legacy', got {era!r}")
        if era == "legacy":
            _check_legacy(config)
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (or None for as fast as possible), got {speed!r}")
        if yield_every <= 0:
            raise ValueError(f"yield_every must be > 0, got {yield_every}")
        self.config = config
        self.era = era
        self.speed = speed
        self.book_sid = book_sid
        self.trade_sid = trade_sid
        self.trade_seq = trade_seq
        self.yield_every = yield_every
        self.frames = 0  # wire messages built and parsed so far

    @property
    def tickers(self) -> tuple[str, ...]:
        return self.config.tickers

    async def market(self, ticker: str) -> MarketInfo:
        """What the exchange would say of ``ticker`` before it ran: it closes at the expiry."""
        if ticker not in self.config.tickers:
            raise MarketNotFound(f"no synthetic market {ticker!r}")
        expiry = self.config.expiry_ms
        return MarketInfo(ticker=ticker, close_ms=expiry, expiration_ms=expiry)

    async def events(self) -> AsyncIterator[MarketEvent]:
        loop = asyncio.get_running_loop()
        era = self.era
        book_sid, trade_sid = self.book_sid, self.trade_sid
        book_seq = trade_seq = 0
        first_ts: int | None = None
        started = loop.time()
        for count, event in enumerate(SyntheticMarketModel(self.config).events(), 1):
            if self.speed is not None:
                if first_ts is None:
                    first_ts = event.ts_ms
                due = started + (event.ts_ms - first_ts) / 1000.0 / self.speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif count % self.yield_every == 0:
                await asyncio.sleep(0)

            if isinstance(event, BookDelta):
                book_seq += 1
                message = wire.delta_message(event, book_sid, book_seq, era)
            elif isinstance(event, PublicTrade):
                seq = None
                if self.trade_seq:
                    trade_seq += 1
                    seq = trade_seq
                message = wire.trade_message(event, trade_sid, seq, era)
            elif isinstance(event, BookSnapshot):
                book_seq += 1
                message = wire.snapshot_message(event, book_sid, book_seq, era)
            elif isinstance(event, MarketResolved):
                yield event
                continue
            else:  # pragma: no cover - the model emits nothing else
                raise TypeError(f"unexpected synthetic event {type(event).__name__}")
            parsed = parse_frame(wire.encode(message), received_ms=event.ts_ms)
            self.frames += 1
            yield parsed  # type: ignore[misc]  # market-data messages parse to market events


def _check_legacy(config: SyntheticMarketConfig) -> None:
    """The legacy wire has integer cents, whole contracts and whole-second trade times."""
    problems = []
    if config.tick_structure != "linear_cent":
        problems.append(f"tick_structure must be 'linear_cent' (got {config.tick_structure!r})")
    if config.fractional_counts:
        problems.append("fractional_counts must be off")
    if config.timestamp_granularity_ms % 1000:
        problems.append(
            f"timestamp_granularity_ms must be a multiple of 1000 (got {config.timestamp_granularity_ms})"
        )
    if config.start_ms % 1000:
        problems.append(f"start_ms must be a whole second (got {config.start_ms})")
    if problems:
        raise ValueError("the legacy era cannot carry this synthetic config: " + "; ".join(problems))
