"""Kalshi REST error responses -> the typed errors of :mod:`domain.gateway_errors`.

Kalshi answers errors in three shapes (kalshi-protocol.md, "REST trading"): nested
``{"error": {"code", "message", "details"?}}``, flat ``{"code", "message", "details"}`` and bare
``{"msg": "..."}``; a proxy in front of it may answer with plain text. All are read here, and the
class is chosen by Kalshi's error code first, the HTTP status second. The exchange's message is
kept verbatim on the error.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from domain.gateway_errors import (
    AuthenticationFailed,
    DuplicateClientOrderId,
    ExchangeUnavailable,
    GatewayError,
    InsufficientBalance,
    InvalidOrder,
    InvalidPrice,
    MarketNotFound,
    OrderNotFound,
    OrderRejected,
    PostOnlyCross,
    RateLimited,
)

_BODY_EXCERPT = 300

# Kalshi's error codes (recorded, or from its starter code) -> the domain's class.
_BY_CODE: dict[str, type[GatewayError]] = {
    "order_already_exists": DuplicateClientOrderId,
    "insufficient_balance": InsufficientBalance,
    "fill_or_kill_insufficient_resting_volume": OrderRejected,
    "invalid_price": InvalidPrice,
    "invalid_order": InvalidOrder,
    "invalid_parameters": InvalidOrder,
    "bad_request": InvalidOrder,
    "market_not_found": MarketNotFound,
    "market_closed": MarketNotFound,
    "market_not_open": MarketNotFound,
    "authentication_error": AuthenticationFailed,
    "signature_is_missing_from_headers": AuthenticationFailed,
    "header_timestamp_expired": AuthenticationFailed,
    "unauthorized": AuthenticationFailed,
    "too_many_requests": RateLimited,
    "rate_limit_exceeded": RateLimited,
    "internal_server_error": ExchangeUnavailable,
    "service_unavailable": ExchangeUnavailable,
}
_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidOrder,
    401: AuthenticationFailed,
    403: AuthenticationFailed,
    429: RateLimited,
}


@attrs.frozen
class ErrorBody:
    """What an error response said, whichever shape it came in."""

    message: str
    code: str | None = None
    details: str | None = None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def read_error_body(body: bytes) -> ErrorBody:
    """The code, message and details of an error body in any of Kalshi's shapes."""
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, Mapping):
        inner = decoded.get("error")
        if isinstance(inner, Mapping):
            decoded = inner
        elif isinstance(inner, str):  # {"error": "text"}
            return ErrorBody(inner, _text(decoded.get("code")))
        message = decoded.get("message", decoded.get("msg"))
        code = decoded.get("code")
        if message is not None or code is not None:
            return ErrorBody(_text(message) or "", _text(code), _text(decoded.get("details")))
    text = body.decode("utf-8", errors="replace").strip()
    return ErrorBody(text[:_BODY_EXCERPT] if text else "(empty body)")


def retry_after_seconds(value: str | None, *, now: _dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        now = now or _dt.datetime.now(_dt.timezone.utc)
        seconds = (when - now).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is not a wait


def _class_for(status: int, body: ErrorBody, not_found: type[GatewayError]) -> type[GatewayError]:
    code = (body.code or "").lower()
    if code == "invalid_order" or status == 400:
        said = f"{body.details or ''} {body.message}".lower().replace("_", " ").replace("-", " ")
        if "post only" in said and "cross" in said:
            return PostOnlyCross
    found = _BY_CODE.get(code)
    if found is not None:
        return found
    if status == 404 or code == "not_found":
        return not_found
    if status >= 500:
        return ExchangeUnavailable
    return _BY_STATUS.get(status, OrderRejected if 400 <= status < 500 else ExchangeUnavailable)


def error_from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    not_found: type[GatewayError] = OrderNotFound,
) -> GatewayError:
    """The typed error for an HTTP error response. ``not_found`` is what a 404 means for the
    request that got it (an order, unless the caller knows better)."""
    return error_for(status, read_error_body(body), headers, not_found=not_found)


def error_for(
    status: int,
    said: ErrorBody,
    headers: Mapping[str, str] | None = None,
    *,
    not_found: type[GatewayError] = OrderNotFound,
) -> GatewayError:
    """The typed error for what an error response (or one item of a batch) said."""
    error_class = _class_for(status, said, not_found)
    context = {"code": said.code, "details": said.details, "http_status": status}
    if error_class is RateLimited:
        retry_after = retry_after_seconds((headers or {}).get("retry-after"))
        return RateLimited(said.message, retry_after_s=retry_after, **context)
    return error_class(said.message, **context)  # type: ignore[arg-type]
