"""The Kalshi REST order gateway against a small fake of Kalshi's V2 endpoints on
httpx.MockTransport: request bodies, idempotent retries, cancel, amend, batches, reads."""

from __future__ import annotations

import itertools

import httpx
import orjson
import pytest

from adapters.kalshi.auth import RequestSigner, generate_keypair, private_key_from_pem, public_key_from_pem, verify_request
from adapters.kalshi.rest_client import KalshiRestClient, ProductionRefused
from adapters.kalshi.rest_gateway import KalshiOrderGateway
from domain.gateway_errors import DuplicateClientOrderId, InsufficientBalance, MarketNotFound, OrderNotFound
from domain.orders import OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.values import ONE_CONTRACT, format_count, format_price, parse_count, parse_price

BASE = "http://127.0.0.1:9/trade-api/v2"
KEY_ID = "gateway-test-key"
PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
SIGNER = RequestSigner(KEY_ID, private_key_from_pem(PRIVATE_PEM))
PUBLIC_KEYS = {KEY_ID: public_key_from_pem(PUBLIC_PEM)}
C = ONE_CONTRACT
CROSSES_AT = 6000  # the fake's book: a bid at or above 0.60 takes an ask there, in full
PREFIX = "/trade-api/v2"


class FakeKalshi:
    """Just enough of Kalshi's V2 trading API to hold the gateway to its wire: it verifies every
    signature, keeps orders (V1-style objects on reads, as Kalshi does), fills bids at or above
    0.60 in full at 0.60 with a 7% taker fee, and can fail requests on purpose."""

    def __init__(self) -> None:
        self.orders: dict[str, dict] = {}
        self.fills: list[dict] = []
        self.requests: list[httpx.Request] = []
        self.cash_cents = 100_000
        self.positions: dict[str, int] = {}
        self.lose_reply_of: set[str] = set()  # "METHOD path" whose next reply is lost after it took effect
        self._ids = itertools.count(1)

    def handler(self, request: httpx.Request) -> httpx.Response:
        verify_request(request.headers, request.method, request.url.path, PUBLIC_KEYS, now_ms=int(request.headers["KALSHI-ACCESS-TIMESTAMP"]))
        self.requests.append(request)
        path = request.url.path.removeprefix(PREFIX)
        body = orjson.loads(request.content) if request.content else None
        response = self._route(request.method, path, request.url.params, body)
        if f"{request.method} {path}" in self.lose_reply_of:
            self.lose_reply_of.discard(f"{request.method} {path}")
            raise httpx.ReadTimeout("the reply was lost", request=request)
        return response

    # -- routes ----------------------------------------------------------------------------------
    def _route(self, method, path, params, body) -> httpx.Response:
        parts = path.strip("/").split("/")
        if (method, path) == ("POST", "/portfolio/events/orders"):
            return self._create(body)
        if (method, path) == ("POST", "/portfolio/events/orders/batched"):
            return _json(201, {"orders": [self._batch_item(self._create(item)) for item in body["orders"]]})
        if (method, path) == ("DELETE", "/portfolio/events/orders/batched"):
            return _json(200, {"orders": [self._batch_item(self._cancel(item["order_id"])) for item in body["orders"]]})
        if method == "DELETE" and parts[:3] == ["portfolio", "events", "orders"]:
            return self._cancel(parts[3])
        if method == "POST" and parts[-1] == "amend":
            return self._amend(parts[3], body)
        if (method, path) == ("GET", "/portfolio/orders"):
            orders = [o for o in self.orders.values() if params.get("status") in (None, o["status"])]
            orders = [o for o in orders if params.get("ticker") in (None, o["ticker"])]
            return _page(orders, "orders", params)
        if method == "GET" and parts[:2] == ["portfolio", "orders"]:
            order = self.orders.get(parts[2])
            return _json(200, {"order": order}) if order else _error(404, "not_found", "no such order")
        if (method, path) == ("GET", "/portfolio/fills"):
            return _page(list(reversed(self.fills)), "fills", params)  # newest first, as Kalshi
        if (method, path) == ("GET", "/portfolio/positions"):
            items = [{"ticker": t, "position_fp": format_count(p)} for t, p in self.positions.items()]
            return _page(items + [{"ticker": "FLAT", "position_fp": "0.00"}], "market_positions", params)
        if (method, path) == ("GET", "/portfolio/balance"):
            return _json(200, {"balance": self.cash_cents, "balance_dollars": f"{self.cash_cents / 100:.2f}"})
        return _error(404, "not_found", f"no route {method} {path}")

    def _create(self, body) -> httpx.Response:
        for key in ("count", "price"):
            if not isinstance(body[key], str):
                return _error(400, "invalid_parameters", f"{key} must be a string")
        if body["ticker"] == "NOPE":
            return _error(404, "not_found", "market NOPE not found")
        if any(o["client_order_id"] == body["client_order_id"] for o in self.orders.values()):
            return _error(409, "order_already_exists", "client_order_id already used")
        price, count = parse_price(body["price"]), parse_count(body["count"])
        if price * count > self.cash_cents * 10_000:
            return _error(400, "insufficient_balance", "not enough cash")
        order_id = f"order-{next(self._ids)}"
        filled = count if body["side"] == "bid" and price >= CROSSES_AT else 0
        self.orders[order_id] = {
            "order_id": order_id,
            "client_order_id": body["client_order_id"],
            "ticker": body["ticker"],
            "side": "yes" if body["side"] == "bid" else "no",
            "action": "buy",
            "yes_price_dollars": body["price"],
            "no_price_dollars": format_price(10_000 - price),
            "initial_count_fp": body["count"],
            "fill_count_fp": format_count(filled),
            "remaining_count_fp": format_count(count - filled),
            "status": "executed" if filled else "resting",
            "created_time": "2026-06-11T06:31:29.957Z",
        }
        if filled:
            self.fills.append(
                {
                    "fill_id": f"fill-{order_id}",
                    "order_id": order_id,
                    "ticker": body["ticker"],
                    "side": "yes",
                    "action": "buy",
                    "count_fp": body["count"],
                    "yes_price_dollars": format_price(CROSSES_AT),
                    "no_price_dollars": format_price(10_000 - CROSSES_AT),
                    "is_taker": True,
                    "fee_cost": "0.0200",
                    "ts": 1781159489,
                    "ts_ms": 1781159489000 + len(self.fills),
                }
            )
            self.positions[body["ticker"]] = self.positions.get(body["ticker"], 0) + count
        reply = {
            "order_id": order_id,
            "client_order_id": body["client_order_id"],
            "fill_count": format_count(filled),
            "remaining_count": format_count(count - filled),
            "average_fill_price": format_price(CROSSES_AT) if filled else "0.0000",
            "ts_ms": 1781159489957,
        }
        return _json(201, reply)

    def _cancel(self, order_id: str) -> httpx.Response:
        order = self.orders.get(order_id)
        if order is None or order["status"] != "resting":
            return _error(404, "not_found", f"order {order_id} is not resting")
        order["status"] = "canceled"
        reduced, order["remaining_count_fp"] = order["remaining_count_fp"], "0.00"
        return _json(200, {"order_id": order_id, "reduced_by": reduced, "ts_ms": 1781159490000})

    def _amend(self, order_id: str, body) -> httpx.Response:
        order = self.orders.get(order_id)
        if order is None or order["status"] != "resting":
            return _error(404, "not_found", f"order {order_id} is not resting")
        if body["client_order_id"] != order["client_order_id"]:
            return _error(400, "invalid_parameters", "client_order_id is not the order's")
        old = dict(order)
        order.update(
            client_order_id=body["updated_client_order_id"],
            yes_price_dollars=body["price"],
            no_price_dollars=format_price(10_000 - parse_price(body["price"])),
            initial_count_fp=body["count"],
            remaining_count_fp=body["count"],
        )
        return _json(200, {"old_order": old, "order": dict(order)})

    @staticmethod
    def _batch_item(response: httpx.Response) -> dict:
        body = orjson.loads(response.content)
        return {"error": body["error"], "status": response.status_code} if "error" in body else body


def _json(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body))


def _error(status: int, code: str, message: str) -> httpx.Response:
    return _json(status, {"error": {"code": code, "message": message}})


def _page(items: list, key: str, params) -> httpx.Response:
    """Two items a page, whatever the limit, so every listing exercises the cursor."""
    start = int(params.get("cursor") or 0)
    following = str(start + 2) if start + 2 < len(items) else ""
    return _json(200, {key: items[start : start + 2], "cursor": following})


@pytest.fixture
def fake() -> FakeKalshi:
    return FakeKalshi()


@pytest.fixture
async def gateway(fake):
    client = KalshiRestClient(BASE, SIGNER, transport=httpx.MockTransport(fake.handler), sleep=_no_sleep, random=lambda: 0.0)
    made = KalshiOrderGateway(client)
    yield made
    await made.close()


async def _no_sleep(_seconds: float) -> None:
    return None


def bid(price: int, count: int = C, client_order_id: str = "cid-1", **options) -> OrderRequest:
    return OrderRequest("T1", OrderSide.BID, price, count, client_order_id, **options)


# ---------------------------------------------------------------------------------------------
# Create
# ---------------------------------------------------------------------------------------------
async def test_create_sends_prices_and_counts_as_exact_strings(gateway, fake):
    order = await gateway.create_order(bid(4500, 250, time_in_force=TimeInForce.GOOD_TILL_CANCELED, post_only=True))
    sent = orjson.loads(fake.requests[0].content)
    assert sent == {
        "ticker": "T1",
        "client_order_id": "cid-1",
        "side": "bid",
        "count": "2.50",
        "price": "0.4500",
        "time_in_force": "good_till_canceled",
        "self_trade_prevention_type": "taker_at_cross",
        "post_only": True,
    }
    assert order.status is OrderStatus.RESTING and order.order_id == "order-1" and order.remaining == 250
    assert (order.price, order.count, order.side, order.ticker) == (4500, 250, OrderSide.BID, "T1")


async def test_a_crossing_order_comes_back_executed_and_its_fill_carries_the_charged_fee(gateway):
    order = await gateway.create_order(bid(6500, 2 * C))
    assert order.status is OrderStatus.EXECUTED and order.filled == 2 * C
    [fill] = await gateway.fills()
    assert (fill.fill_id, fill.order_id, fill.side, fill.price, fill.count, fill.fee, fill.is_taker) == (
        "fill-order-1", "order-1", OrderSide.BID, CROSSES_AT, 2 * C, 20_000, True
    )
    assert await gateway.positions() == {"T1": 2 * C}  # the flat market is left out
    assert await gateway.balance() == 100_000 * 10_000


async def test_an_immediate_or_cancel_remainder_reads_cancelled(gateway):
    order = await gateway.create_order(bid(4500, C, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL))
    assert order.status is OrderStatus.CANCELED and order.filled == 0


async def test_a_retry_after_a_lost_reply_returns_the_order_the_first_attempt_placed(gateway, fake):
    fake.lose_reply_of.add("POST /portfolio/events/orders")
    order = await gateway.create_order(bid(4500, C, "cid-retry"))
    assert order.order_id == "order-1" and order.client_order_id == "cid-retry"
    assert order.status is OrderStatus.RESTING
    assert len(fake.orders) == 1  # placed once
    creates = [r for r in fake.requests if r.method == "POST"]
    assert len(creates) == 2 and creates[0].content == creates[1].content  # the same client order id


async def test_a_reused_client_order_id_on_a_first_attempt_is_a_duplicate(gateway):
    await gateway.create_order(bid(4500, C, "cid-twice"))
    with pytest.raises(DuplicateClientOrderId, match="already used"):
        await gateway.create_order(bid(4400, C, "cid-twice"))


async def test_refusals_carry_the_exchanges_message(gateway):
    with pytest.raises(InsufficientBalance, match="not enough cash"):
        await gateway.create_order(bid(9900, 10_000_000 * C))
    with pytest.raises(MarketNotFound, match="NOPE"):
        await gateway.create_order(OrderRequest("NOPE", OrderSide.BID, 4500, C, "x"))


# ---------------------------------------------------------------------------------------------
# Cancel and amend
# ---------------------------------------------------------------------------------------------
async def test_cancel_returns_the_order_cancelled(gateway, fake):
    order = await gateway.create_order(bid(4500, 3 * C))
    cancelled = await gateway.cancel_order(order.order_id)
    assert cancelled.status is OrderStatus.CANCELED and cancelled.filled == 0 and cancelled.count == 3 * C
    assert fake.requests[-1].method == "DELETE" and fake.requests[-1].url.path.endswith(f"/events/orders/{order.order_id}")
    with pytest.raises(OrderNotFound, match="not resting"):
        await gateway.cancel_order(order.order_id)


async def test_cancelling_an_order_this_gateway_never_saw_reads_it(gateway, fake):
    await gateway.create_order(bid(4500, C))
    fresh = KalshiOrderGateway(gateway.client)  # another process, same account
    cancelled = await fresh.cancel_order("order-1")
    assert cancelled.status is OrderStatus.CANCELED and cancelled.ticker == "T1" and cancelled.price == 4500


async def test_a_retried_cancel_whose_first_attempt_worked_is_not_an_error(gateway, fake):
    order = await gateway.create_order(bid(4500, C))
    fake.lose_reply_of.add(f"DELETE /portfolio/events/orders/{order.order_id}")
    cancelled = await gateway.cancel_order(order.order_id)
    assert cancelled.status is OrderStatus.CANCELED


async def test_amend_sends_the_new_total_and_returns_the_replacement(gateway, fake):
    order = await gateway.create_order(bid(4500, 2 * C, "cid-a"))
    amended = await gateway.amend_order(order.order_id, price=4400, count=3 * C, client_order_id="cid-b")
    sent = orjson.loads(fake.requests[-1].content)
    assert sent == {
        "ticker": "T1",
        "side": "bid",
        "price": "0.4400",
        "count": "3.00",
        "client_order_id": "cid-a",
        "updated_client_order_id": "cid-b",
    }
    assert (amended.price, amended.count, amended.remaining, amended.client_order_id) == (4400, 3 * C, 3 * C, "cid-b")
    assert amended.status is OrderStatus.RESTING


async def test_a_retried_amend_finds_the_replacement_by_its_client_order_id(gateway, fake):
    order = await gateway.create_order(bid(4500, 2 * C, "cid-a"))
    fake.lose_reply_of.add(f"POST /portfolio/events/orders/{order.order_id}/amend")
    amended = await gateway.amend_order(order.order_id, price=4300, count=C, client_order_id="cid-c")
    assert (amended.price, amended.client_order_id) == (4300, "cid-c")


# ---------------------------------------------------------------------------------------------
# Batches and reads
# ---------------------------------------------------------------------------------------------
async def test_batches_are_sent_twenty_at_a_time_and_report_each_order(gateway, fake):
    requests = [bid(4500, C, f"cid-{i}") for i in range(24)] + [bid(4500, C, "cid-0")]
    results = await gateway.create_orders(requests)
    batches = [r for r in fake.requests if r.url.path.endswith("/batched")]
    assert [len(orjson.loads(r.content)["orders"]) for r in batches] == [20, 5]
    assert [r.status for r in results[:24]] == [OrderStatus.RESTING] * 24
    assert isinstance(results[24], DuplicateClientOrderId)

    cancelled = await gateway.cancel_orders([results[0].order_id, "order-999"])
    assert cancelled[0].status is OrderStatus.CANCELED
    assert isinstance(cancelled[1], OrderNotFound)


async def test_open_orders_follow_every_page_and_read_v1_order_objects(gateway, fake):
    for i in range(5):
        await gateway.create_order(bid(4500 - 100 * i, C, f"cid-{i}"))
    await gateway.create_order(OrderRequest("T1", OrderSide.ASK, 5500, C, "cid-ask"))
    await gateway.create_order(OrderRequest("T2", OrderSide.BID, 4000, C, "cid-other"))
    await gateway.cancel_order("order-1")
    orders = await gateway.open_orders("T1")
    assert [o.client_order_id for o in orders] == ["cid-1", "cid-2", "cid-3", "cid-4", "cid-ask"]
    ask = orders[-1]
    assert (ask.side, ask.price) == (OrderSide.ASK, 5500)  # a V1 "no"/"buy" at 0.45 is a YES ask at 0.55
    assert len(await gateway.open_orders()) == 6
    assert all(o.status is OrderStatus.RESTING for o in orders)


async def test_fills_since_asks_the_exchange_in_seconds_and_filters_to_the_millisecond(gateway, fake):
    await gateway.create_order(bid(6500, C, "a"))
    await gateway.create_order(bid(6500, C, "b"))
    fills = await gateway.fills()
    assert [f.order_id for f in fills] == ["order-1", "order-2"]  # oldest first
    later = await gateway.fills(fills[1].ts_ms)
    assert [f.order_id for f in later] == ["order-2"]
    assert fake.requests[-1].url.params["min_ts"] == str(fills[1].ts_ms // 1000)


def test_the_gateway_refuses_a_production_websocket_url(fake):
    client = KalshiRestClient(BASE, SIGNER, transport=httpx.MockTransport(fake.handler))
    with pytest.raises(ProductionRefused):
        KalshiOrderGateway(client, ws_url="wss://external-api-ws.kalshi.com/trade-api/ws/v2", signer=SIGNER)
    with pytest.raises(ProductionRefused):
        KalshiOrderGateway.connect("https://external-api.kalshi.com/trade-api/v2", SIGNER)


def test_it_satisfies_the_port(gateway):
    from domain.ports import OrderGateway

    assert isinstance(gateway, OrderGateway)
