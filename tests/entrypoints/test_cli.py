"""The commands, in process, on fakes: what they print and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

import pytest
from dependency_injector import providers

from domain.events import BookDelta, BookSnapshot
from domain.values import Side
from entrypoints import cli
from entrypoints.config import Settings
from entrypoints.container import build_container


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def container(settings, fake_store, fake_registry, fake_feed_type):
    container = build_container(settings)
    container.store.override(providers.Object(fake_store))
    container.model_registry.override(providers.Object(fake_registry))
    container.synthetic_feed.override(providers.Factory(fake_feed_type))
    return container


def run(argv, settings, container) -> int:
    return cli.run(cli.build_parser().parse_args(argv), settings, container)


# ---------------------------------------------------------------------------------------------
# collect and sessions
# ---------------------------------------------------------------------------------------------
def test_collect_records_a_session_and_reports_it(settings, container, fake_store, capsys):
    code = run(["collect", "--markets", "2", "--events", "50", "--seed", "7"], settings, container)

    assert code == 0
    (session,) = fake_store.sessions.values()
    assert session["tickers"] == ("FAKE-7-0", "FAKE-7-1")
    assert session["source"] == "synthetic"
    assert len(session["events"]) == 52 and session["ended_ms"] is not None  # 2 schedules + the feed's 50
    assert fake_store.opened == fake_store.closed == 1
    assert capsys.readouterr().out == (
        "Recorded session 1: 2 markets, 52 events (2 schedules, 1 snapshots, 47 deltas, 1 trades, 1 resolutions) "
        f"into SQLite {settings.sqlite_path}\n"
    )
    assert settings.data_dir.is_dir()  # the embedded store's directory is created


def test_sessions_list_says_when_there_are_none(settings, container, capsys):
    assert run(["sessions", "list"], settings, container) == 0
    assert capsys.readouterr().out.startswith("No recorded sessions in SQLite ")


def test_sessions_list_shows_a_table(settings, container, capsys):
    run(["collect", "--markets", "3", "--events", "20"], settings, container)
    capsys.readouterr()

    assert run(["sessions", "list"], settings, container) == 0

    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "ID", "TICKERS", "SOURCE", "STARTED", "(UTC)", "ENDED", "(UTC)", "SNAPSHOTS", "DELTAS", "TRADES", "RESOLVED"
    ]
    cells = row.split()
    assert cells[0] == "1"
    assert cells[1:4] == ["FAKE-0-0,FAKE-0-1", "+1", "synthetic"]
    assert cells[-4:] == ["1", "17", "1", "1/3"]


def test_sessions_show_details(settings, container, capsys):
    run(["collect", "--markets", "2", "--events", "10"], settings, container)
    capsys.readouterr()

    assert run(["sessions", "show", "1"], settings, container) == 0

    out = capsys.readouterr().out
    assert out.startswith("Session 1\n  source       synthetic\n")
    assert "    deltas     7\n" in out
    assert "    FAKE-0-0  resolved NO\n" in out
    assert "    FAKE-0-1  unresolved" in out


def test_sessions_show_an_unknown_id_is_a_clear_error_with_exit_code_2(settings, container, capsys):
    assert run(["sessions", "show", "42"], settings, container) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"kalshiflow-rl: error: no session with id 42 in SQLite {settings.sqlite_path}; "
        "`kalshiflow-rl sessions list` shows the recorded ones\n"
    )


def test_sessions_check_of_a_clean_session_exits_0(settings, container, capsys):
    # One market: the fake feed sends data for its first market only, and a market recorded
    # with a schedule but no data is a finding of its own.
    run(["collect", "--markets", "1", "--events", "10"], settings, container)
    capsys.readouterr()

    assert run(["sessions", "check", "1"], settings, container) == 0

    out = capsys.readouterr().out
    assert out == "session 1: 1 markets\n  FAKE-0-0: 10 events (1 snapshots, 7 deltas, 1 trades) over 0.0 s\n    - clean\n"


async def test_sessions_check_reports_findings_with_exit_code_1(settings, container, fake_store, capsys):
    await fake_store.open()
    session_id = await fake_store.start_session(["A"], started_ms=0, source="test")
    book = BookSnapshot("A", 1, 0, yes=((4400, 100),), no=((5300, 300),), sid=1)
    await fake_store.write_events(session_id, [book, BookDelta("A", 3, 120_000, Side.YES, 4700, 5, sid=1)])

    args = cli.build_parser().parse_args(["sessions", "check", str(session_id)])
    assert await cli.check_sessions(args, settings, container) == 1

    out = capsys.readouterr().out
    assert "    - 1 sequence gaps and 0 repeats" in out
    assert "    - book locked for 0.0 s" not in out  # locked only at the last event: no time spent
    assert "    - 1 silences over 60.0 s (longest 120.0 s)" in out
    assert "    - no resolution: its episodes end without settlement" in out


def test_sessions_check_of_an_unknown_id_is_a_clear_error(settings, container, capsys):
    assert run(["sessions", "check", "42"], settings, container) == 2
    assert "no session with id 42" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
@pytest.fixture
async def two_versions(fake_registry):
    await fake_registry.open()
    for _ in range(2):
        await fake_registry.register(
            "ppo-book", algorithm="PPO", path="data/models/x.zip", created_ms=0, hyperparameters={"lr": 0.0003}
        )
    await fake_registry.register("dqn", algorithm="DQN", path="d.zip", created_ms=0, hyperparameters={})
    await fake_registry.close()


class StoppedClock:
    def __init__(self, now_ms):
        self.now = now_ms

    def now_ms(self):
        return self.now


def test_models_list_and_filter_by_name(settings, container, fake_registry, two_versions, capsys):
    container.clock.override(providers.Object(StoppedClock(3 * 3_600_000 + 5 * 60_000)))  # 3 h 5 min after 0
    fake_registry.models[2] = attrs.evolve(fake_registry.models[2], status="trained", created_ms=3 * 3_600_000)
    assert run(["models", "list"], settings, container) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "VERSION", "ALGORITHM", "STATUS", "CREATED", "(UTC)", "AGE", "PATH"]
    assert [line.split()[4:5] + line.split()[7:-1] for line in lines[1:4]] == [
        ["training", "3h", "05m"], ["trained", "5m"], ["training", "3h", "05m"]
    ]
    # A run that died stays "training": the list says what its age means.
    assert lines[4:] == [
        "A version 'training' is a run in progress, or one whose process died (its age tells); "
        "`models prune` never deletes it."
    ]

    assert run(["models", "list", "--name", "ppo-book"], settings, container) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    fake_registry.models[3] = attrs.evolve(fake_registry.models[3], status="failed")
    assert run(["models", "list", "--name", "dqn"], settings, container) == 0
    (_, only) = capsys.readouterr().out.splitlines()  # no footnote: nothing is training
    assert only.split()[:5] == ["3", "dqn", "1", "DQN", "failed"]


def passed_evaluation(passed: bool) -> dict:
    reasons = ["[ok] collapse: HOLD takes 40.0% of decisions (within the 90% limit)"]
    reasons.append(("[ok] mean episode return +1.0000 $ > random -2.0000 $") if passed else
                   "[FAIL] mean episode return -3.0000 $ <= random -2.0000 $")  # fmt: skip
    return {"evaluation": {"sessions": [9], "beat_baselines": passed, "promotion": reasons}}


def test_models_promote_refuses_a_version_without_a_passing_held_out_evaluation(
    settings, container, fake_registry, two_versions, capsys
):
    # Even with a passing evaluation on record, a version still training is not promoted.
    fake_registry.models[1] = attrs.evolve(fake_registry.models[1], metrics=passed_evaluation(True))
    assert run(["models", "promote", "1"], settings, container) == 1
    assert capsys.readouterr().err == (
        "kalshiflow-rl: error: model 1 (ppo-book v1) is training (its training run has not finished), "
        "so it cannot be promoted\n"
    )
    fake_registry.models[1] = attrs.evolve(fake_registry.models[1], status="trained", metrics={})
    assert run(["models", "promote", "1"], settings, container) == 1  # finished, never evaluated
    assert capsys.readouterr().err == (
        "kalshiflow-rl: error: model 1 (ppo-book v1) has no held-out evaluation, so it cannot be promoted: "
        "run `kalshiflow-rl evaluate 1 --sessions ID... --promote` on sessions it was not trained on\n"
    )
    fake_registry.models[2] = attrs.evolve(fake_registry.models[2], status="trained", metrics=passed_evaluation(False))
    assert run(["models", "promote", "2"], settings, container) == 1
    assert capsys.readouterr().err == (
        "kalshiflow-rl: error: model 2 (ppo-book v2) failed its held-out evaluation, so it cannot be promoted:\n"
        "  [FAIL] mean episode return -3.0000 $ <= random -2.0000 $\n"
    )
    assert [m.status for m in fake_registry.models.values()] == ["trained", "trained", "training"]


def test_models_promote_a_version_that_passed_then_show_and_roll_back(
    settings, container, fake_registry, two_versions, capsys
):
    for model_id in (1, 2):
        fake_registry.models[model_id] = attrs.evolve(
            fake_registry.models[model_id], status="trained", metrics=passed_evaluation(True)
        )
    assert run(["models", "promote", "1"], settings, container) == 0
    assert run(["models", "promote", "2"], settings, container) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Model 2 (ppo-book v2) is now the active ppo-book."
    assert [m.status for m in fake_registry.models.values()] == ["retired", "active", "training"]

    assert run(["models", "show", "2"], settings, container) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "Model 2: ppo-book v2\n  algorithm        PPO\n  status           active (the version the actor trades)\n"
    )
    assert "  hyperparameters\n    lr  0.0003\n" in out
    assert run(["models", "show", "1"], settings, container) == 0
    assert "  status           retired (passed its held-out evaluation: `kalshiflow-rl models promote 1` brings it back)\n" in (
        capsys.readouterr().out
    )

    assert run(["models", "show", "2", "--json"], settings, container) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["model_id"], record["status"], record["hyperparameters"]) == (2, "active", {"lr": 0.0003})

    assert run(["models", "promote", "1"], settings, container) == 0  # a rollback: it passed
    assert [m.status for m in fake_registry.models.values()] == ["active", "retired", "training"]


@pytest.mark.parametrize("action", ["show", "promote"])
def test_an_unknown_model_id_is_a_clear_error_with_exit_code_2(settings, container, action, capsys):
    assert run(["models", action, "9"], settings, container) == 2
    assert capsys.readouterr().err.startswith("kalshiflow-rl: error: no model with id 9 in SQLite ")


# ---------------------------------------------------------------------------------------------
# main: configuration errors and help
# ---------------------------------------------------------------------------------------------
def test_invalid_configuration_prints_every_problem_and_exits_2_before_anything_runs(monkeypatch, capsys):
    monkeypatch.setenv("RL_ORDERBOOK_BATCH_SIZE", "abc")
    monkeypatch.setenv("KALSHI_ENV", "production")
    monkeypatch.setenv("RL_TRADING_MODE", "paper")

    assert cli.main(["sessions", "list"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kalshiflow-rl: error: invalid configuration (2 problem(s)):\n")
    assert "  - RL_ORDERBOOK_BATCH_SIZE='abc': must be a positive integer, e.g. 100\n" in captured.err
    assert "KALSHI_ENV=production with RL_TRADING_MODE=paper: refused" in captured.err
    assert "Traceback" not in captured.err


def test_a_typo_in_a_variable_name_is_warned_about(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RL_ORDERBOOK_BATCH_SZE", "5")
    monkeypatch.delenv("DATABASE_URL", raising=False)

    assert cli.main(["sessions", "list"]) == 0

    assert "warning: RL_ORDERBOOK_BATCH_SZE is not a known variable and is ignored; did you mean " \
        "RL_ORDERBOOK_BATCH_SIZE?" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["collect", "sessions", "models", "RL_DATA_DIR", "DATABASE_URL"]),
        (["collect"], ["--markets", "--events", "--seed", "--tick", "linear_cent", "Ctrl-C"]),
        (["sessions"], ["list", "show"]),
        (["sessions", "show"], ["ID", "session id"]),
        (["models"], ["list", "show", "promote"]),
        (["models", "list"], ["--name"]),
        (["models", "promote"], ["retires", "held-out evaluation", "rollback"]),
        (["models", "list"], ["trained", "process died"]),
        (["models", "prune"], ["trained, retired and failed", "never deleted"]),
        (["train"], ["'trained' once it finishes", "--curriculum", "with --eval-every"]),
    ],
)
def test_help_is_informative_everywhere(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in expected:
        assert text in out


def test_a_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_collect_refuses_a_count_that_is_not_positive(bad, capsys):
    with pytest.raises(SystemExit):
        cli.main(["collect", "--events", bad])
    assert "argument --events" in capsys.readouterr().err


def test_an_unreadable_store_is_a_one_line_error_with_exit_code_1(monkeypatch, tmp_path, capsys):
    (tmp_path / "kalshiflow.db").write_text("not a database")
    monkeypatch.setenv("RL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)

    assert cli.main(["sessions", "list"]) == 1

    assert capsys.readouterr().err == (
        f"kalshiflow-rl: error: cannot open SQLite {tmp_path / 'kalshiflow.db'}: file is not a database\n"
    )


@pytest.mark.parametrize("flags", [["--eval-every", "128"], ["--eval-sessions", "2"]])
def test_train_refuses_periodic_evaluation_without_held_out_sessions_and_the_reverse(settings, container, flags, capsys):
    assert run(["train", "--sessions", "1", *flags], settings, container) == 2
    assert "--eval-every N and --eval-sessions ID... go together" in capsys.readouterr().err


def test_train_refuses_a_session_named_twice(settings, container, fake_registry, capsys):
    assert run(["train", "--sessions", "1", "1"], settings, container) == 2
    assert capsys.readouterr().err == (
        "kalshiflow-rl: error: cannot train: the sessions to train on name session 1 more than once; "
        "give each session once\n"
    )
    assert fake_registry.models == {}


class FinishedAgent:
    """What a tiny curriculum run returns (the trainer's tests train for real)."""

    metrics = {"timesteps_per_s": 1.0, "curriculum": {"difficulty_cents": [1.0], "pool_per_rollout": [1, 1]}}

    def save(self, path):
        with open(path, "w") as file:
            file.write("weights")


class OptionsRecordingTrainer:
    """The trainer the container would build from the command's flags, without training."""

    built: list[OptionsRecordingTrainer] = []

    def __init__(self, environment, *, algorithm="ppo", **options):
        from adapters.sb3.settings import TrainingOptions

        self.options = TrainingOptions(algorithm=algorithm, **options)  # what sb3_trainer builds from them
        self.algorithm = algorithm
        OptionsRecordingTrainer.built.append(self)

    @property
    def hyperparameters(self):
        return self.options.as_dict()

    @property
    def rollout_timesteps(self):
        return self.options.rollout_timesteps

    def train(self, tapes, **kwargs):
        return FinishedAgent()


@pytest.mark.parametrize("curriculum", [True, False])
def test_train_curriculum_flag_reaches_the_trainer_and_the_record(settings, container, fake_registry, curriculum, capsys):
    from adapters.sb3.settings import Curriculum

    OptionsRecordingTrainer.built = []
    container.trainer.override(providers.Factory(OptionsRecordingTrainer))
    assert run(["collect", "--markets", "1", "--events", "20"], settings, container) == 0
    flags = ["--curriculum"] if curriculum else []

    assert run(["train", "--sessions", "1", "--timesteps", "4096", *flags], settings, container) == 0

    (trainer,) = OptionsRecordingTrainer.built
    assert trainer.options.curriculum == (Curriculum() if curriculum else None)
    (model,) = fake_registry.models.values()
    recorded = {"start_fraction": 0.25, "ramp_fraction": 0.5} if curriculum else None
    assert model.hyperparameters["curriculum"] == recorded and model.status == "trained"
    assert model.metrics["training"]["curriculum"] == FinishedAgent.metrics["curriculum"]


def test_train_refuses_fewer_timesteps_than_one_rollout_saying_the_least(settings, container, fake_registry, capsys):
    container.trainer.override(providers.Factory(OptionsRecordingTrainer))
    assert run(["collect", "--markets", "1", "--events", "20"], settings, container) == 0
    capsys.readouterr()

    assert run(["train", "--sessions", "1", "--timesteps", "100", "--n-envs", "4"], settings, container) == 2
    assert capsys.readouterr().err == (
        "kalshiflow-rl: error: cannot train: --timesteps 100 is less than one rollout, the least a run trains: "
        "1024 timesteps with these settings (--n-steps 256 x --n-envs 4); ask for --timesteps 1024 or more, "
        "or lower --n-steps or --n-envs\n"
    )
    assert fake_registry.models == {}


class RoundingTrainer(OptionsRecordingTrainer):
    """Trains whole rollouts, as SB3 does, and says how many timesteps it trained."""

    def train(self, tapes, *, total_timesteps, **kwargs):
        agent = FinishedAgent()
        agent.metrics = {**FinishedAgent.metrics, "timesteps": -(-total_timesteps // self.rollout_timesteps) * self.rollout_timesteps}
        return agent


@pytest.mark.parametrize(("asked", "note"), [
    ("5000", "Note: trained 8,192 timesteps, not the 5,000 asked for: a run trains whole rollouts of 4,096 timesteps "
             "(--n-steps x --n-envs).\n"),
    ("8192", None),
])  # fmt: skip
def test_train_notes_when_it_trained_more_timesteps_than_asked(settings, container, fake_registry, asked, note, capsys):
    container.trainer.override(providers.Factory(RoundingTrainer))
    assert run(["collect", "--markets", "1", "--events", "20"], settings, container) == 0
    capsys.readouterr()

    assert run(["train", "--sessions", "1", "--timesteps", asked], settings, container) == 0

    out = capsys.readouterr().out
    assert (note in out) if note else ("Note:" not in out)
    (model,) = fake_registry.models.values()
    assert model.hyperparameters["total_timesteps"] == int(asked)  # what was asked; the metrics say what ran
    assert model.metrics["training"]["timesteps"] == 8192


# ---------------------------------------------------------------------------------------------
# models prune, on the real SQLite registry and trading records
# ---------------------------------------------------------------------------------------------
def test_prune_deletes_versions_with_their_evaluation_chart_and_keeps_paper_traded_ones(settings, capsys):
    import asyncio

    from adapters.storage import SqliteModelRegistry, SqliteTradingRecords

    models, charts = settings.models_dir, settings.data_dir / "evaluations"

    async def prepare():
        registry, records = SqliteModelRegistry(settings.sqlite_path), SqliteTradingRecords(settings.sqlite_path)
        await registry.open()
        await records.open()
        try:
            versions = []
            for ms in range(3):  # v1 paper-traded, v2 evaluated, v3 the newest
                record = await registry.register(
                    "book", algorithm="ppo", path=str(models / f"book-{ms}.zip"), created_ms=ms, hyperparameters={},
                    status="retired",
                )  # fmt: skip
                Path(record.path).write_bytes(b"weights")
                (charts / f"model-{record.model_id}-equity.png").write_bytes(b"png")
                versions.append(record)
            await records.start_episode(versions[0].model_id, market_ticker="T", mode="paper", started_ms=0)
            await records.start_episode(versions[1].model_id, market_ticker="T", mode="evaluation", started_ms=0)
            return versions
        finally:
            await registry.close()
            await records.close()

    models.mkdir(parents=True)
    charts.mkdir(parents=True)
    first, second, third = asyncio.run(prepare())

    assert run(["models", "prune", "--keep", "1"], settings, build_container(settings)) == 0

    assert capsys.readouterr().out == (
        f"Deleted model 2 (book v2, retired) and {second.path}\n"
        "Kept model 1 (book v1, retired): it has paper-trading records, which deleting it would delete\n"
        "Pruned 1 version, keeping the newest 1 per name and 1 older with paper-trading records.\n"
    )
    assert not Path(second.path).exists() and not (charts / "model-2-equity.png").exists()
    assert all(Path(record.path).exists() for record in (first, third))
    assert (charts / "model-1-equity.png").exists() and (charts / "model-3-equity.png").exists()


# ---------------------------------------------------------------------------------------------
# train: failures that are not the user's arguments end in one line, the version marked failed
# ---------------------------------------------------------------------------------------------
def test_a_tensorboard_dir_that_cannot_be_created_is_refused_before_anything_is_registered(
    settings, container, fake_registry, tmp_path, capsys
):
    (tmp_path / "afile").write_text("")
    argv = ["train", "--sessions", "1", "--timesteps", "4096", "--tensorboard-dir", str(tmp_path / "afile" / "tb")]

    assert run(argv, settings, container) == 2

    assert capsys.readouterr().err == (
        f"kalshiflow-rl: error: --tensorboard-dir '{tmp_path / 'afile' / 'tb'}': cannot create it: "
        f"[Errno 20] Not a directory: '{tmp_path / 'afile' / 'tb'}'\n"
    )
    assert fake_registry.models == {}


class DiskFailingTrainer(OptionsRecordingTrainer):
    def train(self, tapes, **kwargs):
        raise PermissionError(13, "Permission denied", "/models/book.checkpoints/step-4096.zip")


def test_a_training_run_that_fails_on_a_file_ends_in_one_line_with_the_version_marked_failed(
    settings, container, fake_registry, capsys
):
    container.trainer.override(providers.Factory(DiskFailingTrainer))
    assert run(["collect", "--markets", "1", "--events", "20"], settings, container) == 0
    capsys.readouterr()

    assert run(["train", "--sessions", "1", "--timesteps", "4096", "--name", "book"], settings, container) == 1

    (model,) = fake_registry.models.values()
    assert model.status == "failed"
    assert capsys.readouterr().err == (
        "kalshiflow-rl: error: cannot train: [Errno 13] Permission denied: '/models/book.checkpoints/step-4096.zip'; "
        f"model {model.model_id} (book v{model.version}) is marked failed\n"
    )
