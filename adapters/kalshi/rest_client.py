"""Signed, rate-limited, retrying HTTP requests to Kalshi's REST API (trade-api v2).

* **Signing.** Every attempt is signed afresh (:class:`~adapters.kalshi.auth.RequestSigner`) over
  the exact path being sent, from ``/trade-api`` and without the query string.
* **Rate limits.** Kalshi meters requests with token buckets: on the basic tier 200 read and 100
  write tokens a second, most requests costing 10 and a V2 cancel 2. Two buckets here
  (:mod:`aiolimiter`, 10% smaller than the exchange's) spend the same tokens before a request
  leaves, so we wait rather than get refused. A 429 still happens (other clients on the key, another tier); then the bucket of that
  kind is paused for ``Retry-After`` (or a backoff when absent) and the request is retried.
* **Retries.** Connection failures, timeouts, 5xx and 429 are retried ``max_attempts`` times in
  all, spaced by exponential backoff with full jitter. A retried write is safe only because every
  order carries a client order id: :attr:`RestResponse.uncertain_attempts` tells the caller that an
  earlier attempt may have reached the exchange, so a 409 ``order_already_exists`` (or a 404 on a
  cancel) may be our own first attempt, not a conflict (see :mod:`adapters.kalshi.rest_gateway`).
* **Never production.** A base URL on a real-money host (``*.kalshi.com``) is refused at
  construction: orders go to the demo exchange (``kalshi.co``) or the local one, nowhere else.
  A ``read_only`` client (recording's market catalog: production market data may be read) may
  point anywhere and refuses every method but GET.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random as _random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import orjson
from aiolimiter import AsyncLimiter

from adapters.kalshi.auth import PATH_PREFIX, RequestSigner, signing_path
from adapters.kalshi.rest_errors import error_from_response
from domain.backoff import ExponentialBackoff
from domain.gateway_errors import ExchangeUnavailable, GatewayError, OrderNotFound, RateLimited

log = logging.getLogger(__name__)

DEFAULT_BACKOFF = ExponentialBackoff(initial_s=0.25, max_s=8.0)
DEFAULT_MAX_PAGES = 1_000  # 200 items a page: far beyond any account we run
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class ProductionRefused(ValueError):
    """An order-sending client pointed at Kalshi's real-money exchange."""


def is_production_host(url: str) -> bool:
    """Real-money Kalshi lives under kalshi.com (``external-api``, ``api.elections``...); the demo
    exchange is kalshi.co."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "kalshi.com" or host.endswith(".kalshi.com")


def refuse_production(url: str, what: str) -> None:
    if is_production_host(url):
        raise ProductionRefused(
            f"{what} {url!r} is Kalshi's production (real-money) exchange; orders may only go to the "
            "demo exchange or the local one (KALSHI_ENV=demo or local)"
        )


class RequestKind(enum.Enum):
    """Which bucket a request spends, and how much."""

    READ = "read"
    WRITE = "write"
    CANCEL = "cancel"  # a write that costs less


@attrs.frozen
class RateLimits:
    """Kalshi's token buckets (basic tier by default): tokens refilled per second, costs."""

    read_tokens_per_s: int = 200
    write_tokens_per_s: int = 100
    request_cost: int = 10
    cancel_cost: int = 2
    # We spend from buckets this much smaller than the exchange's: requests arrive there with
    # jitter, and a client metering at exactly the limit is refused now and then.
    headroom_percent: int = 10

    def __attrs_post_init__(self) -> None:
        for name in ("read_tokens_per_s", "write_tokens_per_s", "request_cost", "cancel_cost"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.headroom_percent < 100:
            raise ValueError(f"headroom_percent must be in 0..99, got {self.headroom_percent!r}")
        if max(self.request_cost, self.cancel_cost) > min(self.read_tokens, self.write_tokens):
            raise ValueError("a single request must not cost more tokens than a bucket holds")

    @property
    def read_tokens(self) -> float:
        """The read bucket we keep: the exchange's less the headroom."""
        return self.read_tokens_per_s * (100 - self.headroom_percent) / 100

    @property
    def write_tokens(self) -> float:
        return self.write_tokens_per_s * (100 - self.headroom_percent) / 100

    def cost(self, kind: RequestKind, items: int = 1) -> int:
        return (self.cancel_cost if kind is RequestKind.CANCEL else self.request_cost) * items


@attrs.frozen
class RestResponse:
    """The final answer to a request, after retries. ``uncertain_attempts`` counts earlier
    attempts that may have taken effect on the exchange (a timeout after sending, a 5xx)."""

    status: int
    content: bytes
    headers: httpx.Headers
    attempts: int
    uncertain_attempts: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        if not self.content:
            return {}
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError:
            raise ExchangeUnavailable(
                f"the exchange answered HTTP {self.status} with a body that is not JSON: {self.content[:200]!r}",
                http_status=self.status,
            ) from None

    def error(self, *, not_found: type[GatewayError] = OrderNotFound) -> GatewayError:
        return error_from_response(self.status, self.content, self.headers, not_found=not_found)

    def result(self, *, not_found: type[GatewayError] = OrderNotFound) -> Any:
        """The decoded body of a success; the typed error of a failure, raised."""
        if not self.ok:
            raise self.error(not_found=not_found)
        return self.json()


# Failures where the request surely never reached the server: retrying cannot duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class KalshiRestClient:
    """Requests to ``base_url`` (``https://.../trade-api/v2``), signed by ``signer``.

    ``transport`` lets tests put an ``httpx.MockTransport`` (or any transport) underneath;
    ``random`` and ``sleep`` pin the backoff's jitter and record its waits.
    """

    def __init__(
        self,
        base_url: str,
        signer: RequestSigner,
        *,
        rate_limits: RateLimits = RateLimits(),
        backoff: ExponentialBackoff = DEFAULT_BACKOFF,
        max_attempts: int = 4,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        random: Callable[[], float] = _random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        read_only: bool = False,
    ) -> None:
        if not read_only:
            refuse_production(base_url, "the REST base URL")
        self.read_only = read_only
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the REST base URL must be http(s)://host/trade-api/v2, got {base_url!r}")
        if not parts.path.startswith(PATH_PREFIX):
            raise ValueError(f"the REST base URL's path must start with {PATH_PREFIX!r}, got {base_url!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.base_url = base_url.rstrip("/")
        self.rate_limits = rate_limits
        self._signer = signer
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._random = random
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            trust_env=False,  # no proxy from the environment between us and the exchange
            headers={"Accept": "application/json"},
        )
        self._buckets = {
            "read": AsyncLimiter(rate_limits.read_tokens, 1.0),
            "write": AsyncLimiter(rate_limits.write_tokens, 1.0),
        }
        self._paused_until = {"read": 0.0, "write": 0.0}  # loop time, after a 429
        # Counters, for status pages and tests.
        self.requests_sent = 0
        self.rate_limited = 0
        self.retries = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- one request, with retries --------------------------------------------------------------
    async def send(
        self,
        method: str,
        path: str,
        *,
        kind: RequestKind = RequestKind.READ,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        items: int = 1,
    ) -> RestResponse:
        """``method path`` (relative to the base URL), retried on what can pass; returns the final
        response, an error response included. Raises :class:`ExchangeUnavailable` when no
        attempt got an answer, :class:`RateLimited` when every attempt was refused with 429."""
        if self.read_only and method != "GET":
            raise ProductionRefused(f"{method} {path}: this client reads only (GET); it sends no orders")
        bucket = "read" if kind is RequestKind.READ else "write"
        cost = self.rate_limits.cost(kind, items)
        content = orjson.dumps(json) if json is not None else None
        uncertain = 0
        failure: str | None = None
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self.retries += 1
            await self._spend(bucket, cost)
            request = self._http.build_request(
                method,
                path.lstrip("/"),
                params={key: str(value) for key, value in (params or {}).items()} or None,
                content=content,
                headers={"Content-Type": "application/json"} if content is not None else None,
            )
            request.headers.update(self._signer.headers(method, signing_path(request.url.path)))
            self.requests_sent += 1
            try:
                response = await self._http.send(request)
                body = await response.aread()
            except httpx.TransportError as error:
                if not isinstance(error, _NOT_SENT):
                    uncertain += 1
                failure = f"{type(error).__name__}: {error}"
                log.warning("%s %s failed (attempt %d): %s", method, request.url.path, attempt, failure)
                if attempt < self._max_attempts:
                    await self._sleep(self._backoff.delay(attempt - 1, self._random()))
                continue
            answer = RestResponse(response.status_code, body, response.headers, attempt, uncertain)
            if answer.status not in _RETRIED_STATUSES or attempt == self._max_attempts:
                if answer.status == 429:
                    self.rate_limited += 1
                return answer
            if answer.status == 429:
                self.rate_limited += 1
                error = answer.error()
                wait = error.retry_after_s if isinstance(error, RateLimited) else None
                if wait is None:
                    wait = self._backoff.delay(attempt - 1, self._random())
                self._pause(bucket, wait)  # the next attempt, and every request of its kind, waits
                log.warning("%s %s rate-limited; waiting %.3f s", method, request.url.path, wait)
            else:  # a 5xx: the exchange may have done it before failing
                uncertain += 1
                await self._sleep(self._backoff.delay(attempt - 1, self._random()))
        raise ExchangeUnavailable(
            f"{method} {path}: no answer after {self._max_attempts} attempt(s); last error {failure}"
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        kind: RequestKind = RequestKind.READ,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        not_found: type[GatewayError] = OrderNotFound,
    ) -> Any:
        """:meth:`send`, then the decoded body of a success or the typed error raised."""
        response = await self.send(method, path, kind=kind, params=params, json=json)
        return response.result(not_found=not_found)

    async def pages(
        self,
        path: str,
        key: str,
        params: Mapping[str, str | int] | None = None,
        *,
        limit: int = 200,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> list[Any]:
        """Every item under ``key`` of a cursor-paged listing (an empty cursor ends it)."""
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            query: dict[str, str | int] = {**(params or {}), "limit": limit}
            if cursor:
                query["cursor"] = cursor
            body = await self.call("GET", path, params=query)
            page = body.get(key) if isinstance(body, Mapping) else None
            if page is None:
                page = []
            if not isinstance(page, list):
                raise ExchangeUnavailable(f"GET {path}: {key!r} is not a list: {str(page)[:200]}")
            items.extend(page)
            cursor = body.get("cursor") or None
            if cursor is None:
                return items
            if cursor in seen:
                raise ExchangeUnavailable(f"GET {path}: the exchange repeated cursor {cursor!r}; paging would not end")
            seen.add(cursor)
        raise ExchangeUnavailable(f"GET {path}: more than {max_pages} pages of {limit}; giving up")

    # -- rate limits -----------------------------------------------------------------------------
    async def _spend(self, bucket: str, cost: int) -> None:
        wait = self._paused_until[bucket] - asyncio.get_running_loop().time()
        if wait > 0:
            await self._sleep(wait)
        limiter = self._buckets[bucket]
        while cost > 0:  # a batch may cost more than the bucket holds: spend it in bucketfuls
            part = min(cost, limiter.max_rate)
            await limiter.acquire(part)
            cost -= part

    def _pause(self, bucket: str, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until[bucket] = max(self._paused_until[bucket], until)
