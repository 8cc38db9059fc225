"""The market catalog over Kalshi's ``GET /markets/{ticker}``, against recorded-shape replies
through httpx.MockTransport: close and expiration times, result, a missing market, a reply
without a close time."""

from __future__ import annotations

import httpx
import orjson
import pytest

from adapters.kalshi.auth import RequestSigner, generate_keypair, private_key_from_pem
from adapters.kalshi.parsing import rfc3339_to_ms
from adapters.kalshi.rest_client import KalshiRestClient
from adapters.kalshi.rest_markets import KalshiMarketCatalog
from domain.gateway_errors import ExchangeUnavailable, MarketNotFound
from domain.ports import MarketInfo
from domain.values import Side

BASE = "http://127.0.0.1:9/trade-api/v2"
SIGNER = RequestSigner("catalog-test-key", private_key_from_pem(generate_keypair(1024)[0]))

# The shape Kalshi answers with (fields this client does not read included, and ignored).
MARKET = {
    "ticker": "KXBTC-26JUN30-B100000",
    "event_ticker": "KXBTC-26JUN30",
    "market_type": "binary",
    "status": "active",
    "open_time": "2026-06-01T14:00:00Z",
    "close_time": "2026-06-30T20:00:00Z",
    "expiration_time": "2026-07-07T20:00:00Z",
    "latest_expiration_time": "2026-07-07T20:00:00Z",
    "result": "",
    "yes_bid_dollars": "0.4500",
    "yes_ask_dollars": "0.4700",
    "volume_fp": "1520.00",
    "price_level_structure": "linear_cent",
}


def catalog_answering(reply: dict[str, dict]) -> KalshiMarketCatalog:
    def handler(request: httpx.Request) -> httpx.Response:
        ticker = request.url.path.rsplit("/", 1)[-1]
        if ticker not in reply:
            body = {"error": {"code": "not_found", "message": f"market {ticker} not found"}}
            return httpx.Response(404, content=orjson.dumps(body))
        return httpx.Response(200, content=orjson.dumps({"market": reply[ticker]}))

    return KalshiMarketCatalog(KalshiRestClient(BASE, SIGNER, transport=httpx.MockTransport(handler)))


async def test_an_open_market_gives_its_close_and_expiration_times():
    info = await catalog_answering({MARKET["ticker"]: MARKET}).market(MARKET["ticker"])
    assert info == MarketInfo(
        MARKET["ticker"], rfc3339_to_ms("2026-06-30T20:00:00Z"), rfc3339_to_ms("2026-07-07T20:00:00Z"), "active", None
    )


@pytest.mark.parametrize(("result", "side"), [("yes", Side.YES), ("no", Side.NO), ("", None)])
async def test_a_settled_market_gives_its_result(result, side):
    settled = MARKET | {"status": "finalized", "result": result}
    info = await catalog_answering({MARKET["ticker"]: settled}).market(MARKET["ticker"])
    assert (info.status, info.result) == ("finalized", side)


async def test_an_unknown_market_and_a_reply_without_close_time_are_typed_errors():
    catalog = catalog_answering({"NOCLOSE": {k: v for k, v in MARKET.items() if k != "close_time"} | {"ticker": "NOCLOSE"}})
    with pytest.raises(MarketNotFound, match="not found"):
        await catalog.market("MISSING")
    with pytest.raises(ExchangeUnavailable, match="close_time"):
        await catalog.market("NOCLOSE")
