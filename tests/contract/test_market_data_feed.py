"""The market-data feed contract, run against every implementation of the port: the synthetic
source read directly, and the Kalshi client reading the same synthetic market from the local
exchange over a signed WebSocket on 127.0.0.1 (fractional counts and sub-penny ticks included).

A consumer of the port may rely on: each market's book starts with a snapshot; book messages of
a subscription are numbered without gaps; the books they build are never crossed and no level
goes negative; values are exact integers on the ladder; time never runs backwards in a market;
and breaking out of the stream releases it at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

from adapters.kalshi.auth import RequestSigner, generate_keypair, private_key_from_pem, public_key_from_pem
from adapters.kalshi.market_data import KalshiMarketDataFeed
from adapters.kalshi.ws_client import KalshiWebSocketClient
from adapters.local_exchange import ExchangeConfig, LocalExchange
from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig
from domain.events import BookDelta, BookSnapshot, MarketEvent, PublicTrade
from domain.orderbook import OrderBook
from domain.ports import MarketDataFeed
from domain.values import ONE_DOLLAR

MARKET = SyntheticMarketConfig(seed=11, markets=3, tick_structure="tapered_deci_cent", fractional_counts=True)
TAKEN = 1_500  # events each test reads
KEY_ID = "contract-feed-key"


@attrs.define
class FeedUnderTest:
    name: str
    feed: MarketDataFeed
    tickers: tuple[str, ...]
    # Called once every market's snapshot has arrived: the local exchange holds its order flow
    # until then, so the stream starts at the same point of the market on both paths.
    subscribed: Callable[[], None] = lambda: None


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture(params=["synthetic", "kalshi-over-local-exchange"])
async def feed_under_test(request: pytest.FixtureRequest, keys: tuple[bytes, bytes]) -> AsyncIterator[FeedUnderTest]:
    if request.param == "synthetic":
        yield FeedUnderTest("synthetic", SyntheticMarketFeed(MARKET), MARKET.tickers)
        return
    async with kalshi_feed_over_local_exchange(keys) as feed:
        yield feed


@contextlib.asynccontextmanager
async def kalshi_feed_over_local_exchange(keys: tuple[bytes, bytes]) -> AsyncIterator[FeedUnderTest]:
    private_pem, public_pem = keys
    config = ExchangeConfig(api_keys={KEY_ID: public_key_from_pem(public_pem)}, market=MARKET, speed=0)
    exchange = LocalExchange(config)
    await exchange.start(flow=False)
    try:
        client = KalshiWebSocketClient(
            exchange.ws_url, RequestSigner(KEY_ID, private_key_from_pem(private_pem)), max_attempts=3
        )
        feed = KalshiMarketDataFeed(client, exchange.tickers)
        yield FeedUnderTest("kalshi-over-local-exchange", feed, exchange.tickers, exchange.start_flow)
        await feed.stop()
    finally:
        await exchange.stop(drain_timeout_s=2.0)


async def take(under_test: FeedUnderTest, count: int = TAKEN, timeout_s: float = 30.0) -> list[MarketEvent]:
    events: list[MarketEvent] = []
    snapshots: set[str] = set()
    async with asyncio.timeout(timeout_s), contextlib.aclosing(under_test.feed.events()) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, BookSnapshot) and event.ticker not in snapshots:
                snapshots.add(event.ticker)
                if snapshots == set(under_test.tickers):
                    under_test.subscribed()
            if len(events) >= count:
                break
    return events


def book_and_trade_events(events: list[MarketEvent]) -> list[MarketEvent]:
    return [event for event in events if isinstance(event, (BookSnapshot, BookDelta, PublicTrade))]


# ---------------------------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------------------------
async def test_the_feed_implements_the_port(feed_under_test: FeedUnderTest):
    assert isinstance(feed_under_test.feed, MarketDataFeed)


async def test_every_market_starts_with_a_snapshot_before_any_delta(feed_under_test: FeedUnderTest):
    events = await take(feed_under_test)
    first_book_event: dict[str, MarketEvent] = {}
    for event in events:
        if isinstance(event, (BookSnapshot, BookDelta)):
            first_book_event.setdefault(event.ticker, event)
    assert set(first_book_event) == set(feed_under_test.tickers)
    assert all(isinstance(event, BookSnapshot) for event in first_book_event.values())


async def test_book_messages_of_a_subscription_are_numbered_without_gaps(feed_under_test: FeedUnderTest):
    events = await take(feed_under_test)
    seqs: dict[int | None, list[int]] = defaultdict(list)
    for event in events:
        if isinstance(event, (BookSnapshot, BookDelta)):
            assert event.seq is not None, f"{feed_under_test.name}: book event without seq: {event!r}"
            seqs[event.sid].append(event.seq)
    assert seqs
    for sid, numbers in seqs.items():
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"sid {sid} has a gap or a repeat"


async def test_the_events_build_books_that_are_never_crossed(feed_under_test: FeedUnderTest):
    books: dict[str, OrderBook] = {}
    deltas = 0
    for event in await take(feed_under_test):
        if isinstance(event, (BookSnapshot, BookDelta)):
            book = books.setdefault(event.ticker, OrderBook(event.ticker))
            book.apply(event)  # raises BookError on a level taken below zero
            deltas += isinstance(event, BookDelta)
            assert not book.is_crossed(), f"{event.ticker} crossed after {event!r}"
    assert deltas > TAKEN // 2


async def test_values_are_exact_integers_on_the_ladder(feed_under_test: FeedUnderTest):
    events = await take(feed_under_test)
    assert any(isinstance(event, PublicTrade) for event in events)
    for event in events:
        assert event.ticker in feed_under_test.tickers
        assert type(event.ts_ms) is int
        if isinstance(event, BookSnapshot):
            for price, count in (*event.yes, *event.no):
                assert type(price) is int and 0 < price < ONE_DOLLAR
                assert type(count) is int and count > 0
        elif isinstance(event, BookDelta):
            assert type(event.price) is int and 0 < event.price < ONE_DOLLAR
            assert type(event.delta) is int and event.delta != 0
        elif isinstance(event, PublicTrade):
            assert type(event.yes_price) is int and 0 < event.yes_price < ONE_DOLLAR
            assert type(event.count) is int and event.count > 0


async def test_time_never_runs_backwards_within_a_market(feed_under_test: FeedUnderTest):
    last: dict[str, int] = {}
    for event in await take(feed_under_test):
        if isinstance(event, (BookDelta, PublicTrade)):
            assert event.ts_ms >= last.get(event.ticker, 0), f"time ran backwards at {event!r}"
            last[event.ticker] = event.ts_ms


async def test_breaking_out_of_the_stream_releases_it_at_once(feed_under_test: FeedUnderTest):
    started = time.monotonic()
    await take(feed_under_test, count=50)
    assert time.monotonic() - started < 10.0


# ---------------------------------------------------------------------------------------------
# Across implementations: the same seeded market reads the same over the wire as directly
# ---------------------------------------------------------------------------------------------
def comparable(event: MarketEvent) -> tuple[Any, ...]:
    """What both paths must agree on: everything but receive times and subscription ids."""
    if isinstance(event, BookSnapshot):
        return ("snapshot", event.ticker, tuple(event.yes), tuple(event.no))
    if isinstance(event, BookDelta):
        return ("delta", event.ticker, event.side, event.price, event.delta, event.ts_ms)
    assert isinstance(event, PublicTrade)
    return ("trade", event.ticker, event.trade_id, event.yes_price, event.count, event.taker_side, event.ts_ms)


async def test_the_kalshi_client_reads_the_same_market_as_the_synthetic_source(keys: tuple[bytes, bytes]):
    direct = await take(FeedUnderTest("synthetic", SyntheticMarketFeed(MARKET), MARKET.tickers))
    async with kalshi_feed_over_local_exchange(keys) as over_the_wire:
        wired = await take(over_the_wire)
    # The local exchange sends every market's snapshot at subscription, before any order flow;
    # the synthetic source interleaves them with the first deltas. Compare each kind in order.
    for kind in (BookSnapshot, BookDelta, PublicTrade):
        ours = [comparable(event) for event in direct if isinstance(event, kind)]
        theirs = [comparable(event) for event in wired if isinstance(event, kind)]
        shared = min(len(ours), len(theirs))
        assert shared > 0 and ours[:shared] == theirs[:shared], kind.__name__
