"""The REST trade API's plumbing: signed requests, Kalshi's error shapes, rate limits, batches,
paging, and the public book and status."""

from __future__ import annotations

import asyncio
import base64
import statistics
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from adapters.kalshi.auth import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestSigner,
    generate_keypair,
    private_key_from_pem,
)
from adapters.local_exchange.trading.rate_limit import RateTier, TokenBucket, parse_tier
from domain.values import ONE_CONTRACT

T0 = "SYN-7-M0"
C = ONE_CONTRACT
YES = [(4000, 50 * C), (4200, 20 * C)]
NO = [(5500, 10 * C), (5400, 20 * C)]


@pytest.fixture
async def exchange(make_exchange, book_setter):
    async with make_exchange(flow=False) as exchange:
        book_setter(exchange, T0, YES, NO)
        yield exchange


async def test_requests_are_signed_over_the_path_without_its_query(exchange, rest, signer, keypair):
    async with rest(exchange) as client:
        ok = await client.get("/portfolio/orders", params={"limit": "5"})
        assert ok.status_code == 200
        # A client that signs the query string too is refused, as Kalshi refuses it.
        headers = signer.headers("GET", "/trade-api/v2/portfolio/orders")
        message = f"{headers[TIMESTAMP_HEADER]}GET/trade-api/v2/portfolio/orders?limit=5".encode()
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        signature = private_key_from_pem(keypair[0]).sign(message, pss, hashes.SHA256())
        headers[SIGNATURE_HEADER] = base64.b64encode(signature).decode()
        refused = await client.get("/portfolio/orders", params={"limit": "5"}, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["details"] == "INCORRECT_API_KEY_SIGNATURE"


@pytest.mark.parametrize(
    "make_headers, code, details",
    [
        (lambda s: {k: v for k, v in s.headers("GET", "/trade-api/v2/portfolio/balance").items() if k != SIGNATURE_HEADER},
         "signature_is_missing_from_headers", None),
        (lambda s: RequestSigner(s.key_id, private_key_from_pem(generate_keypair(1024)[0])).headers(
            "GET", "/trade-api/v2/portfolio/balance"), "authentication_error", "INCORRECT_API_KEY_SIGNATURE"),
        (lambda s: RequestSigner("stranger", private_key_from_pem(generate_keypair(1024)[0])).headers(
            "GET", "/trade-api/v2/portfolio/balance"), "authentication_error", "NOT_FOUND"),
        (lambda s: s.headers("GET", "/trade-api/v2/portfolio/balance", now_ms=time.time_ns() // 1_000_000 - 60_000),
         "header_timestamp_expired", None),
        (lambda s: s.headers("POST", "/trade-api/v2/portfolio/balance"), "authentication_error",
         "INCORRECT_API_KEY_SIGNATURE"),
    ],
    ids=["missing signature", "another key", "unknown key", "stale timestamp", "another method"],
)  # fmt: skip
async def test_bad_signatures_get_the_handshakes_401_bodies(exchange, rest, signer, make_headers, code, details):
    async with rest(exchange) as client:
        reply = await client.get("/portfolio/balance", headers=make_headers(signer))
    assert reply.status_code == 401
    error = reply.json()["error"]
    assert error["code"] == code
    assert error.get("details") == details


@pytest.mark.parametrize(
    "fields, status, code",
    [
        ({"count": 1}, 400, "invalid_parameters"),  # a number, not a string
        ({"price": 0.45}, 400, "invalid_parameters"),
        ({"price": "0.4550"}, 400, "invalid_price"),  # off the cent grid
        ({"price": "0.45001"}, 400, "invalid_price"),  # more than four decimals
        ({"price": "1.0000"}, 400, "invalid_price"),
        ({"side": "yes"}, 400, "invalid_parameters"),
        ({"count": "0.00"}, 400, "invalid_parameters"),
        ({"time_in_force": "good_till_date"}, 400, "invalid_parameters"),
        ({"post_only": "true"}, 400, "invalid_parameters"),
        ({"ticker": "NOPE"}, 404, "not_found"),
    ],
)
async def test_bad_orders_are_refused_with_kalshis_codes(exchange, rest, fields, status, code):
    order = {"ticker": T0, "client_order_id": "e1", "side": "bid", "count": "1.00", "price": "0.4000", **fields}
    async with rest(exchange) as client:
        reply = await client.order(**order)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code
    assert reply.json()["error"]["message"]
    assert exchange.book(T0).quantity_at(0, 4000) == 50 * C


async def test_a_body_that_is_not_json_is_refused(exchange, rest, signer):
    async with rest(exchange) as client:
        path = "/trade-api/v2/portfolio/events/orders"
        reply = await client.http.post(path, content=b"{nope", headers=signer.headers("POST", path))
    assert reply.status_code == 400
    assert reply.json()["error"] == {"code": "invalid_parameters", "message": "the request body is not JSON"}


def test_a_token_bucket_refuses_without_taking_and_refills_by_the_second():
    now = [0.0]
    bucket = TokenBucket(100, clock=lambda: now[0])
    assert [bucket.take(10) for _ in range(10)] == [0.0] * 10
    assert bucket.take(10) == pytest.approx(0.1)  # empty: a tenth of a second for 10 more
    now[0] = 0.05
    assert bucket.take(2) == 0.0  # 5 refilled, 2 taken
    assert bucket.take(10) == pytest.approx(0.07)
    now[0] = 5.0
    assert bucket.take(100) == 0.0  # full again, never more than a second's worth
    assert bucket.take(1) > 0
    assert parse_tier("basic") == RateTier(200, 100)
    assert parse_tier("40/20") == RateTier(40, 20)
    with pytest.raises(ValueError, match="rate tier"):
        parse_tier("fast")


async def test_rate_limits_answer_429_with_retry_after(make_exchange, rest):
    async with make_exchange(flow=False, rate_tier=RateTier(10, 4)) as exchange, rest(exchange) as client:
        assert (await client.get("/portfolio/balance")).status_code == 200
        limited = await client.get("/portfolio/balance")  # a read costs 10: the bucket is empty
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"
        assert limited.json()["error"]["code"] == "too_many_requests"
        # Writes have their own bucket (4 tokens here); a cancel costs 2, so two fit.
        for _ in range(2):
            assert (await client.delete("/portfolio/events/orders/none")).status_code == 404
        assert (await client.delete("/portfolio/events/orders/none")).status_code == 429
        # The public book is not rate-limited.
        assert (await client.http.get(f"/trade-api/v2/markets/{T0}/orderbook")).status_code == 200


async def test_batches_create_and_cancel_up_to_twenty(exchange, rest):
    async with rest(exchange) as client:
        orders = [
            {"ticker": T0, "client_order_id": f"b{i}", "side": "bid", "count": "1.00", "price": "0.3000"} for i in range(3)
        ]
        orders.append({"ticker": T0, "client_order_id": "b0", "side": "bid", "count": "1.00", "price": "0.3000"})
        created = await client.post("/portfolio/events/orders/batched", {"orders": orders})
        assert created.status_code == 201
        results = created.json()["orders"]
        assert [r["error"] and r["error"]["code"] for r in results] == [None, None, None, "order_already_exists"]
        ids = [r["order"]["order_id"] for r in results[:3]]
        cancelled = await client.delete("/portfolio/events/orders/batched", {"orders": [{"order_id": i} for i in ids]})
        assert [r["reduced_by"] for r in cancelled.json()["orders"]] == ["1.00"] * 3
        too_many = await client.post("/portfolio/events/orders/batched", {"orders": orders * 6})
        assert too_many.status_code == 400
        assert "at most 20" in too_many.json()["error"]["message"]
    assert exchange.book(T0).quantity_at(0, 3000) == 0


async def test_orders_and_fills_page_newest_first_with_a_cursor(exchange, rest):
    async with rest(exchange) as client:
        ids = []
        for i in range(5):
            reply = await client.order(ticker=T0, client_order_id=f"o{i}", side="bid", count="1.00", price="0.3000")
            ids.append(reply.json()["order_id"])
        await client.delete(f"/portfolio/events/orders/{ids[1]}")
        first = (await client.get("/portfolio/orders", params={"limit": "2"})).json()
        assert [o["order_id"] for o in first["orders"]] == [ids[4], ids[3]]
        second = (await client.get("/portfolio/orders", params={"limit": "2", "cursor": first["cursor"]})).json()
        assert [o["order_id"] for o in second["orders"]] == [ids[2], ids[1]]
        last = (await client.get("/portfolio/orders", params={"limit": "2", "cursor": second["cursor"]})).json()
        assert ([o["order_id"] for o in last["orders"]], last["cursor"]) == ([ids[0]], "")
        resting = (await client.get("/portfolio/orders", params={"status": "resting"})).json()["orders"]
        assert len(resting) == 4
        canceled = (await client.get("/portfolio/orders", params={"status": "canceled"})).json()["orders"]
        assert [o["order_id"] for o in canceled] == [ids[1]]
        assert (await client.get("/portfolio/orders", params={"status": "open"})).status_code == 400
        assert (await client.get("/portfolio/orders/nope")).json()["error"]["code"] == "not_found"

        await client.order(ticker=T0, client_order_id="t1", side="bid", count="12.00", price="0.4600")
        fills = (await client.get("/portfolio/fills", params={"limit": "1"})).json()
        assert [f["count_fp"] for f in fills["fills"]] == ["2.00"]
        rest_of = (await client.get("/portfolio/fills", params={"cursor": fills["cursor"]})).json()
        assert ([f["count_fp"] for f in rest_of["fills"]], rest_of["cursor"]) == (["10.00"], "")
        ts = fills["fills"][0]["ts"]
        assert len((await client.get("/portfolio/fills", params={"min_ts": str(ts)})).json()["fills"]) == 2
        assert (await client.get("/portfolio/fills", params={"min_ts": str(ts + 1)})).json()["fills"] == []
        fill = fills["fills"][0]
        assert set(fill) >= {
            "fill_id", "order_id", "ticker", "side", "action", "count_fp", "yes_price_dollars",
            "no_price_dollars", "is_taker", "fee_cost", "ts", "ts_ms", "client_order_id",
        }  # fmt: skip
        assert fill["client_order_id"] == "t1"


async def test_the_public_book_and_status(exchange, rest):
    async with rest(exchange) as client:
        book = (await client.http.get(f"/trade-api/v2/markets/{T0}/orderbook")).json()
        assert book == {
            "orderbook_fp": {
                "yes_dollars": [["0.4000", "50.00"], ["0.4200", "20.00"]],
                "no_dollars": [["0.5400", "20.00"], ["0.5500", "10.00"]],
            }
        }
        top = (await client.http.get(f"/trade-api/v2/markets/{T0}/orderbook", params={"depth": "1"})).json()
        assert top["orderbook_fp"]["yes_dollars"] == [["0.4200", "20.00"]]
        missing = await client.http.get("/trade-api/v2/markets/NOPE/orderbook")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        status = (await client.http.get("/trade-api/v2/exchange/status")).json()
        assert status == {"exchange_active": True, "trading_active": True}


async def test_keep_alive_requests_are_not_held_back_by_delayed_acks(exchange):
    # Without TCP_NODELAY on the server's sockets every reply after the first waited ~40 ms.
    reader, writer = await asyncio.open_connection("127.0.0.1", exchange.port)
    times = []
    try:
        for _ in range(5):
            started = time.perf_counter()
            writer.write(b"GET /trade-api/v2/exchange/status HTTP/1.1\r\nHost: local\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            times.append(time.perf_counter() - started)
    finally:
        writer.close()
    assert statistics.median(times) < 0.02, times
