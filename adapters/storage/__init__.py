"""Storage adapters: recordings (:class:`~domain.ports.OrderbookStore`) and the model registry
(:class:`~domain.ports.ModelRegistry`), in embedded SQLite (the default) or in PostgreSQL.

Both backends share one schema, versioned under ``migrations/``, and one event <-> row encoding
(:mod:`adapters.storage.event_rows`); the contract suite in ``tests/contract`` runs on both.
"""

from adapters.storage.postgres_store import PostgresModelRegistry, PostgresOrderbookStore
from adapters.storage.sqlite_store import SqliteModelRegistry, SqliteOrderbookStore

__all__ = ["PostgresModelRegistry", "PostgresOrderbookStore", "SqliteModelRegistry", "SqliteOrderbookStore"]
