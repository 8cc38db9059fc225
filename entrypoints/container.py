"""The composition root: which adapter plays which port, decided once, from :class:`Settings`.

One ``DeclarativeContainer`` per concern -- storage, market data -- composed by
:class:`Container`, which also holds the clock and the use cases with their ports injected.
Storage is picked by configuration with ``providers.Selector`` (``sqlite`` unless
``DATABASE_URL`` is set). Providers build objects only; opening and closing connections is done
explicitly by the command that uses them (``entrypoints.cli``), never by ``init_resources()`` (a ``Selector``
would start the unselected resources too).

Tests replace any provider with a fake: ``container.store.override(providers.Object(fake))``.
This is the only module that imports ``dependency_injector``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import attrs
from dependency_injector import containers, providers

from adapters.storage import (
    PostgresModelRegistry,
    PostgresOrderbookStore,
    SqliteModelRegistry,
    SqliteOrderbookStore,
)
from adapters.synthetic.feed import SyntheticMarketFeed
from adapters.synthetic.market_model import SyntheticMarketConfig
from application.recording import record_session
from entrypoints.config import Settings
from entrypoints.learning import EnvironmentSettings, sb3_trainer, synthetic_session_feed


class WallClock:
    """The Clock port on the system's wall clock (recordings are stamped in Unix milliseconds)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def synthetic_market_feed(*, markets: int, events: int, seed: int, tick: str) -> SyntheticMarketFeed:
    """A synthetic feed of about ``events`` events in all, spread over ``markets`` markets.

    Each market stops after ``events / markets`` events and then resolves, so the total is a
    little above ``events`` (an action may emit several events; one resolution per market).
    The markets expire well after that many events at the model's event rate, so the count,
    not the clock, ends them.
    """
    per_market = math.ceil(events / markets)
    config = SyntheticMarketConfig(seed=seed, markets=markets, events_per_market=per_market, tick_structure=tick)
    expected_ms = math.ceil(per_market * 1000 / config.events_per_second)
    return SyntheticMarketFeed(attrs.evolve(config, duration_ms=max(config.duration_ms, 3 * expected_ms)))


class StorageContainer(containers.DeclarativeContainer):
    """Recordings and the model registry, in embedded SQLite or in PostgreSQL."""

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


class MarketDataContainer(containers.DeclarativeContainer):
    """Sources of market events. Live Kalshi joins the synthetic source in a later issue."""

    config = providers.Configuration(strict=True)

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
    synthetic_feed = market_data.synthetic_feed
    synthetic_session_feed = market_data.synthetic_session_feed
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
        },
        "recording": {
            "batch_size": settings.orderbook_batch_size,
            "flush_interval_ms": settings.flush_interval_ms,
        },
        "learning": {"contract_size": settings.actor_contract_size},
        "paths": {
            "data_dir": str(settings.data_dir),
            "models_dir": str(settings.models_dir),
            "cache_dir": str(settings.cache_dir),
        },
    }


def build_container(settings: Settings) -> Container:
    container = Container()
    container.config.from_dict(container_config(settings))
    return container
