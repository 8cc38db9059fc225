"""Evaluating a model on held-out sessions, beside the baselines it has to beat.

A policy plays every episode of an environment once, in order, so every policy meets the same
markets. Per policy we keep each episode's statistics (``domain.rewards``), the action
histogram and its entropy, the mean entropy of the distribution the policy acts from when it
exposes one (given the step's mask: a model trained with masks has none on an illegal action), the fill rates of its passive and aggressive orders (when the environment reports
its orders and fills), and the equity curve: the account's P&L step by step, episodes laid end
to end.

Baselines (:mod:`application.baselines`): do nothing, random, and a spread-capturing market
maker that quotes at the touch through an environment priced ``passive``.

**Promotion rule** (:func:`decide_promotion`): a model is promoted only if

1. its policy has not collapsed: no single action takes more than ``collapse_threshold``
   (default 90%) of its decisions,
2. its mean episode return on the held-out episodes is strictly higher than every baseline's, and
3. there were at least ``min_episodes`` held-out episodes (default 5): a mean over one or two
   markets says more about those markets than about the model.

:func:`evaluate_model` is the use case: a registered model against the baselines on sessions it
was not trained on; every episode and action of the model goes into the trading records, the
results into the model's metrics, and the model is promoted when asked and the rule allows.
Every promotion -- ``evaluate --promote``, ``models promote``, the demo -- goes through
:func:`promote_evaluated`, which refuses a version whose recorded held-out evaluation did not
pass the rule (or that has none): the registry itself would promote anything but a failed run.
Every verdict goes through :func:`record_verdict`: a finished run (``trained``) that fails is
``retired``, so retention may let it go.

Held out means by id, by content and by market: a model's record must say what it was trained
on (its ``sessions``, the ``market_digests`` of their markets, :meth:`MarketTape.content_digest`,
and their ``market_spans``: ticker, first and last row time), and evaluation refuses a session it
was trained on, one holding the same market data under another id (the same synthetic seed
collected twice), or one holding a market it was trained on over an overlapping time (the same
market recorded again, with more events) -- :func:`check_held_out`.

What evaluation reads from an environment, beyond :class:`~domain.ports.TradingEnvironment`:
its ``decoder`` (to name the actions and decode each decision into the order it placed), the
convention that step ``k`` of episode ``e`` acts at row ``k`` of ``tapes[e]``, and ``position``
in every step's ``info``. An environment that also puts ``order`` (the
:class:`~domain.orders.Order` a step sent, or None) and ``fills`` (the step's
:class:`~domain.orders.Fill` list) into ``info`` gets fill rates and order ids; one that does not
gets them reported as unknown, never guessed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np

from application.baselines import DoNothingPolicy, PositionAwarePolicy, RandomPolicy, SpreadCapturingMarketMaker
from application.charts import line_chart
from application.replay import ReplayConfig, load_tapes
from application.training import check_distinct, describe_overlaps, overlapping_markets
from domain.actions import ActionDecoder
from domain.market_tape import MarketTape
from domain.orders import Order, OrderRequest, OrderSide
from domain.ports import (
    AgentTrainer,
    EpisodeResult,
    ModelRecord,
    ModelRegistry,
    OrderbookStore,
    Policy,
    TradingAction,
    TradingEnvironment,
    TradingRecords,
)
from domain.values import MONEY_SCALE, ONE_DOLLAR

__all__ = [
    "DoNothingPolicy",
    "RandomPolicy",
    "SpreadCapturingMarketMaker",
    "DEFAULT_COLLAPSE_THRESHOLD",
    "DEFAULT_MIN_EPISODES",
    "EvaluationEnvironment",
    "FillStats",
    "PlayedEpisode",
    "PolicyEvaluation",
    "PromotionDecision",
    "ModelEvaluation",
    "evaluate_policy",
    "evaluate_against_baselines",
    "decide_promotion",
    "beats",
    "evaluate_model",
    "check_held_out",
    "held_out_verdict",
    "promote_evaluated",
    "record_verdict",
    "PromotionRefused",
    "record_episodes",
    "format_table",
    "write_equity_chart",
]

DEFAULT_COLLAPSE_THRESHOLD = 0.9  # the public failure: 96% one action, declared ready
DEFAULT_MIN_EPISODES = 5  # held-out episodes the promotion rule needs before it judges


@runtime_checkable
class EvaluationEnvironment(TradingEnvironment, Protocol):
    """A trading environment with its action decoder (the Gymnasium env adapter has one)."""

    @property
    def decoder(self) -> ActionDecoder: ...


@runtime_checkable
class ProbabilisticPolicy(Protocol):
    """A policy that can say how likely each action is (for its entropy): the distribution it
    acts from given the mask of legal actions (a model trained with masks puts nothing on a
    masked action)."""

    def action_probabilities(self, observation: Any, action_mask: Any | None = None) -> np.ndarray: ...


@attrs.frozen
class FillStats:
    """Contracts (count units) asked for and filled, by how the order was priced when sent:
    aggressive when it crossed the book of the row it was sent at, passive otherwise."""

    passive_ordered: int = 0
    passive_filled: int = 0
    aggressive_ordered: int = 0
    aggressive_filled: int = 0

    @property
    def passive_fill_rate(self) -> float | None:
        return self.passive_filled / self.passive_ordered if self.passive_ordered else None

    @property
    def aggressive_fill_rate(self) -> float | None:
        return self.aggressive_filled / self.aggressive_ordered if self.aggressive_ordered else None

    def __add__(self, other: FillStats) -> FillStats:
        return FillStats(*(a + b for a, b in zip(attrs.astuple(self), attrs.astuple(other))))


@attrs.frozen
class PlayedEpisode:
    """One episode as the trading records keep it."""

    tape: MarketTape = attrs.field(repr=False, eq=False)
    summary: Mapping[str, Any]
    initial_value: int  # micro-dollars
    final_value: int
    actions: tuple[TradingAction, ...]

    def result(self) -> EpisodeResult:
        summary = self.summary
        return EpisodeResult(
            ended_ms=int(self.tape.times[-1]),
            step_count=int(summary["steps"]),
            trade_count=int(summary["trades"]),
            total_pnl=self.final_value - self.initial_value,
            # The summary says dollars; micro-dollars come back exactly (|fees| << 2**52).
            fees_paid=round(summary["fees_paid"] * MONEY_SCALE),
            total_return=summary.get("total_return_fraction"),
            sharpe_ratio=summary.get("sharpe_ratio"),
            max_drawdown=summary.get("max_drawdown_fraction"),
        )


@attrs.frozen
class PolicyEvaluation:
    """One policy over the held-out episodes. Money in dollars; entropies in bits."""

    name: str
    episodes: tuple[dict[str, Any], ...]  # EpisodeSummary.as_dict() per episode
    action_names: tuple[str, ...]
    action_counts: tuple[int, ...]  # indexed like action_names
    illegal_actions: int
    policy_entropy: float | None  # mean entropy of the distribution the policy acts from (masked if it masks)
    equity: tuple[float, ...]  # P&L after each step, episodes end to end, starting at 0
    fills: FillStats | None = None  # None: the environment did not report its orders and fills
    played: tuple[PlayedEpisode, ...] = attrs.field(default=(), repr=False, eq=False)

    @property
    def total_return(self) -> float:
        return sum(episode["total_return"] for episode in self.episodes)

    @property
    def mean_return(self) -> float:
        """Mean episode return, dollars: what the promotion rule compares."""
        return self.total_return / len(self.episodes) if self.episodes else 0.0

    @property
    def mean_sharpe(self) -> float:
        if not self.episodes:
            return 0.0
        return sum(episode["sharpe_ratio"] for episode in self.episodes) / len(self.episodes)

    @property
    def fees(self) -> float:
        return sum(episode["fees_paid"] for episode in self.episodes)

    @property
    def trades(self) -> int:
        return sum(episode["trades"] for episode in self.episodes)

    @property
    def win_rate(self) -> float | None:
        """Mean over the episodes that closed at least one trade."""
        rates = [episode["win_rate"] for episode in self.episodes if episode["win_rate"] is not None]
        return sum(rates) / len(rates) if rates else None

    @property
    def max_drawdown(self) -> float:
        """The largest fall from a peak of the equity curve."""
        curve = np.asarray((0.0, *self.equity))
        return float(np.max(np.maximum.accumulate(curve) - curve))

    @property
    def decisions(self) -> int:
        return sum(self.action_counts)

    @property
    def action_entropy(self) -> float:
        """Entropy of the action histogram: 0 for one action only, log2(n) for n equally often."""
        total = self.decisions
        return 0.0 - sum(c / total * math.log2(c / total) for c in self.action_counts if c) if total else 0.0

    def action_shares(self) -> dict[str, float]:
        total = self.decisions or 1
        return {name: count / total for name, count in zip(self.action_names, self.action_counts)}

    def dominant_action(self) -> tuple[str, float]:
        """The most chosen action and its share of the decisions."""
        shares = self.action_shares()
        name = max(shares, key=shares.__getitem__)
        return name, shares[name]

    def collapsed(self, threshold: float = DEFAULT_COLLAPSE_THRESHOLD) -> bool:
        """One action took more than ``threshold`` of the decisions."""
        return self.decisions > 0 and self.dominant_action()[1] > threshold

    def metrics(self, collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD) -> dict[str, Any]:
        """A flat summary for the model registry or a log line."""
        fills = self.fills
        return {
            "episodes": len(self.episodes),
            "total_return": self.total_return,
            "mean_return": self.mean_return,
            "mean_sharpe": self.mean_sharpe,
            "max_drawdown": self.max_drawdown,
            "fees": self.fees,
            "trades": self.trades,
            "win_rate": self.win_rate,
            "passive_fill_rate": None if fills is None else fills.passive_fill_rate,
            "aggressive_fill_rate": None if fills is None else fills.aggressive_fill_rate,
            "illegal_actions": self.illegal_actions,
            "action_entropy_bits": self.action_entropy,
            "policy_entropy_bits": self.policy_entropy,
            "action_shares": self.action_shares(),
            "collapsed": self.collapsed(collapse_threshold),
        }


def evaluate_policy(
    policy: Policy | PositionAwarePolicy,
    environment: EvaluationEnvironment,
    *,
    name: str,
    tapes: Sequence[MarketTape],
    seed: int = 0,
    record: bool = False,
) -> PolicyEvaluation:
    """Play every episode of ``environment`` (over ``tapes``) once with ``policy``; with
    ``record``, keep every decision as a :class:`~domain.ports.TradingAction`."""
    if environment.episode_count != len(tapes):
        raise ValueError(f"the environment has {environment.episode_count} episodes for {len(tapes)} tapes")
    decoder = environment.decoder
    names = tuple(decoder.action_names)
    episodes, played = [], []
    action_counts = [0] * len(names)
    illegal = 0
    entropies: list[float] = []
    equity: list[float] = []
    fills: FillStats | None = FillStats()
    measure_entropy = isinstance(policy, ProbabilisticPolicy)
    position_aware = isinstance(policy, PositionAwarePolicy)
    banked = 0.0  # P&L of the episodes already played, dollars
    for episode, tape in enumerate(tapes):
        observation, info = environment.reset(seed=seed + episode, options={"episode": episode})
        if position_aware:
            policy.begin_episode()  # type: ignore[union-attr]
        book = _TopOfBook(tape)
        tracker = _OrderTracker()
        mask, initial, position = info["action_mask"], info["portfolio_value"], 0  # every episode starts flat
        actions: list[TradingAction] = []
        step = 0
        while True:
            if measure_entropy:
                probabilities = policy.action_probabilities(observation, mask)  # type: ignore[union-attr]
                entropies.append(_entropy_bits(probabilities))
            if position_aware:
                action = policy.act_at_position(observation, mask, position=position)  # type: ignore[union-attr]
            else:
                action = policy.act(observation, mask)  # type: ignore[union-attr]
            action = int(action)
            legal = bool(mask[action])
            digest = _digest(observation) if record else None
            decoded = environment.decode(action) if record and legal else None  # as the step decodes it
            observation, _reward, terminated, truncated, info = environment.step(action)
            after = _position(info, step)
            sent = tracker.step(info, book, step)
            if record:
                actions.append(_action_record(decoder, action, decoded, step, book, position, after, sent, digest))
            mask, position = info["action_mask"], after
            equity.append(banked + (info["portfolio_value"] - initial) / MONEY_SCALE)
            step += 1
            if terminated or truncated:
                break
        if step != tape.steps - 1:
            raise ValueError(
                f"episode {episode} ({tape.ticker}) took {step} steps but its tape has {tape.steps} rows; "
                "evaluation expects one step per row after the first"
            )
        summary = info["episode_summary"]
        banked += summary["total_return"]
        episodes.append(summary)
        action_counts = [a + b for a, b in zip(action_counts, info["action_counts"], strict=True)]
        illegal += info["illegal_actions"]
        fills = None if fills is None or tracker.stats is None else fills + tracker.stats
        if record:
            played.append(PlayedEpisode(tape, summary, initial, info["portfolio_value"], tuple(actions)))
    return PolicyEvaluation(
        name=name,
        episodes=tuple(episodes),
        action_names=names,
        action_counts=tuple(action_counts),
        illegal_actions=illegal,
        policy_entropy=sum(entropies) / len(entropies) if entropies else None,
        equity=tuple(equity),
        fills=fills,
        played=tuple(played),
    )


def evaluate_against_baselines(
    policy: Policy,
    tapes: Sequence[MarketTape],
    *,
    make_environment: Callable[[Sequence[MarketTape]], EvaluationEnvironment],
    make_quoting_environment: Callable[[Sequence[MarketTape]], EvaluationEnvironment],
    name: str,
    seed: int = 0,
    record: bool = False,
) -> tuple[PolicyEvaluation, ...]:
    """``policy`` (its decisions kept with ``record``), then the random, do-nothing and
    market-maker baselines, each on the same ``tapes``. ``make_quoting_environment`` is the
    model's environment priced ``passive``, through which the market maker quotes."""
    model_environment = make_environment(tapes)
    count = model_environment.decoder.action_count
    quoting = make_quoting_environment(tapes)
    if quoting.decoder.action_count != count:
        raise ValueError(
            f"the quoting environment has {quoting.decoder.action_count} actions, the model's {count}: "
            "it must be the model's environment with passive pricing"
        )
    return (
        evaluate_policy(policy, model_environment, name=name, tapes=tapes, seed=seed, record=record),
        evaluate_policy(
            RandomPolicy(seed, action_count=count), make_environment(tapes), name="random", tapes=tapes, seed=seed
        ),
        evaluate_policy(DoNothingPolicy(), make_environment(tapes), name="do-nothing", tapes=tapes, seed=seed),
        evaluate_policy(
            SpreadCapturingMarketMaker(quoting.decoder), quoting, name="market-maker", tapes=tapes, seed=seed
        ),
    )


@attrs.frozen
class PromotionDecision:
    promoted: bool
    reasons: tuple[str, ...]  # one line per condition, passed or failed

    def explain(self, label: str, *, promoted: bool = False) -> str:
        """The verdict and its reasons. ``promoted``: whether the version was made active because of
        it (a passing decision promotes nothing by itself: ``evaluate`` without ``--promote``)."""
        if promoted and not self.promoted:
            raise ValueError(f"{label} cannot have been promoted by a decision it failed")
        if promoted:
            head = f"Promoted {label}: it passed every condition of the promotion rule:"
        elif self.promoted:
            head = f"{label} passed the promotion rule (every condition):"
        else:
            head = f"NOT promoted: {label} failed the promotion rule:"
        return "\n".join([head, *(f"  {reason}" for reason in self.reasons)])


def decide_promotion(
    candidate: PolicyEvaluation,
    baselines: Sequence[PolicyEvaluation],
    *,
    collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD,
    min_episodes: int = DEFAULT_MIN_EPISODES,
) -> PromotionDecision:
    """The promotion rule (see the module docstring), with the reason for each condition."""
    if not baselines:
        raise ValueError("a model can only be promoted against at least one baseline")
    reasons = []
    action, share = candidate.dominant_action() if candidate.decisions else ("-", 0.0)
    collapsed = candidate.collapsed(collapse_threshold)
    mark = "FAIL" if collapsed else "ok"
    reasons.append(
        f"[{mark}] collapse: {action} takes {100 * share:.1f}% of decisions "
        f"({'above' if collapsed else 'within'} the {100 * collapse_threshold:.0f}% limit)"
    )
    passed = not collapsed
    for baseline in baselines:
        wins = candidate.mean_return > baseline.mean_return
        passed = passed and wins
        reasons.append(
            f"[{'ok' if wins else 'FAIL'}] mean episode return {candidate.mean_return:+.4f} $ "
            f"{'>' if wins else '<='} {baseline.name} {baseline.mean_return:+.4f} $"
        )
    episodes = len(candidate.episodes)
    enough = episodes >= min_episodes
    passed = passed and enough
    reasons.append(
        f"[{'ok' if enough else 'FAIL'}] held-out episodes: {episodes} "
        f"({'at least' if enough else 'fewer than'} the {min_episodes} the rule needs to judge)"
    )
    return PromotionDecision(passed, tuple(reasons))


def beats(
    candidate: PolicyEvaluation,
    baselines: Sequence[PolicyEvaluation],
    *,
    collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD,
    min_episodes: int = DEFAULT_MIN_EPISODES,
) -> bool:
    """Whether ``candidate`` passes the promotion rule against ``baselines``."""
    return decide_promotion(
        candidate, baselines, collapse_threshold=collapse_threshold, min_episodes=min_episodes
    ).promoted


class PromotionRefused(ValueError):
    """A version asked to become active without a passing held-out evaluation on record."""


def held_out_verdict(record: ModelRecord) -> tuple[bool, tuple[str, ...]] | None:
    """The promotion rule's verdict on ``record``'s recorded held-out evaluation -- (passed, one
    reason per condition) -- or None if it was never evaluated. ``evaluate`` records it under
    ``evaluation`` (the latest one); the demo, which evaluates the model it has just trained, at
    the top level."""
    for results in (record.metrics.get("evaluation"), record.metrics):
        if isinstance(results, Mapping) and isinstance(results.get("beat_baselines"), bool):
            return results["beat_baselines"], tuple(results.get("promotion", ()))
    return None


async def promote_evaluated(registry: ModelRegistry, model_id: int) -> ModelRecord:
    """Make ``model_id`` the active version of its name, if its run finished and its held-out
    evaluation passed the promotion rule (a retired version that passed may come back: a
    rollback); otherwise :class:`PromotionRefused`, saying why and what to run."""
    record = await registry.get(model_id)
    label = f"model {model_id} ({record.name} v{record.version})"
    if record.status in ("training", "failed"):
        what = "its training run has not finished" if record.status == "training" else "its training run failed"
        raise PromotionRefused(f"{label} is {record.status} ({what}), so it cannot be promoted")
    verdict = held_out_verdict(record)
    if verdict is None:
        raise PromotionRefused(
            f"{label} has no held-out evaluation, so it cannot be promoted: run "
            f"`kalshiflow-rl evaluate {model_id} --sessions ID... --promote` on sessions it was not trained on"
        )
    passed, reasons = verdict
    if not passed:
        failed = [reason for reason in reasons if "FAIL" in reason] or list(reasons)
        raise PromotionRefused(
            f"{label} failed its held-out evaluation, so it cannot be promoted:"
            + "".join(f"\n  {reason}" for reason in failed)
        )
    return await registry.promote(model_id)


async def record_verdict(
    registry: ModelRegistry, model_id: int, metrics: Mapping[str, Any], *, passed: bool, promote: bool
) -> tuple[ModelRecord, bool]:
    """Store ``metrics`` (holding the held-out evaluation and the rule's verdict, ``passed``) and
    move the version on: with ``promote``, a passing version becomes active
    (:func:`promote_evaluated`); a finished run (``trained``) that failed is retired -- judged and
    rejected, so retention (``models prune``) can let it go. An active version that fails on new
    sessions stays active (taking it down is the operator's call); a passing version not promoted
    stays as it is (``models promote`` may promote it later). Returns the record and whether it
    was promoted now."""
    record = await registry.update(model_id, metrics=metrics)
    if passed and promote and record.status != "active":
        return await promote_evaluated(registry, model_id), True
    if not passed and record.status == "trained":
        return await registry.update(model_id, status="retired"), False
    return record, False


def check_held_out(record: ModelRecord, session_ids: Sequence[int], tapes: Sequence[MarketTape] = ()) -> None:
    """Refuse (``ValueError``) to call ``session_ids`` -- and, once loaded, their ``tapes`` --
    held out for ``record``: if its record does not say what it was trained on (``sessions``,
    ``market_digests``, ``market_spans``), if it was trained on one of them, if one holds market
    data it was trained on (the same data recorded again under another id), or a market it was
    trained on over an overlapping time (the same market recorded again, with more or fewer
    events)."""
    label = f"model {record.model_id} ({record.name} v{record.version})"
    sessions = record.hyperparameters.get("sessions")
    digests = record.hyperparameters.get("market_digests")
    spans = record.hyperparameters.get("market_spans")
    missing = [
        key
        for key, value in (("sessions", sessions), ("market_digests", digests), ("market_spans", spans))
        if not isinstance(value, list)
    ]
    if missing:
        raise ValueError(
            f"{label} does not say what it was trained on (its hyperparameters have no "
            f"{' or '.join(repr(key) for key in missing)}), so no session can be shown to be held out from it; "
            "retrain it with `kalshiflow-rl train` to evaluate it"
        )
    trained_on = sorted(set(sessions) & set(session_ids))
    if trained_on:
        raise ValueError(f"{label} was trained on sessions {trained_on}; evaluate it on held-out sessions")
    trained_data = set(digests)
    repeated = [tape for tape in tapes if tape.content_digest() in trained_data]
    if repeated:
        named = ", ".join(f"{tape.ticker} of session {tape.session_id}" for tape in repeated[:3])
        raise ValueError(
            f"{label} was trained on the same market data as {named}"
            f"{' and more' if len(repeated) > 3 else ''} (recorded again under another id); "
            "evaluate it on held-out sessions"
        )
    overlapping = overlapping_markets(spans, tapes)
    if overlapping:
        raise ValueError(
            f"{label} was trained on the same market over an overlapping time: {describe_overlaps(overlapping)}; "
            "evaluate it on held-out sessions (other markets, or this one over another time)"
        )


@attrs.frozen
class ModelEvaluation:
    model: ModelRecord  # with the new metrics (and status, if promoted)
    evaluations: tuple[PolicyEvaluation, ...]  # the model first, then the baselines
    decision: PromotionDecision
    promoted: bool  # the model is now active because of this evaluation
    markets: int
    recorded_episodes: tuple[int, ...]  # trading-record episode ids of the model's episodes

    @property
    def beat_baselines(self) -> bool:
        return self.decision.promoted


async def evaluate_model(
    *,
    store: OrderbookStore,
    registry: ModelRegistry,
    records: TradingRecords,
    trainer: AgentTrainer,
    make_environment: Callable[[Sequence[MarketTape]], EvaluationEnvironment],
    make_quoting_environment: Callable[[Sequence[MarketTape]], EvaluationEnvironment],
    model_id: int,
    session_ids: Sequence[int],
    cache_dir: Path | None = None,
    seed: int = 0,
    collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD,
    min_episodes: int = DEFAULT_MIN_EPISODES,
    promote: bool = False,
) -> ModelEvaluation:
    """Play registered model ``model_id`` and the baselines on held-out ``session_ids``.

    The sessions are replayed with the settings the model was trained with, and must not be
    sessions it was trained on. The model's episodes and actions go into ``records`` (mode
    ``evaluation``); the comparison into its metrics. With ``promote``, a model that passes the
    promotion rule becomes the active version of its name; a finished run (``trained``) that
    fails it is retired (:func:`record_verdict`).
    """
    check_distinct(session_ids, "the held-out sessions")
    record = await registry.get(model_id)
    check_held_out(record, session_ids)  # by id, before anything is loaded
    replay = ReplayConfig(**record.hyperparameters.get("replay", {}))
    tapes = await load_tapes(store, session_ids, config=replay, cache_dir=cache_dir)
    if not tapes:
        raise ValueError(f"sessions {list(session_ids)} hold no replayable market to evaluate on")
    check_held_out(record, session_ids, tapes)  # by content
    policy = trainer.load_policy(record.path)
    evaluations = evaluate_against_baselines(
        policy,
        tapes,
        make_environment=make_environment,
        make_quoting_environment=make_quoting_environment,
        name=f"{record.algorithm} v{record.version}",
        seed=seed,
        record=True,
    )
    model_evaluation, *baselines = evaluations
    decision = decide_promotion(
        model_evaluation, baselines, collapse_threshold=collapse_threshold, min_episodes=min_episodes
    )
    episode_ids = await record_episodes(records, model_id, model_evaluation.played, mode="evaluation")
    metrics = {
        **dict(record.metrics),
        "evaluation": {
            "sessions": list(session_ids),
            "markets": len(tapes),
            "beat_baselines": decision.promoted,
            "promotion": list(decision.reasons),
            "collapse_threshold": collapse_threshold,
            "min_episodes": min_episodes,
            "trading_episodes": list(episode_ids),
            "policies": {evaluation.name: evaluation.metrics(collapse_threshold) for evaluation in evaluations},
        },
    }
    record, promoted = await record_verdict(registry, model_id, metrics, passed=decision.promoted, promote=promote)
    return ModelEvaluation(record, evaluations, decision, promoted, len(tapes), episode_ids)


async def record_episodes(
    records: TradingRecords, model_id: int, played: Sequence[PlayedEpisode], *, mode: str
) -> tuple[int, ...]:
    """Write each played episode, its actions and its result; returns the episode ids."""
    ids = []
    for episode in played:
        started = await records.start_episode(
            model_id,
            market_ticker=episode.tape.ticker,
            mode=mode,
            started_ms=int(episode.tape.times[0]),
            session_id=episode.tape.session_id,
        )
        await records.record_actions(started.episode_id, episode.actions)
        await records.finish_episode(started.episode_id, episode.result())
        ids.append(started.episode_id)
    return tuple(ids)


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------
def format_table(
    evaluations: Sequence[PolicyEvaluation], *, markets: int, collapse_threshold: float = DEFAULT_COLLAPSE_THRESHOLD
) -> str:
    """The evaluation as a fixed-width text table, then each policy's action histogram."""
    header = (
        f"{'policy':<14}{'return $':>10}{'mean ep $':>11}{'Sharpe':>9}{'max DD $':>10}{'fees $':>9}"
        f"{'trades':>8}{'win rate':>10}{'passive fill':>14}{'aggr. fill':>12}{'H(act)':>8}{'H(pol)':>8}  flag"
    )
    lines = [f"Evaluation on {markets} held-out markets, every policy on the same episodes", header, "-" * len(header)]
    for evaluation in evaluations:
        fills = evaluation.fills
        lines.append(
            f"{evaluation.name:<14}{evaluation.total_return:>+10.2f}{evaluation.mean_return:>+11.3f}"
            f"{evaluation.mean_sharpe:>9.3f}{evaluation.max_drawdown:>10.2f}{evaluation.fees:>9.2f}"
            f"{evaluation.trades:>8d}{_percent(evaluation.win_rate):>10}"
            f"{_percent(None if fills is None else fills.passive_fill_rate, fills is None):>14}"
            f"{_percent(None if fills is None else fills.aggressive_fill_rate, fills is None):>12}"
            f"{evaluation.action_entropy:>8.2f}{_number(evaluation.policy_entropy):>8}"
            f"  {'COLLAPSED' if evaluation.collapsed(collapse_threshold) else ''}".rstrip()
        )
    lines.append("Action histograms (% of decisions):")
    for evaluation in evaluations:
        shares = evaluation.action_shares()
        shown = " ".join(f"{name} {100 * share:.0f}" for name, share in shares.items() if evaluation.decisions)
        lines.append(f"  {evaluation.name:<14}{shown}")
    lines.append(
        "Sharpe: mean per-step Sharpe ratio of the episodes. Fill: contracts filled / asked for, by orders "
        "priced passive (resting) or aggressive (crossing) when sent; n/a: the environment does not report "
        "fills. H(act): entropy of the action histogram, H(pol): mean entropy of the distribution the "
        f"policy acts from (over the legal actions when it was trained with masks), in bits. COLLAPSED: one action above {100 * collapse_threshold:.0f}% of decisions."
    )
    return "\n".join(lines)


def write_equity_chart(evaluations: Sequence[PolicyEvaluation], path: Path, *, title: str) -> Path:
    """Each policy's equity curve in one PNG."""
    path = Path(path)
    with line_chart(
        path, title=title, xlabel="step (held-out episodes end to end)", ylabel="cumulative P&L ($)"
    ) as axes:
        for evaluation in evaluations:
            curve = (0.0, *evaluation.equity)
            axes.plot(range(len(curve)), curve, label=evaluation.name, linewidth=1.2)
    return path


# ---------------------------------------------------------------------------------------------
# Small pieces
# ---------------------------------------------------------------------------------------------
class _TopOfBook:
    """A tape's best YES bid and ask per row (-1: none), as the environment decodes with them."""

    def __init__(self, tape: MarketTape) -> None:
        self.times = tape.times.tolist()
        self.yes_bid = tape.bid_prices[:, 0, 0].tolist()
        self.yes_ask = [ONE_DOLLAR - no if no >= 0 else -1 for no in tape.bid_prices[:, 1, 0].tolist()]

    def crosses(self, side: OrderSide, price: int, row: int) -> bool:
        if side is OrderSide.BID:
            ask = self.yes_ask[row]
            return ask >= 0 and price >= ask
        bid = self.yes_bid[row]
        return bid >= 0 and price <= bid


class _OrderTracker:
    """Fill rates by how orders were priced when sent, from the ``order`` and ``fills`` an
    environment reports per step; ``stats`` is None once a step has not reported them."""

    def __init__(self) -> None:
        self.stats: FillStats | None = FillStats()
        self._aggressive: dict[str, bool] = {}  # order id -> crossed when sent

    def step(self, info: Mapping[str, Any], book: _TopOfBook, row: int) -> Order | None:
        """The order this step sent, if the environment says."""
        if "order" not in info or "fills" not in info:
            self.stats = None
            return None
        order: Order | None = info["order"]
        stats = self.stats
        if stats is None:
            return order
        passive_ordered, aggressive_ordered = stats.passive_ordered, stats.aggressive_ordered
        if order is not None:
            aggressive = self._aggressive[order.order_id] = book.crosses(order.side, order.price, row)
            if aggressive:
                aggressive_ordered += order.count
            else:
                passive_ordered += order.count
        passive_filled, aggressive_filled = stats.passive_filled, stats.aggressive_filled
        for fill in info["fills"]:
            if fill.order_id not in self._aggressive:
                raise ValueError(f"step {row} reports a fill of order {fill.order_id!r}, which no step reported sending")
            if self._aggressive[fill.order_id]:
                aggressive_filled += fill.count
            else:
                passive_filled += fill.count
        self.stats = FillStats(passive_ordered, passive_filled, aggressive_ordered, aggressive_filled)
        return order


def _action_record(
    decoder: ActionDecoder,
    action: int,
    decoded: OrderRequest | None,
    step: int,
    book: _TopOfBook,
    before: int,
    after: int,
    sent: Order | None,
    digest: str | None,
) -> TradingAction:
    """The decision at row ``step`` and the order it decoded to (none for HOLD or an illegal action)."""
    side, price, count = (None, None, 0) if decoded is None else (decoded.side, decoded.price, decoded.count)
    return TradingAction(
        step_number=step,
        timestamp_ms=book.times[step],
        action_type=decoder.action_names[action],
        position_before=before,
        position_after=after,
        action_index=action,
        order_side=side,
        price=price,
        quantity=count,
        order_id=None if sent is None else sent.order_id,
        client_order_id=None if sent is None else sent.client_order_id,
        observation_digest=digest,
    )


def _position(info: Mapping[str, Any], step: int) -> int:
    try:
        return int(info["position"])
    except KeyError:
        raise ValueError(f"the environment's info at step {step} has no 'position'; evaluation needs it") from None


def _digest(observation: Any) -> str:
    """16 hex digits identifying the exact observation (its float32 bytes)."""
    data = np.ascontiguousarray(observation, dtype=np.float32).tobytes()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _entropy_bits(probabilities: np.ndarray) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[p > 0]
    return 0.0 - float((p * np.log2(p)).sum())


def _percent(value: float | None, unknown: bool = False) -> str:
    if unknown:
        return "n/a"
    return "-" if value is None else f"{100 * value:.0f}%"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
