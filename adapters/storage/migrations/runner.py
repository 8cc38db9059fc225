"""Applies pending migrations, each in the transaction that records it in ``schema_migrations``.

A lock is taken before anything is read (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction
advisory lock keyed on the schema), so two stores opening one database at once queue up instead
of racing, and the second finds nothing left to do.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

from adapters.storage.migrations import pending_migrations

if TYPE_CHECKING:
    import asyncpg

_CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_ms  BIGINT NOT NULL
)
"""


def apply_sqlite(connection: sqlite3.Connection) -> list[int]:
    """Migrates an autocommit (``isolation_level=None``) connection; returns the versions applied."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(_CREATE_SCHEMA_MIGRATIONS)
        applied = {version for (version,) in connection.execute("SELECT version FROM schema_migrations")}
        migrations = pending_migrations("sqlite", applied)
        for migration in migrations:
            for statement in _sqlite_statements(migration.sql, migration.name):
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
                (migration.version, migration.name, _now_ms()),
            )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return [migration.version for migration in migrations]


async def apply_postgres(connection: asyncpg.Connection, schema: str | None) -> list[int]:
    """Creates ``schema`` if given (the connection's search_path must name it) and migrates it."""
    async with connection.transaction():
        lock_key = f"kalshiflow-rl migrations {schema or ''}"
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock_key)
        if schema is not None:
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
        await connection.execute(_CREATE_SCHEMA_MIGRATIONS)
        applied = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        migrations = pending_migrations("postgres", applied)
        for migration in migrations:
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                _now_ms(),
            )
    return [migration.version for migration in migrations]


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_statements(sql: str, name: str) -> list[str]:
    """Splits a script into statements; ``executescript`` would commit our transaction first."""
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    leftover = [line for line in pending.splitlines() if line.strip() and not line.strip().startswith("--")]
    if leftover:
        raise ValueError(f"sqlite migration {name!r} ends with an unterminated statement: {leftover[0]!r}")
    return statements


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
