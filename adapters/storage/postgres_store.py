"""The PostgreSQL storage adapters: recordings and the model registry, over an asyncpg pool.

Event batches go in with COPY (``copy_records_to_table``) inside the transaction that reserves
their ordinals, so a batch is all or nothing. Pass ``schema`` to keep every table in a schema
of its own (tests do, to isolate themselves).
"""

from __future__ import annotations

import asyncio
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
from adapters.storage.postgres_pool import PostgresAdapter
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
from domain.ports import ModelRecord, PruneResult, SessionInfo

_SELECT_EVENTS = {table: table.select_sql("$1") for table in EVENT_TABLES}
_SELECT_SESSIONS = f"SELECT {', '.join(SESSION_COLUMNS)} FROM rl_sessions"
_SELECT_MODELS = f"SELECT {', '.join(MODEL_COLUMNS)} FROM rl_models"
_NEXT_VERSION = next_version_sql("$1")
_BUMP_GENERATION = bump_generation_sql("$1")
_ACTIVE_GENERATION = active_generation_sql("$1")
# A row whose status changed since it was chosen (a retired version promoted again) is kept.
_DELETE_PRUNABLE = (
    f"DELETE FROM rl_models WHERE id = ANY($1::bigint[]) AND {still_prunable_sql()} AND NOT {PAPER_TRADED_SQL}"
    f" RETURNING {', '.join(MODEL_COLUMNS)}"
)
# Chosen for deletion, still prunable, but kept: it paper-traded.
_KEPT_PAPER_TRADED = f"{_SELECT_MODELS} WHERE id = ANY($1::bigint[]) AND {still_prunable_sql()} AND {PAPER_TRADED_SQL}"

# What a refused COPY row raises: a CHECK or NOT NULL, or a value asyncpg cannot encode.
_REFUSED_ROW = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError, OverflowError)


class PostgresOrderbookStore(PostgresAdapter):
    """:class:`~domain.ports.OrderbookStore` in PostgreSQL."""

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
            # One statement reserves the ordinals and locks the session row: a second writer to
            # this session waits here for ours to commit. A closed session raises below, and the
            # transaction's rollback undoes the update.
            row = await connection.fetchrow(
                "UPDATE rl_sessions SET next_ordinal = next_ordinal + $1,"
                " snapshot_count = snapshot_count + $2, delta_count = delta_count + $3,"
                " trade_count = trade_count + $4 WHERE id = $5"
                " RETURNING ended_ms, next_ordinal - $1 AS first_ordinal",
                batch.size,
                batch.count(SNAPSHOTS),
                batch.count(DELTAS),
                batch.count(TRADES),
                session_id,
            )
            if row is None:
                raise session_not_found(session_id)
            check_open(session_id, ended_ms=row["ended_ms"])
            try:
                for table, rows in batch.rows(session_id, first_ordinal=row["first_ordinal"]).items():
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


class PostgresModelRegistry(PostgresAdapter):
    """:class:`~domain.ports.ModelRegistry` in PostgreSQL."""

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
            version = await connection.fetchval(_NEXT_VERSION, name)
            if status == "active":
                await _retire_active(connection, name)
                await connection.execute(_BUMP_GENERATION, name)
            row = await connection.fetchrow(
                "INSERT INTO rl_models"
                " (model_name, version, algorithm, status, path, created_ms, hyperparameters)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {', '.join(MODEL_COLUMNS)}",
                name,
                version,
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
            if changes_active(record.status, status):
                await connection.execute(_BUMP_GENERATION, name)
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

    async def active_generation(self, name: str) -> int:
        generation = await self._database.pool.fetchval(_ACTIVE_GENERATION, name)
        return 0 if generation is None else generation

    async def prune(self, *, keep: int, name: str | None = None) -> PruneResult:
        keep = checked_keep(keep)
        async with self._database.pool.acquire() as connection, connection.transaction():
            if name is None:
                ids = [row["id"] for row in await connection.fetch(prunable_ids_sql("$1", None), keep)]
            else:
                ids = [row["id"] for row in await connection.fetch(prunable_ids_sql("$2", "$1"), name, keep)]
            rows = await connection.fetch(_DELETE_PRUNABLE, ids)
            kept = await connection.fetch(_KEPT_PAPER_TRADED, ids)
        result = PruneResult(
            deleted=by_name_and_version(model_record(row) for row in rows),
            paper_traded=by_name_and_version(model_record(row) for row in kept),
        )
        await asyncio.to_thread(delete_model_files, result.deleted)
        return result


async def _lock_name(connection: asyncpg.Connection, name: str) -> None:
    """Serialises version numbering and promotion per model name, until the transaction ends."""
    await connection.execute("SELECT pg_advisory_xact_lock(hashtext('rl_models ' || $1))", name)


async def _retire_active(connection: asyncpg.Connection, name: str) -> None:
    await connection.execute(
        "UPDATE rl_models SET status = 'retired' WHERE model_name = $1 AND status = 'active'", name
    )
