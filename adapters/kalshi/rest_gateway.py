"""Kalshi's order gateway: the :class:`~domain.ports.OrderGateway` port over REST V2 and the
private ``fill`` WebSocket channel, for paper trading on the demo exchange or the local one.

Orders go through the V2 endpoints under ``/portfolio/events/orders`` (create, cancel, amend,
batched); reads use ``/portfolio/orders`` (cursor paging), ``/portfolio/fills``,
``/portfolio/positions`` and ``/portfolio/balance``. Requests are signed, metered by client-side
token buckets and retried by :class:`~adapters.kalshi.rest_client.KalshiRestClient`; refusals
become :mod:`domain.gateway_errors` with the exchange's message.

**Idempotency.** Every order carries the caller's ``client_order_id``. When a create was retried
after an attempt that may have reached the exchange (a timeout, a 5xx) and the retry is refused
with 409 ``order_already_exists``, the first attempt did take effect: the gateway looks the order
up by its client order id and returns it, so a retry never places a second order nor reports a
false conflict. A 409 on a first attempt is a real reuse: :class:`DuplicateClientOrderId`. A
cancel retried into a 404 is likewise resolved by reading the order (cancelled: done). An amend
retried into a 404/409 is resolved by looking for its replacement's client order id.

**Never production.** The REST client and the fill stream refuse a ``*.kalshi.com`` URL at
construction (the configuration refuses it too, in ``entrypoints/config.py``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from adapters.kalshi import rest_schemas as schemas
from adapters.kalshi.auth import RequestSigner
from adapters.kalshi.fill_stream import DEFAULT_LOOKBACK_MS, KalshiFillStream
from adapters.kalshi.rest_client import KalshiRestClient, RequestKind, RestResponse, refuse_production
from adapters.kalshi.rest_errors import ErrorBody, error_for
from adapters.kalshi.ws_client import KalshiWebSocketClient
from domain.fees import FeeSchedule
from domain.gateway_errors import (
    DuplicateClientOrderId,
    ExchangeUnavailable,
    GatewayError,
    MarketNotFound,
    OrderNotFound,
    OrderRejected,
)
from domain.orders import FeeCorrection, Fill, Order, OrderRequest, OrderStatus

log = logging.getLogger(__name__)

ORDERS = "/portfolio/events/orders"
BATCHED = f"{ORDERS}/batched"
ORDER_READS = "/portfolio/orders"
FILLS = "/portfolio/fills"
POSITIONS = "/portfolio/positions"
BALANCE = "/portfolio/balance"
BATCH_LIMIT = 20  # orders per batched request


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _cancelled(order: Order, reduced: int | None) -> Order:
    """``order`` after a cancel that took ``reduced`` off the book: what was not taken had filled."""
    filled = order.filled if reduced is None else max(order.filled, order.count - reduced)
    return attrs.evolve(order, filled=min(filled, order.count), status=OrderStatus.CANCELED)


class KalshiOrderGateway:
    """Orders on the exchange behind ``client``; fills streamed over ``ws_url`` when given."""

    def __init__(
        self,
        client: KalshiRestClient,
        *,
        ws_url: str | None = None,
        signer: RequestSigner | None = None,
        fees: FeeSchedule | None = None,
        self_trade_prevention: str = "taker_at_cross",
        reconcile_interval_s: float | None = 30.0,
        lookback_ms: int = DEFAULT_LOOKBACK_MS,
        ws_options: Mapping[str, Any] | None = None,
        now_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        if self_trade_prevention not in schemas.SELF_TRADE_PREVENTION:
            raise ValueError(
                f"self_trade_prevention must be one of {schemas.SELF_TRADE_PREVENTION}, got {self_trade_prevention!r}"
            )
        if ws_url is not None:
            refuse_production(ws_url, "the WebSocket URL")  # at construction, not at the first stream
            if not ws_url.startswith(("ws://", "wss://")):
                raise ValueError(f"the WebSocket URL must start with ws:// or wss://, got {ws_url!r}")
        self._client = client
        self._ws_url = ws_url
        self._signer = signer
        self._fees = fees or FeeSchedule.kalshi_standard()
        self._stp = self_trade_prevention
        self._reconcile_interval = reconcile_interval_s
        self._lookback_ms = lookback_ms
        self._ws_options = dict(ws_options or {})
        self._now_ms = now_ms
        self._orders: dict[str, Order] = {}  # what we last knew of orders we placed or read
        self._streams: list[KalshiFillStream] = []
        self._corrections: list[FeeCorrection] = []

    @classmethod
    def connect(
        cls,
        rest_url: str,
        signer: RequestSigner,
        *,
        ws_url: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> KalshiOrderGateway:
        """The gateway for ``rest_url`` (and ``ws_url`` for fills), signing with ``signer``."""
        client = KalshiRestClient(rest_url, signer, **(client_options or {}))
        return cls(client, ws_url=ws_url, signer=signer, **options)

    @property
    def client(self) -> KalshiRestClient:
        return self._client

    async def close(self) -> None:
        for stream in self._streams:
            await stream.stop()
        await self._client.aclose()

    # -- orders ----------------------------------------------------------------------------------
    async def create_order(self, request: OrderRequest) -> Order:
        response = await self._client.send("POST", ORDERS, kind=RequestKind.WRITE, json=self._body(request))
        if response.status == 409 and response.uncertain_attempts:
            error = response.error()
            if isinstance(error, DuplicateClientOrderId):
                return await self._resolve_duplicate(request.ticker, request.client_order_id, error)
            raise error
        reply = response.result(not_found=MarketNotFound)
        return self._remember(schemas.order_from_create_reply(request, reply, now_ms=self._now_ms()))

    async def cancel_order(self, order_id: str) -> Order:
        response = await self._client.send("DELETE", f"{ORDERS}/{order_id}", kind=RequestKind.CANCEL)
        if response.status == 404 and response.uncertain_attempts:
            return await self._resolve_cancel(order_id, response.error())
        reply = response.result(not_found=OrderNotFound)
        return self._remember(_cancelled(await self._known(order_id), schemas.reduced_by(reply)))

    async def amend_order(self, order_id: str, *, price: int, count: int, client_order_id: str) -> Order:
        old = await self._known(order_id)
        body = schemas.amend_body(old, price=price, count=count, client_order_id=client_order_id)
        response = await self._client.send("POST", f"{ORDERS}/{order_id}/amend", kind=RequestKind.WRITE, json=body)
        if not response.ok and response.status < 500 and response.uncertain_attempts:
            # The first attempt may have amended it already: the retry then finds the order
            # renamed (400), gone (404) or the new id taken (409). Its new client id tells.
            return await self._resolve_duplicate(old.ticker, client_order_id, response.error())
        reply = response.result(not_found=OrderNotFound)
        self._orders.pop(order_id, None)
        replacement = reply.get("order") if isinstance(reply, Mapping) else None
        if isinstance(replacement, Mapping):
            return self._remember(schemas.order_from_wire(replacement))
        # The reply names the order but not its state: read it.
        new_id = reply.get("order_id") if isinstance(reply, Mapping) else None
        return await self.get_order(new_id if isinstance(new_id, str) and new_id else order_id)

    async def create_orders(self, requests: Sequence[OrderRequest]) -> list[Order | OrderRejected]:
        return await self._in_batches(
            "POST", RequestKind.WRITE, requests, self._body, MarketNotFound, self._created
        )

    async def cancel_orders(self, order_ids: Sequence[str]) -> list[Order | OrderRejected]:
        return await self._in_batches(
            "DELETE", RequestKind.CANCEL, order_ids, lambda order_id: {"order_id": order_id}, OrderNotFound,
            self._batch_cancelled,
        )  # fmt: skip

    async def _in_batches(
        self,
        method: str,
        kind: RequestKind,
        items: Sequence[Any],
        wire: Callable[[Any], Mapping[str, Any]],
        not_found: type[GatewayError],
        outcome: Callable[[Any, Any, Any], Awaitable[Order | OrderRejected]],
    ) -> list[Order | OrderRejected]:
        """``items`` sent ``BATCH_LIMIT`` at a time to the batched endpoint; ``outcome`` reads
        each item's part of the reply."""
        results: list[Order | OrderRejected] = []
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start : start + BATCH_LIMIT]
            response = await self._client.send(
                method, BATCHED, kind=kind, json={"orders": [wire(item) for item in chunk]}, items=len(chunk)
            )
            replies = self._batch_items(response, len(chunk), not_found=not_found)
            for item, reply in zip(chunk, replies):
                results.append(await outcome(item, reply, response))
        return results

    # -- reads -----------------------------------------------------------------------------------
    async def get_order(self, order_id: str) -> Order:
        body = await self._client.call("GET", f"{ORDER_READS}/{order_id}", not_found=OrderNotFound)
        item = body.get("order", body) if isinstance(body, Mapping) else body
        if not isinstance(item, Mapping):
            raise ExchangeUnavailable(f"GET {ORDER_READS}/{order_id}: no order in the reply")
        return self._remember(schemas.order_from_wire(item))

    async def open_orders(self, ticker: str | None = None) -> list[Order]:
        params: dict[str, str | int] = {"status": "resting"}
        if ticker is not None:
            params["ticker"] = ticker
        orders = [schemas.order_from_wire(item) for item in await self._client.pages(ORDER_READS, "orders", params)]
        # A cancelled order can read as resting for a moment; what we cancelled stays cancelled.
        return [
            self._remember(order)
            for order in orders
            if order.status.is_open and self._orders.get(order.order_id, order).status.is_open
        ]

    async def fills(self, since_ms: int = 0) -> list[Fill]:
        params: dict[str, str | int] = {"min_ts": since_ms // 1000} if since_ms > 0 else {}
        fills = [schemas.fill_from_wire(item) for item in await self._client.pages(FILLS, "fills", params)]
        fills.reverse()  # Kalshi lists newest first; reversing keeps same-ms fills in their order
        fills.sort(key=lambda fill: fill.ts_ms)
        return [fill for fill in fills if fill.ts_ms >= since_ms]

    async def positions(self) -> dict[str, int]:
        return schemas.positions_from_wire(await self._client.pages(POSITIONS, "market_positions"))

    async def balance(self) -> int:
        return schemas.balance_from_wire(await self._client.call("GET", BALANCE))

    # -- fills as they happen --------------------------------------------------------------------
    async def stream_fills(self, since_ms: int | None = None) -> AsyncIterator[Fill]:
        """See :class:`~adapters.kalshi.fill_stream.KalshiFillStream`; each call has its own
        connection."""
        if self._ws_url is None:
            raise ValueError("this gateway was built without a WebSocket URL: it cannot stream fills")
        stream = KalshiFillStream(
            KalshiWebSocketClient(self._ws_url, self._signer, **self._ws_options),
            self.fills,
            self._fees,
            lookback_ms=self._lookback_ms,
            reconcile_interval_s=self._reconcile_interval,
            now_ms=self._now_ms,
        )
        self._streams.append(stream)
        try:
            async with contextlib.aclosing(stream.fills(since_ms)) as fills:
                async for fill in fills:
                    yield fill
        finally:
            self._corrections.extend(stream.fee_corrections())
            self._streams.remove(stream)
            await stream.stop()

    def fee_corrections(self) -> list[FeeCorrection]:
        found, self._corrections = self._corrections, []
        for stream in self._streams:
            found.extend(stream.fee_corrections())
        return found

    # -- internals -------------------------------------------------------------------------------
    def _body(self, request: OrderRequest) -> dict[str, Any]:
        return schemas.order_body(request, self._stp)

    def _remember(self, order: Order) -> Order:
        self._orders[order.order_id] = order
        return order

    async def _known(self, order_id: str) -> Order:
        known = self._orders.get(order_id)
        return known if known is not None else await self.get_order(order_id)

    async def _order_by_client_id(self, ticker: str, client_order_id: str) -> Order | None:
        for item in await self._client.pages(ORDER_READS, "orders", {"ticker": ticker}):
            if isinstance(item, Mapping) and item.get("client_order_id") == client_order_id:
                return self._remember(schemas.order_from_wire(item))
        return None

    async def _resolve_duplicate(self, ticker: str, client_order_id: str, error: GatewayError) -> Order:
        """A retried write refused as a duplicate: our own earlier attempt placed the order."""
        order = await self._order_by_client_id(ticker, client_order_id)
        if order is None:
            raise error
        log.info("a retried request had already placed order %s (%s)", order.order_id, client_order_id)
        return order

    async def _resolve_cancel(self, order_id: str, error: GatewayError) -> Order:
        """A retried cancel found nothing to cancel: our earlier attempt may have done it."""
        try:
            order = await self.get_order(order_id)
        except OrderNotFound:
            raise error from None
        if order.status is not OrderStatus.CANCELED:
            raise error
        return order

    def _batch_items(
        self, response: RestResponse, expected: int, *, not_found: type[GatewayError]
    ) -> list[Mapping[str, Any]]:
        body = response.result(not_found=not_found)
        items = body.get("orders") if isinstance(body, Mapping) else None
        if not isinstance(items, list) or len(items) != expected:
            raise ExchangeUnavailable(f"a batched request of {expected} got {len(items or [])} results back")
        return items

    @staticmethod
    def _item_error(item: Mapping[str, Any], *, not_found: type[GatewayError]) -> GatewayError | None:
        error = item.get("error")
        if not error:
            return None
        said = error if isinstance(error, Mapping) else {"message": str(error)}
        code, details = said.get("code"), said.get("details")
        body = ErrorBody(
            str(said.get("message", said.get("msg", ""))),
            None if code is None else str(code),
            None if details is None else str(details),
        )
        status = item.get("status") if isinstance(item.get("status"), int) else 400
        return error_for(status, body, not_found=not_found)

    async def _created(
        self, request: OrderRequest, item: Mapping[str, Any], response: RestResponse
    ) -> Order | OrderRejected:
        error = self._item_error(item, not_found=MarketNotFound)
        if error is None:
            return self._remember(schemas.order_from_create_reply(request, item, now_ms=self._now_ms()))
        if isinstance(error, DuplicateClientOrderId) and response.uncertain_attempts:
            found = await self._order_by_client_id(request.ticker, request.client_order_id)
            if found is not None:
                return found
        if not isinstance(error, OrderRejected):
            raise error
        return error

    async def _batch_cancelled(
        self, order_id: str, item: Mapping[str, Any], response: RestResponse
    ) -> Order | OrderRejected:
        error = self._item_error(item, not_found=OrderNotFound)
        if error is None:
            return self._remember(_cancelled(await self._known(order_id), schemas.reduced_by(item)))
        if isinstance(error, OrderNotFound) and response.uncertain_attempts:
            with contextlib.suppress(OrderRejected):
                return await self._resolve_cancel(order_id, error)
        if not isinstance(error, OrderRejected):
            raise error
        return error

