"""Kalshi REST trading bodies: domain requests -> JSON, JSON replies -> domain orders and fills.

Requests are written exactly as Kalshi's V2 order endpoints want them: prices as dollar strings
with four decimals, counts as fixed-point strings with two (numbers get HTTP 400). Replies are
read tolerantly (kalshi-protocol.md: "parse tolerantly and ignore unknown fields"): an order may
name its side as V2 ``bid``/``ask`` or V1 ``side`` + ``action``, its price ``price`` or
``yes_price_dollars``/``no_price_dollars``; every value is held exactly (never a float).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from adapters.kalshi.parsing import order_side_for, rfc3339_to_ms, yes_price_of
from domain.orders import Fill, Order, OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.ports import MarketInfo
from domain.values import (
    MONEY_DECIMALS,
    MONEY_PER_CENT,
    FixedPointError,
    format_count,
    format_price,
    parse_count,
    parse_fixed,
    parse_price,
    Side,
)

SELF_TRADE_PREVENTION = ("taker_at_cross", "maker")

_STATUSES = {
    "resting": OrderStatus.RESTING,
    "open": OrderStatus.RESTING,
    "pending": OrderStatus.PENDING,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "executed": OrderStatus.EXECUTED,
    "filled": OrderStatus.EXECUTED,
    "rejected": OrderStatus.REJECTED,
}
_V2_SIDES = {"bid": OrderSide.BID, "ask": OrderSide.ASK}


class UnreadableReply(ValueError):
    """A reply from the exchange that does not say what it must (an order without an id...)."""


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------
def order_body(request: OrderRequest, self_trade_prevention: str = "taker_at_cross") -> dict[str, Any]:
    """``POST /portfolio/events/orders`` (and each order of a batch)."""
    body: dict[str, Any] = {
        "ticker": request.ticker,
        "client_order_id": request.client_order_id,
        "side": request.side.value,
        "count": format_count(request.count),
        "price": format_price(request.price),
        "time_in_force": request.time_in_force.value,
        "self_trade_prevention_type": self_trade_prevention,
    }
    if request.post_only:
        body["post_only"] = True
    if request.reduce_only:
        body["reduce_only"] = True
    return body


def amend_body(order: Order, *, price: int, count: int, client_order_id: str) -> dict[str, Any]:
    """``POST /portfolio/events/orders/{id}/amend``: ``count`` is the new total (filled + resting)."""
    return {
        "ticker": order.ticker,
        "side": order.side.value,
        "price": format_price(price),
        "count": format_count(count),
        "client_order_id": order.client_order_id,
        "updated_client_order_id": client_order_id,
    }


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------
def _first(item: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = item.get(key)
        if value is not None:
            return value
    return None


def _required_text(item: Mapping[str, Any], *keys: str) -> str:
    value = _first(item, *keys)
    if not isinstance(value, str) or not value:
        raise UnreadableReply(f"missing {' / '.join(keys)} in {_excerpt(item)}")
    return value


def _count_of(item: Mapping[str, Any], *keys: str) -> int | None:
    value = _first(item, *keys)
    return None if value is None else parse_count(value)


def money(value: object, what: str) -> int:
    """A dollar amount ("0.0175", "12.34") in micro-dollars, exactly."""
    if value is None:
        raise UnreadableReply(f"missing {what}")
    return parse_fixed(value, MONEY_DECIMALS, what=what)  # type: ignore[arg-type]


def timestamp_ms(item: Mapping[str, Any], *, default: int | None = None) -> int:
    """``ts_ms``, else ``ts`` (Unix seconds or RFC 3339), else ``created_time``."""
    value = _first(item, "ts_ms", "created_ts_ms")
    if value is not None:
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if value.__class__ is int:
            return value
        raise FixedPointError(f"ts_ms must be integer milliseconds, got {value!r}")
    value = _first(item, "ts", "created_time")
    if value.__class__ is int:
        return value * 1000
    if isinstance(value, str) and value:
        return int(value) * 1000 if value.isdigit() else rfc3339_to_ms(value)
    if default is not None:
        return default
    raise UnreadableReply(f"no ts_ms, ts or created_time in {_excerpt(item)}")


def _side(item: Mapping[str, Any]) -> OrderSide:
    side = item.get("side")
    found = _V2_SIDES.get(side)  # type: ignore[arg-type]
    return found if found is not None else order_side_for(side, item.get("action"))


def _order_price(item: Mapping[str, Any]) -> int:
    value = _first(item, "price", "price_dollars")
    return parse_price(value) if value is not None else yes_price_of(item)


def _excerpt(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 200 else text[:200] + "..."


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------
def order_from_create_reply(request: OrderRequest, reply: Mapping[str, Any], *, now_ms: int) -> Order:
    """The order a create (or one item of a batched create) placed, from its 201 reply
    ``{"order_id","client_order_id","fill_count","remaining_count",...,"ts_ms"}``."""
    data = reply.get("order") if isinstance(reply.get("order"), Mapping) else reply
    order_id = _required_text(data, "order_id")
    filled = _count_of(data, "fill_count", "fill_count_fp") or 0
    remaining = _count_of(data, "remaining_count", "remaining_count_fp")
    status = _STATUSES.get(data.get("status"))  # type: ignore[arg-type]
    if status is None:
        if filled >= request.count:
            status = OrderStatus.EXECUTED
        elif remaining == 0 or request.time_in_force is not TimeInForce.GOOD_TILL_CANCELED:
            status = OrderStatus.CANCELED  # what did not cross was not kept
        else:
            status = OrderStatus.RESTING
    return Order(
        order_id,
        request.client_order_id,
        request.ticker,
        request.side,
        request.price,
        request.count,
        timestamp_ms(data, default=now_ms),
        request.time_in_force,
        filled=filled,
        status=status,
    )


def order_from_wire(item: Mapping[str, Any]) -> Order:
    """An order object of ``GET /portfolio/orders`` (and ``/orders/{id}``, amend replies)."""
    filled = _count_of(item, "fill_count_fp", "fill_count") or 0
    remaining = _count_of(item, "remaining_count_fp", "remaining_count")
    count = _count_of(item, "initial_count_fp", "initial_count", "count_fp", "count")
    if count is None:
        if remaining is None:
            raise UnreadableReply(f"order without a count: {_excerpt(item)}")
        count = filled + remaining
    status_text = item.get("status")
    status = _STATUSES.get(status_text)  # type: ignore[arg-type]
    if status is None:
        raise UnreadableReply(f"order status {status_text!r} is not one Kalshi uses: {_excerpt(item)}")
    time_in_force = item.get("time_in_force")
    try:
        tif = TimeInForce(time_in_force) if time_in_force else TimeInForce.GOOD_TILL_CANCELED
    except ValueError:
        tif = TimeInForce.GOOD_TILL_CANCELED
    return Order(
        _required_text(item, "order_id"),
        item.get("client_order_id") or "",
        _required_text(item, "ticker", "market_ticker"),
        _side(item),
        _order_price(item),
        count,
        timestamp_ms(item, default=0),
        tif,
        filled=filled,
        status=status,
    )


def fill_from_wire(item: Mapping[str, Any]) -> Fill:
    """A fill of ``GET /portfolio/fills``, with the fee the exchange charged (``fee_cost``)."""
    count = parse_count(_first(item, "count_fp", "count"))
    if count <= 0:
        raise UnreadableReply(f"fill count must be positive: {_excerpt(item)}")
    return Fill(
        _required_text(item, "fill_id", "trade_id"),
        _required_text(item, "order_id"),
        _required_text(item, "ticker", "market_ticker"),
        _side(item),
        yes_price_of(item),
        count,
        money(item.get("fee_cost"), "fee_cost"),
        bool(item.get("is_taker")),
        timestamp_ms(item),
    )


def positions_from_wire(items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``market_positions`` -> {ticker: signed count units}, flat markets left out."""
    positions: dict[str, int] = {}
    for item in items:
        position = _count_of(item, "position_fp", "position")
        if position:
            positions[_required_text(item, "ticker", "market_ticker")] = position
    return positions


def balance_from_wire(body: Mapping[str, Any]) -> int:
    """``GET /portfolio/balance`` in micro-dollars: ``balance_dollars`` when given, else
    ``balance`` (integer cents)."""
    dollars = body.get("balance_dollars")
    if dollars is not None:
        return money(dollars, "balance_dollars")
    cents = body.get("balance")
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise UnreadableReply(f"balance must be integer cents, got {cents!r}")
    return cents * MONEY_PER_CENT


def reduced_by(reply: Mapping[str, Any]) -> int | None:
    """What a cancel took off the book (count units), when the reply says."""
    data = reply.get("order") if isinstance(reply.get("order"), Mapping) and "reduced_by" not in reply else reply
    return _count_of(data, "reduced_by", "reduced_by_fp")


_RESULTS = {"yes": Side.YES, "no": Side.NO}


def market_from_wire(item: Mapping[str, Any]) -> MarketInfo:
    """The ``market`` object of ``GET /markets/{ticker}``: its close time (``close_time``, RFC 3339),
    expiration (``expiration_time``, else ``latest_expiration_time``), status, and ``result``
    (``yes``/``no`` once determined; empty before, and for a voided market)."""
    ticker = _required_text(item, "ticker", "market_ticker")
    close = item.get("close_time")
    if not isinstance(close, str) or not close:
        raise UnreadableReply(f"market {ticker} without a close_time: {_excerpt(item)}")
    expiration = _first(item, "expiration_time", "latest_expiration_time")
    return MarketInfo(
        ticker=ticker,
        close_ms=rfc3339_to_ms(close),
        expiration_ms=rfc3339_to_ms(expiration) if isinstance(expiration, str) and expiration else None,
        status=str(item.get("status") or ""),
        result=_RESULTS.get(str(item.get("result") or "").lower()),
    )
