"""The storage backends the storage contract suite runs on: one database per test, either a
SQLite file in tmp_path or a PostgreSQL schema of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.storage import PostgresModelRegistry, PostgresOrderbookStore, SqliteModelRegistry, SqliteOrderbookStore


class StorageBackend:
    """Builds any number of adapters over the test's one database, and closes them at the end."""

    def __init__(self, name: str, *, sqlite_path: Path | None = None, dsn: str = "", schema: str = "") -> None:
        self.name = name
        self._sqlite_path = sqlite_path
        self._dsn = dsn
        self._schema = schema
        self._made: list[Any] = []

    def new_store(self) -> SqliteOrderbookStore | PostgresOrderbookStore:
        """A store not yet opened."""
        if self.name == "sqlite":
            return self._track(SqliteOrderbookStore(self._sqlite_path))
        return self._track(PostgresOrderbookStore(self._dsn, schema=self._schema))

    def new_registry(self) -> SqliteModelRegistry | PostgresModelRegistry:
        if self.name == "sqlite":
            return self._track(SqliteModelRegistry(self._sqlite_path))
        return self._track(PostgresModelRegistry(self._dsn, schema=self._schema))

    async def open_store(self) -> SqliteOrderbookStore | PostgresOrderbookStore:
        store = self.new_store()
        await store.open()
        return store

    async def open_registry(self) -> SqliteModelRegistry | PostgresModelRegistry:
        registry = self.new_registry()
        await registry.open()
        return registry

    async def close_all(self) -> None:
        for adapter in reversed(self._made):
            await adapter.close()

    def _track(self, adapter: Any) -> Any:
        self._made.append(adapter)
        return adapter


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_database(request: pytest.FixtureRequest, tmp_path: Path) -> StorageBackend:
    if request.param == "sqlite":
        return StorageBackend("sqlite", sqlite_path=tmp_path / "kalshiflow.db")
    # Looked up only for this parameter, so SQLite runs without a PostgreSQL server.
    return StorageBackend(
        "postgres", dsn=request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("postgres_schema")
    )


@pytest.fixture
async def storage(storage_database: StorageBackend) -> AsyncIterator[StorageBackend]:
    yield storage_database
    await storage_database.close_all()
