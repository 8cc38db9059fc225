"""The composition root: adapters selected by configuration, use cases wired, fakes by override."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import errors, providers

from adapters.storage import (
    PostgresModelRegistry,
    PostgresOrderbookStore,
    SqliteModelRegistry,
    SqliteOrderbookStore,
)
from application.recording import RecordingSummary
from domain.events import MarketResolved
from domain.ports import Clock, ModelRegistry, OrderbookStore
from entrypoints.config import Settings
from entrypoints.container import Container, build_container, container_config, synthetic_market_feed


def test_sqlite_is_selected_without_a_database_url(tmp_path):
    container = build_container(Settings(data_dir=tmp_path))
    assert isinstance(container.store(), SqliteOrderbookStore)
    assert isinstance(container.model_registry(), SqliteModelRegistry)
    assert container.config.storage.sqlite_path() == str(tmp_path / "kalshiflow.db")


def test_postgres_is_selected_by_a_database_url(tmp_path):
    container = build_container(Settings(data_dir=tmp_path, database_url="postgresql://postgres@127.0.0.1:5432/test"))
    assert isinstance(container.store(), PostgresOrderbookStore)
    assert isinstance(container.model_registry(), PostgresModelRegistry)


def test_the_selected_adapters_implement_the_ports(tmp_path):
    container = build_container(Settings(data_dir=tmp_path))
    assert isinstance(container.store(), OrderbookStore)
    assert isinstance(container.model_registry(), ModelRegistry)
    assert isinstance(container.clock(), Clock)


def test_one_store_per_container(tmp_path):
    container = build_container(Settings(data_dir=tmp_path))
    assert container.store() is container.store()
    other = build_container(Settings(data_dir=tmp_path))
    assert other.store() is not container.store()


def test_configuration_is_strict():
    with pytest.raises(errors.Error, match="Undefined configuration option"):
        Container().store()


def test_the_configuration_tree_mirrors_the_settings(tmp_path):
    settings = Settings(data_dir=tmp_path, orderbook_batch_size=7, orderbook_flush_interval_s=0.5)
    tree = container_config(settings)
    assert tree["storage"] == {"kind": "sqlite", "sqlite_path": str(tmp_path / "kalshiflow.db"), "database_url": None}
    assert tree["recording"] == {"batch_size": 7, "flush_interval_ms": 500, "sample_every": 1, "drain_timeout_s": 30.0}
    assert tree["paths"]["models_dir"] == str(tmp_path / "models")


async def test_an_overridden_store_receives_the_recording_with_the_configured_batch_size(
    tmp_path, fake_store, fake_feed_type
):
    container = build_container(Settings(data_dir=tmp_path, orderbook_batch_size=4))
    container.store.override(providers.Object(fake_store))
    container.synthetic_feed.override(providers.Factory(fake_feed_type))
    feed = container.synthetic_feed(markets=2, events=10)
    await fake_store.open()

    summary = await container.record_session(feed, tickers=feed.tickers, source="synthetic")

    assert summary == RecordingSummary(1, snapshots=1, deltas=7, trades=1, resolutions=1, schedules=2)
    assert [e.ts_ms for e in fake_store.sessions[1]["events"]][2:5] == [0, 0, 1]  # after the 2 schedules
    assert fake_store.sessions[1]["ended_ms"] is not None
    assert container.storage.orderbook_store() is fake_store  # the override reaches the source


def test_no_layer_below_the_entrypoints_imports_the_container_library():
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for layer in ("domain", "application", "adapters")
        for path in (root / layer).rglob("*.py")
        if "dependency_injector" in path.read_text()
    ]
    assert offenders == []


async def test_the_synthetic_feed_gives_about_the_events_asked_for_and_resolves_every_market():
    feed = synthetic_market_feed(markets=3, events=3000, seed=3, tick="deci_cent")
    assert feed.tickers == ("SYN-3-M0", "SYN-3-M1", "SYN-3-M2")
    assert feed.config.tick_structure == "deci_cent"

    events = [event async for event in feed.events()]

    assert 3000 <= len(events) <= 3000 + 3 * 20  # an action may overshoot a market's share
    resolved = [event.ticker for event in events if isinstance(event, MarketResolved)]
    assert sorted(resolved) == list(feed.tickers)
    # The markets close soon after their flow ends, not after a long silence.
    last_ms = max(event.ts_ms for event in events if not isinstance(event, MarketResolved))
    flow_ms = last_ms - feed.config.start_ms
    assert flow_ms < feed.config.duration_ms <= 1.15 * flow_ms
