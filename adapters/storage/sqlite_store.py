"""The embedded storage adapters: recordings and the model registry in one SQLite file.

The default when no DATABASE_URL is configured. Each adapter owns one connection on its own
worker thread (:class:`SqliteConnection`); several adapters, or processes, may share a file.
The module-level functions below are what runs on that thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from adapters.storage.event_rows import (
    DELTAS,
    EVENT_TABLES,
    SNAPSHOTS,
    TRADES,
    EncodedBatch,
    decode_events,
    encode_events,
    rejected,
)
from adapters.storage.model_files import delete_model_files
from adapters.storage.model_rows import (
    MODEL_COLUMNS,
    PAPER_TRADED_SQL,
    active_generation_sql,
    bump_generation_sql,
    by_name_and_version,
    changes_active,
    check_promotable,
    checked_keep,
    checked_name,
    checked_status,
    json_object,
    model_record,
    next_version_sql,
    not_found,
    prunable_ids_sql,
    still_prunable_sql,
)
from adapters.storage.session_rows import (
    SESSION_COLUMNS,
    check_end_time,
    check_open,
    checked_ms,
    checked_source,
    checked_tickers,
    resolutions_by_session,
    session_info,
    session_not_found,
)
from adapters.storage.sqlite_connection import SqliteAdapter, read_transaction, write_transaction
from domain.events import MarketEvent
from domain.ports import ModelRecord, PruneResult, SessionInfo

_INSERT_EVENTS = {
    table: f"INSERT INTO {table.name} ({', '.join(table.insert_columns)})"
    f" VALUES ({', '.join('?' * len(table.insert_columns))})"
    for table in EVENT_TABLES
}
_SELECT_EVENTS = {table: table.select_sql("?") for table in EVENT_TABLES}
_SELECT_SESSIONS = f"SELECT {', '.join(SESSION_COLUMNS)} FROM rl_sessions"
_SELECT_MODELS = f"SELECT {', '.join(MODEL_COLUMNS)} FROM rl_models"
_NEXT_VERSION = next_version_sql("?")
_BUMP_GENERATION = bump_generation_sql("?")
_ACTIVE_GENERATION = active_generation_sql("?")
_DELETE_PRUNABLE = f"DELETE FROM rl_models WHERE id = ? AND {still_prunable_sql()} AND NOT {PAPER_TRADED_SQL}"
_IS_PAPER_TRADED = f"SELECT {PAPER_TRADED_SQL} FROM rl_models WHERE id = ?"


def _prunable_ids(one_name: bool) -> str:
    return prunable_ids_sql("?", "?" if one_name else None)


class SqliteOrderbookStore(SqliteAdapter):
    """:class:`~domain.ports.OrderbookStore` in a SQLite file (``":memory:"`` for a private one)."""

    async def start_session(self, tickers: Sequence[str], *, started_ms: int, source: str) -> int:
        tickers_json = orjson.dumps(checked_tickers(tickers)).decode()
        started_ms = checked_ms(started_ms, "started_ms")
        return await self._database.run(_start_session, tickers_json, started_ms, checked_source(source))

    async def end_session(self, session_id: int, *, ended_ms: int) -> None:
        await self._database.run(_end_session, session_id, checked_ms(ended_ms, "ended_ms"))

    async def write_events(self, session_id: int, events: Sequence[MarketEvent]) -> int:
        batch = encode_events(events)
        await self._database.run(_write_events, session_id, batch)
        return batch.size

    async def read_events(self, session_id: int) -> list[MarketEvent]:
        return await self._database.run(_read_events, session_id)

    async def list_sessions(self) -> list[SessionInfo]:
        return await self._database.run(_sessions, None)

    async def get_session(self, session_id: int) -> SessionInfo:
        sessions = await self._database.run(_sessions, session_id)
        if not sessions:
            raise session_not_found(session_id)
        return sessions[0]


def _start_session(connection: sqlite3.Connection, tickers_json: str, started_ms: int, source: str) -> int:
    cursor = connection.execute(
        "INSERT INTO rl_sessions (tickers, source, started_ms) VALUES (?, ?, ?)",
        (tickers_json, source, started_ms),
    )
    return cursor.lastrowid


def _end_session(connection: sqlite3.Connection, session_id: int, ended_ms: int) -> None:
    with write_transaction(connection):
        row = connection.execute(
            "SELECT started_ms, ended_ms FROM rl_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise session_not_found(session_id)
        check_open(session_id, ended_ms=row[1])
        check_end_time(session_id, started_ms=row[0], ended_ms=ended_ms)
        connection.execute("UPDATE rl_sessions SET ended_ms = ? WHERE id = ?", (ended_ms, session_id))


def _write_events(connection: sqlite3.Connection, session_id: int, batch: EncodedBatch) -> None:
    with write_transaction(connection):
        row = connection.execute(
            "SELECT ended_ms, next_ordinal FROM rl_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise session_not_found(session_id)
        check_open(session_id, ended_ms=row[0])
        connection.execute(
            "UPDATE rl_sessions SET next_ordinal = next_ordinal + ?, snapshot_count = snapshot_count + ?,"
            " delta_count = delta_count + ?, trade_count = trade_count + ? WHERE id = ?",
            (batch.size, batch.count(SNAPSHOTS), batch.count(DELTAS), batch.count(TRADES), session_id),
        )
        try:
            for table, rows in batch.rows(session_id, first_ordinal=row[1]).items():
                connection.executemany(_INSERT_EVENTS[table], rows)
        except (sqlite3.IntegrityError, OverflowError) as error:
            raise rejected(session_id, batch.size, error) from error


def _read_events(connection: sqlite3.Connection, session_id: int) -> list[MarketEvent]:
    with read_transaction(connection):
        if connection.execute("SELECT 1 FROM rl_sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise session_not_found(session_id)
        rows = {table: connection.execute(_SELECT_EVENTS[table], (session_id,)) for table in EVENT_TABLES}
        return decode_events(rows)


def _sessions(connection: sqlite3.Connection, session_id: int | None) -> list[SessionInfo]:
    """All sessions, or the one with ``session_id``."""
    one = session_id is not None
    parameters = (session_id,) if one else ()
    with read_transaction(connection):
        sessions = connection.execute(
            f"{_SELECT_SESSIONS} {'WHERE id = ?' if one else ''} ORDER BY id", parameters
        ).fetchall()
        resolutions = resolutions_by_session(
            connection.execute(
                "SELECT session_id, market_ticker, result FROM rl_market_resolutions"
                f" {'WHERE session_id = ?' if one else ''} ORDER BY session_id, ordinal",
                parameters,
            )
        )
    return [session_info(row, orjson.loads(row[1]), resolutions.get(row[0], {})) for row in sessions]


class SqliteModelRegistry(SqliteAdapter):
    """:class:`~domain.ports.ModelRegistry` in a SQLite file (may be the recordings' file)."""

    async def register(
        self,
        name: str,
        *,
        algorithm: str,
        path: str,
        created_ms: int,
        hyperparameters: Mapping[str, Any],
        status: str = "training",
    ) -> ModelRecord:
        return await self._database.run(
            _register,
            checked_name(name, "name"),
            algorithm=checked_name(algorithm, "algorithm"),
            path=checked_name(path, "path"),
            created_ms=checked_ms(created_ms, "created_ms"),
            hyperparameters=json_object(hyperparameters, "hyperparameters"),
            status=checked_status(status),
        )

    async def update(
        self, model_id: int, *, status: str | None = None, metrics: Mapping[str, Any] | None = None
    ) -> ModelRecord:
        return await self._database.run(
            _update,
            model_id,
            status=None if status is None else checked_status(status),
            metrics=None if metrics is None else json_object(metrics, "metrics"),
        )

    async def promote(self, model_id: int) -> ModelRecord:
        return await self._database.run(_update, model_id, status="active", metrics=None)

    async def get(self, model_id: int) -> ModelRecord:
        return await self._database.run(_get_model, model_id)

    async def active(self, name: str) -> ModelRecord | None:
        rows = await self._database.run(_select_models, "WHERE model_name = ? AND status = 'active'", (name,))
        return rows[0] if rows else None

    async def list_models(self, name: str | None = None) -> list[ModelRecord]:
        if name is None:
            return await self._database.run(_select_models, "ORDER BY model_name, version", ())
        return await self._database.run(_select_models, "WHERE model_name = ? ORDER BY version", (name,))

    async def active_generation(self, name: str) -> int:
        return await self._database.run(_active_generation, name)

    async def prune(self, *, keep: int, name: str | None = None) -> PruneResult:
        result = await self._database.run(_prune, checked_keep(keep), name)
        await asyncio.to_thread(delete_model_files, result.deleted)
        return result


def _register(
    connection: sqlite3.Connection,
    name: str,
    *,
    algorithm: str,
    path: str,
    created_ms: int,
    hyperparameters: str,
    status: str,
) -> ModelRecord:
    with write_transaction(connection):  # the write lock also serialises version numbering
        (version,) = connection.execute(_NEXT_VERSION, (name,)).fetchone()
        if status == "active":
            _retire_active(connection, name)
            connection.execute(_BUMP_GENERATION, (name,))
        cursor = connection.execute(
            "INSERT INTO rl_models"
            " (model_name, version, algorithm, status, path, created_ms, hyperparameters)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, version, algorithm, status, path, created_ms, hyperparameters),
        )
        return _get_model(connection, cursor.lastrowid)


def _update(
    connection: sqlite3.Connection, model_id: int, *, status: str | None, metrics: str | None
) -> ModelRecord:
    """``status="active"`` promotes: the version that was active retires in the same transaction."""
    with write_transaction(connection):
        record = _get_model(connection, model_id)
        if status == "active" and record.status != "active":
            check_promotable(record)
            _retire_active(connection, record.name)
        if changes_active(record.status, status):
            connection.execute(_BUMP_GENERATION, (record.name,))
        connection.execute(
            "UPDATE rl_models SET status = COALESCE(?, status), metrics = COALESCE(?, metrics) WHERE id = ?",
            (status, metrics, model_id),
        )
        return _get_model(connection, model_id)


def _retire_active(connection: sqlite3.Connection, name: str) -> None:
    connection.execute(
        "UPDATE rl_models SET status = 'retired' WHERE model_name = ? AND status = 'active'", (name,)
    )


def _get_model(connection: sqlite3.Connection, model_id: int) -> ModelRecord:
    row = connection.execute(f"{_SELECT_MODELS} WHERE id = ?", (model_id,)).fetchone()
    if row is None:
        raise not_found(model_id)
    return model_record(row)


def _select_models(
    connection: sqlite3.Connection, clauses: str, parameters: tuple[Any, ...]
) -> list[ModelRecord]:
    return [model_record(row) for row in connection.execute(f"{_SELECT_MODELS} {clauses}", parameters)]


def _active_generation(connection: sqlite3.Connection, name: str) -> int:
    row = connection.execute(_ACTIVE_GENERATION, (name,)).fetchone()
    return 0 if row is None else row[0]


def _prune(connection: sqlite3.Connection, keep: int, name: str | None) -> PruneResult:
    """Deletes the rows (the write lock held throughout: nothing changes in between); the caller
    deletes the files once they are gone."""
    parameters = (keep,) if name is None else (name, keep)  # in the order the placeholders appear
    with write_transaction(connection):
        ids = [row[0] for row in connection.execute(_prunable_ids(name is not None), parameters)]
        candidates = [_get_model(connection, model_id) for model_id in ids]
        paper = {model_id for model_id in ids if connection.execute(_IS_PAPER_TRADED, (model_id,)).fetchone()[0]}
        connection.executemany(_DELETE_PRUNABLE, [(model_id,) for model_id in ids if model_id not in paper])
    return PruneResult(
        deleted=by_name_and_version(record for record in candidates if record.model_id not in paper),
        paper_traded=by_name_and_version(record for record in candidates if record.model_id in paper),
    )
