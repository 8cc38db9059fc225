"""A client that stops reading fills only its own queue: it loses its subscription (error 25),
while the exchange and every other client carry on untouched."""

from __future__ import annotations

import asyncio
import socket

import orjson
import websockets

from adapters.kalshi.parsing import ErrorReply, WsErrorCode, parse_frame
from domain.events import BookDelta, BookSnapshot


async def stalled_client(exchange, signer) -> websockets.ClientConnection:
    """A real client on a socket with a tiny receive buffer, that will read nothing for a while."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", exchange.port))
    return await websockets.connect(
        exchange.ws_url, sock=sock, additional_headers=signer.websocket_headers(), max_queue=1, proxy=None
    )


async def test_a_slow_client_loses_its_subscription_and_nobody_else_notices(make_exchange, connect, signer, rebuilder):
    async with make_exchange(flow=False, max_events=30_000, send_buffer=100) as exchange, connect(exchange) as fast:
        slow = await stalled_client(exchange, signer)
        subscribe = {"channels": ["orderbook_delta", "trade"], "market_tickers": list(exchange.tickers)}
        await slow.send(orjson.dumps({"id": 1, "cmd": "subscribe", "params": subscribe}).decode())
        await fast.command("subscribe", subscribe)
        first = [await fast.frame() for _ in range(5)]  # two acks, three snapshots
        while not exchange.connections[2].subscriptions.subscriptions:
            await asyncio.sleep(0.01)
        fast_reading = asyncio.create_task(fast.frames_until_closed())

        exchange.start_flow()
        assert await asyncio.wait_for(exchange.wait_finished(), 20) == "max-events reached"
        slow_connection = exchange.connections[2]  # the fast client connected first
        assert slow_connection.overflows >= 1 and exchange.connections[1].overflows == 0
        assert slow_connection.queue.data_queued <= 100  # bounded, whatever the client does

        slow_reading = asyncio.create_task(_frames_until_closed(slow))
        await exchange.stop()
        fast_frames, _ = await fast_reading
        slow_frames = await slow_reading

    # The fast client saw everything, in order, and its books are the exchange's.
    rebuilt = rebuilder().feed(first + fast_frames)
    assert rebuilt.seq_problems() == {}
    for ticker in exchange.tickers:
        assert rebuilt.books[ticker] == exchange.book(ticker)

    # The slow one was told which subscription went, and heard nothing more from it.
    messages = [parse_frame(frame, received_ms=0) for frame in slow_frames]
    errors = [(i, m) for i, m in enumerate(messages) if isinstance(m, ErrorReply)]
    assert errors, "no overflow error reached the slow client"
    position, error = errors[0]
    assert error.code == WsErrorCode.SUBSCRIPTION_BUFFER_OVERFLOW and error.id is None
    dropped = orjson.loads(slow_frames[position])["sid"]
    assert f"sid {dropped}" in error.msg
    assert not [m for m in messages[position + 1 :] if getattr(m, "sid", None) == dropped]
    books = [m for m in messages[:position] if isinstance(m, (BookSnapshot, BookDelta))]
    assert [m.seq for m in books] == list(range(1, len(books) + 1))  # what did arrive was whole


async def _frames_until_closed(connection: websockets.ClientConnection) -> list[str]:
    frames = []
    async with asyncio.timeout(20):
        try:
            while True:
                frames.append(await connection.recv())
        except websockets.ConnectionClosed:
            return frames
