"""The actor's configuration, wiring and service endpoints (health, status, kill switch)."""

from __future__ import annotations

import attrs
import httpx
import pytest

from application.acting import PaperTradingActor
from application.book_state import SharedBookState
from entrypoints import cli
from entrypoints.actor_command import (
    ActorUnavailable,
    build_actor,
    check_decision_interval,
    hardcoded_model,
    risk_limits,
)
from entrypoints.config import ActorStrategy, ConfigError, Settings
from entrypoints.container import WallClock, build_container
from entrypoints.serve_command import serving
from entrypoints.service import create_app
from domain.values import MONEY_SCALE, ONE_CONTRACT


def test_risk_limits_come_from_the_environment_in_domain_units():
    settings = Settings.from_env(
        {"RL_ACTOR_MAX_POSITION": "20", "RL_ACTOR_MAX_OPEN_ORDERS": "3", "RL_ACTOR_MAX_DAILY_LOSS": "12.50"}
    )
    limits = risk_limits(settings)
    assert (limits.max_position, limits.max_open_orders, limits.max_daily_loss) == (
        20 * ONE_CONTRACT, 3, 12_500_000,
    )
    defaults = risk_limits(Settings.from_env({}))
    assert defaults.max_daily_loss == 50 * MONEY_SCALE and defaults.max_position == 50 * ONE_CONTRACT


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"RL_ACTOR_MAX_DAILY_LOSS": "0"}, "RL_ACTOR_MAX_DAILY_LOSS"),
        ({"RL_ACTOR_MAX_DAILY_LOSS": "1.0000001"}, "RL_ACTOR_MAX_DAILY_LOSS"),
        ({"RL_ACTOR_MAX_DAILY_LOSS": "lots"}, "RL_ACTOR_MAX_DAILY_LOSS"),
        ({"RL_ACTOR_MAX_OPEN_ORDERS": "0"}, "RL_ACTOR_MAX_OPEN_ORDERS"),
        ({"RL_ACTOR_MAX_POSITION": "5", "RL_ACTOR_CONTRACT_SIZE": "10"}, "RL_ACTOR_MAX_POSITION=5"),
    ],
)
def test_bad_risk_limits_are_refused_naming_the_variable(environ, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(environ)


def test_the_actor_command_is_listed():
    args = cli.build_parser().parse_args(["actor", "--market-tickers", "A,B", "--model-name", "m"])
    assert args.market_tickers == ("A", "B") and args.model_name == "m"


async def test_the_actor_needs_to_be_enabled_and_an_active_model(fake_registry, tmp_path):
    books = SharedBookState(["A"])
    disabled = Settings(data_dir=tmp_path)
    with pytest.raises(ActorUnavailable, match="RL_ACTOR_ENABLED"):
        await build_actor(disabled, build_container(disabled), books=books, tickers=["A"], registry=fake_registry,
                          records=None, gateway=None, markets=None)  # fmt: skip
    enabled = Settings(data_dir=tmp_path, actor_enabled=True, actor_strategy=ActorStrategy.RL_MODEL)
    with pytest.raises(ActorUnavailable, match="no active version"):
        await build_actor(enabled, build_container(enabled), books=books, tickers=["A"], registry=fake_registry,
                          records=None, gateway=None, markets=None)  # fmt: skip


async def test_the_hardcoded_strategy_is_filed_under_one_registry_model(fake_registry, tmp_path):
    settings = Settings(data_dir=tmp_path, actor_enabled=True, actor_strategy=ActorStrategy.HARDCODED, actor_contract_size=5)
    await fake_registry.open()
    first = await hardcoded_model(settings, fake_registry, WallClock())
    again = await hardcoded_model(settings, fake_registry, WallClock())
    assert first.model_id == again.model_id and first.contract_size == 5
    assert first.decoder.config.order_size == 5 * ONE_CONTRACT
    parts = await build_actor(settings, build_container(settings), books=SharedBookState(["A"]), tickers=["A"],
                              registry=fake_registry, records=None, gateway=None, markets=None)  # fmt: skip
    assert isinstance(parts.actor, PaperTradingActor) and parts.actor.config.contract_size == 5


async def test_the_service_reports_the_actor_and_its_kill_switch_stops_it(local_exchange, live_settings):
    killed = []

    async def kill():
        killed.append(True)
        return {"halted": True, "reason": "kill switch", "orders_cancelled": 2}

    async with local_exchange() as exchange:
        ingestion = build_container(live_settings(exchange)).live_ingestion()
        status = {"status": "ok", "state": "running", "counters": {"decisions": 3}}
        booked = [{"fill_id": "f-1", "count_fp": "2.00"}]
        app = create_app(
            ingestion, actor_enabled=True, actor_status=lambda: status, actor_kill=kill, actor_fills=lambda: booked
        )
        bare = create_app(ingestion)
        async with serving(app, "127.0.0.1", 0) as server, serving(bare, "127.0.0.1", 0) as bare_server:
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
                health = (await http.get("/rl/health")).json()
                body = (await http.get("/rl/status")).json()
                response = await http.post("/rl/admin/kill")
                fills = (await http.get("/rl/actor/fills")).json()
            async with httpx.AsyncClient(base_url=bare_server.url, trust_env=False) as http:
                refused = await http.post("/rl/admin/kill")
                no_fills = await http.get("/rl/actor/fills")
    assert health["components"]["actor"] == status
    assert body["actor"]["counters"] == {"decisions": 3}
    assert response.status_code == 200 and response.json()["orders_cancelled"] == 2 and killed == [True]
    assert refused.status_code == 409 and "no actor" in refused.json()["error"]
    assert fills == {"count": 1, "fills": booked} and no_fills.status_code == 409


async def test_a_decision_interval_other_than_the_models_step_is_refused(fake_registry, tmp_path):
    await fake_registry.open()
    settings = Settings(data_dir=tmp_path, actor_enabled=True, actor_strategy=ActorStrategy.HARDCODED)
    model = attrs.evolve(await hardcoded_model(settings, fake_registry, WallClock()), step_ms=1_000, label="agent v1")
    for requested in (0, 1_000):  # 0: the model's own step
        check_decision_interval(attrs.evolve(settings, actor_throttle_ms=requested), model)
    with pytest.raises(ActorUnavailable, match="RL_ACTOR_THROTTLE_MS=250, but agent v1 was trained deciding every 1000 ms"):
        check_decision_interval(attrs.evolve(settings, actor_throttle_ms=250), model)
