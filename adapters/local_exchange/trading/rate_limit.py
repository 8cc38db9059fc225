"""Kalshi's rate limits: two token buckets per API key, one for reads and one for writes.

Each bucket holds at most one second's worth of tokens and refills continuously. A request
costs :data:`DEFAULT_COST` tokens (a V2 cancel :data:`CANCEL_COST`); when its bucket holds
fewer, the request is refused with HTTP 429 and ``Retry-After`` (whole seconds, rounded up:
the header has no finer unit) -- nothing is taken from the bucket, so a refused request costs
nothing. Small enough to write out: no library offers this refuse-don't-wait bucket with
Kalshi's per-request costs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs

DEFAULT_COST = 10
CANCEL_COST = 2


def _positive(_instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive whole number of tokens per second, got {value!r}")


@attrs.frozen
class RateTier:
    """Tokens per second for reads and writes (each bucket also holds this many at most)."""

    read_per_s: int = attrs.field(validator=_positive)
    write_per_s: int = attrs.field(validator=_positive)


# Kalshi's published tiers, in tokens (most requests cost 10).
TIERS: dict[str, RateTier] = {
    "basic": RateTier(200, 100),
    "advanced": RateTier(300, 300),
    "premier": RateTier(1000, 1000),
    "prime": RateTier(4000, 4000),
}


def parse_tier(text: str) -> RateTier:
    """A tier by name (``basic``) or as ``READ/WRITE`` tokens per second (``40/20``)."""
    tier = TIERS.get(text)
    if tier is not None:
        return tier
    read, slash, write = text.partition("/")
    if slash and read.isdigit() and write.isdigit():
        return RateTier(int(read), int(write))
    raise ValueError(f"rate tier must be one of {', '.join(TIERS)} or READ/WRITE tokens per second, got {text!r}")


class TokenBucket:
    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._tokens = float(per_second)
        self._at = clock()

    def take(self, cost: int) -> float:
        """Take ``cost`` tokens; returns 0.0, or the seconds until they would be there (nothing taken)."""
        now = self._clock()
        self._tokens = min(float(self.per_second), self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.per_second


class RateLimited(Exception):
    def __init__(self, kind: str, retry_after_s: float) -> None:
        super().__init__(f"{kind} rate limit exceeded; retry in {retry_after_s:.3f} s")
        self.kind = kind
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": "too_many_requests", "message": str(self), "details": f"{self.kind} limit"}}


class RateLimiter:
    """The buckets of every API key under one tier."""

    def __init__(self, tier: RateTier, clock: Callable[[], float] = time.monotonic) -> None:
        self.tier = tier
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def charge(self, key_id: str, kind: str, cost: int) -> None:
        """Take ``cost`` tokens from ``key_id``'s ``read`` or ``write`` bucket, or raise :class:`RateLimited`."""
        bucket = self._buckets.get((key_id, kind))
        if bucket is None:
            per_second = self.tier.read_per_s if kind == "read" else self.tier.write_per_s
            bucket = self._buckets[(key_id, kind)] = TokenBucket(per_second, self._clock)
        # A request dearer than a full bucket (a big batch) waits for a full bucket, not forever.
        wait = bucket.take(min(cost, bucket.per_second))
        if wait:
            raise RateLimited(kind, wait)
