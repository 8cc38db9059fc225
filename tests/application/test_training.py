import asyncio
import threading
import time
from pathlib import Path

import attrs
import pytest

from application.replay import ReplayConfig, compile_market
from application.training import NothingToTrainOn, TooFewTimesteps, train_agent, train_on_tapes
from domain.events import BookSnapshot, MarketResolved
from domain.ports import AgentTrainer, ModelRecord, SessionInfo
from domain.values import Side


class FakeClock:
    def now_ms(self):
        return 1_700_000_000_000


class FakeRegistry:
    def __init__(self):
        self.records = {}

    async def register(self, name, *, algorithm, path, created_ms, hyperparameters, status="training"):
        record = ModelRecord(len(self.records) + 1, name, 1, algorithm, status, path, created_ms, dict(hyperparameters))
        self.records[record.model_id] = record
        return record

    async def update(self, model_id, *, status=None, metrics=None):
        record = self.records[model_id]
        record = attrs.evolve(record, status=status or record.status, metrics=metrics or record.metrics)
        self.records[model_id] = record
        return record


class FakeAgent:
    algorithm = "fake"
    hyperparameters = {"lr": 0.1}
    metrics = {"timesteps_per_s": 9000.0}

    def save(self, path):
        with open(path, "w") as file:
            file.write("weights")

    def policy(self):
        raise NotImplementedError  # not used by training


class FakeTrainer:
    algorithm = "fake"
    hyperparameters = {"lr": 0.1}
    rollout_timesteps = 10

    def __init__(self, fail=False):
        self.fail = fail
        self.calls = []

    def train(
        self, tapes, *, total_timesteps, seed, progress=False, eval_tapes=None, checkpoint_dir=None, run_name=None,
        stop=None,
    ):  # fmt: skip
        self.calls.append((len(tapes), total_timesteps, seed, progress))
        self.run = {"eval_tapes": eval_tapes, "checkpoint_dir": checkpoint_dir, "run_name": run_name}
        if self.fail:
            raise RuntimeError("diverged")
        return FakeAgent()

    def load_policy(self, path):
        raise NotImplementedError


def tapes(*, session_id=4, yes_bid=4500, ticker="T", start_ms=0):
    events = [
        BookSnapshot(ticker, 1, start_ms, yes=((yes_bid, 100),), no=((5300, 100),)),
        MarketResolved(ticker, start_ms + 3000, Side.NO),
    ]
    return [compile_market(events, ticker=ticker, session_id=session_id, config=ReplayConfig())]


def test_the_fake_trainer_is_an_agent_trainer():
    assert isinstance(FakeTrainer(), AgentTrainer)


async def test_trains_saves_and_registers_with_what_it_takes_to_repeat_the_run(tmp_path):
    registry, trainer = FakeRegistry(), FakeTrainer()
    result = await train_on_tapes(
        tapes(),
        registry=registry,
        trainer=trainer,
        clock=FakeClock(),
        session_ids=[4],
        name="m",
        total_timesteps=500,
        seed=3,
        models_dir=tmp_path / "models",
        replay=ReplayConfig(),
        settings={"environment": {"order_size": 1000}},
    )
    assert trainer.calls == [(1, 500, 3, False)]
    assert trainer.run == {
        "eval_tapes": None,
        "checkpoint_dir": str(result.path).removesuffix(".zip") + ".checkpoints",
        "run_name": "m-v1",
    }
    assert result.path.read_text() == "weights"
    assert result.path.parent == tmp_path / "models"
    record = registry.records[result.record.model_id]
    assert (record.algorithm, record.status, record.path) == ("fake", "trained", str(result.path))  # finished
    assert record.hyperparameters["lr"] == 0.1 and record.hyperparameters["sessions"] == [4]
    assert record.hyperparameters["seed"] == 3 and record.hyperparameters["environment"] == {"order_size": 1000}
    assert record.hyperparameters["replay"] == {"step_ms": 1000, "depth_levels": 10}
    digests = record.hyperparameters["market_digests"]  # what evaluation refuses to call held out
    assert len(digests) == record.hyperparameters["markets"] and all(len(d) == 16 for d in digests)
    # Which market over which times (rows at 0, 1 s, 2 s, 3 s): evaluation refuses it again.
    assert record.hyperparameters["market_spans"] == [{"ticker": "T", "session": 4, "first_ms": 0, "last_ms": 3000}]
    assert record.metrics == {"training": {"timesteps_per_s": 9000.0}} == result.record.metrics
    assert result.markets == 1 and result.steps_per_pass == 3


async def test_the_training_curve_is_drawn_beside_the_model_file(tmp_path):
    class CurveAgent(FakeAgent):
        metrics = {
            "training_curve": [{"timesteps": t, "mean_episode_reward": t / 1000, "episodes": 2} for t in (64, 128)],
            "evaluations": [{"timesteps": 128, "mean_reward": 0.5}],
        }

    class CurveTrainer(FakeTrainer):
        def train(self, *args, **kwargs):
            super().train(*args, **kwargs)
            return CurveAgent()

    registry = FakeRegistry()
    result = await train_on_tapes(
        tapes(), registry=registry, trainer=CurveTrainer(), clock=FakeClock(), session_ids=[4], name="m",
        total_timesteps=128, seed=0, models_dir=tmp_path, replay=ReplayConfig(),
    )  # fmt: skip
    assert result.chart == tmp_path / f"{result.path.stem}-training.png" == Path(result.record.training_chart)
    assert result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_held_out_tapes_go_to_the_trainer_for_periodic_evaluation(tmp_path):
    trainer = FakeTrainer()
    held_out = tapes(session_id=5, ticker="U") + tapes(session_id=5, yes_bid=4400, start_ms=3001)  # T, later
    await train_on_tapes(
        tapes(),
        registry=FakeRegistry(),
        trainer=trainer,
        clock=FakeClock(),
        session_ids=[4],
        name="m",
        total_timesteps=10,
        seed=0,
        models_dir=tmp_path,
        replay=ReplayConfig(),
        eval_tapes=held_out,
        eval_session_ids=[5],
    )
    assert trainer.run["eval_tapes"] == held_out


async def test_evaluation_tapes_holding_the_training_data_under_another_id_are_refused(tmp_path):
    registry, trainer = FakeRegistry(), FakeTrainer()
    with pytest.raises(ValueError, match=r"the evaluation sessions hold the same market data as the training "
                                         r"sessions \(T of session 5\): periodic evaluation needs held-out data"):
        await train_on_tapes(
            tapes(), registry=registry, trainer=trainer, clock=FakeClock(), session_ids=[4], name="m",
            total_timesteps=10, seed=0, models_dir=tmp_path, replay=ReplayConfig(),
            eval_tapes=tapes(session_id=5), eval_session_ids=[5],
        )  # fmt: skip
    assert registry.records == {} and trainer.calls == []  # refused before anything is registered


async def test_evaluation_tapes_of_a_training_market_over_an_overlapping_time_are_refused(tmp_path):
    registry, trainer = FakeRegistry(), FakeTrainer()
    more = tapes(session_id=5, yes_bid=4400, start_ms=3000)  # T again, other data, from its last row on
    with pytest.raises(ValueError, match=r"the evaluation sessions hold a market the training sessions hold over an "
                                         r"overlapping time \(T of session 5 \(1970-01-01 00:00:03 UTC to "
                                         r"1970-01-01 00:00:06 UTC\) was trained on in session 4 \(1970-01-01 00:00:00 "
                                         r"UTC to 1970-01-01 00:00:03 UTC\)\): periodic evaluation needs held-out data"):
        await train_on_tapes(
            tapes(), registry=registry, trainer=trainer, clock=FakeClock(), session_ids=[4], name="m",
            total_timesteps=10, seed=0, models_dir=tmp_path, replay=ReplayConfig(), eval_tapes=more, eval_session_ids=[5],
        )  # fmt: skip
    assert registry.records == {} and trainer.calls == []


async def test_a_failed_training_is_marked_failed_in_the_registry(tmp_path):
    registry = FakeRegistry()
    with pytest.raises(RuntimeError, match="diverged") as failed:
        await train_on_tapes(
            tapes(),
            registry=registry,
            trainer=FakeTrainer(fail=True),
            clock=FakeClock(),
            session_ids=[4],
            name="m",
            total_timesteps=10,
            seed=0,
            models_dir=tmp_path,
            replay=ReplayConfig(),
        )
    (record,) = registry.records.values()
    assert record.status == "failed"
    assert failed.value.__notes__ == ["model 1 (m v1) is marked failed"]  # what the command prints with it


class SteppingTrainer(FakeTrainer):
    """Takes one step a millisecond, checking the stop request at each, as the SB3 trainer does."""

    def __init__(self):
        super().__init__()
        self.started = threading.Event()
        self.steps = 0
        self.finished = False

    def train(self, tapes, *, total_timesteps, seed, stop=None, **options):
        self.started.set()
        while self.steps < total_timesteps and not stop.is_set():
            time.sleep(0.001)
            self.steps += 1
        self.finished = True
        return FakeAgent()


async def test_cancelling_the_run_stops_the_trainer_at_its_next_step_and_marks_it_failed(tmp_path):
    registry, trainer = FakeRegistry(), SteppingTrainer()
    run = asyncio.ensure_future(
        train_on_tapes(
            tapes(), registry=registry, trainer=trainer, clock=FakeClock(), session_ids=[4], name="m",
            total_timesteps=1_000_000, seed=0, models_dir=tmp_path, replay=ReplayConfig(),
        )  # fmt: skip
    )
    await asyncio.to_thread(trainer.started.wait, 10)
    run.cancel()  # what Ctrl-C does to the command's task

    with pytest.raises(asyncio.CancelledError):
        await run
    assert trainer.finished and 0 < trainer.steps < 100_000  # ~17 minutes of steps had it run on
    (record,) = registry.records.values()
    assert record.status == "failed" and not Path(record.path).exists()


class EmptyStore:
    async def get_session(self, session_id):
        return SessionInfo(session_id, ("T",), "test", 0, 1, 0, 0, 0)

    async def read_events(self, session_id):
        return []


async def test_sessions_with_nothing_to_replay_are_refused(tmp_path):
    kwargs = dict(
        store=EmptyStore(),
        registry=FakeRegistry(),
        trainer=FakeTrainer(),
        clock=FakeClock(),
        name="m",
        total_timesteps=10,
        seed=0,
        models_dir=tmp_path,
        replay=ReplayConfig(),
    )
    with pytest.raises(NothingToTrainOn, match="no replayable market"):
        await train_agent(session_ids=[1], **kwargs)
    with pytest.raises(NothingToTrainOn, match="no sessions"):
        await train_agent(session_ids=[], **kwargs)
    with pytest.raises(ValueError, match=r"sessions \[1\] are both trained on and held out"):
        await train_agent(session_ids=[1, 2], eval_session_ids=[1], **kwargs)


async def test_fewer_timesteps_than_one_rollout_are_refused_before_anything_is_registered(tmp_path):
    registry, trainer = FakeRegistry(), FakeTrainer()  # rollouts of 10 timesteps
    with pytest.raises(TooFewTimesteps, match=r"^9 timesteps is less than one rollout of this trainer, the least a "
                                              r"run trains: 10 timesteps with these settings$") as refused:
        await train_agent(
            store=EmptyStore(), registry=registry, trainer=trainer, clock=FakeClock(), session_ids=[1], name="m",
            total_timesteps=9, seed=0, models_dir=tmp_path, replay=ReplayConfig(),
        )  # fmt: skip
    assert (refused.value.asked, refused.value.minimum) == (9, 10)
    with pytest.raises(TooFewTimesteps):
        await train_on_tapes(
            tapes(), registry=registry, trainer=trainer, clock=FakeClock(), session_ids=[4], name="m",
            total_timesteps=9, seed=0, models_dir=tmp_path, replay=ReplayConfig(),
        )  # fmt: skip
    assert registry.records == {} and trainer.calls == []


async def test_a_session_named_twice_is_refused_before_anything_is_registered(tmp_path):
    registry, trainer = FakeRegistry(), FakeTrainer()
    kwargs = dict(
        store=EmptyStore(), registry=registry, trainer=trainer, clock=FakeClock(), name="m", total_timesteps=10,
        seed=0, models_dir=tmp_path, replay=ReplayConfig(),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"^the sessions to train on name session 1 more than once; give each session once$"):
        await train_agent(session_ids=[1, 2, 1], **kwargs)
    with pytest.raises(ValueError, match=r"^the evaluation sessions name sessions 3, 5 more than once; give each"):
        await train_agent(session_ids=[1], eval_session_ids=[5, 3, 5, 3], **kwargs)
    assert registry.records == {} and trainer.calls == []
