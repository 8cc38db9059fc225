"""Market data over a real socket: subscriptions, snapshots then deltas with per-sid seq, trades,
tickers, and books rebuilt by the project's own parser that equal the exchange's books."""

from __future__ import annotations

import asyncio

import attrs
import orjson

from adapters.kalshi.parsing import OkReply, Subscribed, UnknownMessage, Unsubscribed, parse_frame
from domain.events import BookDelta, BookSnapshot, PublicTrade
from domain.orderbook import OrderBook
from domain.values import ONE_DOLLAR, Side, parse_count, parse_price


def record_published(exchange) -> list:
    published: list = []
    exchange.markets.add_listener(lambda event, _update: published.append(event))
    return published


async def subscribe(client, channels, tickers=(), **params) -> list[str]:
    """Subscribe while the flow is held; returns the acks and the snapshots that follow."""
    body = {"channels": list(channels), **params}
    if tickers:
        body["market_tickers"] = list(tickers)
    await client.command("subscribe", body)
    expected = len(channels) + (len(tickers) if "orderbook_delta" in channels else 0)
    return [await client.frame() for _ in range(expected)]


async def run_to_the_end(exchange, client) -> tuple[list[str], Exception]:
    """Let the held flow run to its bound, stop the exchange, and read everything it sent."""
    exchange.start_flow()
    await exchange.wait_finished()
    reading = asyncio.create_task(client.frames_until_closed())
    await exchange.stop()
    return await reading


async def test_a_client_rebuilds_every_book_exactly_from_snapshots_and_deltas(make_exchange, connect, rebuilder):
    async with make_exchange(flow=False, max_events=3_000) as exchange, connect(exchange) as client:
        published = record_published(exchange)
        first = await subscribe(client, ["orderbook_delta", "trade"], exchange.tickers)
        rest, closed = await run_to_the_end(exchange, client)

        assert exchange.end_reason == "max-events reached" and exchange.events_published == 3_000
        assert closed.rcvd is not None and closed.rcvd.code == 1001  # a clean close, after the last message
        rebuilt = rebuilder().feed(first + rest)
        assert rebuilt.seq_problems() == {} and not rebuilt.malformed
        assert set(rebuilt.books) == set(exchange.tickers)
        for ticker in exchange.tickers:
            assert rebuilt.books[ticker] == exchange.book(ticker), ticker
            assert rebuilt.books[ticker].level_count(Side.YES) > 0

        # Exactly what the exchange published, in order, with the wire's numbers on it.
        messages = [parse_frame(frame, received_ms=0) for frame in first + rest]
        snapshots = [m for m in messages if isinstance(m, BookSnapshot)]
        assert [(s.ticker, s.sid, s.seq) for s in snapshots] == [(t, 1, i) for i, t in enumerate(exchange.tickers, 1)]
        deltas = [m for m in messages if isinstance(m, BookDelta)]
        expected = [e for e in published if isinstance(e, BookDelta)]
        assert len(deltas) == len(expected) > 1_000
        assert deltas == [
            attrs.evolve(e, sid=1, seq=len(exchange.tickers) + i) for i, e in enumerate(expected, 1)
        ]
        trades = [m for m in messages if isinstance(m, PublicTrade)]
        assert trades == [attrs.evolve(e, sid=2) for e in published if isinstance(e, PublicTrade)]
        assert trades and all(t.seq is None for t in trades)  # Kalshi's trades carry no seq


async def test_the_legacy_era_sends_cents_and_whole_contracts_that_parse_to_the_same_books(
    make_exchange, connect, rebuilder, market_config
):
    legacy = market_config(markets=2, timestamp_granularity_ms=1000)
    async with make_exchange(flow=False, max_events=1_500, era="legacy", market=legacy) as exchange, connect(
        exchange
    ) as client:
        first = await subscribe(client, ["orderbook_delta", "trade", "ticker"], exchange.tickers)
        rest, _ = await run_to_the_end(exchange, client)

    raw = [orjson.loads(frame) for frame in first + rest]
    snapshot = next(m for m in raw if m["type"] == "orderbook_snapshot")["msg"]
    assert "yes_dollars_fp" not in snapshot and all(isinstance(v, int) for level in snapshot["yes"] for v in level)
    delta = next(m for m in raw if m["type"] == "orderbook_delta")["msg"]
    assert isinstance(delta["price"], int) and isinstance(delta["delta"], int) and "price_dollars" not in delta
    assert snapshot["market_id"] and delta["market_id"]  # legacy-era clients read it from snapshots
    trade = next(m for m in raw if m["type"] == "trade")["msg"]
    assert isinstance(trade["yes_price"], int) and isinstance(trade["ts"], int)
    ticker = next(m for m in raw if m["type"] == "ticker")["msg"]
    assert isinstance(ticker["yes_bid"], int) and "yes_bid_dollars" not in ticker
    rebuilt = rebuilder().feed(first + rest)
    assert rebuilt.seq_problems() == {} and not rebuilt.malformed
    for ticker in exchange.tickers:
        assert rebuilt.books[ticker] == exchange.book(ticker)


async def test_ticker_messages_follow_the_top_of_book_and_the_tape(make_exchange, connect):
    async with make_exchange(flow=False, max_events=1_000) as exchange, connect(exchange) as client:
        await subscribe(client, ["ticker"])  # no markets named: every market
        rest, _ = await run_to_the_end(exchange, client)

    tickers = [parse_frame(frame) for frame in rest]
    assert tickers and all(isinstance(t, UnknownMessage) and t.type == "ticker" for t in tickers)
    last = {t.payload["msg"]["market_ticker"]: t.payload for t in tickers}
    assert set(last) == set(exchange.tickers)
    for name, message in last.items():
        msg, state = message["msg"], exchange.markets.ticker_state(name)
        assert message["sid"] == 1 and "seq" not in message
        assert parse_price(msg["yes_bid_dollars"]) == state.yes_bid == exchange.book(name).yes_bid
        assert parse_price(msg["yes_ask_dollars"]) == state.yes_ask == exchange.book(name).yes_ask
        assert parse_price(msg["price_dollars"]) == state.last_price
        assert parse_count(msg["volume_fp"]) == state.volume
        assert msg["ts"] == msg["ts_ms"] // 1000


async def test_unsubscribe_stops_the_messages_of_that_sid_at_once(make_exchange, connect):
    async with make_exchange(flow=False, max_events=4_000) as exchange, connect(exchange) as client:
        await subscribe(client, ["orderbook_delta", "trade"], exchange.tickers)
        exchange.start_flow()
        for _ in range(50):  # the flow is running: deltas are arriving
            await client.frame()
        await client.command("unsubscribe", {"sids": [1]})
        after_ack: list = []
        while True:
            message = await client.message()
            if isinstance(message, Unsubscribed):
                break
        await exchange.wait_finished()
        reading = asyncio.create_task(client.frames_until_closed())
        await exchange.stop()
        frames, _ = await reading
        after_ack = [parse_frame(frame, received_ms=0) for frame in frames]

    assert message.sid == 1
    assert after_ack, "trades keep coming on sid 2"
    assert {m.sid for m in after_ack} == {2}
    assert not any(isinstance(m, (BookSnapshot, BookDelta)) for m in after_ack)


async def test_update_subscription_adds_deletes_and_resnapshots_markets(make_exchange, connect):
    async with make_exchange(flow=False) as exchange, connect(exchange) as client:
        one, two, three = exchange.tickers
        await subscribe(client, ["orderbook_delta"], [one])

        add = {"sids": [1], "action": "add_markets", "market_tickers": [two, three]}
        await client.command("update_subscription", add)
        ok, snap_two, snap_three = await client.messages(3)
        assert ok == OkReply(2, sid=1, seq=1, market_tickers=(one, two, three))
        assert [(s.ticker, s.seq) for s in (snap_two, snap_three)] == [(two, 2), (three, 3)]

        await client.command("update_subscription", {"sids": [1], "action": "delete_markets", "market_tickers": [two]})
        assert await client.message() == OkReply(3, sid=1, seq=3, market_tickers=(one, three))

        await client.command("update_subscription", {"sid": 1, "action": "get_snapshot"})
        ok, fresh_one, fresh_three = await client.messages(3)
        assert ok == OkReply(4, sid=1, seq=3, market_tickers=(one, three))
        assert [(s.ticker, s.seq) for s in (fresh_one, fresh_three)] == [(one, 4), (three, 5)]
        book = OrderBook(one)
        book.apply(fresh_one)
        assert book == exchange.book(one)

        await client.command("update_subscription", {"sids": [1], "action": "get_snapshot", "market_tickers": [three]})
        ok, only_three = await client.messages(2)
        assert (only_three.ticker, only_three.seq) == (three, 6)

        # Deltas of a deleted market stop; the others go on.
        exchange.start_flow()
        await asyncio.sleep(0.2)
        await exchange.stop()
        frames, _ = await client.frames_until_closed()
        deltas = [parse_frame(f, received_ms=0) for f in frames]
        assert deltas and {d.ticker for d in deltas} <= {one, three}
        assert [d.seq for d in deltas] == list(range(7, 7 + len(deltas)))


async def test_list_subscriptions_names_each_sid_and_channel(make_exchange, connect):
    async with make_exchange(flow=False) as exchange, connect(exchange) as client:
        await subscribe(client, ["orderbook_delta", "trade"], exchange.tickers[:1])
        await subscribe(client, ["ticker"])
        await client.command("list_subscriptions")
        reply = await client.message()
        listed = [(s.channel, s.sid) for s in reply.subscriptions]
        assert listed == [("orderbook_delta", 1), ("trade", 2), ("ticker", 3)]
        await client.command("unsubscribe", {"sids": [2]})
        await client.message()
        await client.command("list_subscriptions")
        reply = await client.message()
        assert [s.sid for s in reply.subscriptions] == [1, 3]


async def test_every_connection_numbers_its_own_sids_from_one(make_exchange, connect):
    async with make_exchange(flow=False) as exchange, connect(exchange) as first, connect(exchange) as second:
        acks_first = await subscribe(first, ["trade", "ticker"])
        acks_second = await subscribe(second, ["ticker"])
        assert [parse_frame(f) for f in acks_first] == [Subscribed(1, "trade", 1), Subscribed(1, "ticker", 2)]
        assert [parse_frame(f) for f in acks_second] == [Subscribed(1, "ticker", 1)]
        assert exchange.connections_served == 2


async def test_use_yes_price_sends_no_levels_as_yes_ask_prices(make_exchange, connect):
    async with make_exchange(flow=False) as exchange, connect(exchange) as client:
        ticker = exchange.tickers[0]
        _, frame = await subscribe(client, ["orderbook_delta"], [ticker], use_yes_price=True)
        snapshot = parse_frame(frame, received_ms=0)
        book = exchange.book(ticker)
        assert snapshot.no == tuple(sorted((ONE_DOLLAR - price, count) for price, count in book.levels(Side.NO)))
        assert snapshot.yes == book.levels(Side.YES)
