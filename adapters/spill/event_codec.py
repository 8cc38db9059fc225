"""Market events <-> one line of JSON each, for the spill file.

A line is a JSON array led by a one-letter tag, with the event's fields in domain units:

* ``["S", ticker, seq, ts_ms, yes_levels, no_levels, sid]``
* ``["D", ticker, seq, ts_ms, side, price, delta, sid, client_order_id]``
* ``["T", ticker, ts_ms, trade_id, yes_price, count, taker_side, seq, sid]``
* ``["R", ticker, ts_ms, result]``

Sides are the ints of :class:`~domain.values.Side`. Decoding checks every field's type, so a
damaged file is refused with the reason instead of replayed into a recording.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.events import BookDelta, BookSnapshot, Level, MarketEvent, MarketResolved, PublicTrade
from domain.values import Side


class SpillDecodeError(ValueError):
    """A spill line that is not an encoded market event."""


def encode_event(event: MarketEvent) -> bytes:
    """One line (with its newline)."""
    kind = event.__class__
    if kind is BookDelta:
        fields: list[Any] = [
            "D", event.ticker, event.seq, event.ts_ms, int(event.side), event.price, event.delta,
            event.sid, event.client_order_id,
        ]  # fmt: skip
    elif kind is BookSnapshot:
        fields = ["S", event.ticker, event.seq, event.ts_ms, event.yes, event.no, event.sid]
    elif kind is PublicTrade:
        fields = [
            "T", event.ticker, event.ts_ms, event.trade_id, event.yes_price, event.count,
            int(event.taker_side), event.seq, event.sid,
        ]  # fmt: skip
    elif kind is MarketResolved:
        fields = ["R", event.ticker, event.ts_ms, int(event.result)]
    else:
        raise TypeError(f"not a market event: {event!r}")
    return orjson.dumps(fields) + b"\n"


def decode_event(line: bytes | str) -> MarketEvent:
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise SpillDecodeError(f"not JSON ({error})") from None
    if not isinstance(fields, list) or not fields:
        raise SpillDecodeError("not a tagged array")
    decode = _DECODERS.get(fields[0])
    if decode is None:
        raise SpillDecodeError(f"unknown tag {fields[0]!r}")
    arity = _ARITY[fields[0]]
    if len(fields) != arity:
        raise SpillDecodeError(f"tag {fields[0]!r} needs {arity} fields, got {len(fields)}")
    return decode(fields)


def _int(value: Any, what: str) -> int:
    if value.__class__ is not int:
        raise SpillDecodeError(f"{what} must be an integer, got {value!r}")
    return value


def _optional_int(value: Any, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpillDecodeError(f"{what} must be non-empty text, got {value!r}")
    return value


def _side(value: Any, what: str) -> Side:
    try:
        return Side(_int(value, what))
    except ValueError:
        raise SpillDecodeError(f"{what} must be 0 (YES) or 1 (NO), got {value!r}") from None


def _levels(value: Any, what: str) -> tuple[Level, ...]:
    if not isinstance(value, list):
        raise SpillDecodeError(f"{what} must be a list of [price, count]")
    levels = []
    for level in value:
        if not isinstance(level, list) or len(level) != 2:
            raise SpillDecodeError(f"{what} level must be [price, count], got {level!r}")
        levels.append((_int(level[0], f"{what} price"), _int(level[1], f"{what} count")))
    return tuple(levels)


def _snapshot(f: list[Any]) -> BookSnapshot:
    return BookSnapshot(
        _text(f[1], "ticker"), _optional_int(f[2], "seq"), _int(f[3], "ts_ms"),
        _levels(f[4], "yes"), _levels(f[5], "no"), _optional_int(f[6], "sid"),
    )  # fmt: skip


def _delta(f: list[Any]) -> BookDelta:
    client_order_id = f[8]
    if client_order_id is not None and not isinstance(client_order_id, str):
        raise SpillDecodeError(f"client_order_id must be text or null, got {client_order_id!r}")
    return BookDelta(
        _text(f[1], "ticker"), _optional_int(f[2], "seq"), _int(f[3], "ts_ms"), _side(f[4], "side"),
        _int(f[5], "price"), _int(f[6], "delta"), _optional_int(f[7], "sid"), client_order_id,
    )  # fmt: skip


def _trade(f: list[Any]) -> PublicTrade:
    return PublicTrade(
        _text(f[1], "ticker"), _int(f[2], "ts_ms"), _text(f[3], "trade_id"), _int(f[4], "yes_price"),
        _int(f[5], "count"), _side(f[6], "taker_side"), _optional_int(f[7], "seq"), _optional_int(f[8], "sid"),
    )  # fmt: skip


def _resolution(f: list[Any]) -> MarketResolved:
    return MarketResolved(_text(f[1], "ticker"), _int(f[2], "ts_ms"), _side(f[3], "result"))


_DECODERS = {"S": _snapshot, "D": _delta, "T": _trade, "R": _resolution}
_ARITY = {"S": 7, "D": 9, "T": 9, "R": 4}
