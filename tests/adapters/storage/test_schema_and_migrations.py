"""What the contract suite cannot see through the ports: the schema each backend builds, its
migration bookkeeping, and the derived columns kept for SQL analysis."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest

from adapters.storage import PostgresModelRegistry, PostgresOrderbookStore, SqliteModelRegistry, SqliteOrderbookStore
from adapters.storage.migrations import BACKENDS, MigrationError, load_migrations
from domain.events import BookSnapshot
from domain.values import ONE_DOLLAR

TABLES = {
    "schema_migrations",
    "rl_sessions",
    "rl_orderbook_snapshots",
    "rl_orderbook_deltas",
    "rl_public_trades",
    "rl_market_resolutions",
    "rl_market_schedules",
    "rl_models",
    "rl_model_names",
    "rl_trading_episodes",
    "rl_trading_actions",
}


def sqlite_columns(path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        return {
            table: [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            for table in tables
            if table != "sqlite_sequence"
        }


async def postgres_columns(dsn: str, schema: str) -> dict[str, list[str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            schema,
        )
    finally:
        await connection.close()
    columns: dict[str, list[str]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], []).append(row["column_name"])
    return columns


def test_every_backend_has_the_same_contiguous_migration_versions():
    versions = {backend: [migration.version for migration in load_migrations(backend)] for backend in BACKENDS}

    assert versions["sqlite"] == versions["postgres"]
    assert versions["sqlite"] == list(range(1, len(versions["sqlite"]) + 1))
    names = {backend: [migration.name for migration in load_migrations(backend)] for backend in BACKENDS}
    assert names["sqlite"] == names["postgres"]


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown storage backend 'mysql'"):
        load_migrations("mysql")


# ---------------------------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------------------------
async def test_sqlite_builds_the_schema_once_in_wal_mode(tmp_path):
    path = tmp_path / "nested" / "dir" / "kalshiflow.db"  # missing directories are created
    adapters = [SqliteOrderbookStore(path), SqliteModelRegistry(path), SqliteOrderbookStore(path)]
    await asyncio.gather(*(adapter.open() for adapter in adapters))
    await adapters[0].open()
    for adapter in adapters:
        await adapter.close()

    assert set(sqlite_columns(path)) == TABLES
    with sqlite3.connect(path) as connection:
        applied = connection.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert applied == [(migration.version, migration.name) for migration in load_migrations("sqlite")]


async def test_sqlite_refuses_a_database_migrated_by_newer_code(tmp_path):
    path = tmp_path / "kalshiflow.db"
    store = SqliteOrderbookStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO schema_migrations VALUES (999, 'from_the_future', 0)")

    with pytest.raises(MigrationError, match=r"schema versions \[999\]"):
        await SqliteOrderbookStore(path).open()


async def test_sqlite_stores_levels_as_json_and_derives_the_top_of_book(tmp_path):
    path = tmp_path / "kalshiflow.db"
    store = SqliteOrderbookStore(path)
    await store.open()
    session_id = await store.start_session(["A"], started_ms=0, source="test")
    await store.write_events(session_id, snapshots())
    await store.close()

    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT yes_bids, no_bids, best_yes_bid, best_yes_ask, yes_spread,"
            " json_extract(yes_bids, '$[#-1][0]') FROM rl_orderbook_snapshots ORDER BY ordinal"
        ).fetchall()
    assert rows == [
        ("[[4000,100],[4500,200]]", "[[5000,300],[5400,1]]", 4500, ONE_DOLLAR - 5400, 100, 4500),
        ("[]", "[[5000,300]]", None, 5000, None, None),
    ]


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
@pytest.mark.postgres
async def test_postgres_builds_the_schema_once_in_its_own_schema(postgres_dsn, postgres_schema):
    adapters = [
        PostgresOrderbookStore(postgres_dsn, schema=postgres_schema),
        PostgresModelRegistry(postgres_dsn, schema=postgres_schema),
        PostgresOrderbookStore(postgres_dsn, schema=postgres_schema),
    ]
    await asyncio.gather(*(adapter.open() for adapter in adapters))
    await adapters[0].open()
    for adapter in adapters:
        await adapter.close()

    assert set(await postgres_columns(postgres_dsn, postgres_schema)) == TABLES
    connection = await asyncpg.connect(postgres_dsn)
    try:
        applied = await connection.fetch(f"SELECT version, name FROM {postgres_schema}.schema_migrations ORDER BY version")
    finally:
        await connection.close()
    assert [tuple(row) for row in applied] == [(m.version, m.name) for m in load_migrations("postgres")]


@pytest.mark.postgres
async def test_both_backends_build_the_same_tables_and_columns(tmp_path, postgres_dsn, postgres_schema):
    for store in (SqliteOrderbookStore(tmp_path / "kalshiflow.db"), PostgresOrderbookStore(postgres_dsn, schema=postgres_schema)):
        await store.open()
        await store.close()

    assert sqlite_columns(tmp_path / "kalshiflow.db") == await postgres_columns(postgres_dsn, postgres_schema)


@pytest.mark.postgres
async def test_postgres_refuses_a_database_migrated_by_newer_code(postgres_dsn, postgres_schema):
    store = PostgresOrderbookStore(postgres_dsn, schema=postgres_schema)
    await store.open()
    await store.close()
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(f"INSERT INTO {postgres_schema}.schema_migrations VALUES (999, 'from_the_future', 0)")
    finally:
        await connection.close()

    with pytest.raises(MigrationError, match=r"schema versions \[999\]"):
        await PostgresOrderbookStore(postgres_dsn, schema=postgres_schema).open()


@pytest.mark.postgres
async def test_postgres_stores_levels_as_jsonb_and_derives_the_top_of_book(postgres_dsn, postgres_schema):
    store = PostgresOrderbookStore(postgres_dsn, schema=postgres_schema)
    await store.open()
    try:
        session_id = await store.start_session(["A"], started_ms=0, source="test")
        await store.write_events(session_id, snapshots())
    finally:
        await store.close()

    connection = await asyncpg.connect(postgres_dsn, server_settings={"search_path": postgres_schema})
    try:
        rows = await connection.fetch(
            "SELECT jsonb_typeof(yes_bids), (yes_bids -> -1 ->> 0)::int, jsonb_array_length(no_bids),"
            " best_yes_bid, best_yes_ask, yes_spread FROM rl_orderbook_snapshots ORDER BY ordinal"
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in rows] == [
        ("array", 4500, 2, 4500, ONE_DOLLAR - 5400, 100),
        ("array", None, 1, None, 5000, None),
    ]


def test_postgres_refuses_a_schema_name_that_would_need_quoting():
    with pytest.raises(ValueError, match="schema name must match"):
        PostgresOrderbookStore("postgresql://127.0.0.1/test", schema='x"; DROP TABLE rl_sessions; --')


def snapshots() -> list[BookSnapshot]:
    return [
        BookSnapshot("A", 1, 10, yes=((4000, 100), (4500, 200)), no=((5000, 300), (5400, 1))),
        BookSnapshot("A", 2, 20, yes=(), no=((5000, 300),)),
    ]
