"""``kalshiflow-rl evaluate`` in process: real SQLite storage, the real environment, a fake trainer."""

from __future__ import annotations

import asyncio
import re

import pytest
from dependency_injector import providers

from adapters.storage import SqliteModelRegistry, SqliteOrderbookStore, SqliteTradingRecords
from application.replay import ReplayConfig, load_tapes
from application.training import market_spans
from domain.events import BookSnapshot, MarketResolved, PublicTrade
from domain.values import ONE_CONTRACT, Side
from entrypoints import cli
from entrypoints.config import Settings
from entrypoints.container import build_container
from entrypoints.learning import EnvironmentSettings

C = ONE_CONTRACT


def spread_market(ticker):
    """YES 45 bid / 55 ask for 8 s; a seller hits the bid at 2.5 s, a buyer lifts the ask at 5.5 s."""
    return [
        BookSnapshot(ticker, 1, 0, yes=((4500, 10 * C),), no=((4500, 10 * C),)),
        PublicTrade(ticker, 2_500, f"{ticker}-1", 4500, 30 * C, Side.NO),
        PublicTrade(ticker, 5_500, f"{ticker}-2", 5500, 30 * C, Side.YES),
        MarketResolved(ticker, 8_000, Side.NO),
    ]


class Holds:
    def act(self, observation, action_mask=None):
        return 0


class HoldingTrainer:
    """The trainer port, for a model that always holds."""

    algorithm = "ppo"
    hyperparameters = {}

    def __init__(self, environment, *, algorithm="ppo"):
        self.environment = environment

    def load_policy(self, path):
        return Holds()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
async def model_id(settings) -> int:
    """Session 1 (trained on) and session 2 (held out), and a model trained on session 1."""
    store, registry = SqliteOrderbookStore(settings.sqlite_path), SqliteModelRegistry(settings.sqlite_path)
    await store.open()
    await registry.open()
    try:
        for ticker in ("TRAIN", "HELD"):
            session = await store.start_session([ticker], started_ms=0, source="test")
            await store.write_events(session, spread_market(ticker))
            await store.end_session(session, ended_ms=8_000)
        (trained,) = await load_tapes(store, [1], config=ReplayConfig(step_ms=1_000))
        record = await registry.register(
            "agent",
            algorithm="ppo",
            path=str(settings.models_dir / "agent-v1.zip"),
            created_ms=1,
            hyperparameters={"sessions": [1], "market_digests": [trained.content_digest()],
                             "market_spans": market_spans([trained]),
                             "replay": {"step_ms": 1_000}, "environment": EnvironmentSettings().as_dict()},
            status="trained",  # its run finished
        )  # fmt: skip
    finally:
        await store.close()
        await registry.close()
    return record.model_id


@pytest.fixture
def container(settings):
    container = build_container(settings)
    container.trainer.override(providers.Factory(HoldingTrainer))
    return container


def run(argv, settings, container) -> int:
    return cli.run(cli.build_parser().parse_args(argv), settings, container)


async def test_evaluate_prints_the_table_and_the_decision_records_and_writes_the_png(
    settings, container, model_id, capsys
):
    code = await _in_thread(run, ["evaluate", str(model_id), "--sessions", "2", "--promote"], settings, container)

    out = capsys.readouterr().out
    assert code == 0, out
    rows = {name: line for name in ("ppo v1", "random", "do-nothing", "market-maker") for line in out.splitlines() if line.startswith(name)}
    assert set(rows) == {"ppo v1", "random", "do-nothing", "market-maker"}
    assert re.match(r"ppo v1\s+\+0\.00\s", rows["ppo v1"]) and rows["ppo v1"].endswith("COLLAPSED")
    # The market maker buys 10 at $0.45 and sells them at $0.55 as a maker: +$1.00, no fees.
    assert re.match(r"market-maker\s+\+1\.00\s+\+1\.000\s", rows["market-maker"])
    assert "NOT promoted: model 1 (agent v1) failed the promotion rule:" in out
    assert "[FAIL] collapse: HOLD takes 100.0% of decisions (above the 90% limit)" in out
    assert "[FAIL] mean episode return +0.0000 $ <= market-maker +1.0000 $" in out
    assert "Recorded 1 episodes of model 1 (agent v1) in the trading records (mode evaluation)." in out

    chart = settings.data_dir / "evaluations" / f"model-{model_id}-equity.png"
    assert f"Equity curves: {chart}" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records, registry = SqliteTradingRecords(settings.sqlite_path), SqliteModelRegistry(settings.sqlite_path)
    await records.open()
    await registry.open()
    try:
        (episode,) = await records.list_episodes(model_id, mode="evaluation")
        actions = await records.read_actions(episode.episode_id)
        model = await registry.get(model_id)
    finally:
        await records.close()
        await registry.close()
    assert (episode.market_ticker, episode.session_id, episode.result.step_count) == ("HELD", 2, 8)
    assert [action.action_type for action in actions] == ["HOLD"] * 8
    assert [action.timestamp_ms for action in actions] == list(range(0, 8_000, 1_000))
    assert model.status == "retired"  # --promote, but it failed the rule: judged, rejected, prunable
    assert "model 1 (agent v1) is retired: it failed the rule (`models prune` may delete it)." in out
    assert model.metrics["evaluation"]["beat_baselines"] is False


class BuysNoFirst:
    """Buys NO at the first decision, then holds: 7 HOLDs of 8 decisions is not collapsed."""

    def __init__(self):
        self.decisions = 0

    def act(self, observation, action_mask=None):
        self.decisions += 1
        return 3 if self.decisions == 1 else 0  # BUY_NO, then HOLD


class BuyingNoTrainer(HoldingTrainer):
    def load_policy(self, path):
        return BuysNoFirst()


@pytest.mark.parametrize("promote", [False, True])
async def test_a_passing_model_is_said_promoted_only_when_it_was(settings, container, model_id, promote, capsys):
    container.trainer.override(providers.Factory(BuyingNoTrainer))
    flags = ["--min-episodes", "1", *(["--promote"] if promote else [])]  # one market held out
    code = await _in_thread(run, ["evaluate", str(model_id), "--sessions", "2", *flags], settings, container)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "[ok] mean episode return" in out and "[FAIL]" not in out  # it passed: the market resolved NO
    assert "[ok] held-out episodes: 1 (at least the 1 the rule needs to judge)" in out
    if promote:
        assert "Promoted model 1 (agent v1): it passed every condition of the promotion rule:" in out
        assert "model 1 (agent v1) is now the active version of agent." in out
    else:
        assert "model 1 (agent v1) passed the promotion rule (every condition):" in out
        assert "Promoted" not in out
        assert "model 1 (agent v1) passed; it is trained (`kalshiflow-rl models promote 1` makes it active" in out


async def test_one_held_out_market_is_too_few_to_pass_by_default(settings, container, model_id, capsys):
    container.trainer.override(providers.Factory(BuyingNoTrainer))
    code = await _in_thread(run, ["evaluate", str(model_id), "--sessions", "2", "--promote"], settings, container)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "[FAIL] held-out episodes: 1 (fewer than the 5 the rule needs to judge)" in out
    assert "NOT promoted: model 1 (agent v1) failed the promotion rule:" in out


async def test_a_held_out_session_named_twice_is_refused(settings, container, model_id, capsys):
    code = await _in_thread(run, ["evaluate", str(model_id), "--sessions", "2", "2"], settings, container)
    assert code == 2
    assert capsys.readouterr().err == (
        "kalshiflow-rl: error: cannot evaluate model 1: the held-out sessions name session 2 more than once; "
        "give each session once\n"
    )


async def test_sessions_the_model_was_trained_on_are_refused(settings, container, model_id, capsys):
    code = await _in_thread(run, ["evaluate", str(model_id), "--sessions", "1", "2"], settings, container)
    assert code == 2
    assert "cannot evaluate model 1: model 1 (agent v1) was trained on sessions [1]; evaluate it on held-out sessions" in (
        capsys.readouterr().err
    )


async def test_the_same_market_data_recorded_again_under_another_id_is_refused(settings, container, model_id, capsys):
    store, registry = SqliteOrderbookStore(settings.sqlite_path), SqliteModelRegistry(settings.sqlite_path)
    await store.open()
    await registry.open()
    try:
        (trained,) = await load_tapes(store, [1], config=ReplayConfig(step_ms=1_000))
        copy = await store.start_session(["TRAIN"], started_ms=50_000, source="test")  # collect run again
        await store.write_events(copy, spread_market("TRAIN"))
        await store.end_session(copy, ended_ms=58_000)
        record = await registry.register(
            "agent", algorithm="ppo", path=str(settings.models_dir / "agent-v2.zip"), created_ms=2,
            hyperparameters={"sessions": [1], "market_digests": [trained.content_digest()],
                             "market_spans": market_spans([trained]),
                             "replay": {"step_ms": 1_000}, "environment": EnvironmentSettings().as_dict()},
        )  # fmt: skip
    finally:
        await store.close()
        await registry.close()
    code = await _in_thread(run, ["evaluate", str(record.model_id), "--sessions", str(copy)], settings, container)
    assert code == 2
    assert (
        f"model {record.model_id} (agent v2) was trained on the same market data as TRAIN of session {copy} "
        "(recorded again under another id); evaluate it on held-out sessions"
    ) in capsys.readouterr().err


async def test_the_same_market_recorded_again_with_more_events_is_refused(settings, container, model_id, capsys):
    store = SqliteOrderbookStore(settings.sqlite_path)
    await store.open()
    try:
        again = await store.start_session(["TRAIN"], started_ms=0, source="test")  # recorded alongside session 1
        more = [*spread_market("TRAIN")[:-1], PublicTrade("TRAIN", 6_500, "TRAIN-3", 5500, C, Side.YES)]
        await store.write_events(again, [*sorted(more, key=lambda event: event.ts_ms), spread_market("TRAIN")[-1]])
        await store.end_session(again, ended_ms=8_000)
    finally:
        await store.close()
    code = await _in_thread(run, ["evaluate", str(model_id), "--sessions", str(again)], settings, container)
    assert code == 2
    assert (
        f"cannot evaluate model 1: model 1 (agent v1) was trained on the same market over an overlapping time: "
        f"TRAIN of session {again} (1970-01-01 00:00:00 UTC to 1970-01-01 00:00:08 UTC) was trained on in session 1 "
        "(1970-01-01 00:00:00 UTC to 1970-01-01 00:00:08 UTC); evaluate it on held-out sessions"
    ) in capsys.readouterr().err


async def test_a_model_whose_record_does_not_say_what_it_was_trained_on_is_refused(settings, container, capsys):
    registry = SqliteModelRegistry(settings.sqlite_path)
    await registry.open()
    try:
        record = await registry.register(
            "agent", algorithm="ppo", path=str(settings.models_dir / "old.zip"), created_ms=1,
            hyperparameters={"replay": {"step_ms": 1_000}}, status="trained",
        )  # fmt: skip
    finally:
        await registry.close()
    code = await _in_thread(run, ["evaluate", str(record.model_id), "--sessions", "2"], settings, container)
    assert code == 2
    assert (
        f"cannot evaluate model {record.model_id}: model {record.model_id} (agent v1) does not say what it was "
        "trained on (its hyperparameters have no 'sessions' or 'market_digests' or 'market_spans')"
    ) in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "most"])
def test_the_collapse_threshold_must_be_a_share(bad, capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "1", "--sessions", "2", "--collapse-threshold", bad])
    assert "argument --collapse-threshold" in capsys.readouterr().err


async def _in_thread(function, *args):
    """``cli.run`` starts its own event loop: run it off this test's."""
    return await asyncio.to_thread(function, *args)
