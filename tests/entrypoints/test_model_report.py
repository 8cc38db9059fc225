"""``models show``'s report: readable sections from a model record's settings and metrics."""

import attrs
import pytest

from domain.ports import ModelRecord
from entrypoints.model_report import age_text, describe_model, status_text


def record(tmp_path, **metrics) -> ModelRecord:
    hyperparameters = {"n_envs": 16, "environment": {"contract_size": 10, "pricing": "aggressive"}}
    return ModelRecord(4, "book", 2, "ppo", "retired", str(tmp_path / "book-1.zip"), 0, hyperparameters, metrics)


HELD_OUT = {
    "ppo v2": {"mean_return": 1.5, "total_return": 6.0, "trades": 12, "fees": 0.84, "collapsed": False},
    "do-nothing": {"mean_return": 0.0, "total_return": 0.0, "trades": 0, "fees": 0.0, "collapsed": True},
}


def test_settings_training_results_and_promotion_each_get_a_section(tmp_path):
    (tmp_path / "book-1-training.png").write_bytes(b"png")
    report = describe_model(
        record(
            tmp_path,
            training={
                "timesteps": 4096, "seconds": 2.0, "timesteps_per_s": 2048.0,
                "training_curve": [
                    {"timesteps": 2048, "mean_episode_reward": -3.0, "episodes": 4},
                    {"timesteps": 4096, "mean_episode_reward": 1.25, "episodes": 4},
                ],
            },
            held_out_sessions=[7, 8],
            held_out=HELD_OUT,
            promotion=["[FAIL] mean episode return +1.5000 $ <= market-maker +2.0000 $"],
            trading_episodes=[1, 2],
        )  # fmt: skip
    ).splitlines()

    assert f"  training curve   {tmp_path / 'book-1-training.png'}" in report
    assert "    environment.contract_size  10" in report and "    n_envs                     16" in report
    assert report[report.index("  hyperparameters") + 1].startswith("    environment.contract_size")  # sorted
    training = "4,096 timesteps in 2.0 s (2,048/s); mean episode reward -3.000 -> +1.250 over 2 rollouts"
    assert f"  training         {training}" in report
    table = report[report.index("  held out         sessions [7, 8]") + 1 :]
    assert table[0].split() == ["policy", "mean", "ep", "$", "total", "$", "trades", "fees", "$", "flag"]
    assert table[1].split() == ["ppo", "v2", "+1.50", "+6.00", "12", "0.84"]
    assert table[2].split() == ["do-nothing", "+0.00", "+0.00", "0", "0.00", "COLLAPSED"]
    assert table[3:5] == ["  promotion rule", "    [FAIL] mean episode return +1.5000 $ <= market-maker +2.0000 $"]
    assert report[-1] == '  other metrics    {"trading_episodes": [1, 2]}'


def test_an_evaluation_gets_its_own_section_and_a_bare_record_reads_cleanly(tmp_path):
    evaluated = describe_model(
        record(tmp_path, evaluation={"sessions": [9], "policies": HELD_OUT, "promotion": ["[ok] collapse"]})
    )
    assert "  evaluated        sessions [9]\n    policy" in evaluated and "    [ok] collapse" in evaluated
    assert "training curve" not in evaluated  # no chart on disk

    bare = describe_model(ModelRecord(1, "m", 1, "a2c", "training", str(tmp_path / "m.zip"), 0))
    assert bare.splitlines() == [
        "Model 1: m v1",
        "  algorithm        a2c",
        "  status           training (the run has not finished: it is running, or its process died)",
        "  created          1970-01-01 00:00:00 UTC",
        f"  path             {tmp_path / 'm.zip'}",
    ]


PASSED = {"evaluation": {"beat_baselines": True, "promotion": ["[ok] ..."]}}
FAILED = {"evaluation": {"beat_baselines": False, "promotion": ["[FAIL] ..."]}}


@pytest.mark.parametrize(
    ("status", "metrics", "meaning"),
    [
        ("trained", {}, "finished, not evaluated: `kalshiflow-rl evaluate 4 --sessions ID...` on held-out sessions"),
        ("trained", PASSED, "finished, passed its held-out evaluation: `kalshiflow-rl models promote 4` makes it active"),
        ("active", PASSED, "the version the actor trades"),
        ("retired", {}, "replaced by another active version"),
        ("retired", FAILED, "failed its held-out evaluation; `models prune` may delete it"),
        ("retired", {"beat_baselines": True}, "passed its held-out evaluation: `kalshiflow-rl models promote 4` brings it back"),
        ("failed", {}, "the training run raised"),
    ],
)
def test_the_status_says_what_it_means_and_what_to_run_next(tmp_path, status, metrics, meaning):
    model = attrs.evolve(record(tmp_path), status=status, metrics=metrics)
    assert status_text(model) == f"{status} ({meaning})"
    assert f"  status           {status} ({meaning})" in describe_model(model).splitlines()


def test_ages_read_at_a_glance():
    minute, hour = 60_000, 3_600_000
    assert [age_text(ms) for ms in (-5, 59_999, 42 * minute, 3 * hour + 5 * minute, 12 * 24 * hour + 4 * hour)] == [
        "<1m", "<1m", "42m", "3h 05m", "12d 4h"
    ]
