""":class:`~domain.ports.TradingRecords` in a SQLite file (may be the recordings' file).

The module-level functions run on the connection's worker thread (:class:`SqliteConnection`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from adapters.storage.model_rows import not_found as model_not_found
from adapters.storage.session_rows import session_not_found
from adapters.storage.sqlite_connection import SqliteAdapter, read_transaction, write_transaction
from adapters.storage.trading_record_rows import (
    ACTION_COLUMNS,
    ACTION_INSERT_COLUMNS,
    EPISODE_COLUMNS,
    action_rows,
    check_unfinished,
    episode_filter,
    episode_not_found,
    episode_start_values,
    repeated_steps,
    result_values,
    trading_action,
    trading_episode,
)
from domain.ports import EpisodeResult, TradingAction, TradingEpisode

_SELECT_EPISODES = f"SELECT {', '.join(EPISODE_COLUMNS)} FROM rl_trading_episodes"
_INSERT_ACTIONS = (
    f"INSERT INTO rl_trading_actions ({', '.join(ACTION_INSERT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(ACTION_INSERT_COLUMNS))})"
)
_SELECT_ACTIONS = (
    f"SELECT {', '.join(ACTION_COLUMNS)} FROM rl_trading_actions WHERE episode_id = ? ORDER BY step_number"
)


class SqliteTradingRecords(SqliteAdapter):
    async def start_episode(
        self, model_id: int, *, market_ticker: str, mode: str, started_ms: int, session_id: int | None = None
    ) -> TradingEpisode:
        values = episode_start_values(model_id, market_ticker, mode, started_ms, session_id)
        return await self._database.run(_start_episode, values)

    async def record_actions(self, episode_id: int, actions: Sequence[TradingAction]) -> int:
        rows = action_rows(episode_id, actions)
        await self._database.run(_record_actions, episode_id, rows)
        return len(rows)

    async def finish_episode(self, episode_id: int, result: EpisodeResult) -> TradingEpisode:
        return await self._database.run(_finish_episode, episode_id, result)

    async def get_episode(self, episode_id: int) -> TradingEpisode:
        return await self._database.run(_get_episode, episode_id)

    async def list_episodes(self, model_id: int | None = None, *, mode: str | None = None) -> list[TradingEpisode]:
        where, parameters = episode_filter(model_id, mode, "?")
        return await self._database.run(_list_episodes, where, parameters)

    async def read_actions(self, episode_id: int) -> list[TradingAction]:
        return await self._database.run(_read_actions, episode_id)


def _start_episode(
    connection: sqlite3.Connection, values: tuple[int, str, str, int, int | None]
) -> TradingEpisode:
    model_id, ticker, mode, started_ms, session_id = values
    with write_transaction(connection):  # the write lock also serialises episode numbering
        if connection.execute("SELECT 1 FROM rl_models WHERE id = ?", (model_id,)).fetchone() is None:
            raise model_not_found(model_id)
        if session_id is not None and connection.execute(
            "SELECT 1 FROM rl_sessions WHERE id = ?", (session_id,)
        ).fetchone() is None:
            raise session_not_found(session_id)
        cursor = connection.execute(
            "INSERT INTO rl_trading_episodes (model_id, episode_number, market_ticker, mode, started_ms, session_id)"
            " SELECT ?, COALESCE(MAX(episode_number), 0) + 1, ?, ?, ?, ? FROM rl_trading_episodes WHERE model_id = ?",
            (model_id, ticker, mode, started_ms, session_id, model_id),
        )
        return _get_episode(connection, cursor.lastrowid)


def _record_actions(connection: sqlite3.Connection, episode_id: int, rows: list[tuple[object, ...]]) -> None:
    with write_transaction(connection):
        row = connection.execute("SELECT ended_ms FROM rl_trading_episodes WHERE id = ?", (episode_id,)).fetchone()
        if row is None:
            raise episode_not_found(episode_id)
        check_unfinished(episode_id, row[0])
        try:
            connection.executemany(_INSERT_ACTIONS, rows)
        except sqlite3.IntegrityError as error:
            if "UNIQUE" in str(error):
                raise repeated_steps(episode_id, error) from None
            raise ValueError(f"trading episode {episode_id}: an action was refused: {error}") from None


def _finish_episode(connection: sqlite3.Connection, episode_id: int, result: EpisodeResult) -> TradingEpisode:
    with write_transaction(connection):
        row = connection.execute(
            "SELECT started_ms, ended_ms FROM rl_trading_episodes WHERE id = ?", (episode_id,)
        ).fetchone()
        if row is None:
            raise episode_not_found(episode_id)
        check_unfinished(episode_id, row[1])
        connection.execute(
            "UPDATE rl_trading_episodes SET ended_ms = ?, step_count = ?, trade_count = ?, total_pnl = ?,"
            " fees_paid = ?, total_return = ?, sharpe_ratio = ?, max_drawdown = ? WHERE id = ?",
            (*result_values(episode_id, result, started_ms=row[0]), episode_id),
        )
        return _get_episode(connection, episode_id)


def _get_episode(connection: sqlite3.Connection, episode_id: int) -> TradingEpisode:
    row = connection.execute(f"{_SELECT_EPISODES} WHERE id = ?", (episode_id,)).fetchone()
    if row is None:
        raise episode_not_found(episode_id)
    return trading_episode(row)


def _list_episodes(connection: sqlite3.Connection, where: str, parameters: tuple[object, ...]) -> list[TradingEpisode]:
    rows = connection.execute(f"{_SELECT_EPISODES} {where} ORDER BY model_id, episode_number", parameters)
    return [trading_episode(row) for row in rows]


def _read_actions(connection: sqlite3.Connection, episode_id: int) -> list[TradingAction]:
    with read_transaction(connection):
        if connection.execute("SELECT 1 FROM rl_trading_episodes WHERE id = ?", (episode_id,)).fetchone() is None:
            raise episode_not_found(episode_id)
        return [trading_action(row) for row in connection.execute(_SELECT_ACTIONS, (episode_id,))]
