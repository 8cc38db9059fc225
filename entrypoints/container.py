"""The composition root: which adapter plays which port, decided once, from :class:`Settings`.

One ``DeclarativeContainer`` per concern -- storage, market data, learning -- composed by
:class:`Container`, which also holds the clock, the use cases with their ports injected, and
live ingestion (:class:`~entrypoints.ingestion.LiveIngestion`: the Kalshi feed, the one
:class:`~application.book_state.SharedBookState` of the process, the spill, the recording).
Storage is picked by configuration with ``providers.Selector`` (``sqlite`` unless
``DATABASE_URL`` is set). Providers build objects only; opening and closing connections is done
explicitly by the command that uses them (``entrypoints.cli``), never by ``init_resources()`` (a ``Selector``
would start the unselected resources too).

Tests replace any provider with a fake: ``container.store.override(providers.Object(fake))``.
This is the only module that imports ``dependency_injector``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from dependency_injector import containers, providers

from adapters.kalshi.auth import RequestSigner, load_private_key
from adapters.kalshi.market_data import KalshiMarketDataFeed
from adapters.kalshi.rest_markets import KalshiMarketCatalog
from adapters.kalshi.rest_client import KalshiRestClient
from adapters.kalshi.rest_gateway import KalshiOrderGateway
from adapters.kalshi.ws_client import KalshiWebSocketClient
from adapters.spill import FileSpillBuffer
from adapters.storage import (
    PostgresModelRegistry,
    PostgresOrderbookStore,
    PostgresTradingRecords,
    SqliteModelRegistry,
    SqliteOrderbookStore,
    SqliteTradingRecords,
)
from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig, duration_for_events
from application.book_state import SharedBookState
from application.recording import record_session
from entrypoints.config import Settings
from entrypoints.ingestion import LiveIngestion
from entrypoints.learning import EnvironmentSettings, sb3_trainer, synthetic_session_feed


SPILL_DIR_NAME = "spill"  # under RL_DATA_DIR: what a store outage could not take yet
LIVE_DRAIN_TIMEOUT_S = 30.0  # at shutdown, the store gets this long; the rest stays in the spill


class WallClock:
    """The Clock port on the system's wall clock (recordings are stamped in Unix milliseconds)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def synthetic_market_feed(*, markets: int, events: int, seed: int, tick: str) -> SyntheticMarketFeed:
    """A synthetic feed of about ``events`` events in all, spread over ``markets`` markets.

    Each market stops after ``events / markets`` events (a little above: an action may emit
    several) or when it closes, ~10% after the time it takes to emit them (measured on a pilot
    run), and then resolves: the flow is not followed by a long silence before the close.
    """
    per_market = math.ceil(events / markets)
    config = SyntheticMarketConfig(seed=seed, markets=markets, events_per_market=per_market, tick_structure=tick)
    return SyntheticMarketFeed(attrs.evolve(config, duration_ms=duration_for_events(config, per_market)))


def request_signer(*, key_id: str | None, private_key_path: str | None) -> RequestSigner | None:
    """The signer of Kalshi handshakes, or None without a key id (a server without auth).
    Raises :class:`~adapters.kalshi.auth.KeyLoadError` naming the file if it is not a key."""
    if not key_id:
        return None
    if not private_key_path:
        raise ValueError("KALSHI_API_KEY_ID is set without KALSHI_PRIVATE_KEY_PATH")
    return RequestSigner(key_id, load_private_key(private_key_path))


def kalshi_order_gateway(*, rest_url: str, ws_url: str, signer: RequestSigner | None) -> KalshiOrderGateway:
    """The order gateway on ``rest_url``; orders are signed, so an API key is required."""
    if signer is None:
        raise ValueError("trading needs an API key: set KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH")
    return KalshiOrderGateway.connect(rest_url, signer, ws_url=ws_url)


def kalshi_market_catalog(gateway: KalshiOrderGateway) -> KalshiMarketCatalog:
    """Markets' close times and results, read through the order gateway's REST client."""
    return KalshiMarketCatalog(gateway.client)


def kalshi_recording_catalog(*, rest_url: str, signer: RequestSigner | None) -> KalshiMarketCatalog:
    """Markets' scheduled closes for recording, over a read-only client: production market data
    may be recorded, so this one may point at production (it sends nothing but GETs)."""
    if signer is None:
        raise ValueError("reading markets needs an API key: set KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH")
    return KalshiMarketCatalog(KalshiRestClient(rest_url, signer, read_only=True))


def spill_opener(root: str) -> Callable[[int], FileSpillBuffer]:
    """Opens (and locks) the spill of a session id under ``root`` (``$RL_DATA_DIR/spill``)."""
    return functools.partial(FileSpillBuffer.for_session, Path(root))


class StorageContainer(containers.DeclarativeContainer):
    """Recordings, the model registry and trading records, in embedded SQLite or in PostgreSQL."""

    config = providers.Configuration(strict=True)

    orderbook_store = providers.Selector(
        config.kind,
        sqlite=providers.Singleton(SqliteOrderbookStore, config.sqlite_path),
        postgres=providers.Singleton(PostgresOrderbookStore, config.database_url),
    )
    model_registry = providers.Selector(
        config.kind,
        sqlite=providers.Singleton(SqliteModelRegistry, config.sqlite_path),
        postgres=providers.Singleton(PostgresModelRegistry, config.database_url),
    )
    # Episodes and actions of evaluation and paper trading (rl_trading_episodes, rl_trading_actions).
    trading_records = providers.Selector(
        config.kind,
        sqlite=providers.Singleton(SqliteTradingRecords, config.sqlite_path),
        postgres=providers.Singleton(PostgresTradingRecords, config.database_url),
    )


class MarketDataContainer(containers.DeclarativeContainer):
    """Sources of market events: Kalshi's WebSocket (or the local exchange) and the synthetic market."""

    config = providers.Configuration(strict=True)

    kalshi_signer = providers.Singleton(
        request_signer, key_id=config.api_key_id, private_key_path=config.private_key_path
    )
    kalshi_client = providers.Singleton(KalshiWebSocketClient, config.ws_url, kalshi_signer)
    # One per process: the feed writes it, the service and the actor read it.
    live_books = providers.Singleton(SharedBookState, config.tickers)
    kalshi_feed = providers.Singleton(KalshiMarketDataFeed, kalshi_client, config.tickers, books=live_books)
    # Where the actor's orders go: the REST API of KALSHI_ENV (local or demo), fills over its WebSocket.
    order_gateway = providers.Singleton(
        kalshi_order_gateway, rest_url=config.rest_url, ws_url=config.ws_url, signer=kalshi_signer
    )
    # What the exchange says of its markets (close times, results), over the gateway's client.
    market_catalog = providers.Singleton(kalshi_market_catalog, order_gateway)
    # What recording asks of it (scheduled closes): read-only, so production data can be recorded.
    recording_catalog = providers.Singleton(kalshi_recording_catalog, rest_url=config.rest_url, signer=kalshi_signer)

    # The market count, length and seed come from the command line: a Factory, called with them.
    synthetic_feed = providers.Factory(synthetic_market_feed)
    # The demo's sessions: markets that trade for a duration, then resolve.
    synthetic_session_feed = providers.Factory(synthetic_session_feed)


class LearningContainer(containers.DeclarativeContainer):
    """What agents train and trade with, and the trainer (Stable-Baselines3) that trains them."""

    config = providers.Configuration(strict=True)

    environment_settings = providers.Factory(EnvironmentSettings, contract_size=config.contract_size)
    # Called with the environment settings (a model's own, when evaluating it) and the algorithm.
    trainer = providers.Factory(sb3_trainer)


class Container(containers.DeclarativeContainer):
    """Everything a command needs. Build it with :func:`build_container`."""

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(WallClock)
    storage = providers.Container(StorageContainer, config=config.storage)
    market_data = providers.Container(MarketDataContainer, config=config.market_data)
    learning = providers.Container(LearningContainer, config=config.learning)

    # The ports, by the names commands and tests use (an override here overrides the source).
    store = storage.orderbook_store
    model_registry = storage.model_registry
    trading_records = storage.trading_records
    synthetic_feed = market_data.synthetic_feed
    synthetic_session_feed = market_data.synthetic_session_feed
    kalshi_feed = market_data.kalshi_feed
    live_books = market_data.live_books
    order_gateway = market_data.order_gateway
    market_catalog = market_data.market_catalog
    recording_catalog = market_data.recording_catalog
    environment_settings = learning.environment_settings
    trainer = learning.trainer

    # Use cases: the ports and settings are injected; callers pass the per-call arguments.
    # ``container.record_session(feed, tickers=..., source=..., progress=...)`` -> coroutine.
    record_session = providers.Callable(
        record_session,
        store=store,
        clock=clock,
        batch_size=config.recording.batch_size,
        flush_interval_ms=config.recording.flush_interval_ms,
    )
    # Live recording adds sampling (RL_ORDERBOOK_SAMPLE_RATE), the spill and a bounded drain.
    spill = providers.Callable(spill_opener, config.paths.spill_dir)
    record_live_session = providers.Callable(
        record_session,
        store=store,
        clock=clock,
        batch_size=config.recording.batch_size,
        flush_interval_ms=config.recording.flush_interval_ms,
        sample_every=config.recording.sample_every,
        spill=spill,
        drain_timeout_s=config.recording.drain_timeout_s,
    )
    # Tickers: RL_MARKET_TICKERS, or what a command sets in config.market_data.tickers first.
    live_ingestion = providers.Singleton(
        LiveIngestion,
        feed=kalshi_feed,
        books=live_books,
        store=store,
        record=record_live_session.provider,
        spill_root=config.paths.spill_dir,
        tickers=config.market_data.tickers,
        # Each market's scheduled close, recorded with the session (built when it starts).
        catalog=recording_catalog.provider,
    )


def container_config(settings: Settings) -> dict[str, Any]:
    """The container's configuration tree, from the settings."""
    return {
        "storage": {
            "kind": settings.store_kind.value,
            "sqlite_path": str(settings.sqlite_path),
            "database_url": settings.database_url,
        },
        "market_data": {
            "kalshi_env": settings.kalshi_env.value,
            "rest_url": settings.kalshi_rest_url,
            "ws_url": settings.kalshi_ws_url,
            "tickers": list(settings.market_tickers),
            "api_key_id": settings.kalshi_api_key_id,
            "private_key_path": str(settings.kalshi_private_key_path) if settings.kalshi_private_key_path else None,
        },
        "recording": {
            "batch_size": settings.orderbook_batch_size,
            "flush_interval_ms": settings.flush_interval_ms,
            "sample_every": settings.orderbook_sample_rate,
            "drain_timeout_s": LIVE_DRAIN_TIMEOUT_S,
        },
        "learning": {"contract_size": settings.actor_contract_size},
        "paths": {
            "data_dir": str(settings.data_dir),
            "models_dir": str(settings.models_dir),
            "cache_dir": str(settings.cache_dir),
            "spill_dir": str(settings.data_dir / SPILL_DIR_NAME),
        },
    }


def build_container(settings: Settings) -> Container:
    container = Container()
    container.config.from_dict(container_config(settings))
    return container
