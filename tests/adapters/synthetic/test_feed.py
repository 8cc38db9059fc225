"""The synthetic feed: generator -> Kalshi wire -> parser, with real sid/seq numbering."""

from __future__ import annotations

import asyncio
import time

import attrs
import pytest

from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig, generate
from domain.events import BookDelta, BookSnapshot, MarketResolved, PublicTrade
from domain.ports import MarketDataFeed
from domain.sequence import SeqStatus, SequenceCheck


async def collect(feed: SyntheticMarketFeed) -> list:
    return [event async for event in feed.events()]


def with_wire_numbers(events, *, book_sid=1, trade_sid=2):
    """What the generator's events look like after the wire assigned sid and seq."""
    out, seq = [], 0
    for event in events:
        if isinstance(event, (BookSnapshot, BookDelta)):
            seq += 1
            out.append(attrs.evolve(event, sid=book_sid, seq=seq))
        elif isinstance(event, PublicTrade):
            out.append(attrs.evolve(event, sid=trade_sid))
        else:
            out.append(event)
    return out


def test_the_feed_is_a_market_data_feed():
    assert isinstance(SyntheticMarketFeed(SyntheticMarketConfig()), MarketDataFeed)


@pytest.mark.parametrize(
    "config",
    [
        SyntheticMarketConfig(seed=2, markets=3, events_per_market=1_500, duration_ms=10**9),
        SyntheticMarketConfig(
            seed=3,
            markets=2,
            events_per_market=1_500,
            duration_ms=10**9,
            tick_structure="deci_cent",
            fractional_counts=True,
        ),
    ],
)
async def test_events_survive_the_current_wire_unchanged(config):
    feed = SyntheticMarketFeed(config)
    received = await collect(feed)
    assert received == with_wire_numbers(generate(config))
    assert feed.frames == sum(1 for e in received if not isinstance(e, MarketResolved))


async def test_events_survive_the_legacy_wire_unchanged():
    config = SyntheticMarketConfig(seed=4, markets=2, events_per_market=1_500, timestamp_granularity_ms=1000)
    assert await collect(SyntheticMarketFeed(config, era="legacy")) == with_wire_numbers(generate(config))


async def test_book_seq_counts_from_one_with_the_snapshot_and_never_gaps():
    config = SyntheticMarketConfig(seed=5, markets=2, events_per_market=1_000, duration_ms=10**9)
    received = await collect(SyntheticMarketFeed(config, book_sid=7, trade_sid=8))
    book = [e for e in received if isinstance(e, (BookSnapshot, BookDelta))]
    assert isinstance(book[0], BookSnapshot) and book[0].seq == 1
    check = SequenceCheck()
    check.start(book[0].seq)
    assert all(check.check(e.seq) is SeqStatus.IN_ORDER for e in book[1:])
    assert {e.sid for e in book} == {7}
    trades = [e for e in received if isinstance(e, PublicTrade)]
    assert trades and {e.sid for e in trades} == {8} and {e.seq for e in trades} == {None}


async def test_trades_can_carry_their_own_seq():
    config = SyntheticMarketConfig(seed=5, events_per_market=1_000, duration_ms=10**9)
    trades = [e for e in await collect(SyntheticMarketFeed(config, trade_seq=True)) if isinstance(e, PublicTrade)]
    assert [t.seq for t in trades] == list(range(1, len(trades) + 1))


def test_the_legacy_wire_refuses_what_it_cannot_carry():
    with pytest.raises(ValueError, match="tick_structure must be 'linear_cent'.*fractional_counts must be off"):
        SyntheticMarketFeed(
            SyntheticMarketConfig(tick_structure="deci_cent", fractional_counts=True, timestamp_granularity_ms=1000),
            era="legacy",
        )
    with pytest.raises(ValueError, match="timestamp_granularity_ms must be a multiple of 1000"):
        SyntheticMarketFeed(SyntheticMarketConfig(), era="legacy")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"era": "future"}, "era must be"), ({"speed": 0}, "speed must be > 0"), ({"yield_every": 0}, "yield_every")],
)
def test_bad_feed_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticMarketFeed(SyntheticMarketConfig(), **kwargs)


async def test_paced_replay_follows_event_time():
    # 2 s of market time at 10x: at least 0.2 s of wall time.
    config = SyntheticMarketConfig(seed=6, duration_ms=2_000, events_per_second=50)
    started = time.perf_counter()
    received = await collect(SyntheticMarketFeed(config, speed=10.0))
    elapsed = time.perf_counter() - started
    span = received[-1].ts_ms - received[0].ts_ms
    assert span >= 1_900
    assert span / 1000 / 10 * 0.95 <= elapsed < 3.0


async def test_as_fast_as_possible_still_lets_other_tasks_run():
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    background = asyncio.create_task(ticker())
    try:
        config = SyntheticMarketConfig(seed=6, events_per_market=5_000, duration_ms=10**9)
        await collect(SyntheticMarketFeed(config, yield_every=100))
    finally:
        background.cancel()
    assert ticks >= 10
