"""The TradingRecords contract: every implementation passes the same assertions."""

from __future__ import annotations

import pytest

from domain.orders import OrderSide
from domain.ports import (
    EpisodeResult,
    ModelNotFound,
    SessionNotFound,
    TradingAction,
    TradingEpisodeFinished,
    TradingEpisodeNotFound,
    TradingRecords,
)


async def a_model(storage, name="ppo-book"):
    registry = await storage.open_registry()
    record = await registry.register(name, algorithm="PPO", path=f"models/{name}.zip", created_ms=1, hyperparameters={})
    return record.model_id


def hold(step, *, position=0, ts_ms=None):
    return TradingAction(step, 1_000 * step if ts_ms is None else ts_ms, "HOLD", position, position, action_index=0)


BUY = TradingAction(
    step_number=3,
    timestamp_ms=3_000,
    action_type="BUY_YES_20",
    position_before=-500,
    position_after=1_500,
    action_index=5,
    order_side=OrderSide.BID,
    price=4_700,
    quantity=2_000,
    order_id="ord-9",
    client_order_id="agent-3",
    observation_digest="a3f1",
)
RESULT = EpisodeResult(
    ended_ms=9_000,
    step_count=4,
    trade_count=2,
    total_pnl=-1_234_567,
    fees_paid=70_000,
    total_return=-0.0123,
    sharpe_ratio=-0.5,
    max_drawdown=0.02,
)


async def test_the_adapter_satisfies_the_port(storage):
    assert isinstance(await storage.open_trading_records(), TradingRecords)


async def test_episodes_are_numbered_per_model_and_round_trip(storage):
    model, other = await a_model(storage), await a_model(storage, "other")
    store = await storage.open_store()
    session = await store.start_session(["KX-A"], started_ms=0, source="test")
    records = await storage.open_trading_records()

    first = await records.start_episode(model, market_ticker="KX-A", mode="evaluation", started_ms=100, session_id=session)
    elsewhere = await records.start_episode(other, market_ticker="KX-B", mode="paper", started_ms=200)
    second = await records.start_episode(model, market_ticker="KX-B", mode="training", started_ms=300)

    assert (first.episode_number, elsewhere.episode_number, second.episode_number) == (1, 1, 2)
    assert (first.model_id, first.market_ticker, first.mode, first.started_ms, first.session_id) == (
        model, "KX-A", "evaluation", 100, session
    )
    assert elsewhere.session_id is None and first.result is None and not first.is_finished
    assert await records.get_episode(first.episode_id) == first
    # A new adapter over the same database continues the numbering.
    again = await (await storage.open_trading_records()).start_episode(
        model, market_ticker="KX-A", mode="evaluation", started_ms=400
    )
    assert again.episode_number == 3


async def test_start_refuses_unknown_models_sessions_and_modes(storage):
    model = await a_model(storage)
    records = await storage.open_trading_records()
    with pytest.raises(ModelNotFound, match="no model with id 999"):
        await records.start_episode(999, market_ticker="KX-A", mode="paper", started_ms=0)
    with pytest.raises(SessionNotFound, match="no recording session 77"):
        await records.start_episode(model, market_ticker="KX-A", mode="evaluation", started_ms=0, session_id=77)
    with pytest.raises(ValueError, match="trading mode must be one of training, evaluation, paper; got 'live'"):
        await records.start_episode(model, market_ticker="KX-A", mode="live", started_ms=0)
    with pytest.raises(ValueError, match="market_ticker must be a non-empty string"):
        await records.start_episode(model, market_ticker="", mode="paper", started_ms=0)
    assert await records.list_episodes() == []


async def test_actions_are_written_in_bulk_and_read_back_by_step(storage):
    model = await a_model(storage)
    records = await storage.open_trading_records()
    episode = await records.start_episode(model, market_ticker="KX-A", mode="paper", started_ms=0)

    assert await records.record_actions(episode.episode_id, [hold(2), BUY]) == 2
    assert await records.record_actions(episode.episode_id, [hold(0), hold(1)]) == 2
    assert await records.record_actions(episode.episode_id, []) == 0

    assert await records.read_actions(episode.episode_id) == [hold(0), hold(1), hold(2), BUY]


async def test_a_long_batch_goes_in_whole(storage):
    model = await a_model(storage)
    records = await storage.open_trading_records()
    episode = await records.start_episode(model, market_ticker="KX-A", mode="evaluation", started_ms=0)
    actions = [hold(step, position=step * 100) for step in range(5_000)]

    assert await records.record_actions(episode.episode_id, actions) == 5_000
    assert await records.read_actions(episode.episode_id) == actions


async def test_a_batch_is_all_or_nothing(storage):
    model = await a_model(storage)
    records = await storage.open_trading_records()
    episode = await records.start_episode(model, market_ticker="KX-A", mode="evaluation", started_ms=0)
    await records.record_actions(episode.episode_id, [hold(0)])

    with pytest.raises(ValueError, match=f"trading episode {episode.episode_id} already has one of these step numbers"):
        await records.record_actions(episode.episode_id, [hold(1), hold(0)])
    with pytest.raises(ValueError, match="step 4 appears twice in one batch"):
        await records.record_actions(episode.episode_id, [hold(4), hold(4)])
    with pytest.raises(ValueError, match="step 5: price must be an int of price units in 0..10000"):
        await records.record_actions(episode.episode_id, [hold(6), TradingAction(5, 0, "BUY_YES", 0, 0, price=10_001)])
    with pytest.raises(ValueError, match="step 7: position_before must be an int"):
        await records.record_actions(episode.episode_id, [TradingAction(7, 0, "HOLD", 1.5, 0)])

    assert await records.read_actions(episode.episode_id) == [hold(0)]


async def test_finishing_stores_the_result_and_closes_the_episode(storage):
    model = await a_model(storage)
    records = await storage.open_trading_records()
    episode = await records.start_episode(model, market_ticker="KX-A", mode="evaluation", started_ms=1_000)
    await records.record_actions(episode.episode_id, [hold(0), BUY])

    finished = await records.finish_episode(episode.episode_id, RESULT)

    assert finished.result == RESULT and finished.is_finished
    assert await records.get_episode(episode.episode_id) == finished
    with pytest.raises(TradingEpisodeFinished, match=f"trading episode {episode.episode_id} already finished at 9000 ms"):
        await records.record_actions(episode.episode_id, [hold(9)])
    with pytest.raises(TradingEpisodeFinished):
        await records.finish_episode(episode.episode_id, RESULT)
    assert await records.read_actions(episode.episode_id) == [hold(0), BUY]


async def test_statistics_may_be_absent_and_the_end_must_follow_the_start(storage):
    model = await a_model(storage)
    records = await storage.open_trading_records()
    episode = await records.start_episode(model, market_ticker="KX-A", mode="paper", started_ms=5_000)
    with pytest.raises(ValueError, match="cannot end at 4999 ms, before it started at 5000 ms"):
        await records.finish_episode(episode.episode_id, EpisodeResult(4_999, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="fees_paid must be at least 0"):
        await records.finish_episode(episode.episode_id, EpisodeResult(6_000, 0, 0, 0, -1))

    bare = EpisodeResult(ended_ms=5_000, step_count=0, trade_count=0, total_pnl=0, fees_paid=0)
    assert (await records.finish_episode(episode.episode_id, bare)).result == bare


async def test_unknown_episodes_are_named(storage):
    records = await storage.open_trading_records()
    for call in (
        records.get_episode(404),
        records.record_actions(404, [hold(0)]),
        records.finish_episode(404, RESULT),
        records.read_actions(404),
    ):
        with pytest.raises(TradingEpisodeNotFound, match="no trading episode 404"):
            await call


async def test_episodes_are_listed_by_model_and_mode(storage):
    model, other = await a_model(storage), await a_model(storage, "other")
    records = await storage.open_trading_records()
    started = [
        await records.start_episode(model, market_ticker="KX-A", mode="evaluation", started_ms=0),
        await records.start_episode(other, market_ticker="KX-A", mode="evaluation", started_ms=0),
        await records.start_episode(model, market_ticker="KX-B", mode="paper", started_ms=0),
        await records.start_episode(model, market_ticker="KX-C", mode="evaluation", started_ms=0),
    ]

    def ids(episodes):
        return [episode.episode_id for episode in episodes]

    assert ids(await records.list_episodes()) == ids(sorted(started, key=lambda e: (e.model_id, e.episode_number)))
    assert ids(await records.list_episodes(model)) == ids([started[0], started[2], started[3]])
    assert ids(await records.list_episodes(model, mode="evaluation")) == ids([started[0], started[3]])
    assert ids(await records.list_episodes(mode="paper")) == ids([started[2]])
    with pytest.raises(ValueError, match="trading mode must be one of"):
        await records.list_episodes(mode="backtest")
