"""The service: books as JSON to the last digit, the stream's fan-out (coalescing, dropping slow
clients without holding the feed), and the app served by uvicorn over live ingestion from a real
local exchange in this process."""

from __future__ import annotations

import asyncio
import socket

import attrs
import httpx
import orjson
import pytest
import websockets
from dependency_injector import providers

from adapters.storage import SqliteOrderbookStore
from adapters.synthetic.market_model import SyntheticMarketConfig
from application.book_state import SharedBookState
from domain.events import BookDelta, BookSnapshot
from domain.values import Side
from entrypoints import cli
from entrypoints.container import build_container
from entrypoints.serve_command import serve, serving
from entrypoints.service import BookStream, book_view, create_app

T = "KXA-1"


def books_with(yes, no, ticker: str = T) -> SharedBookState:
    books = SharedBookState([ticker])
    books.apply(BookSnapshot(ticker, 1, 0, yes=tuple(yes), no=tuple(no)))
    return books


# ---------------------------------------------------------------------------------------------
# A book as JSON
# ---------------------------------------------------------------------------------------------
def test_a_book_is_spelled_as_on_the_wire_with_its_top_and_status():
    books = books_with(yes=[(4700, 300), (4500, 12_000)], no=[(5000, 250)])
    view = book_view(books, T)
    assert view | {"last_update_ms": None} == {
        "ticker": T,
        "seq_status": "in_sync",
        "yes_dollars_fp": [["0.4500", "120.00"], ["0.4700", "3.00"]],  # ascending: best bid last
        "no_dollars_fp": [["0.5000", "2.50"]],
        "best": {"yes_bid": "0.4700", "yes_ask": "0.5000", "no_bid": "0.5000", "no_ask": "0.5300"},
        "spread": "0.0300",
        "mid": "0.4850",
        "snapshots": 1,
        "deltas": 0,
        "last_update_ms": None,
    }


def test_a_mid_between_two_price_units_keeps_its_fifth_decimal():
    view = book_view(books_with(yes=[(4701, 100)], no=[(5000, 100)]), T)
    assert (view["spread"], view["mid"]) == ("0.0299", "0.48505")


def test_an_empty_side_has_no_best_price_spread_or_mid_and_a_gap_shows_in_the_status():
    books = books_with(yes=[(4500, 100)], no=[])
    books.await_snapshot(T)
    view = book_view(books, T)
    assert view["no_dollars_fp"] == [] and view["seq_status"] == "awaiting_snapshot"
    assert view["best"] == {"yes_bid": "0.4500", "yes_ask": None, "no_bid": None, "no_ask": "0.5500"}
    assert view["spread"] is None and view["mid"] is None


# ---------------------------------------------------------------------------------------------
# The stream
# ---------------------------------------------------------------------------------------------
def delta(seq: int, price: int = 4600) -> BookDelta:
    return BookDelta(T, seq, seq, Side.YES, price, 100)


async def broadcast_round(stream: BookStream) -> None:
    await asyncio.sleep(0)
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_client_gets_the_books_at_once_then_one_message_per_burst_of_changes():
    books = books_with(yes=[(4500, 100)], no=[(5000, 100)])
    stream = BookStream(books, interval_s=0)
    runner = asyncio.create_task(stream.run())
    try:
        client = stream.connect()
        first = orjson.loads(await client.next())
        assert first["type"] == "book" and first["deltas"] == 0

        for seq in range(2, 102):  # a burst between two broadcasts
            books.apply(delta(seq))
        update = orjson.loads(await asyncio.wait_for(client.next(), 1))
        assert update["deltas"] == 100 and update["best"]["yes_bid"] == "0.4600"
        await broadcast_round(stream)
        assert client.waiting == 0  # the hundred deltas made one message
    finally:
        runner.cancel()


async def test_a_slow_client_is_dropped_and_neither_the_feed_nor_the_others_wait_for_it():
    books = SharedBookState([T, "KXB-2"])
    books.apply(BookSnapshot(T, 1, 0, yes=((4500, 100),), no=((5000, 100),)))
    stream = BookStream(books, queue_size=3, interval_s=0)
    runner = asyncio.create_task(stream.run())
    try:
        slow = stream.connect(frozenset({T}))  # never reads
        fast = stream.connect(frozenset({T}))
        received = [await fast.next()]
        for seq in range(2, 12):
            books.apply(delta(seq, 4500 + seq))  # a plain call: returns at once, whoever listens
            await broadcast_round(stream)
            while fast.waiting:
                received.append(await fast.next())

        assert slow.dropped and await slow.next() is None
        assert stream.clients_dropped == 1 and stream.client_count == 1
        assert not fast.dropped and orjson.loads(received[-1])["deltas"] == 10
    finally:
        runner.cancel()


async def test_nobody_listens_to_the_books_while_no_client_is_connected():
    books = books_with(yes=[(4500, 100)], no=[])
    stream = BookStream(books, interval_s=0)
    client = stream.connect()
    stream.disconnect(client)
    with pytest.raises(ValueError, match="is not subscribed"):
        books.unsubscribe(stream._on_update)


# ---------------------------------------------------------------------------------------------
# The app, served, over a live recording
# ---------------------------------------------------------------------------------------------
class SwitchableStore(SqliteOrderbookStore):
    """The SQLite store whose reads can be made to fail, as an unreachable database's do."""

    down = False

    async def get_session(self, session_id: int):
        if self.down:
            raise ConnectionRefusedError("the database is down")
        return await super().get_session(session_id)


@pytest.fixture
async def service(local_exchange, live_settings, wait_until):
    """A live recording of a local exchange (flow held), its app served on 127.0.0.1."""
    async with local_exchange(max_events=3000) as exchange:
        settings = live_settings(exchange)
        container = build_container(settings)
        store = SwitchableStore(settings.sqlite_path)
        container.store.override(providers.Object(store))
        settings.data_dir.mkdir(parents=True)
        await store.open()
        ingestion = container.live_ingestion()
        app = create_app(ingestion, stream_interval_s=0.01)
        try:
            async with serving(app, "127.0.0.1", 0) as server:
                async with httpx.AsyncClient(base_url=server.url, timeout=5, trust_env=False) as http:
                    yield exchange, ingestion, server, http
                if ingestion.state.value in ("recording", "draining"):
                    await ingestion.stop()
        finally:
            await store.close()


async def test_health_says_starting_until_recording_then_healthy_then_stopped(service, wait_until):
    exchange, ingestion, _server, http = service
    response = await http.get("/rl/health")
    assert response.status_code == 503
    assert response.json()["components"]["store"]["status"] == "starting"

    recording = asyncio.create_task(ingestion.run())
    await wait_until(lambda: all(ingestion.books.is_in_sync(ticker) for ticker in exchange.tickers))
    response = await http.get("/rl/health")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "healthy", body
    assert {name: part["status"] for name, part in body["components"].items()} == {
        "store": "ok",
        "write_queue": "ok",
        "feed": "connected",
        "actor": "disabled",
    }

    ingestion.store.down = True
    response = await http.get("/rl/health")
    assert response.status_code == 503
    assert response.json()["components"]["store"] == {
        "status": "unreachable",
        "error": "ConnectionRefusedError: the database is down",
    }
    ingestion.store.down = False

    await ingestion.stop()
    await recording
    response = await http.get("/rl/health")
    assert response.status_code == 503 and response.json()["components"]["feed"]["status"] == "stopped"


async def test_status_snapshot_and_flush_while_recording(service, wait_until):
    exchange, ingestion, _server, http = service
    assert (await http.post("/rl/admin/flush")).status_code == 409  # nothing to flush yet
    recording = asyncio.create_task(ingestion.run())
    await wait_until(lambda: all(ingestion.books.is_in_sync(ticker) for ticker in exchange.tickers))
    exchange.start_flow()
    await exchange.wait_finished()
    await wait_until(lambda: ingestion.feed.stats().deltas > 1000)

    ticker = exchange.tickers[1]
    snapshot = await http.get("/rl/orderbook/snapshot", params={"ticker": ticker})
    assert snapshot.status_code == 200
    assert snapshot.json() == orjson.loads(orjson.dumps(book_view(ingestion.books, ticker)))
    missing = await http.get("/rl/orderbook/snapshot")
    assert missing.status_code == 400 and "ticker=" in missing.json()["error"]
    unknown = await http.get("/rl/orderbook/snapshot", params={"ticker": "NOPE-9"})
    assert unknown.status_code == 404 and unknown.json()["markets"] == list(exchange.tickers)

    flushed = await http.post("/rl/admin/flush")
    body = flushed.json()
    assert flushed.status_code == 200 and body["pending"] == 0
    assert body["rows_written"] == ingestion.queue.stats().accepted

    status = (await http.get("/rl/status")).json()
    feed = ingestion.feed.stats()
    assert status["state"] == "recording" and status["session_id"] == ingestion.session_id
    assert (status["messages"], status["gaps"], status["resyncs"], status["reconnects"]) == (
        feed.messages, 0, 0, 0,
    )  # fmt: skip
    assert status["rows_written"] == body["rows_written"] and status["queue_depth"] == 0
    assert status["errors"] == 0 and status["latency_p99_us"] >= status["latency_p50_us"] > 0
    assert [(m["ticker"], m["seq_status"]) for m in status["markets"]] == [(t, "in_sync") for t in exchange.tickers]

    await ingestion.stop()
    summary = await recording
    assert summary.events == ingestion.queue.stats().accepted


async def test_the_stream_sends_the_books_then_their_changes_and_refuses_unknown_markets(service, wait_until):
    exchange, ingestion, server, _http = service
    recording = asyncio.create_task(ingestion.run())
    await wait_until(lambda: all(ingestion.books.is_in_sync(ticker) for ticker in exchange.tickers))
    base = server.url.replace("http://", "ws://")

    async with websockets.connect(f"{base}/rl/ws/orderbook?ticker=NOPE-9", proxy=None) as refused:
        error = orjson.loads(await refused.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await refused.recv()
    assert error["type"] == "error" and "NOPE-9" in error["error"]
    assert closed.value.rcvd.code == 1008

    ticker = exchange.tickers[0]
    async with websockets.connect(f"{base}/rl/ws/orderbook?ticker={ticker}", proxy=None) as one, websockets.connect(
        f"{base}/rl/ws/orderbook", proxy=None
    ) as every:
        initial = [orjson.loads(await every.recv()) for _ in exchange.tickers]
        assert [book["ticker"] for book in initial] == list(exchange.tickers)
        assert orjson.loads(await one.recv())["deltas"] == 0
        exchange.start_flow()
        seen = [orjson.loads(await asyncio.wait_for(one.recv(), 5)) for _ in range(3)]
        assert all(book["ticker"] == ticker for book in seen)
        assert [book["deltas"] for book in seen] == sorted(book["deltas"] for book in seen) and seen[-1]["deltas"] > 0
        assert server.task.done() is False
    await ingestion.stop()
    await recording


async def test_an_enabled_actor_that_does_not_run_makes_the_service_unhealthy(local_exchange, live_settings):
    async with local_exchange() as exchange:
        ingestion = build_container(live_settings(exchange)).live_ingestion()
        app = create_app(ingestion, actor_enabled=True)
        async with serving(app, "127.0.0.1", 0) as server:
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
                body = (await http.get("/rl/health")).json()
    assert body["components"]["actor"]["status"] == "unavailable"
    assert "RL_ACTOR_ENABLED" in body["components"]["actor"]["error"]


# ---------------------------------------------------------------------------------------------
# The serve command, in process
# ---------------------------------------------------------------------------------------------
def serve_args(*argv: str):
    return cli.build_parser().parse_args(["serve", "--port", "0", *argv])


class Stdout:
    """What the command printed so far (capsys hands each line out once)."""

    def __init__(self, capsys) -> None:
        self._capsys = capsys
        self._text = ""

    @property
    def text(self) -> str:
        self._text += self._capsys.readouterr().out
        return self._text


async def test_serve_records_in_the_background_and_stops_gracefully(local_exchange, live_settings, wait_until, capsys):
    stdout = Stdout(capsys)
    async with local_exchange(max_events=800) as exchange:
        settings = live_settings(exchange)
        container = build_container(settings)
        command = asyncio.create_task(serve(serve_args(), settings, container))
        ingestion = container.live_ingestion()
        await wait_until(lambda: "listening http://127.0.0.1:" in stdout.text)
        url = stdout.text.split("listening ", 1)[1].split()[0]
        await wait_until(lambda: all(ingestion.books.is_in_sync(ticker) for ticker in exchange.tickers))
        exchange.start_flow()
        await exchange.wait_finished()
        async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
            assert (await http.get("/rl/health")).status_code == 200
        await ingestion.stop()
        assert await asyncio.wait_for(command, 10) == 0

    out = stdout.text
    accepted = ingestion.queue.stats().accepted
    assert f"Recorded session 1: 3 markets, {accepted} events" in out
    assert f"Store: {accepted} accepted, {accepted} rows written" in out
    with pytest.raises(httpx.ConnectError):  # the server is gone with the recording
        async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
            await http.get("/rl/health")


async def test_serve_on_a_port_in_use_fails_before_recording(local_exchange, live_settings):
    async with local_exchange() as exchange:
        settings = live_settings(exchange)
        container = build_container(settings)
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            with pytest.raises(cli.CommandFailed, match=f"cannot serve on 127.0.0.1:{port}") as failed:
                await serve(serve_args("--port", str(port)), settings, container)
    assert failed.value.exit_code == 1
    assert container.live_ingestion().session_id is None  # no session was started


async def test_serve_with_credentials_the_exchange_refuses_stops_serving_and_says_why(local_exchange, live_settings):
    async with local_exchange() as exchange:
        settings = attrs.evolve(live_settings(exchange), kalshi_api_key_id="someone-else")
        with pytest.raises(cli.CommandFailed, match="HTTP 401") as failed:
            await asyncio.wait_for(serve(serve_args(), settings, build_container(settings)), 10)
    assert failed.value.exit_code == 1


UPGRADE = (
    b"GET /rl/ws/orderbook HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.slow
async def test_a_stream_client_that_stops_reading_is_dropped_while_recording_goes_on(
    local_exchange, live_settings, wait_until
):
    market = SyntheticMarketConfig(seed=2, markets=3, duration_ms=10**9, events_per_second=50)
    async with local_exchange(market=market, speed=20) as exchange:
        settings = live_settings(exchange)
        ingestion = build_container(settings).live_ingestion()
        settings.data_dir.mkdir(parents=True)
        await ingestion.store.open()
        app = create_app(ingestion, stream_queue_size=4, stream_interval_s=0)
        loop = asyncio.get_running_loop()
        stuck = socket.socket()
        try:
            async with serving(app, "127.0.0.1", 0) as server:
                recording = asyncio.create_task(ingestion.run())
                await wait_until(lambda: all(ingestion.books.is_in_sync(ticker) for ticker in exchange.tickers))
                exchange.start_flow()
                # Completes the handshake, then never reads; a small receive buffer makes the
                # server's socket fill, and its sends block, sooner.
                stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stuck.setblocking(False)
                await loop.sock_connect(stuck, ("127.0.0.1", server.port))
                await loop.sock_sendall(stuck, UPGRADE)
                async with (
                    httpx.AsyncClient(base_url=server.url, trust_env=False) as http,
                    websockets.connect(server.url.replace("http", "ws") + "/rl/ws/orderbook", proxy=None) as reader,
                ):
                    received = [0]

                    async def read() -> None:
                        while True:
                            await reader.recv()
                            received[0] += 1

                    reading = asyncio.create_task(read())
                    deltas_before = ingestion.feed.stats().deltas
                    async with asyncio.timeout(30):
                        while (await http.get("/rl/status")).json()["stream"]["clients_dropped"] == 0:
                            await asyncio.sleep(0.2)
                    seen = received[0]
                    await wait_until(lambda: received[0] > seen + 10)  # the reader is still served
                    assert ingestion.feed.stats().deltas > deltas_before + 1000  # and the feed never waited
                    status = (await http.get("/rl/status")).json()
                    assert status["stream"]["clients"] == 1 and status["errors"] == 0
                    await reader.close()  # while still reading: the server's close frame is behind the data
                with pytest.raises(websockets.ConnectionClosedOK):
                    await reading
                stuck.close()  # before the server shuts down: it would wait for this connection
                await ingestion.stop()
                await recording
        finally:
            stuck.close()
            await ingestion.store.close()
