"""Every fault, injected on a real connection and seen by the client as a client would see it."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from adapters.kalshi.parsing import MalformedMessage, parse_frame
from adapters.local_exchange import parse_fault
from domain.events import BookDelta, BookSnapshot


async def book_stream(exchange, client) -> tuple[list[str], Exception]:
    """Subscribe to every book, let a bounded flow run, and read until the connection ends."""
    await client.command("subscribe", every_book(exchange))
    await client.frame()  # subscribed
    exchange.start_flow()
    await exchange.wait_finished()
    reading = asyncio.create_task(client.frames_until_closed())
    await exchange.stop()
    return await reading


def every_book(exchange) -> dict:
    return {"channels": ["orderbook_delta"], "market_tickers": list(exchange.tickers)}


def faulty(*specs: str) -> dict:
    return {"flow": False, "max_events": 600, "faults": [parse_fault(spec) for spec in specs]}


async def test_skip_seq_leaves_a_gap_of_one_and_loses_nothing(make_exchange, connect, rebuilder):
    async with make_exchange(**faulty("skip-seq@5")) as exchange, connect(exchange) as client:
        frames, _ = await book_stream(exchange, client)
    rebuilt = rebuilder().feed(frames)
    seqs = rebuilt.seqs[1]
    assert seqs[:6] == [1, 2, 3, 4, 6, 7]
    assert seqs[4:] == list(range(6, 6 + len(seqs) - 4))  # counting goes on from the skipped number
    for ticker in exchange.tickers:
        assert rebuilt.books[ticker] == exchange.book(ticker)


async def test_duplicate_sends_one_book_message_twice(make_exchange, connect, rebuilder):
    async with make_exchange(**faulty("duplicate@5")) as exchange, connect(exchange) as client:
        frames, _ = await book_stream(exchange, client)
    seqs = rebuilder().feed(frames).seqs[1]
    assert seqs[:7] == [1, 2, 3, 4, 5, 5, 6]
    assert frames[4] == frames[5]
    assert isinstance(parse_frame(frames[4]), BookDelta)  # three snapshots, then deltas


async def test_malformed_sends_a_torn_frame_before_the_real_one(make_exchange, connect, rebuilder):
    async with make_exchange(**faulty("malformed@2")) as exchange, connect(exchange) as client:
        frames, _ = await book_stream(exchange, client)
    with pytest.raises(MalformedMessage, match="not JSON"):
        parse_frame(frames[1])
    assert frames[2].startswith(frames[1]) and len(frames[1]) < len(frames[2])
    rebuilt = rebuilder().feed(frames)
    assert len(rebuilt.malformed) == 1 and rebuilt.seq_problems() == {}
    for ticker in exchange.tickers:
        assert rebuilt.books[ticker] == exchange.book(ticker)


async def test_drop_connection_cuts_the_socket_without_a_close_frame(make_exchange, connect):
    async with make_exchange(**faulty("drop-connection@5")) as exchange:
        async with connect(exchange) as client:
            frames, closed = await book_stream(exchange, client)
            assert isinstance(closed, websockets.ConnectionClosedError)
            assert closed.rcvd is None  # no close frame: the TCP connection just ended
        books = [parse_frame(frame, received_ms=0) for frame in frames]
        assert [type(m) for m in books] == [BookSnapshot] * 3 + [BookDelta]  # book messages 1..4
        assert exchange.connections == {}


async def test_a_reconnecting_client_gets_a_clean_connection_by_default(make_exchange, connect, rebuilder):
    async with make_exchange(flow=False, faults=[parse_fault("drop-connection@2")]) as exchange:
        async with connect(exchange) as first:
            await first.command("subscribe", every_book(exchange))
            frames, closed = await first.frames_until_closed(timeout=5)
            assert len(frames) == 2 and closed.rcvd is None  # the ack and book message 1
        async with connect(exchange) as second:
            await second.command("subscribe", every_book(exchange))
            frames = [await second.frame() for _ in range(4)]
            assert rebuilder().feed(frames).seqs == {1: [1, 2, 3]}


async def test_a_stall_holds_everything_back_for_its_seconds(make_exchange, connect):
    async with make_exchange(flow=False, faults=[parse_fault("stall@3:0.6")]) as exchange, connect(exchange) as client:
        ticker = exchange.tickers[0]
        await client.command("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [ticker]})
        await client.messages(2)  # ack, book message 1
        await client.command("update_subscription", {"sids": [1], "action": "get_snapshot"})
        await client.messages(2)  # ok, book message 2
        sent = time.monotonic()
        await client.command("update_subscription", {"sids": [1], "action": "get_snapshot"})
        ok = await client.message()
        assert time.monotonic() - sent < 0.3  # the reply is queued before the stall
        assert await client.silent_for(0.4)
        snapshot = await client.message()
        assert isinstance(snapshot, BookSnapshot) and snapshot.seq == 3
        assert time.monotonic() - sent >= 0.6
        assert ok.seq == 2


async def test_a_fault_can_target_another_connection_or_every_one(make_exchange, connect, rebuilder):
    faults = ["skip-seq@2#2", "duplicate@3#*"]
    async with make_exchange(flow=False, faults=[parse_fault(f) for f in faults]) as exchange:
        async with connect(exchange) as first, connect(exchange) as second:
            for client in (first, second):
                await client.command("subscribe", every_book(exchange))
            first_seqs = rebuilder().feed([await first.frame() for _ in range(5)]).seqs[1]
            second_seqs = rebuilder().feed([await second.frame() for _ in range(5)]).seqs[1]
    assert first_seqs == [1, 2, 3, 3]  # only the duplicate
    assert second_seqs == [1, 3, 4, 4]  # the gap, then the duplicate


async def test_faults_meeting_at_one_message_act_in_the_documented_order(make_exchange, connect):
    faults = [parse_fault(spec) for spec in ("duplicate@2", "skip-seq@2", "malformed@2", "stall@2:0.3")]
    async with make_exchange(flow=False, faults=faults) as exchange, connect(exchange) as client:
        await client.command("subscribe", {"channels": ["orderbook_delta"], "market_tickers": exchange.tickers[:2]})
        frames = [await client.frame() for _ in range(2)]  # ack, message 1, then the stall
        started = time.monotonic()
        frames += [await client.frame() for _ in range(3)]  # torn copy, message 2, its duplicate
        assert time.monotonic() - started >= 0.25
    torn, second, again = frames[2:]
    assert parse_frame(frames[1], received_ms=0).seq == 1
    assert second == again and parse_frame(second, received_ms=0).seq == 3  # numbered past the skipped 2
    assert second.startswith(torn) and len(torn) < len(second)
