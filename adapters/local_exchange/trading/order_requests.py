"""Request bodies of the V2 order endpoints, checked the way Kalshi checks them.

Counts and prices are strings (``"1.00"``, ``"0.5200"``): a JSON number where a string belongs
is refused with HTTP 400, as Kalshi does. A price with more than four decimals, or one off the
market's tick grid, is ``invalid_price`` (the grid is the engine's to check).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from adapters.local_exchange.trading import errors
from adapters.local_exchange.trading.matching import SELF_TRADE_PREVENTION, AmendParams, OrderParams
from domain.orders import OrderSide, TimeInForce
from domain.values import FixedPointError, parse_count, parse_price

MAX_CLIENT_ORDER_ID = 255


def _text(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise errors.bad_request(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise errors.bad_request(f"{name} must be a string, got {type(value).__name__} {value!r}")
    if not value:
        raise errors.bad_request(f"{name} must not be empty")
    return value


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise errors.bad_request(f"{name} must be true or false, got {value!r}")
    return value


def _side(body: Mapping[str, Any]) -> OrderSide:
    text = _text(body, "side")
    try:
        return OrderSide(text)
    except ValueError:
        raise errors.bad_request(f"side must be 'bid' (buy YES) or 'ask' (sell YES), got {text!r}") from None


def _price(body: Mapping[str, Any]) -> int:
    text = _text(body, "price")
    assert text is not None
    try:
        return parse_price(text)
    except FixedPointError as error:
        raise errors.invalid_price(f"price {text!r}: {error}") from None


def _count(body: Mapping[str, Any]) -> int:
    text = _text(body, "count")
    assert text is not None
    try:
        count = parse_count(text)
    except FixedPointError as error:
        raise errors.bad_request(f"count {text!r}: {error}") from None
    if count <= 0:
        raise errors.bad_request(f"count must be positive, got {text!r}")
    return count


def _client_order_id(body: Mapping[str, Any], name: str = "client_order_id", *, required: bool = False) -> str:
    value = _text(body, name, required=required)
    if value is None:
        return str(uuid.uuid4())
    if len(value) > MAX_CLIENT_ORDER_ID:
        raise errors.bad_request(f"{name} is longer than {MAX_CLIENT_ORDER_ID} characters")
    return value


def require_object(body: Any, what: str = "the request body") -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise errors.bad_request(f"{what} must be a JSON object")
    return body


def create_params(body: Any) -> OrderParams:
    body = require_object(body)
    time_in_force = _text(body, "time_in_force", required=False) or TimeInForce.GOOD_TILL_CANCELED.value
    try:
        tif = TimeInForce(time_in_force)
    except ValueError:
        known = ", ".join(t.value for t in TimeInForce)
        raise errors.bad_request(f"time_in_force must be one of {known}, got {time_in_force!r}") from None
    stp = _text(body, "self_trade_prevention_type", required=False) or "taker_at_cross"
    if stp not in SELF_TRADE_PREVENTION:
        raise errors.bad_request(
            f"self_trade_prevention_type must be one of {', '.join(SELF_TRADE_PREVENTION)}, got {stp!r}"
        )
    if body.get("expiration_time") is not None or body.get("expiration_ts") is not None:
        raise errors.bad_request("expiration_time is not supported by the local exchange; cancel the order instead")
    ticker = _text(body, "ticker")
    assert ticker is not None
    return OrderParams(
        ticker=ticker,
        client_order_id=_client_order_id(body),
        side=_side(body),
        price=_price(body),
        count=_count(body),
        time_in_force=tif,
        post_only=_flag(body, "post_only"),
        reduce_only=_flag(body, "reduce_only"),
        self_trade_prevention=stp,
    )


def amend_params(body: Any) -> AmendParams:
    body = require_object(body)
    ticker = _text(body, "ticker")
    client_order_id = _client_order_id(body, required=True)
    assert ticker is not None
    return AmendParams(
        ticker=ticker,
        side=_side(body),
        price=_price(body),
        count=_count(body),
        client_order_id=client_order_id,
        updated_client_order_id=_client_order_id(body, "updated_client_order_id", required=True),
    )
