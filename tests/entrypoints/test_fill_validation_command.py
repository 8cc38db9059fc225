"""``kalshiflow-rl validate-fills`` in process, on the fake store, and the environment settings
that carry the simulated exchange's configuration."""

from __future__ import annotations

import pytest
from dependency_injector import providers

from adapters.simulated_exchange import ProbabilisticQueueModel, RiskAverseQueueModel
from application.replay import ReplayConfig, compile_market
from domain.events import BookSnapshot, MarketResolved
from domain.values import Side
from entrypoints import cli
from entrypoints.config import Settings
from entrypoints.container import build_container
from entrypoints.learning import EnvironmentSettings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def container(settings, fake_store, fake_registry, fake_feed_type):
    container = build_container(settings)
    container.store.override(providers.Object(fake_store))
    container.model_registry.override(providers.Object(fake_registry))
    container.synthetic_feed.override(providers.Factory(fake_feed_type))
    return container


def run(argv, settings, container) -> int:
    return cli.run(cli.build_parser().parse_args(argv), settings, container)


def test_validate_fills_prints_a_fill_rate_per_queue_model_and_pricing(settings, container, capsys):
    assert run(["collect", "--markets", "1", "--events", "3000"], settings, container) == 0
    capsys.readouterr()

    code = run(
        [
            "validate-fills", "--sessions", "1", "--queue-models", "risk-averse", "probabilistic-log",
            "--latency-ms", "50", "--step-ms", "100", "--every-s", "1", "--horizon-s", "2",
        ],
        settings,
        container,
    )

    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Fill rates on 1 markets: buys of YES and of NO, 10 contracts, one every 1 s")
    rows = [line.split() for line in lines[3:-1]]
    assert [(row[0], row[2], row[3]) for row in rows] == [
        (model, "ms", pricing)
        for model in ("risk-averse,", "probabilistic-log,")
        for pricing in ("passive", "mid", "aggressive")
    ]
    assert all(row[1] == "50" for row in rows)


def test_validate_fills_on_an_unknown_session_or_queue_model_is_a_usage_error(settings, container, capsys):
    assert run(["validate-fills", "--sessions", "9"], settings, container) == cli.EXIT_USAGE
    assert "unknown session" in capsys.readouterr().err
    run(["collect", "--markets", "1", "--events", "100"], settings, container)
    assert run(["validate-fills", "--sessions", "1", "--queue-models", "fifo"], settings, container) == cli.EXIT_USAGE
    assert "unknown queue model 'fifo'" in capsys.readouterr().err


def test_the_environment_settings_carry_the_exchange_and_survive_a_round_trip():
    settings = EnvironmentSettings(latency_ms=250, queue_model="probabilistic-log", liquidity_refill_ms=5_000)
    assert EnvironmentSettings(**settings.as_dict()) == settings
    config = settings.exchange_config()
    assert (config.latency_ms, config.queue_model.name, config.liquidity_refill_ms) == (250, "probabilistic-log", 5_000)
    snapshot = BookSnapshot("T", 1, 0, yes=((4500, 100),), no=((5300, 100),))
    recording = [snapshot, MarketResolved("T", 2000, Side.NO)]
    tape = compile_market(recording, ticker="T", session_id=1, config=ReplayConfig())
    assert settings.make_environment([tape]).exchange_config == config
    default = EnvironmentSettings()
    assert default.exchange_config().queue_model == RiskAverseQueueModel() and default.latency_ms == 100
    assert EnvironmentSettings(**{"contract_size": 5}).queue_model == "risk-averse"  # models saved before these fields
    assert isinstance(default.exchange_config("probabilistic-power-2").queue_model, ProbabilisticQueueModel)
    with pytest.raises(ValueError, match="unknown queue model"):
        EnvironmentSettings(queue_model="fifo")
    with pytest.raises(ValueError, match="latency_ms"):
        EnvironmentSettings(latency_ms=-1)
