"""The actor's episodes: each market's run of decisions under one model, as training counts them.

An episode is keyed by model, market and the actor's model generation
(:class:`~application.actor_records.EpisodeKey`): a hot reload ends every market's episode and the
next decision starts a new one. :meth:`MarketEpisodes.record` numbers each decision within its
episode and hands it to the record queue; :meth:`MarketEpisodes.finish_all` closes the episodes
with their result -- the steps, the fills, and the market's P&L and fees since the episode began
(open positions valued at the last mark).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from application.actor_account import TradingAccount
from application.actor_records import ActionRecord, EpisodeEnd, EpisodeKey, RecordQueue, TradingRecord
from domain.ports import EpisodeResult, TradingAction


@attrs.define
class _Episode:
    key: EpisodeKey
    started_ms: int
    steps: int = 0
    trades: int = 0
    start_realized: int = 0
    start_fees: int = 0


class MarketEpisodes:
    """The open episode of each market, and the record queue its decisions and ends go to."""

    def __init__(self, records: RecordQueue[TradingRecord]) -> None:
        self._records = records
        self._open: dict[str, _Episode] = {}

    def count_trade(self, ticker: str) -> None:
        """A fill in ``ticker``: one more trade in its episode, if one is open."""
        episode = self._open.get(ticker)
        if episode is not None:
            episode.trades += 1

    async def record(
        self, key: EpisodeKey, action: TradingAction, account: TradingAccount, marks: Mapping[str, int]
    ) -> TradingAction:
        """Record a decision in ``key``'s episode (finishing the market's previous one first);
        returns it numbered within the episode."""
        now = action.timestamp_ms
        episode = self._open.get(key.ticker)
        if episode is None or episode.key != key:
            if episode is not None:
                await self._finish(episode, now, account, marks)
            position = account.ledger.position(key.ticker)
            episode = _Episode(key, now, start_realized=position.realized_pnl, start_fees=position.fees_paid)
            self._open[key.ticker] = episode
        episode.steps += 1
        numbered = attrs.evolve(action, step_number=episode.steps)
        await self._records.put(ActionRecord(key, episode.started_ms, numbered))
        return numbered

    async def finish_all(self, now: int, account: TradingAccount, marks: Mapping[str, int]) -> None:
        """End every open episode at ``now`` (the actor stops, or a new model takes over)."""
        for ticker in list(self._open):
            await self._finish(self._open.pop(ticker), now, account, marks)

    async def _finish(self, episode: _Episode, now: int, account: TradingAccount, marks: Mapping[str, int]) -> None:
        position = account.ledger.position(episode.key.ticker)
        mark = marks.get(episode.key.ticker)
        unrealized = position.unrealized_pnl(mark) if mark is not None else 0
        result = EpisodeResult(
            ended_ms=now,
            step_count=episode.steps,
            trade_count=episode.trades,
            total_pnl=position.realized_pnl - episode.start_realized + unrealized,
            fees_paid=position.fees_paid - episode.start_fees,
        )
        await self._records.put(EpisodeEnd(episode.key, result))
