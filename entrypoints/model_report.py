"""``models show``: one model version, readable -- its status and what it means, what it was
trained with, how training went, how it did on held-out sessions and why it was or was not
promoted. ``--json`` gives the whole record instead, for scripts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from application.evaluation import held_out_verdict
from domain.ports import ModelRecord

# Metrics shown in their own sections; anything else is listed as JSON at the end. The demo
# stores its held-out results at the top level, `evaluate` under "evaluation".
_SHOWN = {"training", "held_out", "held_out_sessions", "promotion", "beat_baselines", "evaluation"}


def describe_model(model: ModelRecord) -> str:
    lines = [
        f"Model {model.model_id}: {model.name} v{model.version}",
        f"  algorithm        {model.algorithm}",
        f"  status           {status_text(model)}",
        f"  created          {utc_text(model.created_ms)} UTC",
        f"  path             {model.path}",
    ]
    if Path(model.training_chart).exists():
        lines.append(f"  training curve   {model.training_chart}")
    if model.hyperparameters:
        lines.append("  hyperparameters")
        flat = dict(_flatten(model.hyperparameters))
        width = max(len(key) for key in flat)
        lines += [f"    {key:<{width}}  {_value(value)}" for key, value in sorted(flat.items())]
    metrics = model.metrics
    training = metrics.get("training")
    if isinstance(training, Mapping):
        lines.append(f"  training         {_training_summary(training)}")
    lines += _results("held out", metrics.get("held_out_sessions"), metrics.get("held_out"), metrics.get("promotion"))
    evaluation = metrics.get("evaluation")
    if isinstance(evaluation, Mapping):
        lines += _results(
            "evaluated", evaluation.get("sessions"), evaluation.get("policies"), evaluation.get("promotion")
        )
    rest = {key: value for key, value in metrics.items() if key not in _SHOWN}
    if rest:
        lines.append(f"  other metrics    {json.dumps(rest, sort_keys=True, default=str)}")
    return "\n".join(lines)


def status_text(model: ModelRecord) -> str:
    """The status, what it means for this version and, where there is one, the next command."""
    verdict = held_out_verdict(model)
    passed = None if verdict is None else verdict[0]
    promote = f"`kalshiflow-rl models promote {model.model_id}`"
    if model.status == "training":
        meaning = "the run has not finished: it is running, or its process died"
    elif model.status == "trained" and passed is None:
        meaning = f"finished, not evaluated: `kalshiflow-rl evaluate {model.model_id} --sessions ID...` on held-out sessions"
    elif model.status == "trained":
        meaning = f"finished, passed its held-out evaluation: {promote} makes it active" if passed else (
            "finished, failed its held-out evaluation"
        )
    elif model.status == "active":
        meaning = "the version the actor trades"
    elif model.status == "retired" and passed is None:
        meaning = "replaced by another active version"
    elif model.status == "retired":
        meaning = f"passed its held-out evaluation: {promote} brings it back" if passed else (
            "failed its held-out evaluation; `models prune` may delete it"
        )
    elif model.status == "failed":
        meaning = "the training run raised"
    else:
        return model.status
    return f"{model.status} ({meaning})"


def model_json(model: ModelRecord) -> str:
    return json.dumps(
        {
            "model_id": model.model_id,
            "name": model.name,
            "version": model.version,
            "algorithm": model.algorithm,
            "status": model.status,
            "path": model.path,
            "created_ms": model.created_ms,
            "hyperparameters": dict(model.hyperparameters),
            "metrics": dict(model.metrics),
        },
        sort_keys=True,
        default=str,
    )


def _training_summary(training: Mapping[str, Any]) -> str:
    parts = []
    if training.get("timesteps") is not None:
        parts.append(f"{training['timesteps']:,} timesteps")
    if training.get("seconds") is not None:
        parts.append(f"in {training['seconds']:.1f} s")
    if training.get("timesteps_per_s") is not None:
        parts.append(f"({training['timesteps_per_s']:,.0f}/s)")
    curve = training.get("training_curve") or ()
    if curve:
        first, last = curve[0]["mean_episode_reward"], curve[-1]["mean_episode_reward"]
        parts.append(f"; mean episode reward {first:+.3f} -> {last:+.3f} over {len(curve)} rollouts")
    evaluations = training.get("evaluations") or ()
    if evaluations:
        parts.append(f"; last evaluation {evaluations[-1]['mean_reward']:+.3f}")
    return " ".join(parts).replace(" ;", ";") or "(no figures)"


def _results(title: str, sessions: Any, policies: Any, promotion: Any) -> list[str]:
    """A results section: the sessions, each policy's figures, the promotion rule's verdicts."""
    lines = []
    if isinstance(policies, Mapping) and policies:
        lines.append(f"  {title:<16} sessions {_value(sessions)}" if sessions else f"  {title}")
        lines += _policy_table(policies)
    if promotion:
        lines.append("  promotion rule")
        lines += [f"    {reason}" for reason in promotion]
    return lines


def _policy_table(held_out: Mapping[str, Any]) -> list[str]:
    width = max(len("policy"), *(len(name) for name in held_out))
    rows = [f"    {'policy':<{width}}  {'mean ep $':>10}  {'total $':>10}  {'trades':>7}  {'fees $':>9}  flag"]
    for name, figures in held_out.items():
        flag = "COLLAPSED" if figures.get("collapsed") else ""
        rows.append(
            f"    {name:<{width}}  {_money(figures.get('mean_return')):>10}  {_money(figures.get('total_return')):>10}"
            f"  {figures.get('trades', '-'):>7}  {_money(figures.get('fees'), signed=False):>9}  {flag}".rstrip()
        )
    return rows


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _money(value: Any, *, signed: bool = True) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def age_text(ms: int) -> str:
    """A duration as ``models list`` shows ages: ``<1m``, ``42m``, ``3h 05m``, ``12d 4h``."""
    minutes = max(0, ms) // 60_000
    if minutes < 1:
        return "<1m"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def utc_text(ms: int) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM:SS`` (UTC), as the commands print times."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
