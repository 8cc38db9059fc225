"""Trading-record rows <-> :class:`TradingEpisode` / :class:`TradingAction`, and the checks both
stores make before anything reaches the database (so SQLite and PostgreSQL refuse the same input
with the same message)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.orders import OrderSide
from domain.ports import (
    TRADING_MODES,
    EpisodeResult,
    TradingAction,
    TradingEpisode,
    TradingEpisodeFinished,
    TradingEpisodeNotFound,
)
from domain.values import ONE_DOLLAR

# rl_trading_episodes columns a TradingEpisode is built from, in order.
EPISODE_COLUMNS = (
    "id", "model_id", "episode_number", "market_ticker", "mode", "started_ms", "session_id",
    "ended_ms", "step_count", "trade_count", "total_pnl", "fees_paid", "total_return", "sharpe_ratio",
    "max_drawdown",
)
# rl_trading_actions columns written for (and read back into) a TradingAction, after episode_id.
ACTION_COLUMNS = (
    "step_number", "action_timestamp_ms", "action_type", "position_before", "position_after",
    "action_index", "order_side", "price", "quantity", "order_id", "client_order_id", "observation_digest",
)
ACTION_INSERT_COLUMNS = ("episode_id", *ACTION_COLUMNS)


def checked_mode(mode: str) -> str:
    if mode not in TRADING_MODES:
        raise ValueError(f"trading mode must be one of {', '.join(TRADING_MODES)}; got {mode!r}")
    return mode


def checked_int(value: Any, what: str, *, minimum: int | None = None) -> int:
    # asyncpg would store 1.9 as 1 without a word; SQLite's STRICT tables would refuse it less clearly.
    if type(value) is not int:
        raise ValueError(f"{what} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return value


def checked_text(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def checked_statistic(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number or None, got {value!r}")
    return float(value)


def episode_start_values(
    model_id: int, market_ticker: str, mode: str, started_ms: int, session_id: int | None
) -> tuple[int, str, str, int, int | None]:
    return (
        checked_int(model_id, "model_id"),
        checked_text(market_ticker, "market_ticker"),  # type: ignore[return-value]
        checked_mode(mode),
        checked_int(started_ms, "started_ms"),
        None if session_id is None else checked_int(session_id, "session_id"),
    )


def result_values(
    episode_id: int, result: EpisodeResult, *, started_ms: int
) -> tuple[int, int, int, int, int, float | None, float | None, float | None]:
    """The rl_trading_episodes values of ``result``: ended_ms, step_count, ..., max_drawdown."""
    if not isinstance(result, EpisodeResult):
        raise TypeError(f"an episode result must be an EpisodeResult, got {type(result).__name__}")
    ended_ms = checked_int(result.ended_ms, "ended_ms")
    if ended_ms < started_ms:
        raise ValueError(f"trading episode {episode_id} cannot end at {ended_ms} ms, before it started at {started_ms} ms")
    return (
        ended_ms,
        checked_int(result.step_count, "step_count", minimum=0),
        checked_int(result.trade_count, "trade_count", minimum=0),
        checked_int(result.total_pnl, "total_pnl"),
        checked_int(result.fees_paid, "fees_paid", minimum=0),
        checked_statistic(result.total_return, "total_return"),
        checked_statistic(result.sharpe_ratio, "sharpe_ratio"),
        checked_statistic(result.max_drawdown, "max_drawdown"),
    )


def action_rows(episode_id: int, actions: Sequence[TradingAction]) -> list[tuple[Any, ...]]:
    """One row per action, in :data:`ACTION_INSERT_COLUMNS` order; refuses a bad action, or a
    step number repeated in the batch, naming it."""
    if isinstance(actions, TradingAction):
        raise TypeError("record_actions takes a sequence of TradingAction, got a single one")
    rows = []
    steps: set[int] = set()
    for action in actions:
        if not isinstance(action, TradingAction):
            raise TypeError(f"trading actions must be TradingAction, got {type(action).__name__}")
        step = checked_int(action.step_number, "step_number", minimum=0)
        if step in steps:
            raise ValueError(f"trading episode {episode_id}: step {step} appears twice in one batch")
        steps.add(step)
        rows.append(_action_row(episode_id, action))
    return rows


def _action_row(episode_id: int, action: TradingAction) -> tuple[Any, ...]:
    step = action.step_number
    where = f"trading episode {episode_id}, step {step}"
    price = action.price
    if price is not None and (type(price) is not int or not 0 <= price <= ONE_DOLLAR):
        raise ValueError(f"{where}: price must be an int of price units in 0..{ONE_DOLLAR} or None, got {price!r}")
    side = action.order_side
    if side is not None and not isinstance(side, OrderSide):
        raise ValueError(f"{where}: order_side must be an OrderSide or None, got {side!r}")
    return (
        episode_id,
        step,
        checked_int(action.timestamp_ms, f"{where}: timestamp_ms"),
        checked_text(action.action_type, f"{where}: action_type"),
        checked_int(action.position_before, f"{where}: position_before"),
        checked_int(action.position_after, f"{where}: position_after"),
        None if action.action_index is None else checked_int(action.action_index, f"{where}: action_index", minimum=0),
        None if side is None else side.value,
        price,
        checked_int(action.quantity, f"{where}: quantity", minimum=0),
        checked_text(action.order_id, f"{where}: order_id", optional=True),
        checked_text(action.client_order_id, f"{where}: client_order_id", optional=True),
        checked_text(action.observation_digest, f"{where}: observation_digest", optional=True),
    )


def trading_episode(row: Sequence[Any]) -> TradingEpisode:
    """``row`` holds :data:`EPISODE_COLUMNS`."""
    (
        episode_id, model_id, number, ticker, mode, started_ms, session_id,
        ended_ms, steps, trades, pnl, fees, total_return, sharpe, drawdown,
    ) = row
    result = None
    if ended_ms is not None:
        result = EpisodeResult(ended_ms, steps, trades, pnl, fees, total_return, sharpe, drawdown)
    return TradingEpisode(episode_id, model_id, number, ticker, mode, started_ms, session_id, result)


def trading_action(row: Sequence[Any]) -> TradingAction:
    """``row`` holds :data:`ACTION_COLUMNS`."""
    step, ts_ms, action_type, before, after, index, side, price, quantity, order_id, client_id, digest = row
    return TradingAction(
        step_number=step,
        timestamp_ms=ts_ms,
        action_type=action_type,
        position_before=before,
        position_after=after,
        action_index=index,
        order_side=None if side is None else OrderSide(side),
        price=price,
        quantity=quantity,
        order_id=order_id,
        client_order_id=client_id,
        observation_digest=digest,
    )


def episode_not_found(episode_id: int) -> TradingEpisodeNotFound:
    return TradingEpisodeNotFound(f"no trading episode {episode_id}")


def check_unfinished(episode_id: int, ended_ms: int | None) -> None:
    if ended_ms is not None:
        raise TradingEpisodeFinished(f"trading episode {episode_id} already finished at {ended_ms} ms")


def repeated_steps(episode_id: int, error: Exception) -> ValueError:
    return ValueError(f"trading episode {episode_id} already has one of these step numbers ({error})")


def episode_filter(model_id: int | None, mode: str | None, placeholder: str) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause (or "") and its parameters; ``placeholder(n)`` spells the n-th parameter."""
    clauses, parameters = [], []
    if model_id is not None:
        parameters.append(checked_int(model_id, "model_id"))
        clauses.append(f"model_id = {placeholder.format(len(parameters))}")
    if mode is not None:
        parameters.append(checked_mode(mode))
        clauses.append(f"mode = {placeholder.format(len(parameters))}")
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), tuple(parameters)
