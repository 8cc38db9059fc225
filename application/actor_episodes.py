"""The actor's episodes: each market's run of decisions under one model, as training counts them.

An episode is keyed by model, market and the actor's model generation
(:class:`~application.actor_records.EpisodeKey`): a hot reload ends every market's episode and the
next decision starts a new one. :meth:`MarketEpisodes.record` numbers each decision within its
episode and hands it to the record queue; :meth:`MarketEpisodes.finish_all` closes the episodes
with their result -- the steps, the fills, and the market's P&L net of fees over the episode:
realised P&L, plus the change in the open position's unrealised P&L (at the last mark), less
fees. A market's episodes follow one another without a gap: the next episode starts where the
previous one ended (what moves in between is the new model's, which holds the position from the
moment it takes over), so a market's episodes add up to its whole mark-to-market P&L.
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
    start_unrealized: int = 0
    start_fees: int = 0

    def start(self) -> tuple[int, int, int]:
        return self.start_realized, self.start_unrealized, self.start_fees


class MarketEpisodes:
    """The open episode of each market, and the record queue its decisions and ends go to."""

    def __init__(self, records: RecordQueue[TradingRecord]) -> None:
        self._records = records
        self._open: dict[str, _Episode] = {}
        # Per market, (realised, unrealised, fees) where its last episode ended: the next one's start.
        self._ended_at: dict[str, tuple[int, int, int]] = {}

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
            start = self._ended_at.pop(key.ticker, None) or _standing(account, key.ticker, marks)
            episode = _Episode(key, now, start_realized=start[0], start_unrealized=start[1], start_fees=start[2])
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
        end = self._ended_at[episode.key.ticker] = _standing(account, episode.key.ticker, marks)
        realized, unrealized, fees = (at_end - at_start for at_end, at_start in zip(end, episode.start()))
        result = EpisodeResult(
            ended_ms=now,
            step_count=episode.steps,
            trade_count=episode.trades,
            total_pnl=realized + unrealized - fees,
            fees_paid=fees,
        )
        await self._records.put(EpisodeEnd(episode.key, result))


def _standing(account: TradingAccount, ticker: str, marks: Mapping[str, int]) -> tuple[int, int, int]:
    """``ticker``'s (realised P&L, unrealised P&L at its mark, fees) in the account's ledger now;
    unrealised is 0 without a mark (nothing to value the position at)."""
    position = account.ledger.position(ticker)
    mark = marks.get(ticker)
    unrealized = position.unrealized_pnl(mark) if mark is not None and position.quantity else 0
    return position.realized_pnl, unrealized, position.fees_paid
