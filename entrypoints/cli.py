"""``kalshiflow-rl``: the command line.

Thin by design: a command parses its arguments, takes what it needs from the container, calls one
use case and prints the result. Configuration comes from the environment (see
:mod:`entrypoints.config`); an invalid one stops every command with exit code 2 before anything
runs.

Adding a command (``train``, ``evaluate`` and ``demo`` land this way)::

    def add_train_command(commands):
        parser = commands.add_parser("train", help="...", description="...")
        parser.add_argument(...)
        parser.set_defaults(run=train)

    async def train(args, settings, container) -> int:
        async with _opened(settings, container.store(), container.model_registry()):
            result = await container.train_agent(...)   # one use case, wired in the container
        print(...)
        return 0

then list ``add_train_command`` in :data:`COMMANDS`. Raise :class:`CommandFailed` for an error
the user can fix (it is printed without a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import attrs
from tqdm import tqdm

from adapters.kalshi.ws_client import HandshakeRejected
from adapters.sb3.settings import ALGORITHMS, DEFAULT_HYPERPARAMETERS, VECTORISATIONS, Curriculum, TrainingOptions
from application.data_quality import DEFAULT_SILENCE_MS, check_session
from application.demo import DemoConfig, run_demo
from application.evaluation import PromotionRefused, promote_evaluated
from application.recording import RecordingSummary
from application.replay import ReplayConfig
from application.training import NothingToTrainOn, TooFewTimesteps, check_timesteps, train_agent
from application.write_queue import DrainIncomplete, WriteQueueFailed
from domain.actions import ActionSpace
from domain.ports import ModelNotFound, ModelRecord, ModelRegistry, SessionInfo, SessionNotFound
from entrypoints.config import ConfigError, Settings, StoreKind, parse_market_tickers, unknown_variable_warnings
from entrypoints.container import Container, build_container
from entrypoints.evaluate_command import EVALUATIONS_DIR_NAME, add_evaluate_command, equity_chart, quoting_settings
from entrypoints.actor_command import add_actor_command
from entrypoints.arguments import non_negative_int, positive_int
from entrypoints.exchange_command import add_exchange_command
from entrypoints.fill_validation_command import add_fill_validation_command
from entrypoints.model_report import age_text, describe_model, model_json, utc_text
from entrypoints.ingestion import (
    IngestionUnavailable,
    LiveIngestion,
    build_live_ingestion,
    configure_logging,
    stop_on_signals,
)
from entrypoints.serve_command import add_serve_command

PROG = "kalshiflow-rl"
EXIT_USAGE = 2  # bad configuration, unknown id: something the user can fix
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class CommandFailed(Exception):
    """An error the user can act on; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------
# collect
# ---------------------------------------------------------------------------------------------
def add_collect_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "collect",
        help="record a session of order-book events into the store",
        description=(
            "Record market events (book snapshots, deltas, public trades, resolutions) as one "
            "session in the configured store: embedded SQLite in $RL_DATA_DIR, or PostgreSQL "
            "when $DATABASE_URL is set. Batches follow $RL_ORDERBOOK_BATCH_SIZE and "
            "$RL_ORDERBOOK_FLUSH_INTERVAL. Ctrl-C stops the recording and keeps what it received. "
            "--source kalshi records the live order books of $RL_MARKET_TICKERS from $KALSHI_WS_URL "
            "(default: the one of $KALSHI_ENV), signed with $KALSHI_API_KEY_ID and $KALSHI_PRIVATE_KEY_PATH, "
            "until SIGINT or SIGTERM; what the store cannot take in time waits in $RL_DATA_DIR/spill "
            "and is written at the next start."
        ),
    )
    parser.add_argument(
        "--source",
        choices=["synthetic", "kalshi"],
        default="synthetic",
        help=(
            "where events come from; synthetic: a seeded simulated market (default); kalshi: the "
            "live WebSocket feed (Kalshi or the local exchange)"
        ),
    )
    parser.add_argument(
        "--market-tickers",
        "--markets-tickers",
        type=_tickers,
        default=(),
        metavar="T1,T2",
        help="kalshi only: the markets to record (default $RL_MARKET_TICKERS)",
    )
    parser.add_argument(
        "--markets", type=positive_int, default=3, metavar="N", help="synthetic: markets to simulate (default 3)"
    )
    parser.add_argument(
        "--events",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="about how many events to record in all; each market then resolves (default 10000)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same session (default 0)")
    parser.add_argument(
        "--tick",
        choices=["linear_cent", "deci_cent", "tapered_deci_cent"],
        default="linear_cent",
        help=(
            "price grid of the simulated markets: $0.01, $0.001, or $0.001 only below $0.10 and "
            "above $0.90 (default linear_cent)"
        ),
    )
    parser.set_defaults(run=collect)


async def collect(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    if args.source == "kalshi":
        return await collect_live(args, settings, container)
    feed = container.synthetic_feed(markets=args.markets, events=args.events, seed=args.seed, tick=args.tick)
    store = container.store()
    saved: RecordingSummary | None = None  # the running totals, after each batch written

    def show_progress(so_far: RecordingSummary) -> None:
        nonlocal saved
        saved = so_far
        bar.update(so_far.events - bar.n)

    async with _opened(settings, store):
        with tqdm(total=args.events, unit="event", file=sys.stderr, disable=None, leave=False) as bar:
            try:
                summary: RecordingSummary = await container.record_session(
                    feed, tickers=feed.tickers, source=args.source, progress=show_progress
                )
            except asyncio.CancelledError:
                if saved is not None:
                    print(f"Stopped: session {saved.session_id} ended with {saved.events} events saved.")
                raise
    print(recorded_line(summary, len(feed.tickers), settings))
    return 0


async def collect_live(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    """``collect --source kalshi``: the live feed into one session, until SIGINT/SIGTERM."""
    ingestion = live_ingestion(args.market_tickers, settings, container)
    configure_logging()
    async with _opened(settings, ingestion.store):
        for recovery in await ingestion.recover_spills():
            print(recovery.describe(), file=sys.stderr)
        print(
            f"Recording {', '.join(ingestion.tickers)} from {settings.kalshi_ws_url} into "
            f"{settings.store_description}; SIGINT (Ctrl-C) or SIGTERM stops and saves",
            file=sys.stderr,
            flush=True,
        )
        with tqdm(unit="event", file=sys.stderr, disable=None, leave=False) as bar:
            recording = asyncio.ensure_future(ingestion.run(lambda so_far: bar.update(so_far.events - bar.n)))
            with stop_on_signals(ingestion, recording):
                summary = await recorded(recording, ingestion)
    print_live_summary(summary, ingestion, settings)
    return 0


def print_live_summary(summary: RecordingSummary, ingestion: LiveIngestion, settings: Settings) -> None:
    print(recorded_line(summary, len(ingestion.tickers), settings))
    _print_counters(ingestion)


def recorded_line(summary: RecordingSummary, markets: int, settings: Settings) -> str:
    """What a finished recording holds, by kind, and where it went."""
    return (
        f"Recorded session {summary.session_id}: {markets} markets, {summary.events} events "
        f"({summary.schedules} schedules, {summary.snapshots} snapshots, {summary.deltas} deltas, "
        f"{summary.trades} trades, {summary.resolutions} resolutions) into {settings.store_description}"
    )


def live_ingestion(tickers: Sequence[str], settings: Settings, container: Container) -> LiveIngestion:
    """The container's live ingestion, or a :class:`CommandFailed` naming what is missing."""
    try:
        return build_live_ingestion(container, settings, tickers)
    except IngestionUnavailable as error:
        raise CommandFailed(f"cannot record live: {error}") from None


async def recorded(recording: asyncio.Future[RecordingSummary], ingestion: LiveIngestion) -> RecordingSummary:
    """The outcome of a live recording, its failures as :class:`CommandFailed` (with the
    counters printed first: they say how far it got)."""
    try:
        return await recording
    except HandshakeRejected as error:
        raise CommandFailed(str(error), exit_code=EXIT_FAILED) from None
    except (DrainIncomplete, WriteQueueFailed) as error:
        _print_counters(ingestion)
        raise CommandFailed(str(error), exit_code=EXIT_FAILED) from None
    except asyncio.CancelledError:
        if not recording.cancelled():
            raise  # this command itself is being cancelled
        _print_counters(ingestion)
        raise CommandFailed(
            f"interrupted: session {ingestion.session_id} left open; what was not written is in the "
            "spill and will be written at the next start",
            exit_code=EXIT_INTERRUPTED,
        ) from None


def _print_counters(ingestion: LiveIngestion) -> None:
    for line in ingestion.counters().summary_lines():
        print(line)


# ---------------------------------------------------------------------------------------------
# sessions
# ---------------------------------------------------------------------------------------------
def add_sessions_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sessions",
        help="list and inspect recorded sessions",
        description="Recorded sessions in the configured store.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="one line per session", description="One line per recorded session, oldest first."
    )
    listing.set_defaults(run=list_sessions)
    show = actions.add_parser("show", help="one session in detail", description="One recorded session in detail.")
    show.add_argument("session_id", type=int, metavar="ID", help="session id, from `sessions list`")
    show.set_defaults(run=show_session)
    check = actions.add_parser(
        "check",
        help="data-quality report of sessions",
        description=(
            "What replay will find in recorded sessions: events before a market's first snapshot, sequence "
            "gaps and resyncs, time the book was crossed, locked or one-sided, silences, clock steps back, "
            "markets without a resolution. Exit code 1 when any session has findings."
        ),
    )
    check.add_argument("session_ids", type=int, nargs="+", metavar="ID", help="session ids, from `sessions list`")
    check.add_argument(
        "--silence-s", type=positive_int, default=DEFAULT_SILENCE_MS // 1000, metavar="S",
        help=f"report gaps between a market's events longer than S seconds (default {DEFAULT_SILENCE_MS // 1000})",
    )  # fmt: skip
    check.set_defaults(run=check_sessions)


async def list_sessions(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    store = container.store()
    async with _opened(settings, store):
        sessions = await store.list_sessions()
    if not sessions:
        print(f"No recorded sessions in {settings.store_description}. Record one with `{PROG} collect`.")
        return 0
    print(
        _table(
            ("ID", "TICKERS", "SOURCE", "STARTED (UTC)", "ENDED (UTC)", "SNAPSHOTS", "DELTAS", "TRADES", "RESOLVED"),
            [
                (
                    session.session_id,
                    _abbreviate(session.tickers),
                    session.source,
                    utc_text(session.started_ms),
                    utc_text(session.ended_ms) if session.ended_ms is not None else "recording",
                    session.snapshots,
                    session.deltas,
                    session.trades,
                    f"{len(session.resolutions)}/{len(session.tickers)}",
                )
                for session in sessions
            ],
            right_aligned={0, 5, 6, 7, 8},
        )
    )
    return 0


async def show_session(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    store = container.store()
    async with _opened(settings, store):
        try:
            session = await store.get_session(args.session_id)
        except SessionNotFound:
            raise CommandFailed(
                f"no session with id {args.session_id} in {settings.store_description}; "
                f"`{PROG} sessions list` shows the recorded ones"
            ) from None
    print(_describe_session(session))
    return 0


async def check_sessions(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    store = container.store()
    reports = []
    async with _opened(settings, store):
        for session_id in args.session_ids:
            try:
                events = await store.read_events(session_id)
            except SessionNotFound:
                raise CommandFailed(
                    f"no session with id {session_id} in {settings.store_description}; "
                    f"`{PROG} sessions list` shows the recorded ones"
                ) from None
            reports.append(check_session(events, session_id=session_id, silence_ms=args.silence_s * 1000))
    print("\n".join(report.format() for report in reports))
    return 0 if all(report.is_clean for report in reports) else EXIT_FAILED


def _describe_session(session: SessionInfo) -> str:
    if session.ended_ms is None:
        ended, duration = "still recording (or stopped without ending)", "-"
    else:
        ended, duration = f"{utc_text(session.ended_ms)} UTC", _duration(session.ended_ms - session.started_ms)
    lines = [
        f"Session {session.session_id}",
        f"  source       {session.source}",
        f"  started      {utc_text(session.started_ms)} UTC",
        f"  ended        {ended}",
        f"  duration     {duration}",
        f"  events       {session.snapshots + session.deltas + session.trades + len(session.resolutions)}",
        f"    snapshots  {session.snapshots}",
        f"    deltas     {session.deltas}",
        f"    trades     {session.trades}",
        f"  markets      {len(session.tickers)}",
    ]
    for ticker in session.tickers:
        result = session.resolutions.get(ticker)
        outcome = f"resolved {result.name}" if result is not None else "unresolved"
        lines.append(f"    {ticker}  {outcome}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def add_models_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "models",
        help="list, inspect and promote trained models",
        description="Versions of trained models in the registry (metadata in the store, weights on disk).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="one line per model version",
        description=(
            "Every model version, with its status and age. Statuses: training (the run has not finished: "
            "it is running, or its process died), trained (finished, not active), active (the one the "
            "actor trades), retired (replaced, or failed its held-out evaluation), failed (the run raised)."
        ),
    )
    listing.add_argument("--name", help="only versions of this model name")
    listing.set_defaults(run=list_models)
    show = actions.add_parser(
        "show",
        help="one model version in detail",
        description="One model version in detail: settings, training, held-out results, promotion.",
    )
    show.add_argument("model_id", type=int, metavar="ID", help="model id, from `models list`")
    show.add_argument("--json", action="store_true", help="the whole record as one JSON object")
    show.set_defaults(run=show_model)
    promote = actions.add_parser(
        "promote",
        help="make a version the active one of its name",
        description=(
            "Make this version the active one of its name; the previously active version retires. Only a "
            "finished version whose latest held-out evaluation (`evaluate`) passed the promotion rule can be "
            "promoted; a retired one that passed may come back (a rollback)."
        ),
    )
    promote.add_argument("model_id", type=int, metavar="ID", help="model id, from `models list`")
    promote.set_defaults(run=promote_model)
    prune = actions.add_parser(
        "prune",
        help="delete old trained, retired and failed versions, with their files",
        description=(
            "Retention: of each model name's trained, retired and failed versions (trained: finished, never "
            "promoted), keep the newest K and delete the others -- from the registry, with their training and "
            "evaluation trading records, and from disk: model file, checkpoints, training curve and the "
            f"evaluation's equity curve ($RL_DATA_DIR/{EVALUATIONS_DIR_NAME}/model-ID-equity.png; a PNG written "
            "elsewhere with `evaluate --chart` stays). A version with paper-trading records is kept and listed. "
            "Active versions and versions still training are never deleted."
        ),
    )
    prune.add_argument("--keep", type=non_negative_int, required=True, metavar="K", help="versions to keep per name")
    prune.add_argument("--name", help="only versions of this model name")
    prune.set_defaults(run=prune_models)


async def list_models(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    registry = container.model_registry()
    async with _opened(settings, registry):
        models = await registry.list_models(args.name)
    if not models:
        which = f"named {args.name!r} " if args.name else ""
        print(f"No models {which}in {settings.store_description}.")
        return 0
    now_ms = container.clock().now_ms()
    print(
        _table(
            ("ID", "NAME", "VERSION", "ALGORITHM", "STATUS", "CREATED (UTC)", "AGE", "PATH"),
            [
                (m.model_id, m.name, m.version, m.algorithm, m.status, utc_text(m.created_ms),
                 age_text(now_ms - m.created_ms), m.path)
                for m in models
            ],  # fmt: skip
            right_aligned={0, 2, 6},
        )
    )
    if any(m.status == "training" for m in models):
        print(
            "A version 'training' is a run in progress, or one whose process died (its age tells); "
            "`models prune` never deletes it."
        )
    return 0


async def show_model(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    registry = container.model_registry()
    async with _opened(settings, registry):
        model = await _get_model(registry, args.model_id, settings)
    print(model_json(model) if args.json else describe_model(model))
    return 0


async def promote_model(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    registry = container.model_registry()
    async with _opened(settings, registry):
        await _get_model(registry, args.model_id, settings)
        try:
            model = await promote_evaluated(registry, args.model_id)
        except PromotionRefused as error:
            raise CommandFailed(str(error), exit_code=EXIT_FAILED) from None
    print(f"Model {model.model_id} ({model.name} v{model.version}) is now the active {model.name}.")
    return 0


async def prune_models(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    registry = container.model_registry()
    async with _opened(settings, registry):
        result = await registry.prune(keep=args.keep, name=args.name)
    for model in result.deleted:
        equity_chart(settings, model.model_id).unlink(missing_ok=True)  # the evaluation's, if it was evaluated
        print(f"Deleted model {model.model_id} ({model.name} v{model.version}, {model.status}) and {model.path}")
    for model in result.paper_traded:
        print(
            f"Kept model {model.model_id} ({model.name} v{model.version}, {model.status}): it has paper-trading "
            "records, which deleting it would delete"
        )
    deleted = len(result.deleted)
    kept = f" and {len(result.paper_traded)} older with paper-trading records" if result.paper_traded else ""
    print(f"Pruned {deleted} version{'s' if deleted != 1 else ''}, keeping the newest {args.keep} per name{kept}.")
    return 0


async def _get_model(registry: ModelRegistry, model_id: int, settings: Settings) -> ModelRecord:
    try:
        return await registry.get(model_id)
    except ModelNotFound:
        raise CommandFailed(
            f"no model with id {model_id} in {settings.store_description}; `{PROG} models list` shows them"
        ) from None


# ---------------------------------------------------------------------------------------------
# train, evaluate, demo
# ---------------------------------------------------------------------------------------------
def add_learning_commands(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train an agent on recorded sessions and register the model",
        description=(
            "Replay recorded sessions through the Gymnasium environment and train a Stable-Baselines3 "
            "agent on them (orders of $RL_ACTOR_CONTRACT_SIZE contracts). The model is saved under "
            "$RL_DATA_DIR/models and registered (status 'training' while the run goes on, 'trained' once it "
            "finishes; Ctrl-C stops training at its next step and marks the version 'failed'); evaluate it on "
            "held-out sessions with `evaluate MODEL_ID --sessions ID... --promote`, "
            "which promotes it only if it beats the baselines (`models promote` does the same check)."
        ),
    )
    train.add_argument("--sessions", type=int, nargs="+", required=True, metavar="ID", help="session ids to train on")
    train.add_argument("--name", default="agent", help="model name in the registry (default agent)")
    train.add_argument("--algo", "--algorithm", dest="algorithm", choices=ALGORITHMS, default="ppo", help="default ppo")
    train.add_argument(
        "--timesteps",
        type=positive_int,
        default=40_000,
        metavar="N",
        help=(
            "timesteps to train (default 40000); a run trains whole rollouts of --n-steps x --n-envs "
            "timesteps, so N is rounded up to them (a note says so), and at least one rollout is needed"
        ),
    )
    train.add_argument(
        "--step-ms", type=positive_int, default=1_000, metavar="MS", help="ms between decisions (default 1000)"
    )
    train.add_argument("--seed", type=int, default=0, metavar="S", help="same seed, same model (default 0)")
    train.add_argument(
        "--action-space",
        choices=[space.value for space in ActionSpace],
        default=None,
        help="the agent's actions: single-size (5) or sized (21); recorded with the model (default single-size)",
    )
    speed = train.add_argument_group("speed (defaults measured by benchmarks/train.py)")
    speed.add_argument(
        "--n-envs",
        type=positive_int,
        default=TrainingOptions().n_envs,
        metavar="N",
        help=f"environment copies (default {TrainingOptions().n_envs})",
    )
    speed.add_argument(
        "--vectorisation",
        choices=VECTORISATIONS,
        default="in-process",
        help="where the copies run; in-process is faster on small machines (default)",
    )
    speed.add_argument(
        "--torch-threads",
        type=positive_int,
        default=TrainingOptions().torch_threads,
        metavar="N",
        help=f"threads for the gradient phase (default {TrainingOptions().torch_threads})",
    )
    for flag, key, kind, text in (
        ("--n-steps", "n_steps", positive_int, "steps per copy per rollout"),
        ("--batch-size", "batch_size", positive_int, "minibatch size (PPO)"),
        ("--epochs", "n_epochs", positive_int, "passes over each rollout (PPO)"),
        ("--learning-rate", "learning_rate", float, "optimiser step size"),
        ("--ent-coef", "ent_coef", float, "entropy bonus"),
        ("--gamma", "gamma", float, "discount factor"),
        ("--net-arch", "net_arch", _layer_sizes, "hidden layers, e.g. 64,64"),
    ):
        defaults = ", ".join(f"{algorithm} {DEFAULT_HYPERPARAMETERS[algorithm].get(key, '-')}" for algorithm in ALGORITHMS)
        speed.add_argument(flag, dest=f"hp_{key}", type=kind, default=None, metavar="X", help=f"{text} ({defaults})")
    learning = train.add_argument_group("learning")
    learning.add_argument(
        "--no-normalize", dest="normalize", action="store_false", help="do not normalise observations (VecNormalize)"
    )
    learning.add_argument("--no-masks", dest="masks", action="store_false", help="PPO without action masks")
    learning.add_argument(
        "--curriculum", action="store_true", help="easier markets first (tighter spread, calmer price), all by mid-run"
    )
    learning.add_argument(
        "--eval-sessions",
        type=int,
        nargs="+",
        default=(),
        metavar="ID",
        help="held-out sessions for periodic evaluation (with --eval-every; never the training sessions or their data)",
    )
    learning.add_argument(
        "--eval-every", type=positive_int, default=None, metavar="N", help="evaluate every N timesteps (with --eval-sessions)"
    )
    learning.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        metavar="N",
        help=(
            "save a checkpoint every N timesteps, once the rollout that reached them has been learnt from "
            "(step-T.zip: the weights after T timesteps), and one at the end"
        ),
    )
    learning.add_argument("--tensorboard-dir", metavar="DIR", help="write TensorBoard logs here")
    train.set_defaults(run=train_model)

    demo = commands.add_parser(
        "demo",
        help="record synthetic sessions, train, evaluate against baselines: the whole loop in a minute",
        description=(
            "Generate SYNTHETIC market sessions (not Kalshi data), store them, train PPO on some, "
            "evaluate it against do-nothing, random and market-maker baselines on the others, register "
            "the model (promoted only if it passes the promotion rule), print a table and write "
            "$RL_DATA_DIR/demo-equity.png."
        ),
    )
    demo.add_argument(
        "--planted-edge",
        action="store_true",
        help=(
            "markets with a planted signal that pays for the spread and fees (the learning test's: "
            "30 sessions of 2 five-minute markets, 150,000 steps), so the agent can learn; "
            "the flags below still override"
        ),
    )
    for flag, field, text in (
        ("--sessions", "sessions", "sessions to record"),
        ("--held-out", "held_out_sessions", "sessions kept for evaluation"),
        ("--markets", "markets_per_session", "markets per session"),
        ("--minutes", "session_minutes", "simulated minutes per session"),
        ("--timesteps", "total_timesteps", f"training steps, at least one rollout: {TrainingOptions().rollout_timesteps}"),
    ):
        default = attrs.fields_dict(DemoConfig)[field].default
        demo.add_argument(
            flag, type=positive_int, dest=field, default=None, metavar="N", help=f"{text} (default {default})"
        )
    demo.add_argument(
        "--edge",
        type=float,
        dest="edge_strength",
        default=None,
        metavar="K",
        help=f"planted signal strength in [0, 1) (default {DemoConfig().edge_strength})",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="default 0")
    demo.set_defaults(run=demo_command)


def _training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The trainer's options from the train command's flags."""
    hyperparameters = {
        name.removeprefix("hp_"): value
        for name, value in vars(args).items()
        if name.startswith("hp_") and value is not None
    }
    return {
        "n_envs": args.n_envs,
        "vectorisation": args.vectorisation,
        "torch_threads": args.torch_threads,
        "hyperparameters": hyperparameters,
        "normalize_observations": args.normalize,
        "action_masks": args.masks,
        "curriculum": Curriculum() if args.curriculum else None,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "tensorboard_dir": args.tensorboard_dir,
    }


async def train_model(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    if (args.eval_every is None) != (not args.eval_sessions):
        raise CommandFailed(
            "--eval-every N and --eval-sessions ID... go together: periodic evaluation runs on held-out "
            "sessions (never the training ones), and held-out sessions are only read to evaluate on"
        )
    if args.tensorboard_dir is not None:
        tensorboard_dir = Path(args.tensorboard_dir)
        _prepare_dir(tensorboard_dir, f"--tensorboard-dir {str(tensorboard_dir)!r}")  # before a version is registered
    environment = container.environment_settings()
    if args.action_space is not None:
        environment = attrs.evolve(environment, action_space=args.action_space)
    try:
        trainer = container.trainer(environment, algorithm=args.algorithm, **_training_options(args))
    except ValueError as error:
        raise CommandFailed(f"cannot train: {error}") from None
    store, registry = container.store(), container.model_registry()
    async with _opened(settings, store, registry):
        try:
            result = await train_agent(
                store=store,
                registry=registry,
                trainer=trainer,
                eval_session_ids=args.eval_sessions,
                clock=container.clock(),
                session_ids=args.sessions,
                name=args.name,
                total_timesteps=args.timesteps,
                seed=args.seed,
                models_dir=settings.models_dir,
                replay=ReplayConfig(step_ms=args.step_ms),
                cache_dir=settings.cache_dir,
                progress=True,
                settings={"environment": environment.as_dict()},
            )
        except TooFewTimesteps as error:
            n_steps = TrainingOptions(algorithm=args.algorithm, **_training_options(args)).settings["n_steps"]
            raise CommandFailed(
                f"cannot train: --timesteps {error.asked} is less than one rollout, the least a run trains: "
                f"{error.minimum} timesteps with these settings (--n-steps {n_steps} x --n-envs {args.n_envs}); "
                f"ask for --timesteps {error.minimum} or more, or lower --n-steps or --n-envs"
            ) from None
        except (SessionNotFound, NothingToTrainOn, ValueError) as error:
            raise CommandFailed(f"cannot train: {_with_notes(error)}") from None
        except OSError as error:  # a file or directory training reads or writes
            raise CommandFailed(f"cannot train: {_with_notes(error)}", exit_code=EXIT_FAILED) from None
    record = result.record
    training = record.metrics.get("training", {})
    print(
        f"Trained {record.algorithm} on {result.markets} markets ({result.steps_per_pass} decisions per pass, "
        f"{training.get('timesteps_per_s', '?')} timesteps/s); "
        f"registered model {record.model_id} ({record.name} v{record.version}) at {result.path}"
    )
    trained = training.get("timesteps")
    if isinstance(trained, int) and trained != args.timesteps:
        print(
            f"Note: trained {trained:,} timesteps, not the {args.timesteps:,} asked for: a run trains whole "
            f"rollouts of {trainer.rollout_timesteps:,} timesteps (--n-steps x --n-envs)."
        )
    for evaluation in training.get("evaluations", ()):
        print(f"  evaluation at {evaluation['timesteps']:>9,} timesteps: mean episode reward {evaluation['mean_reward']:+.3f}")
    if result.chart is not None:
        print(f"Training curve: {result.chart}")
    return 0


async def demo_command(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    try:
        fields = (
            "sessions", "held_out_sessions", "markets_per_session", "session_minutes", "total_timesteps", "edge_strength"
        )  # fmt: skip
        given = {field: getattr(args, field) for field in fields if getattr(args, field) is not None}
        config = (DemoConfig.planted_edge if args.planted_edge else DemoConfig)(seed=args.seed, **given)
    except ValueError as error:
        raise CommandFailed(str(error)) from None
    environment = container.environment_settings()
    store, registry, records = container.store(), container.model_registry(), container.trading_records()
    trainer = container.trainer(environment)
    try:
        check_timesteps(trainer, config.total_timesteps)  # refused before anything is recorded
    except TooFewTimesteps as error:
        raise CommandFailed(
            f"--timesteps {error.asked} is less than one rollout, the least a run trains: "
            f"{error.minimum} timesteps with the demo's settings; ask for --timesteps {error.minimum} or more"
        ) from None
    async with _opened(settings, store, registry, records):
        try:
            await run_demo(
                config,
                store=store,
                registry=registry,
                records=records,
                make_feed=container.synthetic_session_feed,
                trainer=trainer,
                make_environment=environment.make_environment,
                make_quoting_environment=quoting_settings(environment).make_environment,
                clock=container.clock(),
                models_dir=settings.models_dir,
                cache_dir=settings.cache_dir,
                chart_path=settings.data_dir / "demo-equity.png",
                environment_settings=environment.as_dict(),
                progress=True,
            )
        except OSError as error:  # a file or directory the demo reads or writes
            raise CommandFailed(f"the demo failed: {_with_notes(error)}", exit_code=EXIT_FAILED) from None
    return 0


# ---------------------------------------------------------------------------------------------
# The parser and main
# ---------------------------------------------------------------------------------------------
# Each adds one top-level command; see the module docstring to add another.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_collect_command,
    add_sessions_commands,
    add_models_commands,
    add_learning_commands,
    add_evaluate_command,
    add_exchange_command,
    add_serve_command,
    add_fill_validation_command,
    add_actor_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Record Kalshi order books, replay them as a Gymnasium environment with a simulated "
            "exchange, train agents and paper-trade them."
        ),
        epilog=(
            "Configuration is read from environment variables: RL_DATA_DIR (default ./data, holds "
            "the SQLite store kalshiflow.db and models), DATABASE_URL (postgresql://...; replaces "
            "SQLite), RL_ORDERBOOK_BATCH_SIZE, RL_ORDERBOOK_FLUSH_INTERVAL, KALSHI_ENV (local|demo), "
            "RL_TRADING_MODE (training|paper), RL_ACTOR_* and KALSHI_* credentials."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse the command line and the environment, build the container, run."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        _error(str(error))
        return EXIT_USAGE
    for warning in unknown_variable_warnings():
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return run(args, settings, build_container(settings))


def run(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    """Run a parsed command on its own event loop; returns the exit code. Tests call this with
    a container whose providers are overridden by fakes."""
    try:
        return asyncio.run(args.run(args, settings, container))
    except CommandFailed as failure:
        _error(str(failure))
        return failure.exit_code
    except KeyboardInterrupt:
        # Commands close what they opened on the way out (a recording ends its session first).
        _error("interrupted")
        return EXIT_INTERRUPTED


# ---------------------------------------------------------------------------------------------
# Small pieces
# ---------------------------------------------------------------------------------------------
# What opening a store raises when the database is unreachable, missing, refused or corrupt.
_UNREACHABLE_STORE = (OSError, sqlite3.Error, asyncpg.PostgresError)


@contextlib.asynccontextmanager
async def _opened(settings: Settings, *adapters: Any) -> AsyncIterator[None]:
    """Open adapters in order and close them in reverse, even on failure or cancellation;
    an unreachable database becomes a one-line error. (Never ``init_resources()``: see the
    container's docstring.)"""
    _prepare_data_dir(settings)
    async with contextlib.AsyncExitStack() as stack:
        for adapter in adapters:
            try:
                await adapter.open()
            except _UNREACHABLE_STORE as error:
                raise CommandFailed(
                    f"cannot open {settings.store_description}: {error}", exit_code=EXIT_FAILED
                ) from error
            stack.push_async_callback(adapter.close)
        yield


def _prepare_data_dir(settings: Settings) -> None:
    if settings.store_kind is StoreKind.SQLITE:
        _prepare_dir(settings.data_dir, f"RL_DATA_DIR={str(settings.data_dir)!r}")


def _prepare_dir(directory: Path, named: str) -> None:
    """Create ``directory`` (and its parents); ``named`` is how the error names it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandFailed(f"{named}: cannot create it: {error}") from error


def _with_notes(error: BaseException) -> str:
    """The error's message and the notes added on its way up (e.g. which model version it left failed)."""
    return "; ".join([str(error), *getattr(error, "__notes__", ())])


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _tickers(text: str) -> tuple[str, ...]:
    try:
        return parse_market_tickers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _layer_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer sizes, e.g. 64,64") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be at least 1, got {text!r}")
    return sizes


def _duration(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}.{millis:03d}s" if hours else f"{minutes}m{seconds:02d}.{millis:03d}s"


def _abbreviate(tickers: Sequence[str], shown: int = 2) -> str:
    text = ",".join(tickers[:shown])
    return text if len(tickers) <= shown else f"{text} +{len(tickers) - shown}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right_aligned: set[int]) -> str:
    cells = [list(headers)] + [[str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            value.rjust(width) if i in right_aligned else value.ljust(width)
            for i, (value, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)
