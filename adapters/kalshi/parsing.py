"""Kalshi WebSocket frames -> domain events and typed control messages.

One entry point, :func:`parse_frame`, takes a raw frame (``bytes`` or ``str``) and returns

* a domain event (:class:`~domain.events.BookSnapshot`, :class:`~domain.events.BookDelta`,
  :class:`~domain.events.PublicTrade`) for market data,
* a :class:`FillMessage` for one of our own executions (the private ``fill`` channel),
* a small typed control message (:class:`Subscribed`, :class:`Unsubscribed`, :class:`OkReply`,
  :class:`ErrorReply`),
* :class:`UnknownMessage` for a ``type`` it does not know (not an error: the client counts them),

or raises :class:`MalformedMessage`, which names what was wrong and carries the frame.

Both eras of the wire are accepted (see kalshi-protocol.md): the current one (dollar strings in
``*_dollars``, fixed-point counts in ``*_fp``, ``ts_ms``) and the legacy one (integer cents and
integer counts, ``ts`` as RFC 3339 or integer seconds). When both spellings are present the exact
``_dollars``/``_fp`` one wins. Numbers may arrive as JSON numbers instead of strings.

The delta path is the hot path of ingestion: canonical price strings are looked up in a table
built once, count strings are memoised, dispatch is a dict lookup, and events carry no
validators. We never subscribe with ``use_yes_price``, so NO levels are always NO bids.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Callable, Mapping
from typing import Any, Union

import attrs
import orjson

from domain.events import BookDelta, BookSnapshot, Level, PublicTrade
from domain.orders import OrderSide
from domain.values import (
    ONE_DOLLAR,
    FixedPointError,
    Side,
    count_from_contracts,
    format_price,
    parse_count,
    parse_price,
    price_from_cents,
)

PAYLOAD_EXCERPT = 200  # characters of the offending frame kept in an error


class MalformedMessage(ValueError):
    """A frame that cannot be turned into a message: names what was wrong and carries the frame."""

    def __init__(self, reason: str, payload: object = None) -> None:
        self.reason = reason
        self.payload = _excerpt(payload)
        super().__init__(f"{reason}; payload: {self.payload}" if self.payload else reason)


def _excerpt(payload: object) -> str:
    if payload is None:
        return ""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        text = bytes(payload).decode("utf-8", errors="replace")
    elif isinstance(payload, str):
        text = payload
    else:
        try:
            text = orjson.dumps(payload).decode()
        except TypeError:
            text = repr(payload)
    return text if len(text) <= PAYLOAD_EXCERPT else text[:PAYLOAD_EXCERPT] + "..."


# ---------------------------------------------------------------------------------------------
# Control messages
# ---------------------------------------------------------------------------------------------
@attrs.frozen
class Subscribed:
    """One channel of a ``subscribe`` command is live under ``sid``."""

    id: int | None
    channel: str
    sid: int


@attrs.frozen
class Unsubscribed:
    id: int | None
    sid: int | None


@attrs.frozen
class SubscriptionInfo:
    channel: str
    sid: int
    market_tickers: tuple[str, ...] = ()


@attrs.frozen
class OkReply:
    """The reply to ``update_subscription`` (with the markets now covered) or to
    ``list_subscriptions`` (with the live subscriptions)."""

    id: int | None
    sid: int | None = None
    seq: int | None = None
    market_tickers: tuple[str, ...] = ()
    subscriptions: tuple[SubscriptionInfo, ...] = ()


class WsErrorCode(enum.IntEnum):
    """Error codes of Kalshi's WebSocket ``error`` message."""

    UNABLE_TO_PROCESS = 1
    PARAMS_REQUIRED = 2
    CHANNELS_REQUIRED = 3
    SIDS_REQUIRED = 4
    UNKNOWN_COMMAND = 5
    UNKNOWN_SID = 7
    UNKNOWN_CHANNEL = 8
    AUTHENTICATION_REQUIRED = 9
    CHANNEL_ERROR = 10
    INVALID_PARAMETER = 11
    EXACTLY_ONE_SID_REQUIRED = 12
    UNSUPPORTED_ACTION = 13
    MARKET_TICKER_REQUIRED = 14
    ACTION_REQUIRED = 15
    MARKET_NOT_FOUND = 16
    INTERNAL_ERROR = 17
    COMMAND_TIMEOUT = 18
    SUBSCRIPTION_BUFFER_OVERFLOW = 25
    MARKET_LIMIT_EXCEEDED = 26
    TOO_MANY_REQUESTS = 27

    @property
    def needs_resubscribe(self) -> bool:
        """After these the subscription is gone or unreliable: subscribe again."""
        return self in _RESUBSCRIBE_CODES


_RESUBSCRIBE_CODES = frozenset(
    {WsErrorCode.CHANNEL_ERROR, WsErrorCode.INTERNAL_ERROR, WsErrorCode.SUBSCRIPTION_BUFFER_OVERFLOW}
)


@attrs.frozen
class ErrorReply:
    """``{"type":"error","msg":{"code":C,"msg":"text"}}``; codes are :class:`WsErrorCode` values."""

    id: int | None
    code: int
    msg: str


@attrs.frozen
class UnknownMessage:
    """A well-formed frame of a type this parser does not handle (e.g. ``ticker``)."""

    type: str
    payload: Mapping[str, Any]


@attrs.frozen
class FillMessage:
    """One of our own executions from the private ``fill`` channel. ``side`` is the V2 order
    side (see :func:`order_side_for`), ``price`` the YES price. The channel carries no fee:
    whoever books the fill supplies it."""

    trade_id: str  # = the fill_id of GET /portfolio/fills
    order_id: str
    ticker: str
    side: OrderSide
    price: int
    count: int
    is_taker: bool
    ts_ms: int
    post_position: int | None = None  # count units, + YES / - NO, after this fill
    client_order_id: str | None = None
    sid: int | None = None


ControlMessage = Union[Subscribed, Unsubscribed, OkReply, ErrorReply]
ParsedMessage = Union[BookSnapshot, BookDelta, PublicTrade, FillMessage, ControlMessage, UnknownMessage]


# ---------------------------------------------------------------------------------------------
# Exact values, fast
# ---------------------------------------------------------------------------------------------
# Every canonical 4-decimal price string, built once: the wire's common case is one dict hit.
_PRICES: dict[str, int] = {format_price(p): p for p in range(ONE_DOLLAR + 1)}
_COUNTS: dict[str, int] = {}
_MEMO_LIMIT = 1 << 16  # bounded: a hostile stream of distinct strings cannot grow it forever

_SIDES = {"yes": Side.YES, "no": Side.NO}


def _price(value: object) -> int:
    """A dollar price (string or number) in price units. Only strings are memoised: a bool
    must never hit an int key."""
    if value.__class__ is str:
        price = _PRICES.get(value)  # type: ignore[call-overload]
        if price is not None:
            return price
        price = parse_price(value)  # type: ignore[arg-type]
        if len(_PRICES) < ONE_DOLLAR + 1 + _MEMO_LIMIT:
            _PRICES[value] = price  # type: ignore[index]
        return price
    return parse_price(value)  # type: ignore[arg-type]


def _count(value: object) -> int:
    if value.__class__ is str:
        count = _COUNTS.get(value)  # type: ignore[call-overload]
        if count is not None:
            return count
        count = parse_count(value)  # type: ignore[arg-type]
        if len(_COUNTS) >= _MEMO_LIMIT:
            _COUNTS.clear()
        _COUNTS[value] = count  # type: ignore[index]
        return count
    return parse_count(value)  # type: ignore[arg-type]


def _pick_price(msg: Mapping[str, Any], exact: str, legacy: str) -> int:
    value = msg.get(exact)
    if value is not None:
        return _price(value)
    value = msg.get(legacy)
    if value is not None:
        return price_from_cents(value)
    raise FixedPointError(f"missing price: neither {exact!r} nor {legacy!r}")


def _pick_count(msg: Mapping[str, Any], exact: str, legacy: str) -> int:
    value = msg.get(exact)
    if value is not None:
        return _count(value)
    value = msg.get(legacy)
    if value is not None:
        return count_from_contracts(value)
    raise FixedPointError(f"missing count: neither {exact!r} nor {legacy!r}")


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_MS = _dt.timedelta(milliseconds=1)


def rfc3339_to_ms(text: str) -> int:
    """``"2026-06-11T06:31:29.957081Z"`` -> 1781159489957 (floored to the millisecond)."""
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise FixedPointError(f"ts {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise FixedPointError(f"ts {text!r} has no UTC offset")
    return (moment - _EPOCH) // _ONE_MS


def _timestamp_ms(msg: Mapping[str, Any], received_ms: int | None) -> int:
    """``ts_ms`` when present, else derived from ``ts``, else the time the frame was received."""
    value = msg.get("ts_ms")
    if value is not None:
        if value.__class__ is int:
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        if value.__class__ is float and value.is_integer():
            return int(value)
        raise FixedPointError(f"ts_ms must be integer milliseconds, got {value!r}")
    value = msg.get("ts")
    if value is not None:
        if isinstance(value, str):
            return rfc3339_to_ms(value)
        if value.__class__ is int:
            return value * 1000  # integer seconds
        if value.__class__ is float:
            return round(value * 1000)
        raise FixedPointError(f"ts must be RFC 3339 text or Unix seconds, got {value!r}")
    if received_ms is None:
        raise FixedPointError("no ts_ms or ts, and no receive time was given")
    return received_ms


def _optional_int(value: object, what: str) -> int | None:
    if value is None or value.__class__ is int:
        return value  # type: ignore[return-value]
    raise FixedPointError(f"{what} must be an integer, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Message bodies
# ---------------------------------------------------------------------------------------------
_LEVEL_KEYS = {
    Side.YES: ("yes_dollars_fp", "yes_dollars", "yes"),
    Side.NO: ("no_dollars_fp", "no_dollars", "no"),
}


def _levels(msg: Mapping[str, Any], side: Side) -> tuple[Level, ...]:
    exact_fp, exact, legacy = _LEVEL_KEYS[side]
    raw = msg.get(exact_fp)
    if raw is None:
        raw = msg.get(exact)
    legacy_units = raw is None
    if legacy_units:
        raw = msg.get(legacy)
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise FixedPointError(f"{side.name} levels must be a list of [price, count]")
    levels: list[Level] = []
    for entry in raw:
        if not isinstance(entry, list) or len(entry) != 2:
            raise FixedPointError(f"{side.name} level must be [price, count], got {entry!r}")
        if legacy_units:
            level = (price_from_cents(entry[0]), count_from_contracts(entry[1]))
        else:
            level = (_price(entry[0]), _count(entry[1]))
        if level[1] <= 0:
            raise FixedPointError(f"{side.name} level at {entry[0]!r} has count {entry[1]!r} <= 0")
        levels.append(level)
    levels.sort()  # ascending, best bid last; Timsort costs one pass when already sorted
    for below, above in zip(levels, levels[1:]):
        if below[0] == above[0]:
            raise FixedPointError(f"{side.name} side repeats price {format_price(above[0])}")
    return tuple(levels)


def _ticker(msg: Mapping[str, Any]) -> str:
    ticker = msg.get("market_ticker")
    if not isinstance(ticker, str) or not ticker:
        raise FixedPointError("missing market_ticker")
    return ticker


def _snapshot(frame: Mapping[str, Any], msg: Mapping[str, Any], received_ms: int | None) -> BookSnapshot:
    return BookSnapshot(
        _ticker(msg),
        _optional_int(frame.get("seq"), "seq"),
        _timestamp_ms(msg, received_ms),
        _levels(msg, Side.YES),
        _levels(msg, Side.NO),
        _optional_int(frame.get("sid"), "sid"),
    )


def _delta(frame: Mapping[str, Any], msg: Mapping[str, Any], received_ms: int | None) -> BookDelta:
    ticker = msg["market_ticker"]
    side = _SIDES.get(msg.get("side"))  # type: ignore[arg-type]
    if side is None:
        raise FixedPointError(f"side must be 'yes' or 'no', got {msg.get('side')!r}")
    value = msg.get("price_dollars")
    price = _PRICES.get(value) if value.__class__ is str else None  # type: ignore[arg-type]
    if price is None:
        price = _pick_price(msg, "price_dollars", "price")
    value = msg.get("delta_fp")
    delta = _COUNTS.get(value) if value.__class__ is str else None  # type: ignore[arg-type]
    if delta is None:
        delta = _pick_count(msg, "delta_fp", "delta")
    ts_ms = msg.get("ts_ms")
    if ts_ms.__class__ is not int:
        ts_ms = _timestamp_ms(msg, received_ms)
    seq = frame.get("seq")
    sid = frame.get("sid")
    if seq.__class__ is not int or sid.__class__ is not int:
        seq = _optional_int(seq, "seq")
        sid = _optional_int(sid, "sid")
    if ticker.__class__ is not str or not ticker:
        raise FixedPointError("missing market_ticker")
    return BookDelta(ticker, seq, ts_ms, side, price, delta, sid, msg.get("client_order_id"))


def _trade(frame: Mapping[str, Any], msg: Mapping[str, Any], received_ms: int | None) -> PublicTrade:
    taker_side = _SIDES.get(msg.get("taker_side"))  # type: ignore[arg-type]
    if taker_side is None:
        raise FixedPointError(f"taker_side must be 'yes' or 'no', got {msg.get('taker_side')!r}")
    has_yes = msg.get("yes_price_dollars") is not None or msg.get("yes_price") is not None
    has_no = msg.get("no_price_dollars") is not None or msg.get("no_price") is not None
    if has_yes:
        yes_price = _pick_price(msg, "yes_price_dollars", "yes_price")
        if has_no and _pick_price(msg, "no_price_dollars", "no_price") != ONE_DOLLAR - yes_price:
            raise FixedPointError("yes and no trade prices do not add up to $1")
    elif has_no:
        yes_price = ONE_DOLLAR - _pick_price(msg, "no_price_dollars", "no_price")
    else:
        raise FixedPointError("trade has no yes_price_dollars/yes_price/no_price_dollars/no_price")
    trade_id = msg.get("trade_id")
    if not isinstance(trade_id, str) or not trade_id:
        raise FixedPointError("missing trade_id")
    count = _pick_count(msg, "count_fp", "count")
    if count <= 0:
        raise FixedPointError(f"trade count must be positive, got {count}")
    return PublicTrade(
        _ticker(msg),
        _timestamp_ms(msg, received_ms),
        trade_id,
        yes_price,
        count,
        taker_side,
        _optional_int(frame.get("seq"), "seq"),
        _optional_int(frame.get("sid"), "sid"),
    )


# (side, action) of a fill or a V1-style order -> the V2 side on the YES ladder: buying NO is
# selling YES, selling NO is buying YES.
_ORDER_SIDES = {
    ("yes", "buy"): OrderSide.BID,
    ("yes", "sell"): OrderSide.ASK,
    ("no", "buy"): OrderSide.ASK,
    ("no", "sell"): OrderSide.BID,
}


def order_side_for(side: object, action: object) -> OrderSide:
    """Kalshi's ``side`` (yes/no) and ``action`` (buy/sell) as a V2 order side (bid/ask)."""
    found = _ORDER_SIDES.get((side, action))  # type: ignore[arg-type]
    if found is None:
        raise FixedPointError(f"side/action must be yes|no and buy|sell, got {side!r}/{action!r}")
    return found


def yes_price_of(msg: Mapping[str, Any]) -> int:
    """The YES price of an execution from ``yes_price_dollars`` and/or ``no_price_dollars``
    (checked to add up to $1 when both are there)."""
    yes, no = msg.get("yes_price_dollars"), msg.get("no_price_dollars")
    if yes is not None:
        price = _price(yes)
        if no is not None and _price(no) != ONE_DOLLAR - price:
            raise FixedPointError(f"yes price {yes!r} and no price {no!r} do not add up to $1")
        return price
    if no is not None:
        return ONE_DOLLAR - _price(no)
    raise FixedPointError("missing yes_price_dollars and no_price_dollars")


def _text(msg: Mapping[str, Any], key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise FixedPointError(f"missing {key}")
    return value


def _fill(frame: Mapping[str, Any], msg: Mapping[str, Any], received_ms: int | None) -> FillMessage:
    is_taker = msg.get("is_taker")
    if not isinstance(is_taker, bool):
        raise FixedPointError(f"is_taker must be true or false, got {is_taker!r}")
    count = _count(msg["count_fp"])
    if count <= 0:
        raise FixedPointError(f"fill count must be positive, got {count}")
    post_position = msg.get("post_position_fp")
    client_order_id = msg.get("client_order_id")
    return FillMessage(
        _text(msg, "trade_id"),
        _text(msg, "order_id"),
        _ticker(msg),
        order_side_for(msg.get("side"), msg.get("action")),
        yes_price_of(msg),
        count,
        is_taker,
        _timestamp_ms(msg, received_ms),
        None if post_position is None else _count(post_position),
        client_order_id if isinstance(client_order_id, str) and client_order_id else None,
        _optional_int(frame.get("sid"), "sid"),
    )


def _subscribed(frame: Mapping[str, Any], msg: Mapping[str, Any], _received_ms: int | None) -> Subscribed:
    channel = msg.get("channel")
    sid = msg.get("sid")
    if not isinstance(channel, str) or sid.__class__ is not int:
        raise FixedPointError("subscribed needs msg.channel (text) and msg.sid (integer)")
    return Subscribed(_optional_int(frame.get("id"), "id"), channel, sid)


def _unsubscribed(frame: Mapping[str, Any], msg: Mapping[str, Any], _received_ms: int | None) -> Unsubscribed:
    # The sid has been seen both beside the type and inside msg.
    sid = frame.get("sid", msg.get("sid"))
    return Unsubscribed(_optional_int(frame.get("id"), "id"), _optional_int(sid, "sid"))


def _tickers(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise FixedPointError("market_tickers must be a list of strings")
    return tuple(value)


def _ok(frame: Mapping[str, Any], msg: Any, _received_ms: int | None) -> OkReply:
    subscriptions: list[SubscriptionInfo] = []
    tickers: tuple[str, ...] = ()
    # list_subscriptions answers with a list of subscriptions, update_subscription with a dict.
    entries = msg if isinstance(msg, list) else msg.get("subscriptions")
    if isinstance(msg, Mapping):
        tickers = _tickers(msg.get("market_tickers"))
    for entry in entries or ():
        if not isinstance(entry, Mapping):
            raise FixedPointError("a listed subscription must be an object")
        channel, sid = entry.get("channel"), entry.get("sid")
        if not isinstance(channel, str) or sid.__class__ is not int:
            raise FixedPointError("a listed subscription needs channel (text) and sid (integer)")
        subscriptions.append(SubscriptionInfo(channel, sid, _tickers(entry.get("market_tickers"))))
    return OkReply(
        _optional_int(frame.get("id"), "id"),
        _optional_int(frame.get("sid"), "sid"),
        _optional_int(frame.get("seq"), "seq"),
        tickers,
        tuple(subscriptions),
    )


def _error(frame: Mapping[str, Any], msg: Mapping[str, Any], _received_ms: int | None) -> ErrorReply:
    code = msg.get("code")
    if code.__class__ is not int:
        raise FixedPointError(f"error code must be an integer, got {code!r}")
    text = msg.get("msg", "")
    return ErrorReply(_optional_int(frame.get("id"), "id"), code, text if isinstance(text, str) else str(text))


_Body = Callable[[Mapping[str, Any], Any, "int | None"], ParsedMessage]
_PARSERS: dict[str, _Body] = {
    "orderbook_delta": _delta,
    "orderbook_snapshot": _snapshot,
    "trade": _trade,
    "fill": _fill,
    "subscribed": _subscribed,
    "unsubscribed": _unsubscribed,
    "ok": _ok,
    "error": _error,
}
_EMPTY: Mapping[str, Any] = {}
_NEEDS_MSG = frozenset({"orderbook_delta", "orderbook_snapshot", "trade", "fill", "subscribed", "error"})


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def parse_frame(frame: bytes | str, received_ms: int | None = None) -> ParsedMessage:
    """Parse one WebSocket frame. ``received_ms`` is the receive time, used only when the
    message carries no time of its own (snapshots never do; legacy deltas often do not)."""
    try:
        decoded = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"frame is not JSON ({exc})", frame) from None
    return parse_message(decoded, received_ms, frame)


def parse_message(decoded: Any, received_ms: int | None = None, raw: object = None) -> ParsedMessage:
    """Parse an already-decoded frame (a dict). ``raw`` is what an error should quote."""
    try:
        kind = decoded["type"]
        parser = _PARSERS.get(kind)
        if parser is None:
            if not isinstance(kind, str):
                raise MalformedMessage(f"'type' must be text, got {kind!r}", raw or decoded)
            return UnknownMessage(kind, decoded)
        msg = decoded.get("msg")
        if msg is None:
            if kind in _NEEDS_MSG:
                raise MalformedMessage(f"{kind}: missing 'msg'", raw or decoded)
            msg = _EMPTY
        return parser(decoded, msg, received_ms)
    except MalformedMessage:
        raise
    except KeyError as exc:
        kind = decoded.get("type", "frame") if isinstance(decoded, dict) else "frame"
        raise MalformedMessage(f"{kind}: missing field {exc.args[0]!r}", raw or decoded) from None
    except (TypeError, AttributeError) as exc:
        if not isinstance(decoded, dict):
            raise MalformedMessage("frame is not a JSON object", raw or decoded) from None
        raise MalformedMessage(f"{decoded.get('type')}: wrong shape ({exc})", raw or decoded) from None
    except ValueError as exc:  # FixedPointError and friends: the reason is already precise
        raise MalformedMessage(f"{decoded.get('type')}: {exc}", raw or decoded) from None
