"""Training an agent on recorded sessions, and registering the model it produced.

The model is registered before training starts (status ``training``), so a run that dies is
visible in the registry; it is marked ``failed`` if training raises or is cancelled (Ctrl-C: the
trainer is asked to stop at its next step), ``trained`` once the model is saved (a version still
``training`` is a run in progress, or one whose process died; it is never active before a
held-out evaluation passes, :func:`application.evaluation.promote_evaluated`). Weights are saved under
``models_dir`` as one file per version, its periodic checkpoints in the directory beside it
(:func:`~domain.ports.checkpoint_dir_for`). What the registry keeps as hyperparameters is enough
to repeat the run: the trainer's settings, the sessions, the replay settings and the seed, and
what it was trained on (each market's content digest, and its ticker and first and last row
times, which evaluation refuses to call held out); what
training measured (speed, rewards, periodic evaluations) goes into the version's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from application.charts import line_chart
from application.replay import ReplayConfig, load_tapes
from domain.market_tape import MarketTape
from domain.ports import (
    AgentTrainer,
    Clock,
    ModelRecord,
    ModelRegistry,
    OrderbookStore,
    TrainedAgent,
    checkpoint_dir_for,
)


class NothingToTrainOn(ValueError):
    """The sessions given hold no market that can be replayed."""


class TooFewTimesteps(ValueError):
    """Fewer timesteps asked for than one rollout: the least a run trains."""

    def __init__(self, asked: int, minimum: int) -> None:
        super().__init__(
            f"{asked} timesteps is less than one rollout of this trainer, the least a run trains: "
            f"{minimum} timesteps with these settings"
        )
        self.asked = asked
        self.minimum = minimum


@attrs.frozen
class TrainingResult:
    record: ModelRecord
    agent: TrainedAgent = attrs.field(repr=False)
    path: Path
    markets: int  # market tapes trained on
    steps_per_pass: int  # agent decisions in one pass over them
    chart: Path | None = None  # the training curve (PNG), when training reported one


async def train_agent(
    *,
    store: OrderbookStore,
    registry: ModelRegistry,
    trainer: AgentTrainer,
    clock: Clock,
    session_ids: Sequence[int],
    name: str,
    total_timesteps: int,
    seed: int,
    models_dir: Path,
    replay: ReplayConfig,
    cache_dir: Path | None = None,
    progress: bool = False,
    settings: Mapping[str, Any] | None = None,
    eval_session_ids: Sequence[int] = (),
) -> TrainingResult:
    """Train on the markets of ``session_ids``; save and register the model as ``name``.

    ``settings`` (e.g. the environment's order size and fees) are stored with the
    hyperparameters: whatever the model needs to be used as it was trained. The markets of
    ``eval_session_ids`` are what periodic evaluation plays: held out, by id and by content (the
    same market data recorded again under another id is refused), and only with the trainer's
    ``eval_every`` set (the trainer refuses one without the other).
    """
    if not session_ids:
        raise NothingToTrainOn("no sessions given to train on")
    check_distinct(session_ids, "the sessions to train on")
    check_distinct(eval_session_ids, "the evaluation sessions")
    check_timesteps(trainer, total_timesteps)  # before the sessions are loaded
    overlap = sorted(set(session_ids) & set(eval_session_ids))
    if overlap:
        raise ValueError(f"sessions {overlap} are both trained on and held out for evaluation")
    tapes = await load_tapes(store, session_ids, config=replay, cache_dir=cache_dir)
    if not tapes:
        raise NothingToTrainOn(f"sessions {list(session_ids)} hold no replayable market (none has a snapshot)")
    eval_tapes = await load_tapes(store, eval_session_ids, config=replay, cache_dir=cache_dir)
    if eval_session_ids and not eval_tapes:
        raise NothingToTrainOn(f"evaluation sessions {list(eval_session_ids)} hold no replayable market")
    return await train_on_tapes(
        tapes,
        registry=registry,
        trainer=trainer,
        clock=clock,
        session_ids=session_ids,
        name=name,
        total_timesteps=total_timesteps,
        seed=seed,
        models_dir=models_dir,
        replay=replay,
        progress=progress,
        settings=settings,
        eval_tapes=eval_tapes,
        eval_session_ids=eval_session_ids,
    )


async def train_on_tapes(
    tapes: Sequence[MarketTape],
    *,
    registry: ModelRegistry,
    trainer: AgentTrainer,
    clock: Clock,
    session_ids: Sequence[int],
    name: str,
    total_timesteps: int,
    seed: int,
    models_dir: Path,
    replay: ReplayConfig,
    progress: bool = False,
    settings: Mapping[str, Any] | None = None,
    eval_tapes: Sequence[MarketTape] = (),
    eval_session_ids: Sequence[int] = (),
) -> TrainingResult:
    """:func:`train_agent` for tapes already loaded."""
    check_timesteps(trainer, total_timesteps)
    trained_on = {tape.content_digest() for tape in tapes}
    repeated = [tape for tape in eval_tapes if tape.content_digest() in trained_on]
    if repeated:
        named = ", ".join(f"{tape.ticker} of session {tape.session_id}" for tape in repeated[:3])
        raise ValueError(
            f"the evaluation sessions hold the same market data as the training sessions ({named}"
            f"{' and more' if len(repeated) > 3 else ''}): periodic evaluation needs held-out data"
        )
    spans = market_spans(tapes)
    overlapping = overlapping_markets(spans, eval_tapes)
    if overlapping:
        raise ValueError(
            f"the evaluation sessions hold a market the training sessions hold over an overlapping time "
            f"({describe_overlaps(overlapping)}): periodic evaluation needs held-out data"
        )
    created_ms = clock.now_ms()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{name}-{created_ms}.zip"
    hyperparameters = {
        **dict(trainer.hyperparameters),
        "total_timesteps": total_timesteps,
        "seed": seed,
        "sessions": list(session_ids),
        "markets": len(tapes),
        # What the markets held, whatever their session ids: evaluation refuses the same data,
        # and the same market (ticker) over an overlapping time, however it was recorded.
        "market_digests": sorted(trained_on),
        "market_spans": spans,
        "eval_sessions": list(eval_session_ids),
        "replay": attrs.asdict(replay),
        **dict(settings or {}),
    }
    record = await registry.register(
        name, algorithm=trainer.algorithm, path=str(path), created_ms=created_ms, hyperparameters=hyperparameters
    )
    try:
        agent = await _train_in_thread(
            trainer,
            tapes,
            total_timesteps=total_timesteps,
            seed=seed,
            progress=progress,
            eval_tapes=list(eval_tapes) or None,
            checkpoint_dir=checkpoint_dir_for(str(path)),
            run_name=f"{name}-v{record.version}",
        )
        await asyncio.to_thread(agent.save, str(path))
    except BaseException as error:
        await registry.update(record.model_id, status="failed")
        if isinstance(error, Exception):  # says which version the failure left behind, and how
            error.add_note(f"model {record.model_id} ({name} v{record.version}) is marked failed")
        raise
    # Finished: no longer a run in progress (retention may let it go once it is old enough).
    record = await registry.update(
        record.model_id, status="trained", metrics={**dict(record.metrics), "training": dict(agent.metrics)}
    )
    chart = None
    if agent.metrics.get("training_curve") or agent.metrics.get("evaluations"):
        chart = await asyncio.to_thread(
            write_training_chart, agent.metrics, Path(record.training_chart), title=f"{name} v{record.version}"
        )
    return TrainingResult(
        record=record,
        agent=agent,
        path=path,
        markets=len(tapes),
        steps_per_pass=sum(tape.steps - 1 for tape in tapes),
        chart=chart,
    )


def check_timesteps(trainer: AgentTrainer, total_timesteps: int) -> None:
    """Refuse (:class:`TooFewTimesteps`) fewer timesteps than one rollout: the trainer would train
    a whole rollout all the same."""
    if total_timesteps < trainer.rollout_timesteps:
        raise TooFewTimesteps(total_timesteps, trainer.rollout_timesteps)


def check_distinct(session_ids: Sequence[int], what: str) -> None:
    """Refuse (``ValueError``) a session named twice: it would be replayed, and counted, twice."""
    repeated = sorted(session for session, count in Counter(session_ids).items() if count > 1)
    if repeated:
        named = ", ".join(str(session) for session in repeated)
        raise ValueError(
            f"{what} name session{'s' if len(repeated) > 1 else ''} {named} more than once; give each session once"
        )


def market_spans(tapes: Sequence[MarketTape]) -> list[dict[str, Any]]:
    """Each market's ticker, session and the times of its first and last rows (Unix ms): what a
    model records to say which markets, over which times, it was trained on."""
    return [
        {"ticker": tape.ticker, "session": tape.session_id, "first_ms": int(tape.times[0]), "last_ms": int(tape.times[-1])}
        for tape in tapes
    ]


def overlapping_markets(
    spans: Sequence[Mapping[str, Any]], tapes: Sequence[MarketTape]
) -> list[tuple[Mapping[str, Any], MarketTape]]:
    """The ``tapes`` holding a market of ``spans`` (same ticker) over a time overlapping its span:
    the same market recorded again -- with more events, or from another start -- is not held out."""
    found = []
    for tape in tapes:
        first, last = int(tape.times[0]), int(tape.times[-1])
        for span in spans:
            if span["ticker"] == tape.ticker and span["first_ms"] <= last and first <= span["last_ms"]:
                found.append((span, tape))
                break
    return found


def describe_overlaps(overlapping: Sequence[tuple[Mapping[str, Any], MarketTape]], shown: int = 3) -> str:
    """``overlapping_markets`` in words: which market, where it was trained on and where it is now."""
    named = "; ".join(
        f"{tape.ticker} of session {tape.session_id} ({_utc(int(tape.times[0]))} to {_utc(int(tape.times[-1]))}) "
        f"was trained on in session {span['session']} ({_utc(span['first_ms'])} to {_utc(span['last_ms'])})"
        for span, tape in overlapping[:shown]
    )
    return named + ("; and more" if len(overlapping) > shown else "")


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _train_in_thread(trainer: AgentTrainer, tapes: Sequence[MarketTape], **options: Any) -> TrainedAgent:
    """``trainer.train`` off the event loop (CPU-bound for a minute or more, so the process stays
    responsive). A thread cannot be cancelled: when this coroutine is (Ctrl-C), it asks the
    trainer to stop at its next step, waits for the thread to end, then lets the cancellation
    through -- the run is not left training in the background to the full timesteps."""
    stop = threading.Event()
    running = asyncio.ensure_future(asyncio.to_thread(trainer.train, tapes, stop=stop, **options))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):  # what it trained is discarded, as is its failure
            await running
        raise


def write_training_chart(metrics: Mapping[str, Any], path: Path, *, title: str) -> Path:
    """The training curve as a PNG: mean episode reward per rollout (``training_curve``) and,
    when the run evaluated periodically, its evaluations on held-out tapes (``evaluations``)."""
    path = Path(path)
    with line_chart(path, title=f"Training curve, {title}", xlabel="timesteps", ylabel="mean episode reward") as axes:
        curve = metrics.get("training_curve") or ()
        if curve:
            axes.plot(
                [point["timesteps"] for point in curve],
                [point["mean_episode_reward"] for point in curve],
                label="training episodes (mean per rollout)",
                linewidth=1.2,
            )
        evaluations = metrics.get("evaluations") or ()
        if evaluations:
            axes.plot(
                [point["timesteps"] for point in evaluations],
                [point["mean_reward"] for point in evaluations],
                marker="o",
                label="held-out evaluation (deterministic)",
                linewidth=1.2,
            )
    return path
