"""Evaluating a policy on held-out episodes, beside the baselines it has to beat.

A policy plays every episode of an environment once, in order, so every policy meets the same
markets. Per policy we keep each episode's statistics (``domain.rewards``), the action
histogram, the entropy of that histogram, the mean entropy of the policy's own action
distribution when it exposes one, and the equity curve: the account's P&L step by step, the
episodes laid end to end.

Baselines: :class:`DoNothingPolicy` (always HOLD: the zero to beat) and :class:`RandomPolicy`
(uniform over the legal actions, seeded). :func:`evaluate_model` is the use case: a registered
model against both, on sessions from the store, with the results stored as the model's metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np

from application.replay import ReplayConfig, load_tapes
from domain.actions import ACTION_COUNT, ACTION_NAMES, Action
from domain.market_tape import MarketTape
from domain.ports import AgentTrainer, ModelRecord, ModelRegistry, OrderbookStore, Policy, TradingEnvironment
from domain.values import MONEY_SCALE


class DoNothingPolicy:
    """Never trades."""

    def act(self, observation: Any, action_mask: Any | None = None) -> int:
        return int(Action.HOLD)

    def action_probabilities(self, observation: Any) -> np.ndarray:
        probabilities = np.zeros(ACTION_COUNT)
        probabilities[Action.HOLD] = 1.0
        return probabilities


class RandomPolicy:
    """Picks uniformly among the legal actions (all of them when no mask is given)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, observation: Any, action_mask: Any | None = None) -> int:
        if action_mask is None:
            return int(self._rng.integers(ACTION_COUNT))
        return int(self._rng.choice(np.flatnonzero(action_mask)))


@runtime_checkable
class ProbabilisticPolicy(Protocol):
    """A policy that can say how likely each action is (for its entropy)."""

    def action_probabilities(self, observation: Any) -> np.ndarray: ...


@attrs.frozen
class PolicyEvaluation:
    """One policy over the held-out episodes. Money in dollars; entropies in bits."""

    name: str
    episodes: tuple[dict[str, Any], ...]  # EpisodeSummary.as_dict() per episode
    action_counts: tuple[int, ...]  # indexed by domain.actions.Action
    illegal_actions: int
    policy_entropy: float | None  # mean entropy of the policy's action distribution
    equity: tuple[float, ...]  # P&L after each step, episodes end to end, starting at 0

    @property
    def total_return(self) -> float:
        return sum(episode["total_return"] for episode in self.episodes)

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
    def action_entropy(self) -> float:
        """Entropy of the action histogram: 0 for one action only, log2(5) for all equally."""
        total = sum(self.action_counts)
        return 0.0 - sum(c / total * math.log2(c / total) for c in self.action_counts if c) if total else 0.0

    def action_shares(self) -> dict[str, float]:
        total = sum(self.action_counts) or 1
        return {name: count / total for name, count in zip(ACTION_NAMES, self.action_counts)}

    def metrics(self) -> dict[str, Any]:
        """A flat summary for the model registry or a log line."""
        return {
            "episodes": len(self.episodes),
            "total_return": self.total_return,
            "mean_sharpe": self.mean_sharpe,
            "max_drawdown": self.max_drawdown,
            "fees": self.fees,
            "trades": self.trades,
            "win_rate": self.win_rate,
            "illegal_actions": self.illegal_actions,
            "action_entropy_bits": self.action_entropy,
            "policy_entropy_bits": self.policy_entropy,
            "action_shares": self.action_shares(),
        }


def evaluate_policy(
    policy: Policy, environment: TradingEnvironment, *, name: str, seed: int = 0
) -> PolicyEvaluation:
    """Play every episode of ``environment`` once with ``policy``."""
    episodes = []
    action_counts = [0] * ACTION_COUNT
    illegal = 0
    entropies: list[float] = []
    equity: list[float] = []
    measure_entropy = isinstance(policy, ProbabilisticPolicy)
    banked = 0.0  # P&L of the episodes already played, dollars
    for episode in range(environment.episode_count):
        observation, info = environment.reset(seed=seed + episode, options={"episode": episode})
        mask = info["action_mask"]
        initial = info["portfolio_value"]
        while True:
            if measure_entropy:
                entropies.append(_entropy_bits(policy.action_probabilities(observation)))  # type: ignore[attr-defined]
            action = policy.act(observation, mask)
            observation, _reward, terminated, truncated, info = environment.step(action)
            mask = info["action_mask"]
            equity.append(banked + (info["portfolio_value"] - initial) / MONEY_SCALE)
            if terminated or truncated:
                break
        summary = info["episode_summary"]
        banked += summary["total_return"]
        episodes.append(summary)
        action_counts = [a + b for a, b in zip(action_counts, info["action_counts"])]
        illegal += info["illegal_actions"]
    return PolicyEvaluation(
        name=name,
        episodes=tuple(episodes),
        action_counts=tuple(action_counts),
        illegal_actions=illegal,
        policy_entropy=sum(entropies) / len(entropies) if entropies else None,
        equity=tuple(equity),
    )


def evaluate_against_baselines(
    policy: Policy,
    tapes: Sequence[MarketTape],
    *,
    make_environment: Callable[[Sequence[MarketTape]], TradingEnvironment],
    name: str,
    seed: int = 0,
) -> tuple[PolicyEvaluation, PolicyEvaluation, PolicyEvaluation]:
    """``policy``, then the random and do-nothing baselines, each on the same ``tapes``."""
    return (
        evaluate_policy(policy, make_environment(tapes), name=name, seed=seed),
        evaluate_policy(RandomPolicy(seed), make_environment(tapes), name="random", seed=seed),
        evaluate_policy(DoNothingPolicy(), make_environment(tapes), name="do-nothing", seed=seed),
    )


@attrs.frozen
class ModelEvaluation:
    model: ModelRecord  # with the new metrics
    evaluations: tuple[PolicyEvaluation, ...]  # the model first, then the baselines
    beat_baselines: bool
    markets: int


async def evaluate_model(
    *,
    store: OrderbookStore,
    registry: ModelRegistry,
    trainer: AgentTrainer,
    make_environment: Callable[[Sequence[MarketTape]], TradingEnvironment],
    model_id: int,
    session_ids: Sequence[int],
    cache_dir: Path | None = None,
    seed: int = 0,
) -> ModelEvaluation:
    """Play registered model ``model_id`` and the baselines on ``session_ids``; store the metrics.

    The sessions are replayed with the settings the model was trained with. Promotion is a
    separate decision (``ModelRegistry.promote``).
    """
    record = await registry.get(model_id)
    replay = ReplayConfig(**record.hyperparameters.get("replay", {}))
    tapes = await load_tapes(store, session_ids, config=replay, cache_dir=cache_dir)
    if not tapes:
        raise ValueError(f"sessions {list(session_ids)} hold no replayable market to evaluate on")
    policy = trainer.load_policy(record.path)
    evaluations = evaluate_against_baselines(
        policy, tapes, make_environment=make_environment, name=f"{record.algorithm} v{record.version}", seed=seed
    )
    model_evaluation, *baselines = evaluations
    won = beats(model_evaluation, baselines)
    metrics = {
        **dict(record.metrics),
        "evaluation": {
            "sessions": list(session_ids),
            "markets": len(tapes),
            "beat_baselines": won,
            "policies": {evaluation.name: evaluation.metrics() for evaluation in evaluations},
        },
    }
    record = await registry.update(model_id, metrics=metrics)
    return ModelEvaluation(record, evaluations, won, len(tapes))


def beats(candidate: PolicyEvaluation, baselines: Sequence[PolicyEvaluation]) -> bool:
    """True when ``candidate`` returned strictly more than every baseline."""
    return all(candidate.total_return > baseline.total_return for baseline in baselines)


def format_table(evaluations: Sequence[PolicyEvaluation], *, markets: int) -> str:
    """The evaluation as a fixed-width text table."""
    abbreviations = "/".join(_SHORT[name] for name in ACTION_NAMES)
    header = (
        f"{'policy':<12}{'return $':>10}{'Sharpe':>9}{'max DD $':>10}{'fees $':>9}{'trades':>8}"
        f"{'win rate':>10}  {'actions % ' + abbreviations:<34}{'entropy':>8}"
    )
    lines = [f"Evaluation on {markets} markets, every policy on the same episodes", header, "-" * len(header)]
    for evaluation in evaluations:
        shares = evaluation.action_shares()
        actions = "/".join(f"{round(100 * shares[name])}" for name in ACTION_NAMES)
        win_rate = "-" if evaluation.win_rate is None else f"{100 * evaluation.win_rate:.0f}%"
        lines.append(
            f"{evaluation.name:<12}{evaluation.total_return:>+10.2f}{evaluation.mean_sharpe:>9.3f}"
            f"{evaluation.max_drawdown:>10.2f}{evaluation.fees:>9.2f}{evaluation.trades:>8d}"
            f"{win_rate:>10}  {actions:<34}{evaluation.action_entropy:>8.2f}"
        )
    lines.append("Sharpe: mean per-step Sharpe ratio of the episodes; entropy: of the action histogram, in bits.")
    return "\n".join(lines)


_SHORT = {"HOLD": "H", "BUY_YES": "BY", "SELL_YES": "SY", "BUY_NO": "BN", "SELL_NO": "SN"}


def write_equity_chart(evaluations: Sequence[PolicyEvaluation], path: Path, *, title: str) -> Path:
    """Each policy's equity curve in one PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(9, 4.5), dpi=110)
    try:
        for evaluation in evaluations:
            curve = (0.0, *evaluation.equity)
            axes.plot(range(len(curve)), curve, label=evaluation.name, linewidth=1.2)
        axes.axhline(0.0, color="grey", linewidth=0.6)
        axes.set_title(title)
        axes.set_xlabel("step (held-out episodes end to end)")
        axes.set_ylabel("P&L ($)")
        axes.legend(loc="best")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    finally:
        pyplot.close(figure)
    return path


def _entropy_bits(probabilities: np.ndarray) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[p > 0]
    return 0.0 - float((p * np.log2(p)).sum())
