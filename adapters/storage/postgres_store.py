"""The PostgreSQL storage adapters: recordings and the model registry, over an asyncpg pool.

Event batches go in with COPY (``copy_records_to_table``) inside the transaction that reserves
their ordinals, so a batch is all or nothing. Pass ``schema`` to keep every table in a schema
of its own (tests do, to isolate themselves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from adapters.storage.event_rows import (
    DELTAS,
    EVENT_TABLES,
    SNAPSHOTS,
    TRADES,
    decode_events,
    encode_events,
    rejected,
)
from adapters.storage.model_rows import (
    MODEL_COLUMNS,
    check_promotable,
    checked_name,
    checked_status,
    json_object,
    model_record,
    not_found,
)
from adapters.storage.postgres_pool import PostgresPool
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
from domain.events import MarketEvent
from domain.ports import ModelRecord, SessionInfo

_SELECT_EVENTS = {table: table.select_sql("$1") for table in EVENT_TABLES}
_SELECT_SESSIONS = f"SELECT {', '.join(SESSION_COLUMNS)} FROM rl_sessions"
_SELECT_MODELS = f"SELECT {', '.join(MODEL_COLUMNS)} FROM rl_models"

# What a refused COPY row raises: a CHECK or NOT NULL, or a value asyncpg cannot encode.
_REFUSED_ROW = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError, OverflowError)


class PostgresOrderbookStore:
    """:class:`~domain.ports.OrderbookStore` in PostgreSQL."""

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 4) -> None:
        self._database = PostgresPool(dsn, schema=schema, min_size=min_size, max_size=max_size)

    async def open(self) -> None:
        await self._database.open()

    async def close(self) -> None:
        await self._database.close()

    async def start_session(self, tickers: Sequence[str], *, started_ms: int, source: str) -> int:
        checked = list(checked_tickers(tickers))
        return await self._database.pool.fetchval(
            "INSERT INTO rl_sessions (tickers, source, started_ms) VALUES ($1, $2, $3) RETURNING id",
            checked,
            checked_source(source),
            checked_ms(started_ms, "started_ms"),
        )

    async def end_session(self, session_id: int, *, ended_ms: int) -> None:
        ended_ms = checked_ms(ended_ms, "ended_ms")
        async with self._database.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT started_ms, ended_ms FROM rl_sessions WHERE id = $1 FOR UPDATE", session_id
            )
            if row is None:
                raise session_not_found(session_id)
            check_open(session_id, ended_ms=row["ended_ms"])
            check_end_time(session_id, started_ms=row["started_ms"], ended_ms=ended_ms)
            await connection.execute(
                "UPDATE rl_sessions SET ended_ms = $1 WHERE id = $2", ended_ms, session_id
            )

    async def write_events(self, session_id: int, events: Sequence[MarketEvent]) -> int:
        batch = encode_events(events)
        async with self._database.pool.acquire() as connection, connection.transaction():
            # FOR UPDATE: a second writer to this session waits here for our ordinals to commit.
            row = await connection.fetchrow(
                "SELECT ended_ms, next_ordinal FROM rl_sessions WHERE id = $1 FOR UPDATE", session_id
            )
            if row is None:
                raise session_not_found(session_id)
            check_open(session_id, ended_ms=row["ended_ms"])
            await connection.execute(
                "UPDATE rl_sessions SET next_ordinal = next_ordinal + $1,"
                " snapshot_count = snapshot_count + $2, delta_count = delta_count + $3,"
                " trade_count = trade_count + $4 WHERE id = $5",
                batch.size,
                batch.count(SNAPSHOTS),
                batch.count(DELTAS),
                batch.count(TRADES),
                session_id,
            )
            try:
                for table, rows in batch.rows(session_id, first_ordinal=row["next_ordinal"]).items():
                    await connection.copy_records_to_table(
                        table.name,
                        records=rows,
                        columns=table.insert_columns,
                        schema_name=self._database.schema,
                    )
            except _REFUSED_ROW as error:
                raise rejected(session_id, batch.size, error) from error
        return batch.size

    async def read_events(self, session_id: int) -> list[MarketEvent]:
        async with self._database.pool.acquire() as connection:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                if await connection.fetchval("SELECT 1 FROM rl_sessions WHERE id = $1", session_id) is None:
                    raise session_not_found(session_id)
                rows = {
                    table: await connection.fetch(_SELECT_EVENTS[table], session_id) for table in EVENT_TABLES
                }
        return decode_events(rows)

    async def list_sessions(self) -> list[SessionInfo]:
        return await self._sessions(None)

    async def get_session(self, session_id: int) -> SessionInfo:
        sessions = await self._sessions(session_id)
        if not sessions:
            raise session_not_found(session_id)
        return sessions[0]

    async def _sessions(self, session_id: int | None) -> list[SessionInfo]:
        one = session_id is not None
        parameters = (session_id,) if one else ()
        async with self._database.pool.acquire() as connection:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                sessions = await connection.fetch(
                    f"{_SELECT_SESSIONS} {'WHERE id = $1' if one else ''} ORDER BY id", *parameters
                )
                resolutions = resolutions_by_session(
                    await connection.fetch(
                        "SELECT session_id, market_ticker, result FROM rl_market_resolutions"
                        f" {'WHERE session_id = $1' if one else ''} ORDER BY session_id, ordinal",
                        *parameters,
                    )
                )
        return [session_info(row, row["tickers"], resolutions.get(row["id"], {})) for row in sessions]


class PostgresModelRegistry:
    """:class:`~domain.ports.ModelRegistry` in PostgreSQL."""

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 4) -> None:
        self._database = PostgresPool(dsn, schema=schema, min_size=min_size, max_size=max_size)

    async def open(self) -> None:
        await self._database.open()

    async def close(self) -> None:
        await self._database.close()

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
        name = checked_name(name, "name")
        values = (
            checked_name(algorithm, "algorithm"),
            checked_status(status),
            checked_name(path, "path"),
            checked_ms(created_ms, "created_ms"),
            json_object(hyperparameters, "hyperparameters"),
        )
        async with self._database.pool.acquire() as connection, connection.transaction():
            await _lock_name(connection, name)
            if status == "active":
                await _retire_active(connection, name)
            row = await connection.fetchrow(
                "INSERT INTO rl_models"
                " (model_name, version, algorithm, status, path, created_ms, hyperparameters)"
                " SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6"
                f" FROM rl_models WHERE model_name = $1 RETURNING {', '.join(MODEL_COLUMNS)}",
                name,
                *values,
            )
        return model_record(row)

    async def update(
        self, model_id: int, *, status: str | None = None, metrics: Mapping[str, Any] | None = None
    ) -> ModelRecord:
        """``status="active"`` promotes: the version that was active retires in the same transaction."""
        status = None if status is None else checked_status(status)
        metrics_json = None if metrics is None else json_object(metrics, "metrics")
        async with self._database.pool.acquire() as connection, connection.transaction():
            name = await connection.fetchval("SELECT model_name FROM rl_models WHERE id = $1", model_id)
            if name is None:
                raise not_found(model_id)
            # Every status change of a name goes through its lock, so two promotions cannot interleave.
            await _lock_name(connection, name)
            record = model_record(await connection.fetchrow(f"{_SELECT_MODELS} WHERE id = $1", model_id))
            if status == "active" and record.status != "active":
                check_promotable(record)
                await _retire_active(connection, name)
            row = await connection.fetchrow(
                "UPDATE rl_models SET status = COALESCE($2, status), metrics = COALESCE($3::jsonb, metrics)"
                f" WHERE id = $1 RETURNING {', '.join(MODEL_COLUMNS)}",
                model_id,
                status,
                metrics_json,
            )
        return model_record(row)

    async def promote(self, model_id: int) -> ModelRecord:
        return await self.update(model_id, status="active")

    async def get(self, model_id: int) -> ModelRecord:
        row = await self._database.pool.fetchrow(f"{_SELECT_MODELS} WHERE id = $1", model_id)
        if row is None:
            raise not_found(model_id)
        return model_record(row)

    async def active(self, name: str) -> ModelRecord | None:
        row = await self._database.pool.fetchrow(
            f"{_SELECT_MODELS} WHERE model_name = $1 AND status = 'active'", name
        )
        return model_record(row) if row is not None else None

    async def list_models(self, name: str | None = None) -> list[ModelRecord]:
        if name is None:
            rows = await self._database.pool.fetch(f"{_SELECT_MODELS} ORDER BY model_name, version")
        else:
            rows = await self._database.pool.fetch(
                f"{_SELECT_MODELS} WHERE model_name = $1 ORDER BY version", name
            )
        return [model_record(row) for row in rows]


async def _lock_name(connection: asyncpg.Connection, name: str) -> None:
    """Serialises version numbering and promotion per model name, until the transaction ends."""
    await connection.execute("SELECT pg_advisory_xact_lock(hashtext('rl_models ' || $1))", name)


async def _retire_active(connection: asyncpg.Connection, name: str) -> None:
    await connection.execute(
        "UPDATE rl_models SET status = 'retired' WHERE model_name = $1 AND status = 'active'", name
    )
