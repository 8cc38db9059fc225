"""One sqlite3 connection that lives on its own worker thread, so the event loop never waits on disk.

Every call is queued to a one-thread executor: the connection is created, used and closed on
that thread only, and calls run one at a time in submission order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from adapters.storage.migrations.runner import apply_sqlite

T = TypeVar("T")

# How long a writer waits for another connection's write lock (another store, another process).
BUSY_TIMEOUT_MS = 10_000


class SqliteConnection:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Connects (WAL mode, foreign keys on) and applies pending migrations; again is a no-op."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=True)

    async def run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs ``work(connection, *args, **kwargs)`` on the connection's thread."""
        if self._executor is None:
            raise RuntimeError(f"SQLite database {self.path} is not open; call open() first")
        call = functools.partial(self._call, work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self._connection is not None
        return work(self._connection, *args, **kwargs)

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; write_transaction() says where they are.
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(connection, self.path)
            # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commits.
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            apply_sqlite(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _enable_wal(connection: sqlite3.Connection, path: str) -> None:
    """WAL lets readers run beside the writer. Switching a new file to it needs the file to
    itself and answers SQLITE_BUSY at once, without the busy timeout, when another connection
    is opening it too: retry, for as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as error:
            if error.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
            continue
        if mode not in ("wal", "memory"):  # an in-memory database has no journal file
            raise RuntimeError(f"SQLite database {path} cannot use WAL mode (journal_mode is {mode!r})")
        return


@contextlib.contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """All or nothing; IMMEDIATE takes the write lock up front so reads inside stay valid."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


@contextlib.contextmanager
def read_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One consistent snapshot across several SELECTs."""
    connection.execute("BEGIN")
    try:
        yield
    finally:
        connection.execute("COMMIT")


class SqliteAdapter:
    """What every SQLite adapter starts from: its own connection to the file, opened (migrations
    applied) and closed with the adapter."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._database = SqliteConnection(path)

    async def open(self) -> None:
        await self._database.open()

    async def close(self) -> None:
        await self._database.close()
