import math

import attrs
import numpy as np
import pytest

from application.evaluation import (
    DoNothingPolicy,
    PolicyEvaluation,
    RandomPolicy,
    beats,
    evaluate_model,
    evaluate_policy,
    write_equity_chart,
)
from domain.actions import ACTION_COUNT, Action
from domain.events import BookSnapshot, MarketResolved
from domain.ports import ModelRecord, SessionInfo, TradingEnvironment
from domain.values import MONEY_SCALE, Side

START = 100 * MONEY_SCALE


class ScriptedEnvironment:
    """The TradingEnvironment port: each episode is a script of portfolio values.

    Every non-HOLD action adds $1 to the value of the step it is taken at (so a policy's choices
    show in its returns); BUY_NO is never legal.
    """

    def __init__(self, episodes):
        self.episodes = episodes
        self.resets = []

    @property
    def episode_count(self):
        return len(self.episodes)

    def reset(self, *, seed=None, options=None):
        self.resets.append((seed, options))
        self.script = self.episodes[options["episode"]]
        self.row = 0
        self.bonus = 0
        self.counts = [0] * ACTION_COUNT
        self.illegal = 0
        return self._observation(), {"portfolio_value": START, "action_mask": self.action_masks()}

    def step(self, action):
        self.counts[action] += 1
        if not self.action_masks()[action]:
            self.illegal += 1
        elif action:
            self.bonus += MONEY_SCALE
        value = self.script[self.row] + self.bonus
        self.row += 1
        info = {"portfolio_value": value, "action_mask": self.action_masks()}
        done = self.row == len(self.script)
        if done:
            info.update(
                episode_summary={
                    "steps": len(self.script),
                    "trades": self.bonus // MONEY_SCALE,
                    "fees_paid": 0.0,
                    "total_return": (value - START) / MONEY_SCALE,
                    "sharpe_ratio": 0.5,
                    "max_drawdown": 0.0,
                    "win_rate": None,
                },
                action_counts=list(self.counts),
                illegal_actions=self.illegal,
            )
        return self._observation(), 0.0, done, False, info

    def action_masks(self):
        mask = np.ones(ACTION_COUNT, dtype=bool)
        mask[Action.BUY_NO] = False
        return mask

    def _observation(self):
        return np.array([self.row], dtype=np.float32)


def dollars(*values):
    return [START + round(v * MONEY_SCALE) for v in values]


def test_the_fake_is_a_trading_environment():
    assert isinstance(ScriptedEnvironment([]), TradingEnvironment)


def test_every_episode_is_played_once_in_order_and_the_equity_curve_chains_them():
    environment = ScriptedEnvironment([dollars(1, -2), dollars(3, 3, 4)])
    result = evaluate_policy(DoNothingPolicy(), environment, name="nothing", seed=10)
    assert [options["episode"] for _, options in environment.resets] == [0, 1]
    assert [seed for seed, _ in environment.resets] == [10, 11]
    assert result.equity == pytest.approx((1, -2, 1, 1, 2))
    assert result.total_return == pytest.approx(2.0)
    assert result.max_drawdown == pytest.approx(3.0)  # from +1 down to -2
    assert result.action_counts == (5, 0, 0, 0, 0)
    assert result.action_entropy == 0.0 and result.policy_entropy == 0.0
    assert result.win_rate is None and result.mean_sharpe == 0.5


def test_the_random_policy_only_picks_legal_actions_and_is_seeded():
    environment = ScriptedEnvironment([dollars(*([0] * 200))])
    result = evaluate_policy(RandomPolicy(seed=1), environment, name="random")
    assert result.action_counts[Action.BUY_NO] == 0 and result.illegal_actions == 0
    assert all(count > 20 for i, count in enumerate(result.action_counts) if i != Action.BUY_NO)
    assert result.action_entropy == pytest.approx(2.0, abs=0.05)  # about uniform over 4
    assert result.policy_entropy is None  # it does not say how likely its actions are
    again = evaluate_policy(RandomPolicy(seed=1), ScriptedEnvironment([dollars(*([0] * 200))]), name="random")
    assert again.action_counts == result.action_counts


class AlwaysBuyNo:
    def act(self, observation, action_mask=None):
        return int(Action.BUY_NO)

    def action_probabilities(self, observation):
        return np.full(ACTION_COUNT, 1 / ACTION_COUNT)


def test_illegal_actions_and_the_policy_entropy_are_reported():
    result = evaluate_policy(AlwaysBuyNo(), ScriptedEnvironment([dollars(0, 0)]), name="stubborn")
    assert result.illegal_actions == 2
    assert result.policy_entropy == pytest.approx(math.log2(ACTION_COUNT))
    assert result.metrics()["illegal_actions"] == 2


def evaluation(name, total):
    summary = {"total_return": total, "sharpe_ratio": 0.0, "fees_paid": 0.0, "trades": 0, "win_rate": None}
    return PolicyEvaluation(name, (summary,), (1, 0, 0, 0, 0), 0, None, (total,))


def test_a_candidate_beats_the_baselines_only_when_it_returns_strictly_more_than_each():
    assert beats(evaluation("m", 1.0), [evaluation("r", -5.0), evaluation("n", 0.0)])
    assert not beats(evaluation("m", 0.0), [evaluation("r", -5.0), evaluation("n", 0.0)])
    assert not beats(evaluation("m", -1.0), [evaluation("r", -5.0), evaluation("n", 0.0)])


def test_metrics_are_plain_numbers_for_the_registry():
    metrics = evaluate_policy(DoNothingPolicy(), ScriptedEnvironment([dollars(1)]), name="n").metrics()
    assert metrics["total_return"] == pytest.approx(1.0)
    assert metrics["action_shares"]["HOLD"] == 1.0
    assert set(metrics) >= {"mean_sharpe", "max_drawdown", "fees", "trades", "win_rate", "policy_entropy_bits"}


def test_the_equity_chart_is_a_png(tmp_path):
    path = write_equity_chart([evaluation("a", 1.0), evaluation("b", -1.0)], tmp_path / "out" / "eq.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class OneMarketStore:
    async def get_session(self, session_id):
        return SessionInfo(session_id, ("T",), "test", 0, 5000, 1, 0, 0)

    async def read_events(self, session_id):
        return [BookSnapshot("T", 1, 0, yes=((4500, 100),), no=((5300, 100),)), MarketResolved("T", 4000, Side.NO)]


class OneModelRegistry:
    def __init__(self, record):
        self.record = record

    async def get(self, model_id):
        assert model_id == self.record.model_id
        return self.record

    async def update(self, model_id, *, status=None, metrics=None):
        self.record = attrs.evolve(self.record, metrics=metrics)
        return self.record


class LoadsABuyer:
    algorithm = "fake"
    hyperparameters = {}

    def __init__(self):
        self.loaded = []

    def load_policy(self, path):
        self.loaded.append(path)
        return AlwaysBuyYes()


class AlwaysBuyYes:
    def act(self, observation, action_mask=None):
        return int(Action.BUY_YES)


async def test_evaluate_model_replays_with_the_training_settings_and_stores_the_metrics():
    record = ModelRecord(
        3, "m", 2, "fake", "retired", "/models/m.zip", 0, {"replay": {"step_ms": 2000, "depth_levels": 4}}, {"old": 1}
    )
    registry, trainer, seen = OneModelRegistry(record), LoadsABuyer(), []

    def make_environment(tapes):
        seen.append([(tape.ticker, tape.step_ms, tape.depth_levels) for tape in tapes])
        return ScriptedEnvironment([dollars(*[0] * 20)])

    result = await evaluate_model(
        store=OneMarketStore(),
        registry=registry,
        trainer=trainer,
        make_environment=make_environment,
        model_id=3,
        session_ids=[9],
    )
    assert trainer.loaded == ["/models/m.zip"]
    assert seen == [[("T", 2000, 4)]] * 3  # the model, random, do-nothing: same market, same settings
    assert [e.name for e in result.evaluations] == ["fake v2", "random", "do-nothing"]
    assert result.beat_baselines  # the scripted $1 per order beats both
    assert result.model.metrics["old"] == 1
    assert result.model.metrics["evaluation"]["sessions"] == [9]
    assert result.model.metrics["evaluation"]["policies"]["fake v2"]["total_return"] == pytest.approx(20.0)
