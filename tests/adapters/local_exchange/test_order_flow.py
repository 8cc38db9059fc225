"""The exchange's order flow and books: the synthetic model played in scaled real time, bounded
runs that end by themselves, and books that are exactly the events published."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.local_exchange.market_feed import FlowEnd, SyntheticOrderFlow
from adapters.local_exchange.markets import ExchangeMarkets, TickerUpdate, UnknownMarket
from adapters.synthetic.market_model import SyntheticMarketConfig, SyntheticMarketModel, generate
from domain.events import BookDelta, BookSnapshot, MarketResolved, PublicTrade
from domain.orderbook import OrderBook
from domain.values import ONE_DOLLAR, Side


def flow_over(config: SyntheticMarketConfig, **options):
    model = SyntheticMarketModel(config)
    markets = ExchangeMarkets(config.tickers)
    return SyntheticOrderFlow(model, markets, **options), markets, model


async def test_a_whole_flow_leaves_the_exchange_books_equal_to_the_models_and_resolves_every_market():
    config = SyntheticMarketConfig(seed=3, markets=2, duration_ms=60_000)
    flow, markets, model = flow_over(config, speed=0)
    flow.open_markets()
    assert await flow.run() is FlowEnd.MARKETS_RESOLVED
    for simulation in model.markets:
        assert markets.book(simulation.ticker) == simulation.book
        assert markets.market(simulation.ticker).result in (Side.YES, Side.NO)


async def test_open_markets_publishes_every_opening_book_before_any_client_can_connect():
    flow, markets, _ = flow_over(SyntheticMarketConfig(seed=3, markets=3), speed=0)
    seen: list = []
    markets.add_listener(lambda event, _update: seen.append(event))
    flow.open_markets()
    assert {e.ticker for e in seen if isinstance(e, BookSnapshot)} == set(markets.tickers)
    assert all(markets.book(ticker).level_count(Side.YES) for ticker in markets.tickers)


async def test_max_events_stops_the_flow_at_exactly_that_many_events():
    flow, markets, _ = flow_over(SyntheticMarketConfig(seed=3, markets=3), speed=0, max_events=777)
    flow.open_markets()
    assert await flow.run() is FlowEnd.MAX_EVENTS
    assert markets.published == 777


async def test_event_times_are_paced_by_speed():
    config = SyntheticMarketConfig(seed=3, markets=1, events_per_second=20)
    flow, markets, _ = flow_over(config, speed=20.0, max_events=60)
    published: list = []
    markets.add_listener(lambda event, _update: published.append(event))
    flow.open_markets()
    started = time.monotonic()
    await flow.run()
    elapsed = time.monotonic() - started
    span_s = (published[-1].ts_ms - config.start_ms) / 1000
    assert span_s > 1.0  # about three seconds of market time...
    assert span_s / 20.0 - 0.02 <= elapsed <= span_s / 20.0 + 0.5  # ...in a twentieth of it


async def test_a_cancelled_flow_stops_between_two_events():
    flow, markets, _ = flow_over(SyntheticMarketConfig(seed=3, markets=2), speed=1.0)
    applied: list = []
    markets.add_listener(lambda event, _update: applied.append(event))
    flow.open_markets()
    task = asyncio.create_task(flow.run())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rebuilt = {ticker: OrderBook(ticker) for ticker in markets.tickers}
    for event in applied:
        if isinstance(event, (BookSnapshot, BookDelta)):
            rebuilt[event.ticker].apply(event)
    assert all(rebuilt[ticker] == markets.book(ticker) for ticker in markets.tickers)


def test_bad_flow_settings_are_refused():
    model = SyntheticMarketModel(SyntheticMarketConfig())
    markets = ExchangeMarkets(model.tickers)
    with pytest.raises(ValueError, match="speed"):
        SyntheticOrderFlow(model, markets, speed=-1)
    with pytest.raises(ValueError, match="max_events"):
        SyntheticOrderFlow(model, markets, max_events=0)


def test_the_ticker_follows_the_top_of_book_and_the_tape():
    markets = ExchangeMarkets(["T"])
    updates: list[TickerUpdate | None] = []
    markets.add_listener(lambda _event, update: updates.append(update))
    markets.publish(BookSnapshot("T", None, 1, yes=((4000, 500),), no=()))
    markets.publish(BookDelta("T", None, 2, Side.YES, 3000, 100))  # below the best: no change
    markets.publish(BookDelta("T", None, 3, Side.NO, 5500, 200))
    markets.publish(PublicTrade("T", 4, "t1", yes_price=4500, count=150, taker_side=Side.YES))
    markets.publish(MarketResolved("T", 5, Side.NO))
    assert updates == [
        TickerUpdate("T", 1, last_price=0, yes_bid=4000, yes_ask=ONE_DOLLAR, volume=0),
        None,
        TickerUpdate("T", 3, last_price=0, yes_bid=4000, yes_ask=4500, volume=0),
        TickerUpdate("T", 4, last_price=4500, yes_bid=4000, yes_ask=4500, volume=150),
        None,
    ]
    assert markets.market("T").result is Side.NO
    assert markets.ticker_state("T") == TickerUpdate("T", 5, 4500, 4000, 4500, 150)
    with pytest.raises(UnknownMarket, match="NOPE"):
        markets.book("NOPE")


async def test_without_trading_the_flow_publishes_exactly_the_models_sequence():
    config = SyntheticMarketConfig(seed=5, markets=3, duration_ms=20_000)
    flow, markets, _ = flow_over(config, speed=0)
    published: list = []
    markets.add_listener(lambda event, _update: published.append(event))
    flow.open_markets()
    assert await flow.run() is FlowEnd.MARKETS_RESOLVED
    assert published == generate(config)


async def test_catch_up_publishes_a_computed_step_so_the_simulation_and_the_exchange_agree():
    config = SyntheticMarketConfig(seed=3, markets=2, events_per_second=50)
    flow, markets, model = flow_over(config, speed=1.0)
    flow.open_markets()
    task = asyncio.create_task(flow.run())
    await asyncio.sleep(0.3)
    ahead = [s.ticker for s in model.markets if markets.book(s.ticker) != s.book]
    for simulation in model.markets:
        flow.catch_up(simulation.ticker)
        assert markets.book(simulation.ticker) == simulation.book
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flow.finished
    assert ahead, "the simulation was never ahead of the exchange: the test proved nothing"
