"""The Kalshi REST client on httpx.MockTransport: signing, error shapes, retries, paging, rate
limits, and the refusal of production hosts."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from adapters.kalshi.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestSigner,
    generate_keypair,
    private_key_from_pem,
    public_key_from_pem,
    verify_request,
)
from adapters.kalshi.rest_client import KalshiRestClient, ProductionRefused, RateLimits, RequestKind
from adapters.kalshi.rest_errors import error_from_response, read_error_body, retry_after_seconds
from domain.backoff import ExponentialBackoff
from domain.gateway_errors import (
    AuthenticationFailed,
    DuplicateClientOrderId,
    ExchangeUnavailable,
    InsufficientBalance,
    InvalidOrder,
    InvalidPrice,
    MarketNotFound,
    OrderNotFound,
    OrderRejected,
    PostOnlyCross,
    RateLimited,
)

BASE = "https://external-api.demo.kalshi.co/trade-api/v2"
KEY_ID = "rest-test-key"
PRIVATE_PEM, PUBLIC_PEM = generate_keypair()
SIGNER = RequestSigner(KEY_ID, private_key_from_pem(PRIVATE_PEM))
PUBLIC_KEYS = {KEY_ID: public_key_from_pem(PUBLIC_PEM)}


class Sleeps:
    """Records the waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(handler, **options) -> tuple[KalshiRestClient, Sleeps]:
    sleeps = Sleeps()
    options = {"random": lambda: 0.5, "sleep": sleeps, "max_attempts": 3, **options}
    return KalshiRestClient(BASE, SIGNER, transport=httpx.MockTransport(handler), **options), sleeps


def reply(status: int, body: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body if body is not None else {}), headers=headers)


# ---------------------------------------------------------------------------------------------
# Signing
# ---------------------------------------------------------------------------------------------
async def test_every_request_is_signed_over_the_full_path_without_the_query():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply(200, {"orders": []})

    rest, _ = client(handler)
    await rest.call("GET", "/portfolio/orders", params={"status": "resting", "limit": 5})
    await rest.call("POST", "/portfolio/events/orders", kind=RequestKind.WRITE, json={"ticker": "T"})
    await rest.aclose()

    get, post = seen
    assert get.url.path == "/trade-api/v2/portfolio/orders" and get.url.params["status"] == "resting"
    for request in seen:
        assert request.headers[KEY_HEADER] == KEY_ID
        stamp = int(request.headers[TIMESTAMP_HEADER])
        assert abs(stamp - time.time() * 1000) < 5_000  # milliseconds, not seconds
        # Verifies over METHOD + the path from /trade-api, query left out: a server's check.
        key = verify_request(request.headers, request.method, request.url.path, PUBLIC_KEYS, now_ms=stamp)
        assert key == KEY_ID
        assert request.headers[SIGNATURE_HEADER]
    assert orjson.loads(post.content) == {"ticker": "T"}
    assert post.headers["content-type"] == "application/json"


async def test_a_retry_is_signed_afresh():
    stamps: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(request.headers[SIGNATURE_HEADER])
        return reply(503) if len(stamps) == 1 else reply(200, {"balance": 1})

    rest, _ = client(handler)
    await rest.call("GET", "/portfolio/balance")
    assert len(stamps) == 2 and stamps[0] != stamps[1]  # PSS: a new signature each time


@pytest.mark.parametrize(
    "url",
    [
        "https://external-api.kalshi.com/trade-api/v2",
        "https://api.elections.kalshi.com/trade-api/v2",
        "https://KALSHI.COM/trade-api/v2",
    ],
)
def test_a_production_host_is_refused_at_construction(url):
    with pytest.raises(ProductionRefused, match="production"):
        KalshiRestClient(url, SIGNER)


@pytest.mark.parametrize("url", ["https://demo-api.kalshi.co/trade-api/v2", "http://127.0.0.1:8765/trade-api/v2"])
def test_demo_and_local_hosts_are_accepted(url):
    assert KalshiRestClient(url, SIGNER).base_url == url


async def test_a_read_only_client_may_read_production_but_sends_nothing_else():
    production = "https://external-api.kalshi.com/trade-api/v2"
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return reply(200, {"market": {}})

    reader = KalshiRestClient(production, SIGNER, transport=httpx.MockTransport(handler), read_only=True)
    try:
        assert (await reader.send("GET", "/markets/T1")).status == 200
        for method in ("POST", "DELETE", "PUT"):
            with pytest.raises(ProductionRefused, match="reads only"):
                await reader.send(method, "/portfolio/events/orders", json={})
    finally:
        await reader.aclose()
    assert seen == ["GET"]  # nothing but the read left the process


def test_a_base_url_without_the_trade_api_prefix_is_refused():
    with pytest.raises(ValueError, match="/trade-api"):
        KalshiRestClient("http://127.0.0.1:8765/v2", SIGNER)


# ---------------------------------------------------------------------------------------------
# Error shapes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "error_class", "message"),
    [
        (409, {"error": {"code": "order_already_exists", "message": "dup"}}, DuplicateClientOrderId, "dup"),
        (400, {"code": "insufficient_balance", "message": "no cash", "details": "x"}, InsufficientBalance, "no cash"),
        (400, {"error": {"code": "invalid_price", "message": "off grid"}}, InvalidPrice, "off grid"),
        (
            400,
            {"error": {"code": "invalid_order", "message": "rejected", "details": "post only cross"}},
            PostOnlyCross,
            "rejected",
        ),
        (400, {"error": {"code": "invalid_order", "message": "bad"}}, InvalidOrder, "bad"),
        (404, {"error": {"code": "not_found", "message": "order gone"}}, OrderNotFound, "order gone"),
        (400, {"msg": "count must be a string"}, InvalidOrder, "count must be a string"),
        (
            401,
            {"error": {"code": "authentication_error", "message": "bad sig", "details": "INCORRECT_API_KEY_SIGNATURE"}},
            AuthenticationFailed,
            "bad sig",
        ),
        (401, {"code": "header_timestamp_expired", "message": "skew"}, AuthenticationFailed, "skew"),
        (409, {"error": {"code": "fill_or_kill_insufficient_resting_volume", "message": "fok"}}, OrderRejected, "fok"),
        (400, {"error": {"code": "market_closed", "message": "closed"}}, MarketNotFound, "closed"),
        (418, {"error": {"code": "teapot", "message": "short and stout"}}, OrderRejected, "short and stout"),
        (502, b"<html>Bad gateway</html>", ExchangeUnavailable, "<html>Bad gateway</html>"),
    ],
)
def test_all_three_error_shapes_become_typed_errors_with_the_exchanges_message(status, body, error_class, message):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    error = error_from_response(status, content)
    assert type(error) is error_class
    assert error.message == message and error.http_status == status
    assert message in str(error)


def test_the_code_and_details_are_kept():
    said = read_error_body(b'{"error":{"code":"invalid_order","message":"m","details":"post only cross"}}')
    assert (said.code, said.message, said.details) == ("invalid_order", "m", "post only cross")
    assert read_error_body(b"").message == "(empty body)"
    assert read_error_body(b'{"error":"flat text"}').message == "flat text"


def test_a_404_means_what_the_caller_says():
    error = error_from_response(404, b'{"error":{"code":"not_found","message":"no market"}}', not_found=MarketNotFound)
    assert isinstance(error, MarketNotFound)


def test_retry_after_reads_seconds_and_http_dates():
    import datetime as dt

    now = dt.datetime(2026, 6, 11, 6, 0, 0, tzinfo=dt.timezone.utc)
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("0.25") == 0.25
    assert retry_after_seconds("Thu, 11 Jun 2026 06:00:03 GMT", now=now) == 3.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# ---------------------------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------------------------
async def test_a_5xx_is_retried_with_backoff_and_counted_as_uncertain():
    answers = iter([reply(503), reply(500), reply(201, {"order_id": "o"})])
    rest, sleeps = client(lambda request: next(answers), backoff=ExponentialBackoff(initial_s=1.0, max_s=8.0))
    response = await rest.send("POST", "/portfolio/events/orders", kind=RequestKind.WRITE, json={})
    assert response.status == 201 and response.attempts == 3 and response.uncertain_attempts == 2
    assert sleeps.waits == [0.5, 1.0]  # full jitter at 0.5 of a doubling ceiling


async def test_a_connection_refused_is_retried_but_is_not_uncertain():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return reply(200, {})

    rest, _ = client(handler)
    response = await rest.send("GET", "/portfolio/balance")
    assert response.ok and response.attempts == 2 and response.uncertain_attempts == 0


async def test_a_timeout_after_sending_is_uncertain():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return reply(409, {"error": {"code": "order_already_exists", "message": "dup"}})

    rest, _ = client(handler)
    response = await rest.send("POST", "/portfolio/events/orders", kind=RequestKind.WRITE, json={})
    assert response.status == 409 and response.uncertain_attempts == 1


async def test_no_answer_at_all_is_exchange_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    rest, sleeps = client(handler)
    with pytest.raises(ExchangeUnavailable, match="3 attempt"):
        await rest.call("GET", "/portfolio/balance")
    assert len(sleeps.waits) == 2


async def test_429_waits_retry_after_then_succeeds():
    limited = reply(429, {"error": {"code": "too_many_requests", "message": "slow down"}}, **{"Retry-After": "1.5"})
    answers = iter([limited, reply(200, {"balance": 5})])
    rest, sleeps = client(lambda request: next(answers))
    assert await rest.call("GET", "/portfolio/balance") == {"balance": 5}
    assert sleeps.waits == pytest.approx([1.5], abs=0.05)  # the pause, less the time already gone
    assert rest.rate_limited == 1


async def test_429_without_retry_after_backs_off_and_finally_raises_rate_limited():
    rest, sleeps = client(lambda request: reply(429, {"message": "too many"}), backoff=ExponentialBackoff(initial_s=1.0))
    with pytest.raises(RateLimited) as raised:
        await rest.call("GET", "/portfolio/balance")
    assert raised.value.retry_after_s is None and raised.value.message == "too many"
    assert sleeps.waits == pytest.approx([0.5, 1.0], abs=0.05)


async def test_429_pauses_every_request_of_its_kind():
    answers = iter([reply(429, {}, **{"Retry-After": "0.3"}), reply(200, {}), reply(200, {})])
    rest, _ = client(lambda request: next(answers), sleep=asyncio.sleep)
    started = time.monotonic()
    await asyncio.gather(rest.call("GET", "/a"), _after(0.05, rest.call("GET", "/b")))
    assert time.monotonic() - started >= 0.28  # /b waited out the pause /a was told of


async def _after(seconds: float, awaitable):
    await asyncio.sleep(seconds)
    return await awaitable


async def test_client_errors_are_not_retried():
    calls = []

    def handler(request):
        calls.append(request)
        return reply(400, {"error": {"code": "invalid_price", "message": "off grid"}})

    rest, _ = client(handler)
    with pytest.raises(InvalidPrice):
        await rest.call("POST", "/portfolio/events/orders", kind=RequestKind.WRITE, json={})
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------
# Paging
# ---------------------------------------------------------------------------------------------
async def test_pages_follow_the_cursor_until_it_is_empty():
    pages = {None: (["a", "b"], "c1"), "c1": (["c"], "c2"), "c2": (["d"], "")}
    seen_cursors = []

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        seen_cursors.append(cursor)
        assert request.url.params["limit"] == "200" and request.url.params["status"] == "resting"
        items, following = pages[cursor]
        return reply(200, {"orders": items, "cursor": following})

    rest, _ = client(handler)
    assert await rest.pages("/portfolio/orders", "orders", {"status": "resting"}) == ["a", "b", "c", "d"]
    assert seen_cursors == [None, "c1", "c2"]


async def test_a_repeated_cursor_is_refused_rather_than_looping():
    rest, _ = client(lambda request: reply(200, {"fills": [1], "cursor": "same"}))
    with pytest.raises(ExchangeUnavailable, match="repeated cursor"):
        await rest.pages("/portfolio/fills", "fills")


# ---------------------------------------------------------------------------------------------
# Rate limits
# ---------------------------------------------------------------------------------------------
async def test_requests_wait_for_tokens_rather_than_exceed_the_bucket():
    limits = RateLimits(read_tokens_per_s=100, write_tokens_per_s=100, request_cost=50, cancel_cost=10, headroom_percent=0)
    rest, _ = client(lambda request: reply(200, {}), rate_limits=limits)
    started = time.monotonic()
    for _ in range(3):  # two fill the bucket; the third waits for 50 tokens: half a second
        await rest.call("GET", "/portfolio/balance")
    assert 0.4 <= time.monotonic() - started < 2.0


async def test_cancels_cost_less_and_reads_do_not_spend_write_tokens():
    limits = RateLimits(read_tokens_per_s=100, write_tokens_per_s=100, request_cost=50, cancel_cost=10, headroom_percent=0)
    rest, _ = client(lambda request: reply(200, {}), rate_limits=limits)
    started = time.monotonic()
    for _ in range(2):
        await rest.call("GET", "/portfolio/balance")
    for _ in range(10):  # ten cancels at 10 tokens: one bucketful, no wait
        await rest.call("DELETE", "/portfolio/events/orders/x", kind=RequestKind.CANCEL)
    assert time.monotonic() - started < 0.3


def test_rate_limits_are_validated():
    with pytest.raises(ValueError):
        RateLimits(read_tokens_per_s=0)
    with pytest.raises(ValueError):
        RateLimits(read_tokens_per_s=5, request_cost=10)
    with pytest.raises(ValueError):
        RateLimits(headroom_percent=100)
    assert RateLimits().cost(RequestKind.CANCEL, 20) == 40 and RateLimits().cost(RequestKind.WRITE, 3) == 30
    assert (RateLimits().read_tokens, RateLimits().write_tokens) == (180, 90)


async def test_the_default_buckets_keep_below_the_basic_tier():
    # 30 writes of 10 tokens: 90 at once, then 90 a second -- never the 100 the exchange allows.
    rest, _ = client(lambda request: reply(200, {}))
    started = time.monotonic()
    for _ in range(30):
        await rest.call("POST", "/portfolio/events/orders", kind=RequestKind.WRITE, json={})
    assert (300 - 90) / 90 - 0.1 <= time.monotonic() - started < 4.0
