"""``kalshiflow-rl evaluate``: a registered model against the baselines on held-out sessions.

Prints the comparison table and the promotion decision with its reasons, writes the equity
curves as a PNG (and prints its path), records the model's episodes and actions in the trading
records, stores the comparison as the model's metrics, and with ``--promote`` makes the model
active when it passes the promotion rule (:mod:`application.evaluation`); a finished run
(``trained``) that fails it is retired.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs

from application.evaluation import (
    DEFAULT_COLLAPSE_THRESHOLD,
    DEFAULT_MIN_EPISODES,
    evaluate_model,
    format_table,
    write_equity_chart,
)
from domain.actions import PricingStrategy
from domain.ports import SessionNotFound
from entrypoints.arguments import positive_int
from entrypoints.config import Settings
from entrypoints.container import Container
from entrypoints.learning import EnvironmentSettings

EVALUATIONS_DIR_NAME = "evaluations"  # under RL_DATA_DIR: the default place of the equity PNGs


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="play a model against do-nothing, random and market-maker baselines on held-out sessions",
        description=(
            "Replay held-out sessions with a registered model and three baselines (do nothing, random, "
            "a spread-capturing market maker quoting at the touch), print return, Sharpe, drawdown, fees, "
            "fill rates, action histograms, entropy and collapse flags, write the equity curves to a PNG, "
            "record the model's episodes and actions, and store the comparison as the model's metrics. "
            "A model passes when its policy has not collapsed, its mean episode return beats every "
            "baseline's and there were at least --min-episodes held-out markets; --promote then makes it "
            "the active version. A finished run (status trained) that "
            "fails is retired, so `models prune` may delete it."
        ),
    )
    parser.add_argument("model_id", type=int, metavar="MODEL_ID", help="model id, from `models list`")
    parser.add_argument(
        "--sessions",
        type=int,
        nargs="+",
        required=True,
        metavar="ID",
        help=(
            "held-out session ids: not trained on, holding neither the data of a market the model was trained on "
            "nor such a market (ticker) over an overlapping time"
        ),
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="default 0")
    parser.add_argument(
        "--chart", metavar="PNG", help=f"where to write the equity curves (default $RL_DATA_DIR/{EVALUATIONS_DIR_NAME}/)"
    )
    parser.add_argument(
        "--collapse-threshold",
        type=_share,
        default=DEFAULT_COLLAPSE_THRESHOLD,
        metavar="F",
        help=f"a policy whose most chosen action exceeds this share of decisions is collapsed (default {DEFAULT_COLLAPSE_THRESHOLD})",
    )
    parser.add_argument(
        "--min-episodes",
        type=positive_int,
        default=DEFAULT_MIN_EPISODES,
        metavar="N",
        help=f"held-out markets (episodes) the rule needs before it can pass a model (default {DEFAULT_MIN_EPISODES})",
    )
    parser.add_argument("--promote", action="store_true", help="make the model active if it passes the rule")
    parser.set_defaults(run=evaluate_model_command)


async def evaluate_model_command(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    from entrypoints.cli import CommandFailed, _get_model, _opened  # the CLI imports this module: import it late

    store, registry, records = container.store(), container.model_registry(), container.trading_records()
    async with _opened(settings, store, registry, records):
        record = await _get_model(registry, args.model_id, settings)
        try:
            environment = EnvironmentSettings(**record.hyperparameters.get("environment", {}))
            result = await evaluate_model(
                store=store,
                registry=registry,
                records=records,
                trainer=container.trainer(environment, algorithm=record.algorithm),
                make_environment=environment.make_environment,
                make_quoting_environment=quoting_settings(environment).make_environment,
                model_id=args.model_id,
                session_ids=args.sessions,
                cache_dir=settings.cache_dir,
                seed=args.seed,
                collapse_threshold=args.collapse_threshold,
                min_episodes=args.min_episodes,
                promote=args.promote,
            )
        except (SessionNotFound, ValueError, TypeError, FileNotFoundError) as error:
            raise CommandFailed(f"cannot evaluate model {args.model_id}: {error}") from None
    print(format_table(result.evaluations, markets=result.markets, collapse_threshold=args.collapse_threshold))
    label = f"model {record.model_id} ({record.name} v{record.version})"
    print(result.decision.explain(label, promoted=result.promoted))
    if result.promoted:
        print(f"{label} is now the active version of {record.name}.")
    elif result.decision.promoted and result.model.status == "active":
        print(f"{label} passed and stays the active version of {record.name}.")
    elif result.decision.promoted:
        print(
            f"{label} passed; it is {result.model.status} (`kalshiflow-rl models promote {record.model_id}` "
            "makes it active, as --promote would have)."
        )
    elif result.model.status == "retired":
        print(f"{label} is retired: it failed the rule (`models prune` may delete it).")
    else:
        print(f"{label} stays {result.model.status}, though it failed the rule on these sessions.")
    print(f"Recorded {len(result.recorded_episodes)} episodes of {label} in the trading records (mode evaluation).")
    chart = Path(args.chart) if args.chart else equity_chart(settings, record.model_id)
    title = f"{record.name} v{record.version} against the baselines, {result.markets} held-out markets"
    print(f"Equity curves: {write_equity_chart(result.evaluations, chart, title=title)}")
    return 0


def equity_chart(settings: Settings, model_id: int) -> Path:
    """Where ``evaluate`` writes a version's equity curves by default (``models prune`` deletes it
    with the version)."""
    return settings.data_dir / EVALUATIONS_DIR_NAME / f"model-{model_id}-equity.png"


def quoting_settings(environment: EnvironmentSettings) -> EnvironmentSettings:
    """The model's environment priced passive: where the market maker quotes at the touch."""
    return attrs.evolve(environment, pricing=PricingStrategy.PASSIVE)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value}")
    return value
