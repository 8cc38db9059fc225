"""Storage adapters: recordings (:class:`~domain.ports.OrderbookStore`), the model registry
(:class:`~domain.ports.ModelRegistry`) and trading records (:class:`~domain.ports.TradingRecords`),
in embedded SQLite (the default) or in PostgreSQL.

Both backends share one schema, versioned under ``migrations/``, and one event <-> row encoding
(:mod:`adapters.storage.event_rows`); the contract suite in ``tests/contract`` runs on both.
"""

from adapters.storage.postgres_store import PostgresModelRegistry, PostgresOrderbookStore
from adapters.storage.postgres_trading_records import PostgresTradingRecords
from adapters.storage.sqlite_store import SqliteModelRegistry, SqliteOrderbookStore
from adapters.storage.sqlite_trading_records import SqliteTradingRecords

__all__ = [
    "PostgresModelRegistry",
    "PostgresOrderbookStore",
    "PostgresTradingRecords",
    "SqliteModelRegistry",
    "SqliteOrderbookStore",
    "SqliteTradingRecords",
]
