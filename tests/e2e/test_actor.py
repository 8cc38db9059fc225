"""End to end: the paper-trading actor inside ``kalshiflow-rl serve``, against the local exchange.

The exchange runs in this test's event loop (so the test can read its accounts and cut its
fill connections); the service is the real console script in a subprocess, trading the
exchange's synthetic markets with the ``hardcoded`` rule over signed REST, its fills on the
private WebSocket channel -- which the exchange cuts, on purpose, at the second fill of every
connection that carries fills, so each fill that would have gone out there is lost and must be
recovered by the fill stream's REST reconciliation.

The run, bounded by the markets' own close: trade until the actor has placed orders, booked
fills (across at least one cut connection) and holds a position; pull the kill switch (every
order resting on the exchange is cancelled, trading stops); let the markets close and resolve
on the exchange; wait for the actor to book the settlements. Then the proof:

* the actor's cash and positions equal the exchange's balance and positions to the micro-dollar,
  with no adjustment adopted from the exchange (the fills alone add up);
* the fills the actor booked are exactly ``GET /portfolio/fills``;
* every order the exchange knows has its decision in ``rl_trading_actions``.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from typing import Any

import httpx
import pytest

from adapters.kalshi.auth import RequestSigner, load_private_key, public_key_from_pem
from adapters.local_exchange import ExchangeConfig, LocalExchange, parse_fault
from adapters.storage import SqliteTradingRecords
from adapters.synthetic.market_model import SyntheticMarketConfig
from domain.values import MONEY_DECIMALS, parse_count, parse_fixed

pytestmark = pytest.mark.e2e

KEY_ID = "e2e-actor-key"
SERVING = re.compile(r"^listening (http://127\.0\.0\.1:\d+)\n")
SPEED = 4.0  # market seconds per wall second
MARKET_SECONDS = 160  # the markets close (and resolve) this long after the exchange opens, market time
RUN_TIMEOUT_S = 120


def _dollars(text: str) -> int:
    return parse_fixed(text, MONEY_DECIMALS)


class Exchange:
    """Signed REST reads of the test's account on the local exchange."""

    def __init__(self, http: httpx.AsyncClient, signer: RequestSigner) -> None:
        self.http = http
        self.signer = signer

    async def get(self, path: str, **params: Any) -> Any:
        full = f"/trade-api/v2{path}"
        response = await self.http.get(full, params=params, headers=self.signer.headers("GET", full))
        assert response.status_code == 200, response.text
        return response.json()

    async def every(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = await self.get(path, **params, limit=1000, **({"cursor": cursor} if cursor else {}))
            items.extend(page[key])
            cursor = page.get("cursor") or ""
            if not cursor:
                return items

    async def balance(self) -> int:
        return _dollars((await self.get("/portfolio/balance"))["balance_dollars"])

    async def positions(self) -> dict[str, int]:
        positions = await self.every("/portfolio/positions", "market_positions")
        held = {item["ticker"]: parse_count(item["position_fp"]) for item in positions}
        return {ticker: quantity for ticker, quantity in held.items() if quantity}


async def _status(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/rl/status")
    assert response.status_code == 200, response.text
    return response.json()["actor"]


async def _until(http: httpx.AsyncClient, condition, what: str, timeout_s: float, service=None) -> dict[str, Any]:
    """The actor's status once ``condition(status)`` holds (bounded); on a timeout, the status
    and the tail of the service's output (its log says why a decision failed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await _status(http)
        if condition(status):
            return status
        if time.monotonic() > deadline:
            log = "" if service is None else f"\nservice output (tail):\n{service.output[-4000:]}"
            pytest.fail(f"timed out waiting for {what}; actor status: {status}{log}")
        await asyncio.sleep(0.2)


async def test_the_actor_trades_survives_a_cut_fill_channel_is_killed_and_settles_to_the_cent(
    kalshi_key_files, kalshiflow_process, subprocess_environment, tmp_path
):
    started = time.monotonic()
    private_key, public_key = kalshi_key_files
    signer = RequestSigner(KEY_ID, load_private_key(private_key))
    config = ExchangeConfig(
        api_keys={KEY_ID: public_key_from_pem(public_key.read_bytes())},
        market=SyntheticMarketConfig(
            seed=2, markets=3, start_ms=time.time_ns() // 1_000_000, duration_ms=MARKET_SECONDS * 1000
        ),
        speed=SPEED,
        faults=(parse_fault("drop-fill@2#*"),),
        starting_balance=500_000_000,  # $500
    )
    exchange = LocalExchange(config)
    await exchange.start()
    try:
        tickers = exchange.tickers
        data_dir = tmp_path / "service"
        service = await kalshiflow_process(
            "serve", "--port", "0",
            env=subprocess_environment(
                RL_DATA_DIR=str(data_dir),
                KALSHI_ENV="local",
                KALSHI_WS_URL=exchange.ws_url,
                KALSHI_REST_URL=exchange.rest_url,
                KALSHI_API_KEY_ID=KEY_ID,
                KALSHI_PRIVATE_KEY_PATH=str(private_key),
                RL_MARKET_TICKERS=",".join(tickers),
                RL_TRADING_MODE="paper",
                RL_ACTOR_ENABLED="true",
                RL_ACTOR_STRATEGY="hardcoded",
                RL_ACTOR_CONTRACT_SIZE="2",
                RL_ACTOR_MAX_POSITION="20",
                RL_ACTOR_THROTTLE_MS="100",
                RL_ORDERBOOK_FLUSH_INTERVAL="0.2",
            ),
        )  # fmt: skip
        base_url = (await service.line_matching(SERVING)).group(1)
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as http,
            httpx.AsyncClient(base_url=exchange.rest_url.removesuffix("/trade-api/v2"), timeout=10, trust_env=False) as rest,
        ):
            account = Exchange(rest, signer)
            # 1. It trades: orders placed, fills booked across cut fill connections, a position held.
            trading = await _until(
                http,
                lambda s: s["counters"]["orders_placed"] >= 10
                and s["counters"]["fills"] >= 4
                and exchange.fill_cuts >= 1
                and s.get("positions_contracts")
                and s["open_orders"],
                "the actor to trade",
                timeout_s=RUN_TIMEOUT_S / 2,
                service=service,
            )
            # The observations count down to each market's close as the exchange gives it, and
            # see the feed's public trades.
            assert trading["close_ms"] == {ticker: config.market.expiry_ms for ticker in tickers}
            assert trading["counters"]["public_trades"] > 0
            # 2. The kill switch: every resting order cancelled on the exchange, trading stopped.
            killed = await http.post("/rl/admin/kill")
            assert killed.status_code == 200, killed.text
            assert killed.json()["halted"] is True and killed.json()["orders_cancelled"] >= 1
            assert await account.every("/portfolio/orders", "orders", status="resting") == []
            halted = await _status(http)
            assert halted["state"] == "halted" and halted["open_orders"] == {}
            # 3. The markets close and resolve; the actor books the settlements.
            async with asyncio.timeout(RUN_TIMEOUT_S):
                reason = await exchange.wait_finished()
            assert reason == "every market resolved"
            final = await _until(
                http, lambda s: not s.get("positions_contracts"), "the actor to book the settlements", timeout_s=30, service=service
            )
            exchange_fills = await account.every("/portfolio/fills", "fills")
            exchange_orders = await account.every("/portfolio/orders", "orders")
            assert final["cash_micro_dollars"] == await account.balance()
            assert await account.positions() == {}
            assert final["adjustments"] == {"cash_micro_dollars": 0, "positions": {}}
            assert final["counters"]["mismatches_adopted"] == 0 and final["counters"]["settlements"] >= 1
            assert final["settlements"] == {
                ticker: exchange.markets.market(ticker).result.name.lower() for ticker in final["settlements"]
            }
            booked = (await http.get("/rl/actor/fills")).json()["fills"]
            assert sorted(fill["fill_id"] for fill in booked) == sorted(fill["fill_id"] for fill in exchange_fills)
        service.process.send_signal(signal.SIGTERM)
        assert await service.finished() == 0, service.output
    finally:
        await exchange.stop()
    records = SqliteTradingRecords(data_dir / "kalshiflow.db")
    await records.open()
    try:
        actions = [
            action
            for episode in await records.list_episodes(mode="paper")
            for action in await records.read_actions(episode.episode_id)
        ]
    finally:
        await records.close()
    # Each order's decision names it by client order id (and by order id, when its create was answered).
    decided = {action.client_order_id: action for action in actions if action.client_order_id}
    assert len(decided) == len(exchange_orders)
    for order in exchange_orders:
        decision = decided[order["client_order_id"]]
        assert decision.order_id in (order["order_id"], None), (order, decision)
        assert decision.action_type != "HOLD" and decision.quantity > 0
    print(
        f"run {time.monotonic() - started:.1f} s: {len(exchange_orders)} orders, {len(exchange_fills)} fills, "
        f"{exchange.fill_cuts} fill connections cut, {len(actions)} decisions recorded"
    )
