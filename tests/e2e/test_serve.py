"""End to end: ``kalshiflow-rl serve`` against the real ``kalshiflow-rl exchange``, two processes
on loopback, recording into SQLite: health, status, a book, the book stream, a flush, and a
SIGTERM that drains the queue and ends the session while a stream client is connected."""

from __future__ import annotations

import asyncio
import re
import signal

import httpx
import orjson
import pytest
import websockets

from adapters.storage import SqliteOrderbookStore

pytestmark = pytest.mark.e2e

KEY_ID = "e2e-serve-key"
LISTENING = re.compile(r"^listening (ws://127\.0\.0\.1:\d+/trade-api/ws/v2)\n")
MARKETS = re.compile(r"^markets (.+)\n")
SERVING = re.compile(r"^listening (http://127\.0\.0\.1:(\d+))\n")
PRICE = re.compile(r"^[01]\.\d{4}$")
COUNT = re.compile(r"^\d+\.\d{2}$")


async def until_healthy(client: httpx.AsyncClient, timeout_s: float = 20) -> httpx.Response:
    async with asyncio.timeout(timeout_s):
        while True:
            response = await client.get("/rl/health")
            if response.status_code == 200:
                return response
            await asyncio.sleep(0.1)


async def test_serve_answers_while_recording_and_drains_on_sigterm(
    kalshi_key_files, kalshiflow_process, subprocess_environment, tmp_path
):
    private_key, public_key = kalshi_key_files
    exchange = await kalshiflow_process(
        "exchange", "--port", "0", "--api-key-id", KEY_ID, "--public-key", str(public_key),
        "--markets", "3", "--seed", "9", "--speed", "20", "--duration", "30",
        env=subprocess_environment(RL_DATA_DIR=str(tmp_path / "exchange")),
    )  # fmt: skip
    ws_url = (await exchange.line_matching(LISTENING)).group(1)
    tickers = (await exchange.line_matching(MARKETS)).group(1).split()
    data_dir = tmp_path / "service"
    service = await kalshiflow_process(
        "serve", "--port", "0",
        env=subprocess_environment(
            RL_DATA_DIR=str(data_dir),
            KALSHI_WS_URL=ws_url,
            KALSHI_REST_URL=ws_url.replace("ws://", "http://").replace("/ws/v2", "/v2"),  # its REST API: the markets' schedules
            KALSHI_API_KEY_ID=KEY_ID,
            KALSHI_PRIVATE_KEY_PATH=str(private_key),
            RL_MARKET_TICKERS=",".join(tickers),
            RL_ORDERBOOK_FLUSH_INTERVAL="0.2",
        ),
    )  # fmt: skip
    base_url = (await service.line_matching(SERVING)).group(1)

    ticker = tickers[0]
    stream_url = f"ws://{base_url.removeprefix('http://')}/rl/ws/orderbook?ticker={ticker}"
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as http,
        websockets.connect(stream_url, proxy=None) as stream,
    ):
        health = (await until_healthy(http)).json()
        assert health["status"] == "healthy" and health["recording"] == "recording"
        assert {name: part["status"] for name, part in health["components"].items()} == {
            "store": "ok",
            "write_queue": "ok",
            "feed": "connected",
            "actor": "disabled",
        }

        updates = [orjson.loads(await asyncio.wait_for(stream.recv(), 10)) for _ in range(4)]
        assert all(update["type"] == "book" and update["ticker"] == ticker for update in updates)
        changes = [update["snapshots"] + update["deltas"] for update in updates]
        assert changes == sorted(changes) and changes[-1] > changes[0]  # the book moves, in order

        status = (await http.get("/rl/status")).json()
        assert status["state"] == "recording" and status["messages"] > 0 and status["errors"] == 0
        assert status["gaps"] == status["resyncs"] == status["reconnects"] == 0
        assert status["latency_p50_us"] > 0 and status["latency_p99_us"] >= status["latency_p50_us"]
        assert [market["ticker"] for market in status["markets"]] == tickers
        assert all(market["seq_status"] == "in_sync" for market in status["markets"])

        book = (await http.get("/rl/orderbook/snapshot", params={"ticker": ticker})).json()
        assert book["ticker"] == ticker and book["seq_status"] == "in_sync"
        for side in ("yes", "no"):
            levels = book[f"{side}_dollars_fp"]
            assert levels and all(PRICE.match(price) and COUNT.match(count) for price, count in levels)
            assert [price for price, _ in levels] == sorted(price for price, _ in levels)
            assert book["best"][f"{side}_bid"] == levels[-1][0]  # the best bid is the last level
        assert PRICE.match(book["spread"]) and re.match(r"^0\.\d{4,5}$", book["mid"])
        assert (await http.get("/rl/orderbook/snapshot", params={"ticker": "NOPE-1"})).status_code == 404
        assert (await http.get("/rl/orderbook/snapshot")).status_code == 400

        flushed = await http.post("/rl/admin/flush")
        assert flushed.status_code == 200 and flushed.json()["rows_written"] > 0

        # SIGTERM with a stream client connected: the queue drains, the client is closed.
        service.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await stream.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code in (1001, 1012)
    assert await service.finished() == 0, service.output
    stdout = "".join(service.stdout)
    assert "SIGTERM: stopping" in "".join(service.stderr) and "Traceback" not in service.output
    session_id, events, schedules = map(
        int, re.search(r"^Recorded session (\d+): 3 markets, (\d+) events \((\d+) schedules", stdout, re.M).groups()
    )
    assert schedules == 3  # each market's scheduled close, from the exchange's REST API
    events -= schedules  # what the write queue took: market data
    accepted, written, pending = map(
        int, re.search(r"^Store: (\d+) accepted, (\d+) rows written, .* (\d+) pending", stdout, re.M).groups()
    )
    assert accepted == written == events and pending == 0

    store = SqliteOrderbookStore(data_dir / "kalshiflow.db")
    await store.open()
    try:
        session = await store.get_session(session_id)
    finally:
        await store.close()
    assert session.is_closed and session.snapshots + session.deltas + session.trades == events
