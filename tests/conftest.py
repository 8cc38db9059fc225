"""Fixtures shared across the suite.

PostgreSQL: the server on 127.0.0.1:5432 outlives every run, so each test that uses it gets a
schema of its own (``kfrl_test_<pid>_<random>``), dropped with CASCADE afterwards. When the server
cannot be reached the PostgreSQL tests skip, unless ``KALSHIFLOW_REQUIRE_POSTGRES=1`` (CI), where
they fail: a CI run must never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest

# The server CI provides; KALSHIFLOW_TEST_POSTGRES_DSN points the suite elsewhere.
POSTGRES_DSN = os.environ.get("KALSHIFLOW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 5


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The test server's DSN, once it has answered; otherwise a skip (or, in CI, a failure)."""
    problem = _unreachable(POSTGRES_DSN)
    if problem is not None:
        message = f"PostgreSQL at {POSTGRES_DSN} is unreachable ({problem})"
        if os.environ.get("KALSHIFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message}; KALSHIFLOW_REQUIRE_POSTGRES=1 forbids skipping PostgreSQL tests", pytrace=False)
        pytest.skip(f"{message}; set up the server to run PostgreSQL tests")
    return POSTGRES_DSN


@pytest.fixture
async def postgres_schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name for this test; adapters create it on open(); dropped afterwards."""
    schema = f"kfrl_test_{os.getpid()}_{secrets.token_hex(4)}"
    yield schema
    connection = await asyncpg.connect(postgres_dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


def _unreachable(dsn: str) -> str | None:
    """Why ``dsn`` cannot be used, or None. Probes on its own thread and loop, away from the tests'."""

    async def probe() -> None:
        connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
        await connection.close()

    with ThreadPoolExecutor(max_workers=1) as thread:
        try:
            thread.submit(asyncio.run, probe()).result()
        except Exception as error:  # refused, timed out, no such database, bad auth ...
            return f"{type(error).__name__}: {error}"
    return None
