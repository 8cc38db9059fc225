"""Market events <-> table rows, shared by the SQLite and PostgreSQL stores.

Each event type has one table. A row is ``(session_id, ordinal, *columns)``; the ordinal is the
event's position in its session across all four tables, so merging the tables by ordinal gives
back exactly the sequence that was written. Values are domain units unchanged (see the migration
files); book levels are JSON text ``[[price, count], ...]``, which PostgreSQL stores as JSONB.

The stores build their SQL from the column lists here, so a column exists in one place only.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import attrs
import orjson

from domain.events import BookDelta, BookSnapshot, Level, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.values import ONE_DOLLAR, Side

Row = Sequence[Any]

_SIDE_NAMES = {Side.YES: "yes", Side.NO: "no"}


@attrs.frozen
class EventTable:
    """Where one event type lives. ``decode`` takes ``(ordinal, *read_columns)``."""

    name: str
    event_type: type
    columns: tuple[str, ...]  # written after (session_id, ordinal)
    read_columns: tuple[str, ...]  # what decoding needs (derived columns are write-only)
    encode: Callable[[Any], tuple[Any, ...]] = attrs.field(repr=False)
    decode: Callable[[Row], MarketEvent] = attrs.field(repr=False)

    valid_types: frozenset[tuple[type, ...]] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Every combination of column types a correct event encodes to: checking an event is
        # then one set lookup (a batch of deltas checks thousands of them per second).
        per_column = [_COLUMN_TYPES[column] for column in self.columns]
        object.__setattr__(self, "valid_types", frozenset(itertools.product(*per_column)))

    def checked(self, event: Any) -> tuple[Any, ...]:
        """The event's column values, refusing a float, a bool or a stray type where an int or a
        string belongs: asyncpg would truncate 6.5 to 6 without a word."""
        values = self.encode(event)
        if tuple(map(type, values)) not in self.valid_types:
            # Some column's type is not among its own: name the first such column.
            column, value = next(
                (column, value)
                for column, value in zip(self.columns, values, strict=True)
                if type(value) not in _COLUMN_TYPES[column]
            )
            expected = _COLUMN_TYPES[column]
            names = " or ".join("None" if kind is type(None) else kind.__name__ for kind in expected)
            raise ValueError(f"{column} must be {names}, got {value!r}")
        return values

    @property
    def insert_columns(self) -> tuple[str, ...]:
        return ("session_id", "ordinal", *self.columns)

    def select_sql(self, session_parameter: str) -> str:
        """Reads one session's rows, ordered for :func:`decode_events`."""
        return (
            f"SELECT ordinal, {', '.join(self.read_columns)} FROM {self.name}"
            f" WHERE session_id = {session_parameter} ORDER BY ordinal"
        )


# ---------------------------------------------------------------------------------------------
# Encoding: each returns the values of ``columns``, in order
# ---------------------------------------------------------------------------------------------
def _encode_snapshot(event: BookSnapshot) -> tuple[Any, ...]:
    yes_json, no_json = _levels_json(event.yes, "yes"), _levels_json(event.no, "no")
    # Bids ascend, so the best is the last; a YES ask is what a NO bid pays for the other side.
    best_yes_bid = event.yes[-1][0] if event.yes else None
    best_yes_ask = ONE_DOLLAR - event.no[-1][0] if event.no else None
    both = best_yes_bid is not None and best_yes_ask is not None
    spread = best_yes_ask - best_yes_bid if both else None
    return (event.ticker, event.ts_ms, event.seq, event.sid, yes_json, no_json, best_yes_bid, best_yes_ask, spread)


def _encode_delta(event: BookDelta) -> tuple[Any, ...]:
    return (
        event.ticker,
        event.ts_ms,
        event.seq,
        event.sid,
        _side_name(event.side, "side"),
        event.price,
        event.delta,
        event.client_order_id,
    )


def _encode_trade(event: PublicTrade) -> tuple[Any, ...]:
    return (
        event.ticker,
        event.ts_ms,
        event.seq,
        event.sid,
        event.trade_id,
        event.yes_price,
        event.count,
        _side_name(event.taker_side, "taker_side"),
    )


def _encode_resolution(event: MarketResolved) -> tuple[Any, ...]:
    return (event.ticker, event.ts_ms, _side_name(event.result, "result"))


def _encode_schedule(event: MarketScheduled) -> tuple[Any, ...]:
    return (event.ticker, event.ts_ms, event.close_ms, event.expiration_ms)


def _levels_json(levels: Sequence[Level], side: str) -> str:
    # JSON would keep a float price as a float; refuse it here rather than replay it later.
    for level in levels:
        if len(level) != 2 or not all(type(number) is int for number in level):
            raise ValueError(f"{side} level {level!r} is not a (price, count) pair of ints")
        if not 0 <= level[0] <= ONE_DOLLAR:
            raise ValueError(f"{side} level {level!r}: price is outside 0..{ONE_DOLLAR} price units")
    return orjson.dumps(levels).decode()


def _side_name(side: Side, what: str) -> str:
    if type(side) is not Side:
        raise ValueError(f"{what} must be a Side, got {side!r}")
    return _SIDE_NAMES[side]


# ---------------------------------------------------------------------------------------------
# Decoding: rows are (ordinal, *read_columns)
# ---------------------------------------------------------------------------------------------
def _decode_snapshot(row: Row) -> BookSnapshot:
    _, ticker, ts_ms, seq, sid, yes, no = row
    return BookSnapshot(ticker=ticker, seq=seq, ts_ms=ts_ms, yes=_levels(yes), no=_levels(no), sid=sid)


def _decode_delta(row: Row) -> BookDelta:
    _, ticker, ts_ms, seq, sid, side, price, delta, client_order_id = row
    return BookDelta(
        ticker=ticker,
        seq=seq,
        ts_ms=ts_ms,
        side=Side.parse(side),
        price=price,
        delta=delta,
        sid=sid,
        client_order_id=client_order_id,
    )


def _decode_trade(row: Row) -> PublicTrade:
    _, ticker, ts_ms, seq, sid, trade_id, yes_price, count, taker_side = row
    return PublicTrade(
        ticker=ticker,
        ts_ms=ts_ms,
        trade_id=trade_id,
        yes_price=yes_price,
        count=count,
        taker_side=Side.parse(taker_side),
        seq=seq,
        sid=sid,
    )


def _decode_resolution(row: Row) -> MarketResolved:
    _, ticker, ts_ms, result = row
    return MarketResolved(ticker=ticker, ts_ms=ts_ms, result=Side.parse(result))


def _decode_schedule(row: Row) -> MarketScheduled:
    _, ticker, ts_ms, close_ms, expiration_ms = row
    return MarketScheduled(ticker=ticker, ts_ms=ts_ms, close_ms=close_ms, expiration_ms=expiration_ms)


def _levels(text: str) -> tuple[Level, ...]:
    return tuple((price, count) for price, count in orjson.loads(text))


_HEADER = ("market_ticker", "timestamp_ms", "sequence_number", "sid")

# The exact Python types each column accepts (``type(value) in ...``: no bool, no numpy scalars).
# The JSON, side and derived columns are the encoders' own output, listed for completeness.
_INT, _OPTIONAL_INT = (int,), (int, type(None))
_TEXT, _OPTIONAL_TEXT = (str,), (str, type(None))
_COLUMN_TYPES: dict[str, tuple[type, ...]] = {
    "market_ticker": _TEXT,
    "timestamp_ms": _INT,
    "sequence_number": _OPTIONAL_INT,
    "sid": _OPTIONAL_INT,
    "price": _INT,
    "delta": _INT,
    "client_order_id": _OPTIONAL_TEXT,
    "trade_id": _TEXT,
    "yes_price": _INT,
    "count": _INT,
    "close_ms": _INT,
    "expiration_ms": _OPTIONAL_INT,
    # Written by the encoders.
    "side": _TEXT,
    "taker_side": _TEXT,
    "result": _TEXT,
    "yes_bids": _TEXT,
    "no_bids": _TEXT,
    "best_yes_bid": _OPTIONAL_INT,
    "best_yes_ask": _OPTIONAL_INT,
    "yes_spread": _OPTIONAL_INT,
}

SNAPSHOTS = EventTable(
    name="rl_orderbook_snapshots",
    event_type=BookSnapshot,
    columns=(*_HEADER, "yes_bids", "no_bids", "best_yes_bid", "best_yes_ask", "yes_spread"),
    read_columns=(*_HEADER, "yes_bids", "no_bids"),
    encode=_encode_snapshot,
    decode=_decode_snapshot,
)
DELTAS = EventTable(
    name="rl_orderbook_deltas",
    event_type=BookDelta,
    columns=(*_HEADER, "side", "price", "delta", "client_order_id"),
    read_columns=(*_HEADER, "side", "price", "delta", "client_order_id"),
    encode=_encode_delta,
    decode=_decode_delta,
)
TRADES = EventTable(
    name="rl_public_trades",
    event_type=PublicTrade,
    columns=(*_HEADER, "trade_id", "yes_price", "count", "taker_side"),
    read_columns=(*_HEADER, "trade_id", "yes_price", "count", "taker_side"),
    encode=_encode_trade,
    decode=_decode_trade,
)
RESOLUTIONS = EventTable(
    name="rl_market_resolutions",
    event_type=MarketResolved,
    columns=("market_ticker", "timestamp_ms", "result"),
    read_columns=("market_ticker", "timestamp_ms", "result"),
    encode=_encode_resolution,
    decode=_decode_resolution,
)

SCHEDULES = EventTable(
    name="rl_market_schedules",
    event_type=MarketScheduled,
    columns=("market_ticker", "timestamp_ms", "close_ms", "expiration_ms"),
    read_columns=("market_ticker", "timestamp_ms", "close_ms", "expiration_ms"),
    encode=_encode_schedule,
    decode=_decode_schedule,
)

EVENT_TABLES = (SNAPSHOTS, DELTAS, TRADES, RESOLUTIONS, SCHEDULES)
_TABLE_OF = {table.event_type: table for table in EVENT_TABLES}


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------
@attrs.frozen
class EncodedBatch:
    """A batch of events as column values, grouped by table, each with its offset in the batch."""

    size: int
    values: Mapping[EventTable, list[tuple[int, tuple[Any, ...]]]]

    def count(self, table: EventTable) -> int:
        return len(self.values.get(table, ()))

    def rows(self, session_id: int, first_ordinal: int) -> dict[EventTable, list[tuple[Any, ...]]]:
        """Full rows, numbered from ``first_ordinal`` in batch order."""
        return {
            table: [(session_id, first_ordinal + offset, *columns) for offset, columns in entries]
            for table, entries in self.values.items()
        }


def rejected(session_id: int, size: int, error: Exception) -> ValueError:
    """The database refused a row (a CHECK, a type): the batch's transaction wrote nothing."""
    return ValueError(
        f"session {session_id}: the database refused a batch of {size} events, none was written: {error}"
    )


def encode_events(events: Sequence[MarketEvent]) -> EncodedBatch:
    """Encodes a whole batch up front, so a bad event is refused before anything is written."""
    grouped: dict[EventTable, list[tuple[int, tuple[Any, ...]]]] = {}
    for offset, event in enumerate(events):
        table = _TABLE_OF.get(type(event))
        if table is None:
            raise TypeError(f"event {offset} of the batch is a {type(event).__name__}, not a market event")
        try:
            columns = table.checked(event)
        except (ValueError, TypeError) as error:
            raise type(error)(f"event {offset} of the batch ({event!r}): {error}") from None
        grouped.setdefault(table, []).append((offset, columns))
    return EncodedBatch(size=len(events), values=grouped)


def decode_events(rows_by_table: Mapping[EventTable, Iterable[Row]]) -> list[MarketEvent]:
    """Merges rows of ``(ordinal, *read_columns)``, each table's sorted by ordinal, into events."""
    streams = [_decoded(table, rows) for table, rows in rows_by_table.items()]
    return [event for _, event in heapq.merge(*streams, key=itemgetter(0))]


def _decoded(table: EventTable, rows: Iterable[Row]) -> Iterable[tuple[int, MarketEvent]]:
    return ((row[0], table.decode(row)) for row in rows)
