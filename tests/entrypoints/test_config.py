"""Settings from environment variables: every variable, every error message, the refusals."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from entrypoints.config import (
    ActorStrategy,
    ConfigError,
    KalshiEnv,
    Settings,
    StoreKind,
    TradingMode,
    is_production_host,
    unknown_variable_warnings,
)


def problems_of(environ: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    return caught.value.problems


def only_problem(environ: dict[str, str]) -> str:
    (problem,) = problems_of(environ)
    return problem


# ---------------------------------------------------------------------------------------------
# Defaults and every variable
# ---------------------------------------------------------------------------------------------
def test_an_empty_environment_gives_safe_defaults():
    settings = Settings.from_env({})
    assert settings.market_tickers == ()
    assert settings.orderbook_batch_size == 100
    assert settings.orderbook_flush_interval_s == 1.0
    assert settings.flush_interval_ms == 1000
    assert settings.orderbook_sample_rate == 1
    assert settings.actor_enabled is False
    assert settings.actor_strategy is ActorStrategy.DISABLED
    assert settings.actor_model_path is None
    assert settings.actor_throttle_ms == 0  # the model's own step
    assert settings.actor_contract_size == 10
    assert settings.kalshi_env is KalshiEnv.LOCAL
    assert settings.kalshi_rest_url == "http://127.0.0.1:8765/trade-api/v2"
    assert settings.kalshi_ws_url == "ws://127.0.0.1:8765/trade-api/ws/v2"
    assert settings.trading_mode is TradingMode.TRAINING
    assert settings.database_url is None
    assert settings.store_kind is StoreKind.SQLITE
    assert settings.sqlite_path == Path("data") / "kalshiflow.db"
    assert settings.models_dir == Path("data") / "models"
    assert settings.kalshi_api_key_id is None and settings.kalshi_private_key_path is None


def test_every_variable_is_read(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    settings = Settings.from_env(
        {
            "KALSHI_API_KEY_ID": "key-123",
            "KALSHI_PRIVATE_KEY_PATH": str(key),
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
            "RL_MARKET_TICKERS": " INXD-25JAN03 , KXBTC-25DEC31,,",
            "RL_ORDERBOOK_BATCH_SIZE": "250",
            "RL_ORDERBOOK_FLUSH_INTERVAL": "0.25",
            "RL_ORDERBOOK_SAMPLE_RATE": "3",
            "RL_ACTOR_ENABLED": "TRUE",
            "RL_ACTOR_STRATEGY": "rl_model",
            "RL_ACTOR_MODEL_PATH": "/models/ppo.zip",
            "RL_ACTOR_THROTTLE_MS": "0",
            "RL_ACTOR_CONTRACT_SIZE": "5",
            "KALSHI_ENV": "demo",
            "RL_TRADING_MODE": "paper",
            "RL_DATA_DIR": str(tmp_path / "d"),
        }
    )
    assert settings.kalshi_api_key_id == "key-123"
    assert settings.kalshi_private_key_path == key
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/test"
    assert settings.store_kind is StoreKind.POSTGRES
    assert settings.market_tickers == ("INXD-25JAN03", "KXBTC-25DEC31")
    assert settings.orderbook_batch_size == 250
    assert settings.flush_interval_ms == 250
    assert settings.orderbook_sample_rate == 3
    assert settings.actor_enabled is True
    assert settings.actor_strategy is ActorStrategy.RL_MODEL
    assert settings.actor_model_path == Path("/models/ppo.zip")
    assert settings.actor_throttle_ms == 0
    assert settings.actor_contract_size == 5
    assert settings.kalshi_env is KalshiEnv.DEMO
    assert settings.kalshi_rest_url == "https://external-api.demo.kalshi.co/trade-api/v2"
    assert settings.kalshi_ws_url == "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"
    assert settings.trading_mode is TradingMode.PAPER
    assert settings.sqlite_path == tmp_path / "d" / "kalshiflow.db"


def test_the_singular_ticker_variable_of_the_earlier_system_is_accepted_and_merged():
    assert Settings.from_env({"RL_MARKET_TICKER": "INXD-25JAN03"}).market_tickers == ("INXD-25JAN03",)
    merged = Settings.from_env({"RL_MARKET_TICKERS": "A-1,B-2", "RL_MARKET_TICKER": "B-2,C-3"})
    assert merged.market_tickers == ("A-1", "B-2", "C-3")


def test_local_port_and_url_overrides():
    settings = Settings.from_env({"KALSHI_LOCAL_PORT": "9000"})
    assert settings.kalshi_rest_url == "http://127.0.0.1:9000/trade-api/v2"
    assert settings.kalshi_ws_url == "ws://127.0.0.1:9000/trade-api/ws/v2"
    overridden = Settings.from_env(
        {"KALSHI_REST_URL": "http://localhost:1234/trade-api/v2/", "KALSHI_WS_URL": "ws://localhost:1234/ws"}
    )
    assert overridden.kalshi_rest_url == "http://localhost:1234/trade-api/v2"
    assert overridden.kalshi_ws_url == "ws://localhost:1234/ws"


def test_the_postgres_scheme_alias_is_accepted():
    assert Settings.from_env({"DATABASE_URL": "postgres://u:p@db/x"}).store_kind is StoreKind.POSTGRES


def test_empty_values_count_as_unset():
    settings = Settings.from_env({"DATABASE_URL": "", "RL_ORDERBOOK_BATCH_SIZE": "  ", "KALSHI_ENV": ""})
    assert settings.store_kind is StoreKind.SQLITE
    assert settings.orderbook_batch_size == 100


@pytest.mark.parametrize(("text", "expected"), [("1", True), ("yes", True), ("On", True), ("0", False), ("no", False), ("off", False)])
def test_booleans_in_their_usual_spellings(text, expected):
    environ = {"RL_ACTOR_ENABLED": text, "RL_ACTOR_STRATEGY": "hardcoded"}
    assert Settings.from_env(environ).actor_enabled is expected


def test_production_market_data_may_be_read_when_nothing_trades():
    settings = Settings.from_env({"KALSHI_ENV": "production"})
    assert settings.kalshi_rest_url == "https://external-api.kalshi.com/trade-api/v2"
    assert settings.trading_mode is TradingMode.TRAINING and not settings.actor_enabled


def test_the_database_password_is_not_shown_in_the_repr():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://user:s3cret@db:5432/x"})
    assert "s3cret" not in repr(settings)
    assert "postgresql://user:***@db:5432/x" in repr(settings)


# ---------------------------------------------------------------------------------------------
# Every error message
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RL_ORDERBOOK_BATCH_SIZE", "abc", "RL_ORDERBOOK_BATCH_SIZE='abc': must be a positive integer, e.g. 100"),
        ("RL_ORDERBOOK_BATCH_SIZE", "0", "RL_ORDERBOOK_BATCH_SIZE='0': must be a positive integer, e.g. 100"),
        ("RL_ORDERBOOK_FLUSH_INTERVAL", "soon", "RL_ORDERBOOK_FLUSH_INTERVAL='soon': must be a number of seconds > 0, e.g. 1.0"),
        ("RL_ORDERBOOK_FLUSH_INTERVAL", "0", "RL_ORDERBOOK_FLUSH_INTERVAL='0': must be a number of seconds > 0, e.g. 1.0"),
        ("RL_ORDERBOOK_FLUSH_INTERVAL", "inf", "RL_ORDERBOOK_FLUSH_INTERVAL='inf': must be a number of seconds > 0, e.g. 1.0"),
        ("RL_ORDERBOOK_FLUSH_INTERVAL", "nan", "RL_ORDERBOOK_FLUSH_INTERVAL='nan': must be a number of seconds > 0, e.g. 1.0"),
        ("RL_ORDERBOOK_SAMPLE_RATE", "0", "RL_ORDERBOOK_SAMPLE_RATE='0': must be a positive integer, 1 keeps every delta"),
        ("RL_ACTOR_ENABLED", "maybe", "RL_ACTOR_ENABLED='maybe': must be true or false (also accepted: 1/0, yes/no, on/off)"),
        ("RL_ACTOR_STRATEGY", "greedy", "RL_ACTOR_STRATEGY='greedy': must be one of rl_model or hardcoded or disabled"),
        ("RL_ACTOR_THROTTLE_MS", "-1", "RL_ACTOR_THROTTLE_MS='-1': must be an integer >= 0, 0 for the model's step, or that step"),
        ("RL_ACTOR_THROTTLE_MS", "0.5", "RL_ACTOR_THROTTLE_MS='0.5': must be an integer >= 0, 0 for the model's step, or that step"),
        ("RL_ACTOR_CONTRACT_SIZE", "0", "RL_ACTOR_CONTRACT_SIZE='0': must be a positive integer, e.g. 10"),
        ("KALSHI_ENV", "staging", "KALSHI_ENV='staging': must be one of local or demo or production"),
        ("KALSHI_LOCAL_PORT", "http", "KALSHI_LOCAL_PORT='http': must be a positive integer, a TCP port such as 8765"),
        ("KALSHI_LOCAL_PORT", "70000", "KALSHI_LOCAL_PORT='70000': must be a TCP port between 1 and 65535, e.g. 8765"),
        ("KALSHI_REST_URL", "ftp://x/y", "KALSHI_REST_URL='ftp://x/y': must be a http or https URL with a host, e.g. http://127.0.0.1:8765/trade-api/..."),
        ("KALSHI_WS_URL", "http://x/ws", "KALSHI_WS_URL='http://x/ws': must be a ws or wss URL with a host, e.g. ws://127.0.0.1:8765/trade-api/..."),
        ("RL_TRADING_MODE", "live", "RL_TRADING_MODE='live': must be training or paper; real-money trading is not supported by this system"),
        ("RL_MARKET_TICKERS", "GOOD-1,bad ticker", "RL_MARKET_TICKERS='GOOD-1,bad ticker': 'bad ticker' is not a market ticker; give comma-separated tickers such as INXD-25JAN03,KXBTC-25DEC31"),
        ("RL_MARKET_TICKER", "$$$", "RL_MARKET_TICKER='$$$': '$$$' is not a market ticker; give comma-separated tickers such as INXD-25JAN03,KXBTC-25DEC31"),
        ("DATABASE_URL", "mysql://db/x", "DATABASE_URL='mysql://db/x': must be a PostgreSQL URL (postgresql://user:password@host:5432/database); unset it to use the embedded SQLite store in RL_DATA_DIR"),
        ("DATABASE_URL", "sqlite:///data/x.db", "DATABASE_URL='sqlite:///data/x.db': must be a PostgreSQL URL"),
        ("DATABASE_URL", "postgresql://", "DATABASE_URL='postgresql://': names no host or database, e.g. postgresql://postgres@127.0.0.1:5432/kalshiflow"),
    ],
)
def test_each_bad_value_is_named_with_what_is_wrong_and_how_to_fix_it(name, value, message):
    assert only_problem({name: value}).startswith(message)


def test_a_private_key_path_must_name_a_file(tmp_path):
    problems = problems_of({"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem")})
    assert problems == (
        f"KALSHI_PRIVATE_KEY_PATH={str(tmp_path / 'missing.pem')!r}: no such file; point it at the PEM "
        "private key of your Kalshi API key",
    )


def test_credentials_come_in_pairs():
    assert only_problem({"KALSHI_API_KEY_ID": "k"}) == (
        "KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH: set both (the key id and the PEM file of the "
        "same API key) or neither"
    )


def test_an_enabled_actor_needs_a_strategy():
    assert only_problem({"RL_ACTOR_ENABLED": "true"}).startswith(
        "RL_ACTOR_ENABLED=true with RL_ACTOR_STRATEGY=disabled: choose a strategy"
    )


def test_one_error_lists_every_bad_variable():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {"RL_ORDERBOOK_BATCH_SIZE": "abc", "RL_ACTOR_THROTTLE_MS": "-5", "DATABASE_URL": "mysql://x/y"}
        )
    error = caught.value
    assert len(error.problems) == 3
    text = str(error)
    assert text.startswith("invalid configuration (3 problem(s)):\n")
    for name in ("RL_ORDERBOOK_BATCH_SIZE='abc'", "RL_ACTOR_THROTTLE_MS='-5'", "DATABASE_URL='mysql://x/y'"):
        assert f"  - {name}" in text


# ---------------------------------------------------------------------------------------------
# Real money is refused
# ---------------------------------------------------------------------------------------------
def test_paper_trading_against_production_is_refused():
    assert only_problem({"KALSHI_ENV": "production", "RL_TRADING_MODE": "paper"}) == (
        "KALSHI_ENV=production with RL_TRADING_MODE=paper: refused, orders must never reach Kalshi's "
        "real-money exchange; use KALSHI_ENV=demo or local for paper trading"
    )


def test_an_enabled_actor_against_production_is_refused():
    assert only_problem(
        {"KALSHI_ENV": "production", "RL_ACTOR_ENABLED": "true", "RL_ACTOR_STRATEGY": "hardcoded"}
    ) == (
        "KALSHI_ENV=production with RL_ACTOR_ENABLED=true: refused, the actor would trade real money; "
        "set RL_ACTOR_ENABLED=false, or use KALSHI_ENV=demo or local"
    )


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("KALSHI_REST_URL", "https://external-api.kalshi.com/trade-api/v2"),
        ("KALSHI_REST_URL", "https://api.elections.kalshi.com/trade-api/v2"),
        ("KALSHI_WS_URL", "wss://external-api-ws.kalshi.com/trade-api/ws/v2"),
        ("KALSHI_WS_URL", "wss://trading-api.KALSHI.com/trade-api/ws/v2"),
    ],
)
def test_a_production_host_in_an_override_is_refused_when_trading(variable, url):
    problem = only_problem({"KALSHI_ENV": "demo", variable: url, "RL_TRADING_MODE": "paper"})
    assert problem.startswith(f"{variable}={url!r} (a production host) with RL_TRADING_MODE=paper: refused")


def test_the_demo_exchange_is_not_production():
    assert not is_production_host("https://external-api.demo.kalshi.co/trade-api/v2")
    assert not is_production_host("https://demo-api.kalshi.co/trade-api/v2")
    assert not is_production_host("https://notkalshi.com/x")
    assert is_production_host("https://external-api.kalshi.com/trade-api/v2")
    Settings.from_env({"KALSHI_ENV": "demo", "RL_TRADING_MODE": "paper"})


def test_direct_construction_refuses_real_money_too():
    with pytest.raises(ConfigError, match="RL_TRADING_MODE=paper: refused"):
        Settings(kalshi_env=KalshiEnv.PRODUCTION, trading_mode=TradingMode.PAPER)
    settings = Settings()
    with pytest.raises(ConfigError, match="RL_ACTOR_ENABLED=true: refused"):
        attrs.evolve(settings, kalshi_rest_url="https://external-api.kalshi.com/trade-api/v2", actor_enabled=True)


def test_settings_are_frozen_and_strict():
    settings = Settings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.orderbook_batch_size = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="orderbook_batch_size must be > 0"):
        Settings(orderbook_batch_size=0)


# ---------------------------------------------------------------------------------------------
# Typos
# ---------------------------------------------------------------------------------------------
def test_variables_that_look_like_typos_of_ours_are_reported():
    warnings = unknown_variable_warnings(
        {"RL_ORDERBOK_BATCH_SIZE": "5", "RL_SOMETHING_ELSE": "x", "RL_DATA_DIR": "d", "PATH": "/bin"}
    )
    assert warnings == [
        "RL_ORDERBOK_BATCH_SIZE is not a known variable and is ignored; did you mean RL_ORDERBOOK_BATCH_SIZE?"
    ]
