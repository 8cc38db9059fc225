"""What Kalshi says about a market: the :class:`~domain.ports.MarketCatalog` port over REST.

``GET /markets/{ticker}`` gives the market's ``close_time`` (when trading stops: the actor's
observations count the time left to it, as training counted it to the tape's expiry), its
``status`` and, once it has resolved, its ``result`` -- which the actor books as a settlement.
The endpoint is public; the request goes through the same client (signed, metered, retried)
as the orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from adapters.kalshi import rest_schemas as schemas
from adapters.kalshi.rest_client import KalshiRestClient
from domain.gateway_errors import ExchangeUnavailable, MarketNotFound
from domain.ports import MarketInfo

MARKETS = "/markets"


class KalshiMarketCatalog:
    def __init__(self, client: KalshiRestClient) -> None:
        self._client = client

    async def market(self, ticker: str) -> MarketInfo:
        path = f"{MARKETS}/{quote(ticker, safe='')}"
        body = await self._client.call("GET", path, not_found=MarketNotFound)
        item = body.get("market") if isinstance(body, Mapping) else None
        if not isinstance(item, Mapping):
            raise ExchangeUnavailable(f"GET {path}: no market in the reply")
        try:
            return schemas.market_from_wire(item)
        except ValueError as error:  # UnreadableReply, a bad timestamp
            raise ExchangeUnavailable(f"GET {path}: {error}") from None
