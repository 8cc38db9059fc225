"""Settings: every environment variable the system reads, parsed once and strictly at start-up.

``Settings.from_env()`` reads them all, collects every problem, and raises one
:class:`ConfigError` that names each bad variable, what was wrong and how to fix it, so a
misconfigured process stops before it touches a socket or a database. Nothing here places
orders, but it refuses any combination that could: trading settings pointed at Kalshi's
production hosts, and any trading mode other than ``training`` or ``paper``.
"""

from __future__ import annotations

import decimal
import difflib
import enum
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs

T = TypeVar("T")


class ConfigError(ValueError):
    """The environment holds an invalid configuration. ``problems`` has one line per variable."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class KalshiEnv(enum.Enum):
    LOCAL = "local"  # our local exchange on 127.0.0.1
    DEMO = "demo"  # Kalshi's demo exchange: paper money
    PRODUCTION = "production"  # real money: market data only, never orders


class TradingMode(enum.Enum):
    TRAINING = "training"  # replay recorded data against the simulated exchange
    PAPER = "paper"  # orders to the local or demo exchange


class ActorStrategy(enum.Enum):
    RL_MODEL = "rl_model"
    HARDCODED = "hardcoded"
    DISABLED = "disabled"


class StoreKind(enum.Enum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


# Base URLs per environment (kalshi-protocol.md, "Environments"). ``{port}`` is KALSHI_LOCAL_PORT.
_BASE_URLS = {
    KalshiEnv.LOCAL: ("http://127.0.0.1:{port}/trade-api/v2", "ws://127.0.0.1:{port}/trade-api/ws/v2"),
    KalshiEnv.DEMO: (
        "https://external-api.demo.kalshi.co/trade-api/v2",
        "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2",
    ),
    KalshiEnv.PRODUCTION: (
        "https://external-api.kalshi.com/trade-api/v2",
        "wss://external-api-ws.kalshi.com/trade-api/ws/v2",
    ),
}

DEFAULT_LOCAL_PORT = 8765
DEFAULT_MAX_DAILY_LOSS = 50_000_000  # micro-dollars: $50
SQLITE_FILE_NAME = "kalshiflow.db"
_TICKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_production_host(url: str) -> bool:
    """Every real-money Kalshi host lives under kalshi.com; the demo exchange is kalshi.co."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "kalshi.com" or host.endswith(".kalshi.com")


def redact_dsn(dsn: str | None) -> str | None:
    """The DSN without its password, for reprs and logs."""
    if dsn is None:
        return None
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _positive(_instance: Any, attribute: attrs.Attribute, value: int | float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _not_negative(_instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


_int = attrs.validators.instance_of(int)
_str_or_none = attrs.validators.optional(attrs.validators.instance_of(str))
_path_or_none = attrs.validators.optional(attrs.validators.instance_of(Path))


@attrs.frozen(kw_only=True)
class Settings:
    """The whole configuration. Build it with :meth:`from_env`; direct construction is for tests."""

    kalshi_api_key_id: str | None = attrs.field(default=None, validator=_str_or_none)
    kalshi_private_key_path: Path | None = attrs.field(default=None, validator=_path_or_none)
    database_url: str | None = attrs.field(default=None, validator=_str_or_none, repr=redact_dsn)
    market_tickers: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    orderbook_batch_size: int = attrs.field(default=100, validator=[_int, _positive])
    orderbook_flush_interval_s: float = attrs.field(default=1.0, converter=float, validator=_positive)
    # RL_ORDERBOOK_SAMPLE_RATE: 1 stores every delta; N > 1 stores, per market, one snapshot of
    # the book per N deltas instead of the deltas (never a subset of deltas, which would corrupt
    # every book replayed after it). See application.book_sampling.
    orderbook_sample_rate: int = attrs.field(default=1, validator=[_int, _positive])
    actor_enabled: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    actor_strategy: ActorStrategy = attrs.field(
        default=ActorStrategy.DISABLED, validator=attrs.validators.instance_of(ActorStrategy)
    )
    actor_model_path: Path | None = attrs.field(default=None, validator=_path_or_none)
    actor_throttle_ms: int = attrs.field(default=0, validator=[_int, _not_negative])  # 0: the model's step
    actor_contract_size: int = attrs.field(default=10, validator=[_int, _positive])
    # Risk limits (domain.risk): whole contracts per market, orders open at once, micro-dollars a day.
    actor_max_position: int = attrs.field(default=50, validator=[_int, _positive])
    actor_max_open_orders: int = attrs.field(default=10, validator=[_int, _positive])
    actor_max_daily_loss: int = attrs.field(default=DEFAULT_MAX_DAILY_LOSS, validator=[_int, _positive])
    kalshi_env: KalshiEnv = attrs.field(default=KalshiEnv.LOCAL, validator=attrs.validators.instance_of(KalshiEnv))
    kalshi_local_port: int = attrs.field(default=DEFAULT_LOCAL_PORT, validator=_int)
    kalshi_rest_url: str = attrs.field(validator=attrs.validators.instance_of(str))
    kalshi_ws_url: str = attrs.field(validator=attrs.validators.instance_of(str))
    trading_mode: TradingMode = attrs.field(
        default=TradingMode.TRAINING, validator=attrs.validators.instance_of(TradingMode)
    )
    data_dir: Path = attrs.field(default=Path("data"), converter=Path)

    @kalshi_rest_url.default
    def _default_rest_url(self) -> str:
        return _BASE_URLS[self.kalshi_env][0].format(port=self.kalshi_local_port)

    @kalshi_ws_url.default
    def _default_ws_url(self) -> str:
        return _BASE_URLS[self.kalshi_env][1].format(port=self.kalshi_local_port)

    def __attrs_post_init__(self) -> None:
        problems = _real_money_problems(
            self.kalshi_env, self.kalshi_rest_url, self.kalshi_ws_url, self.trading_mode, self.actor_enabled
        )
        if problems:
            raise ConfigError(problems)

    # -- derived -----------------------------------------------------------------------------
    @property
    def store_kind(self) -> StoreKind:
        return StoreKind.POSTGRES if self.database_url else StoreKind.SQLITE

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / SQLITE_FILE_NAME

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def store_description(self) -> str:
        """Where recordings and models are kept, for messages (never shows a password)."""
        if self.store_kind is StoreKind.SQLITE:
            return f"SQLite {self.sqlite_path}"
        return f"PostgreSQL {redact_dsn(self.database_url)}"

    @property
    def flush_interval_ms(self) -> int:
        return max(1, round(self.orderbook_flush_interval_s * 1000))

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse ``environ`` (default ``os.environ``); raises one :class:`ConfigError` listing
        every invalid variable. An empty value counts as unset."""
        return _EnvParser(os.environ if environ is None else environ).settings()


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------
KNOWN_VARIABLES = (
    "KALSHI_API_KEY_ID",
    "KALSHI_PRIVATE_KEY_PATH",
    "KALSHI_ENV",
    "KALSHI_LOCAL_PORT",
    "KALSHI_REST_URL",
    "KALSHI_WS_URL",
    "DATABASE_URL",
    "RL_MARKET_TICKERS",
    "RL_MARKET_TICKER",
    "RL_ORDERBOOK_BATCH_SIZE",
    "RL_ORDERBOOK_FLUSH_INTERVAL",
    "RL_ORDERBOOK_SAMPLE_RATE",
    "RL_ACTOR_ENABLED",
    "RL_ACTOR_STRATEGY",
    "RL_ACTOR_MODEL_PATH",
    "RL_ACTOR_THROTTLE_MS",
    "RL_ACTOR_CONTRACT_SIZE",
    "RL_ACTOR_MAX_POSITION",
    "RL_ACTOR_MAX_OPEN_ORDERS",
    "RL_ACTOR_MAX_DAILY_LOSS",
    "RL_TRADING_MODE",
    "RL_DATA_DIR",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _Invalid(ValueError):
    """One variable's problem; the parser collects them."""


class _EnvParser:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def read(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """``parse`` the variable, or record its problem and carry on with ``default``."""
        text = self.raw(name)
        if text is None:
            return default
        try:
            return parse(text)
        except _Invalid as problem:
            self.problems.append(f"{name}={text!r}: {problem}")
            return default

    def settings(self) -> Settings:
        read = self.read
        values: dict[str, Any] = {
            "kalshi_api_key_id": self.raw("KALSHI_API_KEY_ID"),
            "kalshi_private_key_path": read("KALSHI_PRIVATE_KEY_PATH", _existing_file, None),
            "database_url": read("DATABASE_URL", _postgres_dsn, None),
            "market_tickers": self.tickers(),
            "orderbook_batch_size": read("RL_ORDERBOOK_BATCH_SIZE", _at_least(1, "e.g. 100"), 100),
            "orderbook_flush_interval_s": read("RL_ORDERBOOK_FLUSH_INTERVAL", _seconds, 1.0),
            "orderbook_sample_rate": read(
                "RL_ORDERBOOK_SAMPLE_RATE", _at_least(1, "1 keeps every delta"), 1
            ),
            "actor_enabled": read("RL_ACTOR_ENABLED", _boolean, False),
            "actor_strategy": read("RL_ACTOR_STRATEGY", _choice(ActorStrategy), ActorStrategy.DISABLED),
            "actor_model_path": read("RL_ACTOR_MODEL_PATH", Path, None),
            "actor_throttle_ms": read("RL_ACTOR_THROTTLE_MS", _at_least(0, "0 for the model's step, or that step"), 0),
            "actor_contract_size": read("RL_ACTOR_CONTRACT_SIZE", _at_least(1, "e.g. 10"), 10),
            "actor_max_position": read(
                "RL_ACTOR_MAX_POSITION", _at_least(1, "whole contracts per market, e.g. 50"), 50
            ),
            "actor_max_open_orders": read("RL_ACTOR_MAX_OPEN_ORDERS", _at_least(1, "e.g. 10"), 10),
            "actor_max_daily_loss": read("RL_ACTOR_MAX_DAILY_LOSS", _dollars, DEFAULT_MAX_DAILY_LOSS),
            "kalshi_local_port": read("KALSHI_LOCAL_PORT", _port, DEFAULT_LOCAL_PORT),
            "data_dir": read("RL_DATA_DIR", Path, Path("data")),
        }
        env = read("KALSHI_ENV", _choice(KalshiEnv), KalshiEnv.LOCAL)
        trading_mode = read("RL_TRADING_MODE", _trading_mode, TradingMode.TRAINING)
        rest_default, ws_default = _BASE_URLS[env]
        rest_url = read("KALSHI_REST_URL", _url(("http", "https")), None)
        ws_url = read("KALSHI_WS_URL", _url(("ws", "wss")), None)
        values.update(
            kalshi_env=env,
            trading_mode=trading_mode,
            kalshi_rest_url=rest_url or rest_default.format(port=values["kalshi_local_port"]),
            kalshi_ws_url=ws_url or ws_default.format(port=values["kalshi_local_port"]),
        )
        self.check_combinations(values)
        if self.problems:
            raise ConfigError(self.problems)
        return Settings(**values)

    def tickers(self) -> tuple[str, ...]:
        # The plural is ours; the singular is the earlier system's. Both may be set: union.
        tickers: list[str] = []
        for name in ("RL_MARKET_TICKERS", "RL_MARKET_TICKER"):
            for ticker in self.read(name, _ticker_list, ()):
                if ticker not in tickers:
                    tickers.append(ticker)
        return tuple(tickers)

    def check_combinations(self, values: dict[str, Any]) -> None:
        if bool(values["kalshi_api_key_id"]) != bool(self.raw("KALSHI_PRIVATE_KEY_PATH")):
            self.problems.append(
                "KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH: set both (the key id and the PEM "
                "file of the same API key) or neither"
            )
        if values["actor_max_position"] < values["actor_contract_size"]:
            self.problems.append(
                f"RL_ACTOR_MAX_POSITION={values['actor_max_position']} is below RL_ACTOR_CONTRACT_SIZE="
                f"{values['actor_contract_size']}: no order could ever be placed; raise the limit or lower the size"
            )
        if values["actor_enabled"] and values["actor_strategy"] is ActorStrategy.DISABLED:
            self.problems.append(
                "RL_ACTOR_ENABLED=true with RL_ACTOR_STRATEGY=disabled: choose a strategy "
                "(rl_model or hardcoded) or set RL_ACTOR_ENABLED=false"
            )
        self.problems.extend(
            _real_money_problems(
                values["kalshi_env"],
                values["kalshi_rest_url"],
                values["kalshi_ws_url"],
                values["trading_mode"],
                values["actor_enabled"],
            )
        )


def _real_money_problems(
    env: KalshiEnv, rest_url: str, ws_url: str, trading_mode: TradingMode, actor_enabled: bool
) -> list[str]:
    """Production market data may be read; nothing that trades may point at production."""
    if env is KalshiEnv.PRODUCTION:
        target = "KALSHI_ENV=production"
    elif is_production_host(rest_url):
        target = f"KALSHI_REST_URL={rest_url!r} (a production host)"
    elif is_production_host(ws_url):
        target = f"KALSHI_WS_URL={ws_url!r} (a production host)"
    else:
        return []
    problems = []
    if trading_mode is TradingMode.PAPER:
        problems.append(
            f"{target} with RL_TRADING_MODE=paper: refused, orders must never reach Kalshi's "
            "real-money exchange; use KALSHI_ENV=demo or local for paper trading"
        )
    if actor_enabled:
        problems.append(
            f"{target} with RL_ACTOR_ENABLED=true: refused, the actor would trade real money; "
            "set RL_ACTOR_ENABLED=false, or use KALSHI_ENV=demo or local"
        )
    return problems


# -- value parsers: each raises _Invalid with what was wrong and how to fix it ------------------
def _at_least(minimum: int, example: str) -> Callable[[str], int]:
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise _Invalid(f"must be {kind}, {example}") from None
        if number < minimum:
            raise _Invalid(f"must be {kind}, {example}")
        return number

    return parse


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise _Invalid("must be a number of seconds > 0, e.g. 1.0") from None
    if not 0 < seconds < float("inf"):
        raise _Invalid("must be a number of seconds > 0, e.g. 1.0")
    return seconds


def _dollars(text: str) -> int:
    """A positive dollar amount ("50", "12.50") to micro-dollars, exactly."""
    problem = "must be a positive dollar amount with at most 6 decimals, e.g. 50 or 12.50"
    try:
        amount = decimal.Decimal(text.removeprefix("$"))
    except decimal.InvalidOperation:
        raise _Invalid(problem) from None
    micros = amount * 1_000_000
    if not amount.is_finite() or micros <= 0 or micros != micros.to_integral_value():
        raise _Invalid(problem)
    return int(micros)


def _port(text: str) -> int:
    port = _at_least(1, "a TCP port such as 8765")(text)
    if port > 65535:
        raise _Invalid("must be a TCP port between 1 and 65535, e.g. 8765")
    return port


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Invalid("must be true or false (also accepted: 1/0, yes/no, on/off)")


def _choice(enum_type: type[enum.Enum]) -> Callable[[str], Any]:
    options = " or ".join(member.value for member in enum_type)

    def parse(text: str) -> Any:
        try:
            return enum_type(text.lower())
        except ValueError:
            raise _Invalid(f"must be one of {options}") from None

    return parse


def _trading_mode(text: str) -> TradingMode:
    try:
        return TradingMode(text.lower())
    except ValueError:
        raise _Invalid(
            "must be training or paper; real-money trading is not supported by this system"
        ) from None


def _ticker_list(text: str) -> tuple[str, ...]:
    tickers = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    bad = [ticker for ticker in tickers if not _TICKER.fullmatch(ticker)]
    if bad:
        raise _Invalid(
            f"{', '.join(map(repr, bad))} is not a market ticker; give comma-separated tickers "
            "such as INXD-25JAN03,KXBTC-25DEC31"
        )
    return tickers


def parse_market_tickers(text: str) -> tuple[str, ...]:
    """Comma-separated market tickers, as RL_MARKET_TICKERS takes them (for a command-line
    option); raises ValueError naming the ones that are not tickers."""
    return _ticker_list(text)


def _postgres_dsn(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres"):
        raise _Invalid(
            "must be a PostgreSQL URL (postgresql://user:password@host:5432/database); "
            "unset it to use the embedded SQLite store in RL_DATA_DIR"
        )
    if not (parts.hostname or parts.path.strip("/")):
        raise _Invalid("names no host or database, e.g. postgresql://postgres@127.0.0.1:5432/kalshiflow")
    return text


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    example = f"{schemes[0]}://127.0.0.1:{DEFAULT_LOCAL_PORT}/trade-api/..."

    def parse(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise _Invalid(f"must be a {' or '.join(schemes)} URL with a host, e.g. {example}")
        return text.rstrip("/")

    return parse


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise _Invalid("no such file; point it at the PEM private key of your Kalshi API key")
    return path


# ---------------------------------------------------------------------------------------------
# Typos
# ---------------------------------------------------------------------------------------------
def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for RL_* / KALSHI_* variables that are not ours but look like one of ours."""
    environ = os.environ if environ is None else environ
    warnings = []
    for name in sorted(environ):
        if not name.startswith(("RL_", "KALSHI_")) or name in KNOWN_VARIABLES:
            continue
        close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.8)
        if close:
            warnings.append(f"{name} is not a known variable and is ignored; did you mean {close[0]}?")
    return warnings
