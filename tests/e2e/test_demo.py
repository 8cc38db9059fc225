"""The demo use case end to end, small: real SQLite, synthetic feed, Gymnasium env, PPO."""

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.storage import SqliteModelRegistry, SqliteOrderbookStore, SqliteTradingRecords
from application.demo import DemoConfig, run_demo
from application.evaluation import DEFAULT_MIN_EPISODES
from application.replay import ReplayConfig
from entrypoints.evaluate_command import quoting_settings
from entrypoints.learning import EnvironmentSettings, sb3_trainer, synthetic_session_feed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class WallClock:
    def now_ms(self):
        return time.time_ns() // 1_000_000


async def test_the_demo_records_trains_evaluates_and_reports(tmp_path):
    store = SqliteOrderbookStore(tmp_path / "kalshiflow.db")
    registry = SqliteModelRegistry(tmp_path / "kalshiflow.db")
    records = SqliteTradingRecords(tmp_path / "kalshiflow.db")
    await store.open()
    await registry.open()
    await records.open()
    environment = EnvironmentSettings()
    lines = []
    try:
        result = await run_demo(
            DemoConfig(
                sessions=3,
                held_out_sessions=1,
                markets_per_session=2,
                session_minutes=2,
                total_timesteps=1_024,
                replay=ReplayConfig(step_ms=1_000),
            ),
            store=store,
            registry=registry,
            records=records,
            make_feed=synthetic_session_feed,
            trainer=sb3_trainer(environment, n_envs=2),
            make_environment=environment.make_environment,
            make_quoting_environment=quoting_settings(environment).make_environment,
            clock=WallClock(),
            models_dir=tmp_path / "models",
            cache_dir=tmp_path / "cache",
            chart_path=tmp_path / "equity.png",
            environment_settings=environment.as_dict(),
            say=lines.append,
        )
        sessions = await store.list_sessions()
        stored = await registry.get(result.model.model_id)
        episodes = await records.list_episodes(result.model.model_id, mode="evaluation")
        actions = await records.read_actions(episodes[0].episode_id)
    finally:
        await store.close()
        await registry.close()
        await records.close()

    assert len(sessions) == 3 and all(session.is_closed for session in sessions)
    assert result.train_sessions == (sessions[0].session_id, sessions[1].session_id)
    assert result.held_out_sessions == (sessions[2].session_id,)

    # The table: a header, then one row per policy with finite numbers.
    rows = {}
    for line in result.table.splitlines():
        name = line.split(" ", 1)[0]
        if name in ("ppo", "random", "do-nothing", "market-maker"):
            rows[name] = line
    assert set(rows) == {"ppo", "random", "do-nothing", "market-maker"}
    for line in rows.values():
        numbers = [float(x) for x in re.findall(r"[-+]?\d+\.\d+", line)]
        assert len(numbers) >= 5 and all(math.isfinite(x) for x in numbers)
    assert result.table in lines and result.verdict in lines

    model, random, nothing, maker = result.evaluations
    assert nothing.total_return == 0.0 and nothing.trades == 0
    assert random.trades > 0
    assert result.promoted == (
        not model.collapsed()
        and all(model.mean_return > b.mean_return for b in (random, nothing, maker))
        and len(model.episodes) >= DEFAULT_MIN_EPISODES
    )
    # The model's held-out episodes and every decision in them are in the trading records.
    assert [e.episode_id for e in episodes] == list(result.recorded_episodes) and len(episodes) == len(result.held_out_sessions) * 2
    assert len(actions) == episodes[0].result.step_count > 0
    assert ("Promoted" in result.verdict) == result.promoted and ("NOT promoted" in result.verdict) != result.promoted

    # The model was saved, loaded back for the evaluation, and registered with what it did.
    assert result.training.path.exists()
    assert stored.status == ("active" if result.promoted else "retired")
    assert stored.hyperparameters["environment"]["contract_size"] == 10
    assert stored.hyperparameters["total_timesteps"] == 1_024
    assert set(stored.metrics["held_out"]) == {model.name, "random", "do-nothing", "market-maker"}
    assert result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "cache").glob("replay-*.npz"))  # the tapes were cached


SCRIPT = Path(sys.executable).parent / "kalshiflow-rl"


def kalshiflow(*argv, data_dir):
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RL_", "KALSHI_")) and name != "DATABASE_URL"
    }
    environ["RL_DATA_DIR"] = str(data_dir)
    return subprocess.run([str(SCRIPT), *argv], env=environ, capture_output=True, text=True, timeout=240)


def test_the_cli_demo_then_train_and_evaluate_on_its_sessions(tmp_path):
    demo = kalshiflow(
        "demo", "--sessions", "2", "--held-out", "1", "--markets", "1", "--minutes", "1", "--timesteps", "4096",
        data_dir=tmp_path,
    )
    assert demo.returncode == 0, demo.stderr
    for name in ("ppo v1", "random", "do-nothing", "market-maker"):
        assert re.search(rf"^{name}\s+[-+]\d+\.\d\d", demo.stdout, re.MULTILINE), demo.stdout
    assert "promoted" in demo.stdout.lower()
    assert (tmp_path / "demo-equity.png").exists()

    train = kalshiflow("train", "--sessions", "1", "--timesteps", "4096", "--name", "again", data_dir=tmp_path)
    assert train.returncode == 0, train.stderr
    model_id = re.search(r"registered model (\d+)", train.stdout).group(1)
    curve = Path(re.search(r"^Training curve: (.+)$", train.stdout, re.MULTILINE).group(1))
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    chart = tmp_path / "eval.png"
    evaluate = kalshiflow("evaluate", model_id, "--sessions", "2", "--chart", str(chart), data_dir=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    assert re.search(r"^ppo v1\s+[-+]\d+\.\d\d", evaluate.stdout, re.MULTILINE), evaluate.stdout
    assert re.search(r"^market-maker\s+[-+]\d+\.\d\d", evaluate.stdout, re.MULTILINE), evaluate.stdout
    assert "promotion rule" in evaluate.stdout and f"Equity curves: {chart}" in evaluate.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    missing = kalshiflow("train", "--sessions", "99", data_dir=tmp_path)
    assert missing.returncode == 2 and "cannot train" in missing.stderr


def test_the_cli_demo_on_planted_edge_markets_records_them_with_the_learning_tests_knobs(tmp_path):
    demo = kalshiflow(
        "demo", "--planted-edge", "--sessions", "2", "--held-out", "1", "--minutes", "1", "--timesteps", "4096",
        data_dir=tmp_path,
    )
    assert demo.returncode == 0, demo.stderr
    assert (
        "Recording 2 SYNTHETIC sessions (2 generated markets, 1 min each; "
        "edge_strength=0.9, volatility=0.1, edge_lead_steps=100)" in demo.stdout
    ), demo.stdout
    assert re.search(r"^ppo v1\s+[-+]\d+\.\d\d", demo.stdout, re.MULTILINE), demo.stdout
    assert "Saved demo-planted-edge v1" in demo.stdout

    refused = kalshiflow("demo", "--planted-edge", "--edge", "1.5", data_dir=tmp_path)
    assert refused.returncode == 2 and "edge_strength must lie in [0, 1)" in refused.stderr
