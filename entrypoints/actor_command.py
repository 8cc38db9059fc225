"""``kalshiflow-rl actor``: paper trading, and the wiring of the actor ``serve`` runs beside its feed.

:func:`build_actor` assembles :class:`~application.acting.PaperTradingActor` from the settings:

* the model -- ``rl_model``: the registry's active version of ``--model-name`` (hot-reloaded when
  a new version is promoted), or the registered model whose file is ``RL_ACTOR_MODEL_PATH``
  (fixed); ``hardcoded``: the imbalance rule of :mod:`application.actor_policies`, filed in the
  registry as model ``hardcoded`` so its decisions have a model id like any other;
* the order gateway -- Kalshi's REST API (``KALSHI_REST_URL``: the local exchange for
  ``KALSHI_ENV=local``, the demo exchange for ``demo``; production is refused by the settings and
  again by the gateway), fills over the WebSocket ``fill`` channel, signed with the API key;
* the risk limits (``RL_ACTOR_MAX_POSITION``, ``RL_ACTOR_MAX_OPEN_ORDERS``,
  ``RL_ACTOR_MAX_DAILY_LOSS``), the decision interval (``RL_ACTOR_THROTTLE_MS``: 0 for the model's
  own ``step_ms``, the only interval it is traded at -- any other is refused) and the contract
  size (``RL_ACTOR_CONTRACT_SIZE``), which the model must have been trained with;
* the trading records (``rl_trading_episodes``, ``rl_trading_actions``) behind a record queue;
* the market catalog (``GET /markets/{ticker}``: close times for the observations, results for
  the settlements) and the ingestion's public trades (the observations' trade flow).

The command runs live ingestion (as ``collect --source kalshi``: the feed keeps the books and is
recorded) with the actor on the same books, until SIGINT or SIGTERM, then cancels what rests and
prints the account.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from application.acting import PaperTradingActor
from application.actor_config import ActorConfig
from application.actor_observations import LiveMarketRows
from application.actor_policies import (
    FixedModelSource,
    ImbalancePolicy,
    ModelSource,
    ModelUnavailable,
    RegistryModelSource,
    TradingModel,
    check_contract_size,
)
from application.actor_records import RecordQueue, TradingRecordWriter
from application.book_state import SharedBookState
from application.replay import ReplayConfig
from domain.actions import ActionConfig, ActionDecoder, PricingStrategy
from domain.ports import MarketCatalog, ModelRecord, ModelRegistry, OrderGateway, TradingRecords
from domain.risk import RiskLimits
from domain.values import MONEY_SCALE, ONE_CONTRACT, format_count, format_money
from entrypoints.config import ActorStrategy, Settings
from entrypoints.ingestion import LiveIngestion
from entrypoints.learning import EnvironmentSettings

DEFAULT_MODEL_NAME = "agent"
HARDCODED_MODEL_NAME = "hardcoded"
HARDCODED_MODEL_PATH = "builtin:imbalance-rule"  # the registry wants a path; the rule has no file


class ActorUnavailable(ValueError):
    """The actor cannot start with this configuration; the message says what to change."""


def risk_limits(settings: Settings) -> RiskLimits:
    return RiskLimits(
        max_position=settings.actor_max_position * ONE_CONTRACT,
        max_open_orders=settings.actor_max_open_orders,
        max_daily_loss=settings.actor_max_daily_loss,
    )


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def model_settings(record: ModelRecord) -> tuple[EnvironmentSettings, ReplayConfig]:
    """How ``record`` was trained: its environment and replay settings (defaults for the keys it
    predates)."""
    environment = EnvironmentSettings(**record.hyperparameters.get("environment", {}))
    replay = record.hyperparameters.get("replay", {})
    return environment, ReplayConfig(**{key: replay[key] for key in ("step_ms", "depth_levels") if key in replay})


def trading_model_loader(container: Any) -> Any:
    """The function that turns a registry record into a :class:`TradingModel` (the trainer's
    ``load_policy``, the decoder of the action space the model was trained for)."""

    def load(record: ModelRecord) -> TradingModel:
        environment, replay = model_settings(record)
        actions = ActionConfig(
            order_size=environment.contract_size * ONE_CONTRACT,
            pricing=environment.pricing,
            max_position=environment.max_position_contracts * ONE_CONTRACT,
            space=environment.action_space,
        )
        decoder = ActionDecoder(actions, environment.fees)
        policy = container.trainer(environment, algorithm=record.algorithm).load_policy(record.path)
        action_count = getattr(policy, "action_count", None)
        if action_count is not None:
            decoder.check_model(action_count, model=f"model {record.model_id}")
        return TradingModel(
            policy=policy,
            decoder=decoder,
            model_id=record.model_id,
            label=f"{record.name} v{record.version} (model {record.model_id})",
            contract_size=environment.contract_size,
            max_position=actions.max_position,
            order_size=max(actions.order_sizes),
            step_ms=replay.step_ms,
            initial_cash=environment.initial_cash_dollars * MONEY_SCALE,
        )

    return load


async def hardcoded_model(settings: Settings, registry: ModelRegistry, clock: Any) -> TradingModel:
    """The imbalance rule, at the configured contract size, filed under model ``hardcoded``."""
    actions = ActionConfig(
        order_size=settings.actor_contract_size * ONE_CONTRACT,
        pricing=PricingStrategy.PASSIVE,
        max_position=settings.actor_max_position * ONE_CONTRACT,
    )
    decoder = ActionDecoder(actions, EnvironmentSettings(contract_size=settings.actor_contract_size).fees)
    versions = await registry.list_models(HARDCODED_MODEL_NAME)
    record = versions[-1] if versions else await registry.register(
        HARDCODED_MODEL_NAME, algorithm="rule", path=HARDCODED_MODEL_PATH, created_ms=clock.now_ms(),
        hyperparameters={"rule": "buy YES passively while the best bids lean to YES; otherwise close"},
        status="retired",
    )  # fmt: skip
    return TradingModel(
        policy=ImbalancePolicy(decoder),
        decoder=decoder,
        model_id=record.model_id,
        label=f"hardcoded imbalance rule (model {record.model_id})",
        contract_size=settings.actor_contract_size,
        max_position=actions.max_position,
        order_size=actions.order_size,
        # Not trained: its "step" is the actor's own decision interval (the order-age unit).
        step_ms=settings.actor_throttle_ms or ReplayConfig().step_ms,
    )


async def model_source(settings: Settings, container: Any, registry: ModelRegistry, name: str) -> ModelSource:
    strategy = settings.actor_strategy
    if strategy is ActorStrategy.HARDCODED:
        return FixedModelSource(await hardcoded_model(settings, registry, container.clock()))
    if strategy is not ActorStrategy.RL_MODEL:
        raise ActorUnavailable("RL_ACTOR_STRATEGY=disabled: choose rl_model or hardcoded to trade")
    load = trading_model_loader(container)
    if settings.actor_model_path is None:
        return RegistryModelSource(registry, name, load)
    wanted = Path(settings.actor_model_path).resolve()
    for record in await registry.list_models():
        if record.path and Path(record.path).resolve() == wanted:
            return FixedModelSource(await asyncio.to_thread(load, record))
    raise ActorUnavailable(
        f"RL_ACTOR_MODEL_PATH={settings.actor_model_path} is not a registered model: the actor needs "
        "the settings it was trained with; train it with `kalshiflow-rl train`, or unset the variable "
        "to trade the registry's active model"
    )


# ---------------------------------------------------------------------------------------------
# The actor
# ---------------------------------------------------------------------------------------------
def check_decision_interval(settings: Settings, model: TradingModel) -> None:
    """The actor samples and decides on the model's row grid, and on no other:
    ``RL_ACTOR_THROTTLE_MS`` is 0 ("the model's step") or that step. Another interval would make
    the features counted in rows (price moves, volatility, trade flow, order age) span other
    times than in training, so it is refused (:class:`ActorUnavailable`)."""
    requested = settings.actor_throttle_ms
    if requested and requested != model.step_ms:
        raise ActorUnavailable(
            f"RL_ACTOR_THROTTLE_MS={requested}, but {model.label} was trained deciding every {model.step_ms} ms "
            f"and is traded on that grid only: set RL_ACTOR_THROTTLE_MS={model.step_ms}, or 0 (the model's step)"
        )


@attrs.frozen
class ActorParts:
    actor: PaperTradingActor
    market_rows: LiveMarketRows
    gateway: OrderGateway


async def build_actor(
    settings: Settings,
    container: Any,
    *,
    books: SharedBookState,
    tickers: Sequence[str],
    registry: ModelRegistry,
    records: TradingRecords,
    gateway: OrderGateway,
    markets: MarketCatalog,
    model_name: str = DEFAULT_MODEL_NAME,
) -> ActorParts:
    """The actor over ``books`` (the feed's), trading ``tickers`` through ``gateway``, with the
    close times and results of ``markets``. Hand the feed's public trades to
    ``parts.actor.record_trade`` (:meth:`LiveIngestion.add_trade_listener`). Raises
    :class:`ActorUnavailable` (or the model's own error) when it cannot trade."""
    if not settings.actor_enabled:
        raise ActorUnavailable("RL_ACTOR_ENABLED is false: set RL_ACTOR_ENABLED=true to paper-trade")
    if not tickers:
        raise ActorUnavailable("no markets to trade: set RL_MARKET_TICKERS (or --market-tickers)")
    models = await model_source(settings, container, registry, model_name)
    try:
        first = await models.load()
    except ModelUnavailable as error:
        raise ActorUnavailable(str(error)) from None
    check_contract_size(first, settings.actor_contract_size)
    replay = ReplayConfig(step_ms=first.step_ms)
    if isinstance(models, RegistryModelSource):
        record = await registry.active(model_name)
        if record is not None:
            replay = model_settings(record)[1]
    check_decision_interval(settings, first)
    rows = LiveMarketRows(books, replay=replay)
    actor = PaperTradingActor(
        books=books,
        market_rows=rows,
        gateway=gateway,
        markets=markets,
        models=models,
        records=RecordQueue(TradingRecordWriter(records)),
        clock=container.clock(),
        config=ActorConfig(
            tickers=tuple(tickers),
            contract_size=settings.actor_contract_size,
            limits=risk_limits(settings),
        ),
        strategy=settings.actor_strategy.value,
    )
    return ActorParts(actor, rows, gateway)


def print_account(actor: PaperTradingActor) -> None:
    account = actor.account
    if account is None:
        return
    positions = ", ".join(f"{t} {format_count(q)}" for t, q in account.positions().items()) or "none"
    counters = actor.counters
    print(
        f"Actor {actor.state.value}{f' ({actor.halt_reason})' if actor.halt_reason else ''}: "
        f"{counters.decisions} decisions, {counters.orders_placed} orders, {counters.fills} fills; "
        f"cash ${format_money(account.cash)}, positions: {positions}"
    )


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def add_actor_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "actor",
        help="paper-trade a model (or the hardcoded rule) on the live books of the local or demo exchange",
        description=(
            "Record the live books of $RL_MARKET_TICKERS (as `collect --source kalshi`) and trade them "
            "with $RL_ACTOR_STRATEGY (rl_model: the registry's active model, hot-reloaded on promotion, or "
            "the registered model at $RL_ACTOR_MODEL_PATH; hardcoded: a book-imbalance rule) through "
            "Kalshi's REST API at $KALSHI_REST_URL -- the local exchange (KALSHI_ENV=local) or the demo "
            "exchange (KALSHI_ENV=demo); production is refused. Needs RL_ACTOR_ENABLED=true and an API "
            "key. Limits: $RL_ACTOR_MAX_POSITION, $RL_ACTOR_MAX_OPEN_ORDERS, $RL_ACTOR_MAX_DAILY_LOSS; a "
            "breach cancels every order and stops trading. SIGINT/SIGTERM cancels what rests and stops."
        ),
    )
    parser.add_argument(
        "--market-tickers", type=_tickers, default=(), metavar="T1,T2", help="markets to trade (default $RL_MARKET_TICKERS)"
    )
    parser.add_argument(
        "--model-name", default=DEFAULT_MODEL_NAME, help=f"rl_model: the registry name to trade (default {DEFAULT_MODEL_NAME})"
    )
    parser.set_defaults(run=run_actor)


async def run_actor(args: argparse.Namespace, settings: Settings, container: Any) -> int:
    from entrypoints.cli import CommandFailed, _opened, live_ingestion, print_live_summary, recorded
    from entrypoints.ingestion import configure_logging, stop_on_signals

    ingestion = live_ingestion(args.market_tickers, settings, container)
    configure_logging()
    registry, records = container.model_registry(), container.trading_records()
    try:
        gateway = container.order_gateway()
    except ValueError as error:
        raise CommandFailed(f"cannot trade: {error}") from None
    async with _opened(settings, ingestion.store, registry, records), contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(gateway.close)
        try:
            parts = await build_actor(
                settings, container, books=ingestion.books, tickers=ingestion.tickers, registry=registry,
                records=records, gateway=gateway, markets=container.market_catalog(), model_name=args.model_name,
            )  # fmt: skip
        except ValueError as error:  # ActorUnavailable, a contract-size or action-space mismatch
            raise CommandFailed(f"cannot trade: {error}") from None
        ingestion.add_trade_listener(parts.actor.record_trade)
        for recovery in await ingestion.recover_spills():
            print(recovery.describe(), file=sys.stderr)
        recording = asyncio.ensure_future(ingestion.run())
        trading = asyncio.ensure_future(parts.actor.run())
        print(f"Trading {', '.join(ingestion.tickers)} on {settings.kalshi_rest_url}; SIGINT or SIGTERM stops", file=sys.stderr, flush=True)
        with stop_on_signals(ingestion, recording):
            await asyncio.wait({recording, trading}, return_when=asyncio.FIRST_COMPLETED)
            parts.actor.stop()
            with contextlib.suppress(Exception):
                await trading
            if not recording.done():
                await ingestion.stop()
            summary = await recorded(recording, ingestion)
        if trading.done() and not trading.cancelled() and trading.exception() is not None:
            raise CommandFailed(f"the actor failed: {trading.exception()}")
    print_live_summary(summary, ingestion, settings)
    print_account(parts.actor)
    return 0


def _tickers(text: str) -> tuple[str, ...]:
    from entrypoints.config import parse_market_tickers

    try:
        return parse_market_tickers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


async def actor_beside(
    settings: Settings, container: Any, *, ingestion: LiveIngestion, stack: contextlib.AsyncExitStack
) -> PaperTradingActor:
    """For ``serve``: the actor on the ingestion's books and trades, its registry, records and
    gateway opened on ``stack`` (closed with it). Raises :class:`ActorUnavailable` or the model's
    error."""
    registry, records = container.model_registry(), container.trading_records()
    for adapter in (registry, records):
        await adapter.open()
        stack.push_async_callback(adapter.close)
    try:
        gateway = container.order_gateway()
    except ValueError as error:
        raise ActorUnavailable(str(error)) from None
    stack.push_async_callback(gateway.close)
    parts = await build_actor(
        settings, container, books=ingestion.books, tickers=ingestion.tickers, registry=registry, records=records,
        gateway=gateway, markets=container.market_catalog(),
    )  # fmt: skip
    ingestion.add_trade_listener(parts.actor.record_trade)
    return parts.actor
