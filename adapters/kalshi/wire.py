"""Domain events -> the exact JSON messages Kalshi sends, in the current or the legacy era.

The inverse of :mod:`adapters.kalshi.parsing`: ``parse_frame(encode(snapshot_message(e, ...)))``
gives ``e`` back. The local exchange and the synthetic feed speak through these builders.

* current era (since 2026-03-12): dollar strings with four decimals (``"0.4700"``), fixed-point
  counts with two (``"3.00"``), ``ts_ms`` beside ``ts``.
* legacy era (before): integer cents and integer contracts, RFC 3339 ``ts`` on deltas, integer
  seconds on trades. It cannot express a sub-penny price, a fractional count or a sub-second
  trade time: the builders refuse those with :class:`UnrepresentableOnWire` rather than round.

Snapshots carry no time on the wire (as on Kalshi): the parser takes the receive time instead.
"""

from __future__ import annotations

import datetime as _dt
import functools
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import orjson

from domain.events import BookDelta, BookSnapshot, Level, PublicTrade
from domain.values import ONE_CENT_PRICE, ONE_CONTRACT, ONE_DOLLAR, format_count, format_price

Era = Literal["current", "legacy"]
ERAS: tuple[str, ...] = ("current", "legacy")
Message = dict[str, Any]


class UnrepresentableOnWire(ValueError):
    """A value the chosen era of the wire has no spelling for (e.g. 0.0010 in legacy cents)."""


def encode(message: Message) -> bytes:
    """A message as the bytes of one text frame."""
    return orjson.dumps(message)


def market_id_for(ticker: str) -> str:
    """A stable UUID per ticker, standing in for Kalshi's market id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kalshi-market:{ticker}"))


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------
def _check_era(era: str) -> None:
    if era not in ERAS:
        raise ValueError(f"era must be 'current' or 'legacy', got {era!r}")


def _cents(price: int, what: str) -> int:
    cents, rest = divmod(price, ONE_CENT_PRICE)
    if rest:
        raise UnrepresentableOnWire(
            f"legacy era has integer cents only; {what} {format_price(price)} is sub-penny"
        )
    return cents


def _contracts(count: int, what: str) -> int:
    contracts, rest = divmod(count, ONE_CONTRACT)
    if rest:
        raise UnrepresentableOnWire(
            f"legacy era has whole contracts only; {what} {format_count(count)} is fractional"
        )
    return contracts


def ms_to_rfc3339(ts_ms: int) -> str:
    """1781159489957 -> ``"2026-06-11T06:31:29.957Z"`` (exact to the millisecond)."""
    seconds, millis = divmod(ts_ms, 1000)
    return f"{_rfc3339_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=1024)
def _rfc3339_second(seconds: int) -> str:
    # Deltas come many to a second; formatting a datetime is most of a delta message's cost.
    return f"{_dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc):%Y-%m-%dT%H:%M:%S}"


# A delta message formats a price and a count: a table of every price and a bounded memo of
# counts make that two lookups (formatting costs about a microsecond each).
_PRICE_TEXT = [format_price(price) for price in range(ONE_DOLLAR + 1)]
_COUNT_TEXT: dict[int, str] = {}
_COUNT_MEMO_LIMIT = 1 << 16


def _price_text(price: int) -> str:
    if price.__class__ is int and 0 <= price <= ONE_DOLLAR:
        return _PRICE_TEXT[price]
    return format_price(price)


def _count_text(count: int) -> str:
    if count.__class__ is not int:
        return format_count(count)
    text = _COUNT_TEXT.get(count)
    if text is None:
        if len(_COUNT_TEXT) >= _COUNT_MEMO_LIMIT:
            _COUNT_TEXT.clear()
        text = _COUNT_TEXT[count] = format_count(count)
    return text


def _levels_current(levels: Iterable[Level]) -> list[list[str]]:
    return [[format_price(price), format_count(count)] for price, count in sorted(levels)]


def _levels_legacy(levels: Iterable[Level]) -> list[list[int]]:
    return [[_cents(price, "level price"), _contracts(count, "level count")] for price, count in sorted(levels)]


# ---------------------------------------------------------------------------------------------
# Market data
# ---------------------------------------------------------------------------------------------
def snapshot_message(
    event: BookSnapshot,
    sid: int,
    seq: int,
    era: Era = "current",
    market_id: str | None = None,
) -> Message:
    """``orderbook_snapshot``. Levels ascending (best bid last); an empty side is left out."""
    _check_era(era)
    msg: Message = {"market_ticker": event.ticker}
    if era == "current":
        msg["market_id"] = market_id or market_id_for(event.ticker)
        if event.yes:
            msg["yes_dollars_fp"] = _levels_current(event.yes)
        if event.no:
            msg["no_dollars_fp"] = _levels_current(event.no)
    else:
        if market_id:
            msg["market_id"] = market_id
        if event.yes:
            msg["yes"] = _levels_legacy(event.yes)
        if event.no:
            msg["no"] = _levels_legacy(event.no)
    return {"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg}


def delta_message(
    event: BookDelta,
    sid: int,
    seq: int,
    era: Era = "current",
    market_id: str | None = None,
) -> Message:
    """``orderbook_delta``: a signed size change at one price of one side."""
    _check_era(era)
    side = "yes" if event.side == 0 else "no"
    if era == "current":
        msg: Message = {
            "market_ticker": event.ticker,
            "market_id": market_id or market_id_for(event.ticker),
            "price_dollars": _price_text(event.price),
            "delta_fp": _count_text(event.delta),
            "side": side,
            "ts": ms_to_rfc3339(event.ts_ms),
            "ts_ms": event.ts_ms,
        }
    else:
        msg = {
            "market_ticker": event.ticker,
            "price": _cents(event.price, "delta price"),
            "delta": _contracts(event.delta, "delta count"),
            "side": side,
            "ts": ms_to_rfc3339(event.ts_ms),
        }
        if market_id:
            msg["market_id"] = market_id
    if event.client_order_id is not None:
        msg["client_order_id"] = event.client_order_id
    return {"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": msg}


def trade_message(event: PublicTrade, sid: int, seq: int | None = None, era: Era = "current") -> Message:
    """``trade``. Kalshi's trade messages may lack ``seq``: pass None to leave it out."""
    _check_era(era)
    taker = "yes" if event.taker_side == 0 else "no"
    if era == "current":
        msg: Message = {
            "trade_id": event.trade_id,
            "market_ticker": event.ticker,
            "yes_price_dollars": format_price(event.yes_price),
            "no_price_dollars": format_price(ONE_DOLLAR - event.yes_price),
            "count_fp": format_count(event.count),
            "taker_side": taker,
            "ts": event.ts_ms // 1000,
            "ts_ms": event.ts_ms,
        }
    else:
        seconds, millis = divmod(event.ts_ms, 1000)
        if millis:
            raise UnrepresentableOnWire(
                f"legacy trades carry whole seconds only; ts_ms {event.ts_ms} has {millis} ms"
            )
        msg = {
            "trade_id": event.trade_id,
            "market_ticker": event.ticker,
            "yes_price": _cents(event.yes_price, "trade price"),
            "no_price": _cents(ONE_DOLLAR - event.yes_price, "trade price"),
            "count": _contracts(event.count, "trade count"),
            "taker_side": taker,
            "ts": seconds,
        }
    message: Message = {"type": "trade", "sid": sid}
    if seq is not None:
        message["seq"] = seq
    message["msg"] = msg
    return message


# ---------------------------------------------------------------------------------------------
# Control
# ---------------------------------------------------------------------------------------------
def subscribed_message(command_id: int | None, channel: str, sid: int) -> Message:
    """The acknowledgement of one channel of a ``subscribe`` command."""
    return {"type": "subscribed", "id": command_id, "msg": {"channel": channel, "sid": sid}}


def unsubscribed_message(command_id: int | None, sid: int) -> Message:
    return {"type": "unsubscribed", "id": command_id, "sid": sid}


def ok_message(
    command_id: int | None, sid: int | None = None, seq: int | None = None, market_tickers: Sequence[str] = ()
) -> Message:
    """The reply to ``update_subscription``: the markets the subscription now covers."""
    message: Message = {"type": "ok", "id": command_id}
    if sid is not None:
        message["sid"] = sid
    if seq is not None:
        message["seq"] = seq
    message["msg"] = {"market_tickers": list(market_tickers)}
    return message


def list_subscriptions_message(command_id: int | None, subscriptions: Iterable[tuple[str, int]]) -> Message:
    """The reply to ``list_subscriptions``: (channel, sid) pairs."""
    return {
        "type": "ok",
        "id": command_id,
        "msg": [{"channel": channel, "sid": sid} for channel, sid in subscriptions],
    }


def error_message(command_id: int | None, code: int, text: str) -> Message:
    """``{"id":N,"type":"error","msg":{"code":C,"msg":"text"}}``; codes in :class:`WsErrorCode`."""
    return {"type": "error", "id": command_id, "msg": {"code": int(code), "msg": text}}
