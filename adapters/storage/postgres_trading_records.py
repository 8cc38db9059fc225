""":class:`~domain.ports.TradingRecords` in PostgreSQL.

Actions go in with COPY (``copy_records_to_table``) inside the transaction that locks their
episode's row, so a batch is all or nothing and never lands in a finished episode.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from adapters.storage.model_rows import not_found as model_not_found
from adapters.storage.postgres_pool import PostgresAdapter
from adapters.storage.session_rows import session_not_found
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
_RETURNING_EPISODE = f"RETURNING {', '.join(EPISODE_COLUMNS)}"
_SELECT_ACTIONS = (
    f"SELECT {', '.join(ACTION_COLUMNS)} FROM rl_trading_actions WHERE episode_id = $1 ORDER BY step_number"
)


class PostgresTradingRecords(PostgresAdapter):
    async def start_episode(
        self, model_id: int, *, market_ticker: str, mode: str, started_ms: int, session_id: int | None = None
    ) -> TradingEpisode:
        model_id, ticker, mode, started_ms, session_id = episode_start_values(
            model_id, market_ticker, mode, started_ms, session_id
        )
        async with self._database.pool.acquire() as connection, connection.transaction():
            # Serialises the model's episode numbering until the transaction ends (the UNIQUE
            # constraint would refuse a race; the lock makes the second starter wait instead).
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext('rl_trading_episodes ' || ($1::bigint)::text))", model_id
            )
            if await connection.fetchval("SELECT 1 FROM rl_models WHERE id = $1", model_id) is None:
                raise model_not_found(model_id)
            if session_id is not None and await connection.fetchval(
                "SELECT 1 FROM rl_sessions WHERE id = $1", session_id
            ) is None:
                raise session_not_found(session_id)
            row = await connection.fetchrow(
                "INSERT INTO rl_trading_episodes (model_id, episode_number, market_ticker, mode, started_ms, session_id)"
                " SELECT $1, COALESCE(MAX(episode_number), 0) + 1, $2, $3, $4, $5"
                f" FROM rl_trading_episodes WHERE model_id = $1 {_RETURNING_EPISODE}",
                model_id,
                ticker,
                mode,
                started_ms,
                session_id,
            )
        return trading_episode(row)

    async def record_actions(self, episode_id: int, actions: Sequence[TradingAction]) -> int:
        rows = action_rows(episode_id, actions)
        async with self._database.pool.acquire() as connection, connection.transaction():
            ended = await connection.fetchrow(
                "SELECT ended_ms FROM rl_trading_episodes WHERE id = $1 FOR UPDATE", episode_id
            )
            if ended is None:
                raise episode_not_found(episode_id)
            check_unfinished(episode_id, ended["ended_ms"])
            if rows:
                try:
                    await connection.copy_records_to_table(
                        "rl_trading_actions",
                        records=rows,
                        columns=ACTION_INSERT_COLUMNS,
                        schema_name=self._database.schema,
                    )
                except asyncpg.UniqueViolationError as error:
                    raise repeated_steps(episode_id, error) from None
                except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError, OverflowError) as error:
                    raise ValueError(f"trading episode {episode_id}: an action was refused: {error}") from None
        return len(rows)

    async def finish_episode(self, episode_id: int, result: EpisodeResult) -> TradingEpisode:
        async with self._database.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT started_ms, ended_ms FROM rl_trading_episodes WHERE id = $1 FOR UPDATE", episode_id
            )
            if row is None:
                raise episode_not_found(episode_id)
            check_unfinished(episode_id, row["ended_ms"])
            values = result_values(episode_id, result, started_ms=row["started_ms"])
            finished = await connection.fetchrow(
                "UPDATE rl_trading_episodes SET ended_ms = $2, step_count = $3, trade_count = $4, total_pnl = $5,"
                " fees_paid = $6, total_return = $7, sharpe_ratio = $8, max_drawdown = $9"
                f" WHERE id = $1 {_RETURNING_EPISODE}",
                episode_id,
                *values,
            )
        return trading_episode(finished)

    async def get_episode(self, episode_id: int) -> TradingEpisode:
        row = await self._database.pool.fetchrow(f"{_SELECT_EPISODES} WHERE id = $1", episode_id)
        if row is None:
            raise episode_not_found(episode_id)
        return trading_episode(row)

    async def list_episodes(self, model_id: int | None = None, *, mode: str | None = None) -> list[TradingEpisode]:
        where, parameters = episode_filter(model_id, mode, "${}")
        rows = await self._database.pool.fetch(
            f"{_SELECT_EPISODES} {where} ORDER BY model_id, episode_number", *parameters
        )
        return [trading_episode(row) for row in rows]

    async def read_actions(self, episode_id: int) -> list[TradingAction]:
        async with self._database.pool.acquire() as connection:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                if await connection.fetchval("SELECT 1 FROM rl_trading_episodes WHERE id = $1", episode_id) is None:
                    raise episode_not_found(episode_id)
                rows = await connection.fetch(_SELECT_ACTIONS, episode_id)
        return [trading_action(row) for row in rows]
