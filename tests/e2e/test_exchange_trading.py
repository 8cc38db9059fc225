"""End to end: ``kalshiflow-rl exchange --balance ...`` in a subprocess, traded over signed REST
while a signed WebSocket listens on the fill channel; the final ``account`` line agrees with
what the REST API and the fill channel said."""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest
import websockets

from adapters.kalshi.auth import RequestSigner, load_private_key
from domain.values import ONE_DOLLAR, format_price, parse_fixed, parse_price

pytestmark = pytest.mark.e2e

KEY_ID = "e2e-trading-key"
LISTENING = re.compile(r"listening ws://127\.0\.0\.1:(\d+)/trade-api/ws/v2")


async def test_an_order_sent_over_rest_fills_is_pushed_and_is_in_the_final_account_line(
    kalshiflow_process, subprocess_environment, kalshi_key_files, tmp_path
):
    private, public = kalshi_key_files
    signer = RequestSigner(KEY_ID, load_private_key(private))
    process = await kalshiflow_process(
        "exchange", "--port", "0", "--api-key-id", KEY_ID, "--public-key", str(public), "--markets", "1",
        "--speed", "5", "--duration", "4", "--balance", "250.00", "--fees", "zero",
        env=subprocess_environment(RL_DATA_DIR=str(tmp_path)),
    )  # fmt: skip
    port = (await process.line_matching(LISTENING)).group(1)
    ticker = (await process.line_matching(re.compile(r"^markets (\S+)"))).group(1)
    base = f"http://127.0.0.1:{port}"
    ws_url = f"ws://127.0.0.1:{port}/trade-api/ws/v2"
    async with (
        websockets.connect(ws_url, additional_headers=signer.websocket_headers(), proxy=None) as ws,
        httpx.AsyncClient(base_url=base, trust_env=False, timeout=10) as http,
    ):
        await ws.send(orjson.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["fill"]}}).decode())
        assert orjson.loads(await ws.recv())["type"] == "subscribed"
        book = (await http.get(f"/trade-api/v2/markets/{ticker}/orderbook")).json()["orderbook_fp"]
        best_no, _size = book["no_dollars"][-1]
        # Five cents through the YES ask, so the book moving a little meanwhile does not matter.
        limit = format_price(min(ONE_DOLLAR - parse_price(best_no) + 500, ONE_DOLLAR - 100))
        path = "/trade-api/v2/portfolio/events/orders"
        order = {
            "ticker": ticker, "client_order_id": "e2e-1", "side": "bid", "count": "1.00", "price": limit,
            "time_in_force": "immediate_or_cancel",
        }  # fmt: skip
        reply = await http.post(path, content=orjson.dumps(order), headers=signer.headers("POST", path))
        assert reply.status_code == 201, reply.text
        assert reply.json()["fill_count"] == "1.00"
        pushed = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        balance_path = "/trade-api/v2/portfolio/balance"
        balance = (await http.get(balance_path, headers=signer.headers("GET", balance_path))).json()
    assert await process.finished() == 0, process.output
    account = next(line for line in process.stdout if line.startswith("account "))
    _, key_id, summary = account.split(" ", 2)
    summary = orjson.loads(summary)
    assert key_id == KEY_ID
    assert summary["balance_dollars"] == balance["balance_dollars"]
    assert (summary["orders"], summary["fills"], summary["positions"]) == (1, 1, {ticker: "1.00"})
    assert pushed["type"] == "fill"
    assert (pushed["msg"]["client_order_id"], pushed["msg"]["post_position_fp"]) == ("e2e-1", "1.00")
    # Zero fees: the balance is what the contract cost, taken from 250.00.
    assert parse_fixed(balance["balance_dollars"], 6) == 250_000_000 - parse_price(pushed["msg"]["yes_price_dollars"]) * 100
