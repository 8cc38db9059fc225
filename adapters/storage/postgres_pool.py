"""An asyncpg pool whose connections all see one schema, migrated when the pool opens."""

from __future__ import annotations

import re

import asyncpg

from adapters.storage.migrations.runner import apply_postgres

# Plain lower-case identifiers only, so the name needs no quoting in search_path.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresPool:
    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 4) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema name must match {_SCHEMA_NAME.pattern}, got {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Connects, creates the schema if needed and applies pending migrations; again is a no-op."""
        if self._pool is not None:
            return
        server_settings = {"search_path": self.schema} if self.schema is not None else None
        pool = await asyncpg.create_pool(
            self.dsn, min_size=self._min_size, max_size=self._max_size, server_settings=server_settings
        )
        try:
            async with pool.acquire() as connection:
                await apply_postgres(connection, self.schema)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgreSQL store is not open; call open() first")
        return self._pool


class PostgresAdapter:
    """What every PostgreSQL adapter starts from: its own pool, opened (migrations applied) and
    closed with the adapter."""

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 4) -> None:
        self._database = PostgresPool(dsn, schema=schema, min_size=min_size, max_size=max_size)

    async def open(self) -> None:
        await self._database.open()

    async def close(self) -> None:
        await self._database.close()
