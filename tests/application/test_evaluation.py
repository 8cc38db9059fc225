import math

import attrs
import numpy as np
import pytest

from adapters.gym_env import OrderbookEnv
from application.evaluation import (
    DoNothingPolicy,
    PolicyEvaluation,
    RandomPolicy,
    SpreadCapturingMarketMaker,
    beats,
    decide_promotion,
    evaluate_against_baselines,
    evaluate_model,
    evaluate_policy,
    format_table,
    write_equity_chart,
)
from application.replay import ReplayConfig, compile_market, load_tapes
from domain.actions import ActionConfig, ActionDecoder, PricingStrategy
from domain.events import BookSnapshot, MarketResolved, PublicTrade
from domain.fees import FeeSchedule
from domain.orders import Fill, Order, OrderSide
from domain.ports import ModelRecord, SessionInfo, TradingEnvironment
from domain.values import MONEY_SCALE, ONE_CONTRACT, Side

START = 100 * MONEY_SCALE
C = ONE_CONTRACT
HOLD, BUY_YES, SELL_YES, BUY_NO, SELL_NO = range(5)
NAMES = ("HOLD", "BUY_YES", "SELL_YES", "BUY_NO", "SELL_NO")


def a_tape(steps, *, ticker="T", session_id=1, yes_bid=4500, no_bid=5300):
    """A market whose book never moves (YES 45/47 by default) for ``steps`` decisions."""
    events = [
        BookSnapshot(ticker, 1, 0, yes=((yes_bid, 10 * C),), no=((no_bid, 10 * C),)),
        MarketResolved(ticker, steps * 1_000, Side.NO),
    ]
    return compile_market(events, ticker=ticker, session_id=session_id, config=ReplayConfig(step_ms=1_000))


class ScriptedEnvironment:
    """The environment evaluation plays: each episode is a script of portfolio values over a
    tape with one more row than the script has steps.

    Every legal non-HOLD action adds $1 to the value of the step it is taken at (so a policy's
    choices show in its returns) and one contract to the position; BUY_NO is never legal. With
    ``reports_fills`` each order is sent as an Order (id ``o<n>``) that half fills at once.
    """

    def __init__(self, episodes, *, reports_fills=False, pricing="aggressive"):
        self.episodes = episodes
        self.tapes = [a_tape(len(script), ticker=f"T{i}", session_id=7) for i, script in enumerate(episodes)]
        self.decoder = ActionDecoder(ActionConfig(pricing=pricing), FeeSchedule.kalshi_standard())
        self.reports_fills = reports_fills
        self.resets = []
        self.orders = 0

    @property
    def episode_count(self):
        return len(self.episodes)

    def reset(self, *, seed=None, options=None):
        self.resets.append((seed, options))
        self.script = self.episodes[options["episode"]]
        self.row = 0
        self.bonus = 0
        self.position = 0
        self.counts = [0] * 5
        self.illegal = 0
        return self._observation(), {"portfolio_value": START, "action_mask": self.action_masks()}

    def step(self, action):
        self.counts[action] += 1
        order, fills = None, []
        if not self.action_masks()[action]:
            self.illegal += 1
        elif action:
            self.bonus += MONEY_SCALE
            self.position += C
            if self.reports_fills:
                self.orders += 1
                order_id = f"o{self.orders}"
                # Aggressive pricing crosses: a bid at the 47 ask. Passive would rest at 45.
                order = Order(order_id, f"c{self.orders}", "T", OrderSide.BID, 4700, 2 * C, 0)
                fills = [Fill(f"f{self.orders}", order_id, "T", OrderSide.BID, 4700, C, 0, True, 0)]
        value = self.script[self.row] + self.bonus
        self.row += 1
        info = {"portfolio_value": value, "position": self.position, "action_mask": self.action_masks()}
        if self.reports_fills:
            info.update(order=order, fills=fills)
        done = self.row == len(self.script)
        if done:
            info.update(
                episode_summary={
                    "steps": len(self.script),
                    "trades": self.bonus // MONEY_SCALE,
                    "fees_paid": 0.07,
                    "total_return": (value - START) / MONEY_SCALE,
                    "total_return_fraction": (value - START) / START,
                    "sharpe_ratio": 0.5,
                    "max_drawdown": 0.0,
                    "max_drawdown_fraction": 0.0,
                    "win_rate": None,
                },
                action_counts=list(self.counts),
                illegal_actions=self.illegal,
            )
        return self._observation(), 0.0, done, False, info

    def action_masks(self):
        mask = np.ones(5, dtype=bool)
        mask[BUY_NO] = False
        return mask

    def decode(self, action):
        return self.decoder.decode(action, ticker="T", yes_bid=4500, yes_ask=4700, position=self.position,
                                   client_order_id="c")  # fmt: skip

    def _observation(self):
        return np.array([self.row], dtype=np.float32)


def dollars(*values):
    return [START + round(v * MONEY_SCALE) for v in values]


def play(policy, environment, **kwargs):
    return evaluate_policy(policy, environment, name=kwargs.pop("name", "p"), tapes=environment.tapes, **kwargs)


def test_the_fake_is_a_trading_environment():
    assert isinstance(ScriptedEnvironment([]), TradingEnvironment)


def test_every_episode_is_played_once_in_order_and_the_equity_curve_chains_them():
    environment = ScriptedEnvironment([dollars(1, -2), dollars(3, 3, 4)])
    result = play(DoNothingPolicy(), environment, seed=10)
    assert [options["episode"] for _, options in environment.resets] == [0, 1]
    assert [seed for seed, _ in environment.resets] == [10, 11]
    assert result.equity == pytest.approx((1, -2, 1, 1, 2))
    assert result.total_return == pytest.approx(2.0)
    assert result.mean_return == pytest.approx(1.0)
    assert result.max_drawdown == pytest.approx(3.0)  # from +1 down to -2
    assert result.action_counts == (5, 0, 0, 0, 0) and result.action_names == NAMES
    assert result.action_entropy == 0.0 and result.policy_entropy == 0.0
    assert result.win_rate is None and result.mean_sharpe == 0.5


def test_the_random_policy_only_picks_legal_actions_and_is_seeded():
    environment = ScriptedEnvironment([dollars(*([0] * 200))])
    result = play(RandomPolicy(seed=1), environment)
    assert result.action_counts[BUY_NO] == 0 and result.illegal_actions == 0
    assert all(count > 20 for i, count in enumerate(result.action_counts) if i != BUY_NO)
    assert result.action_entropy == pytest.approx(2.0, abs=0.05)  # about uniform over 4
    assert result.policy_entropy is None  # it does not say how likely its actions are
    again = play(RandomPolicy(seed=1), ScriptedEnvironment([dollars(*([0] * 200))]))
    assert again.action_counts == result.action_counts


class Scripted:
    """Plays a fixed list of actions and says its action distribution is uniform."""

    def __init__(self, *actions):
        self.actions = list(actions)

    def act(self, observation, action_mask=None):
        return self.actions.pop(0)

    def action_probabilities(self, observation, action_mask=None):
        return np.full(5, 1 / 5)


def test_illegal_actions_and_the_policy_entropy_are_reported():
    result = play(Scripted(BUY_NO, BUY_NO), ScriptedEnvironment([dollars(0, 0)]), name="stubborn")
    assert result.illegal_actions == 2
    assert result.policy_entropy == pytest.approx(math.log2(5))
    assert result.metrics()["illegal_actions"] == 2


class MaskingScripted(Scripted):
    """Uniform over the legal actions it is shown, as a model trained with masks acts."""

    def __init__(self, *actions):
        super().__init__(*actions)
        self.masks = []

    def action_probabilities(self, observation, action_mask=None):
        self.masks.append(None if action_mask is None else np.asarray(action_mask).copy())
        legal = np.ones(5) if action_mask is None else np.asarray(action_mask, dtype=float)
        return legal / legal.sum()


def test_the_policy_entropy_is_of_the_distribution_over_the_actions_the_mask_allows():
    policy = MaskingScripted(HOLD, HOLD)
    result = play(policy, ScriptedEnvironment([dollars(0, 0)]))

    # BUY_NO is masked at every step: uniform over the other 4 actions, 2 bits (not log2(5)).
    assert result.policy_entropy == pytest.approx(2.0)
    assert len(policy.masks) == 2 and all(mask is not None and not mask[BUY_NO] for mask in policy.masks)


def histogram(counts, name="m", returns=(0.0,)):
    episodes = tuple(
        {"total_return": r, "sharpe_ratio": 0.0, "fees_paid": 0.0, "trades": 0, "win_rate": None} for r in returns
    )
    return PolicyEvaluation(name, episodes, NAMES, tuple(counts), 0, None, tuple(returns))


def test_entropy_and_shares_of_the_action_histogram_by_hand():
    # 2 HOLD, 1 BUY_YES, 1 SELL_YES: H = -(1/2 log2 1/2 + 2 x 1/4 log2 1/4) = 0.5 + 1 = 1.5 bits
    evaluation = histogram((2, 1, 1, 0, 0))
    assert evaluation.action_entropy == pytest.approx(1.5)
    assert evaluation.action_shares() == {"HOLD": 0.5, "BUY_YES": 0.25, "SELL_YES": 0.25, "BUY_NO": 0.0, "SELL_NO": 0.0}
    assert evaluation.dominant_action() == ("HOLD", 0.5)
    assert histogram((1, 1, 1, 1, 1)).action_entropy == pytest.approx(math.log2(5))
    assert histogram((0, 0, 0, 0, 0)).action_entropy == 0.0 and not histogram((0, 0, 0, 0, 0)).collapsed()


def test_a_policy_collapses_when_one_action_exceeds_the_threshold():
    assert histogram((96, 4, 0, 0, 0)).collapsed()  # the public failure: 96% one action
    assert not histogram((90, 10, 0, 0, 0)).collapsed()  # exactly 90% is not above 90%
    assert histogram((0, 91, 9, 0, 0)).collapsed()
    assert not histogram((96, 4, 0, 0, 0)).collapsed(0.97)
    assert histogram((96, 4, 0, 0, 0)).metrics()["collapsed"] is True
    table = format_table([histogram((96, 4, 0, 0, 0), "ppo v1"), histogram((50, 50, 0, 0, 0), "random")], markets=1)
    flagged = {line.split()[0]: line.endswith("COLLAPSED") for line in table.splitlines() if line.startswith(("ppo", "random"))}
    assert flagged == {"ppo": True, "random": False}
    assert "  ppo v1        HOLD 96 BUY_YES 4 SELL_YES 0 BUY_NO 0 SELL_NO 0" in table


def test_the_promotion_rule_needs_a_higher_mean_return_than_every_baseline_and_no_collapse():
    baselines = [histogram((10, 0, 0, 0, 0), "do-nothing", (0.0, 0.0)), histogram((2, 2, 2, 2, 2), "random", (-1.0, -2.0))]
    spread = (5, 3, 2, 0, 0)  # 50% HOLD at most

    winner = decide_promotion(histogram(spread, "ppo", (0.25, 0.0)), baselines, min_episodes=2)
    assert winner.promoted and beats(histogram(spread, "ppo", (0.25, 0.0)), baselines, min_episodes=2)
    assert winner.reasons == (
        "[ok] collapse: HOLD takes 50.0% of decisions (within the 90% limit)",
        "[ok] mean episode return +0.1250 $ > do-nothing +0.0000 $",
        "[ok] mean episode return +0.1250 $ > random -1.5000 $",
        "[ok] held-out episodes: 2 (at least the 2 the rule needs to judge)",
    )
    # The same two episodes are too few for the default rule: a mean over two markets is luck.
    few = decide_promotion(histogram(spread, "ppo", (0.25, 0.0)), baselines)
    assert not few.promoted and few.reasons[-1] == "[FAIL] held-out episodes: 2 (fewer than the 5 the rule needs to judge)"
    tie = decide_promotion(histogram(spread, "ppo", (0.0, 0.0)), baselines)
    assert not tie.promoted and tie.reasons[1] == "[FAIL] mean episode return +0.0000 $ <= do-nothing +0.0000 $"
    loser = decide_promotion(histogram(spread, "ppo", (-2.0, -2.0)), baselines, min_episodes=2)
    assert not loser.promoted and [r[:6] for r in loser.reasons] == ["[ok] c", "[FAIL]", "[FAIL]", "[ok] h"]
    # Richer than every baseline, but 96% one action: refused all the same.
    collapsed = decide_promotion(histogram((96, 4, 0, 0, 0), "ppo", (5.0, 5.0)), baselines)
    assert not collapsed.promoted
    assert collapsed.reasons[0] == "[FAIL] collapse: HOLD takes 96.0% of decisions (above the 90% limit)"
    assert "NOT promoted: ppo failed the promotion rule:" in collapsed.explain("ppo")


def test_the_verdict_says_promoted_only_when_the_version_was():
    baselines = [histogram((10, 0, 0, 0, 0), "do-nothing", (0.0, 0.0))]
    winner = decide_promotion(histogram((5, 3, 2, 0, 0), "ppo", (0.25, 0.0)), baselines, min_episodes=2)
    loser = decide_promotion(histogram((5, 3, 2, 0, 0), "ppo", (-0.25, 0.0)), baselines, min_episodes=2)
    reasons = "\n  [ok] collapse: HOLD takes 50.0% of decisions (within the 90% limit)\n  [ok] mean episode"

    assert winner.explain("ppo", promoted=True).startswith(
        "Promoted ppo: it passed every condition of the promotion rule:" + reasons
    )
    assert winner.explain("ppo").startswith("ppo passed the promotion rule (every condition):" + reasons)
    assert "romoted" not in winner.explain("ppo")
    assert loser.explain("ppo").startswith("NOT promoted: ppo failed the promotion rule:\n  [ok] collapse")
    with pytest.raises(ValueError, match="ppo cannot have been promoted by a decision it failed"):
        loser.explain("ppo", promoted=True)


def test_metrics_are_plain_numbers_for_the_registry():
    metrics = play(DoNothingPolicy(), ScriptedEnvironment([dollars(1)])).metrics()
    assert metrics["total_return"] == pytest.approx(1.0)
    assert metrics["action_shares"]["HOLD"] == 1.0
    assert metrics["passive_fill_rate"] is None and metrics["aggressive_fill_rate"] is None
    assert set(metrics) >= {"mean_sharpe", "max_drawdown", "fees", "trades", "win_rate", "policy_entropy_bits", "collapsed"}


def test_fill_rates_come_from_the_orders_and_fills_the_environment_reports():
    # Three orders of 2 contracts, each a bid at the 47 ask (crossing: aggressive), each half filled.
    result = play(Scripted(BUY_YES, HOLD, BUY_YES, SELL_YES), ScriptedEnvironment([dollars(0, 0, 0, 0)], reports_fills=True))
    assert result.fills.aggressive_ordered == 6 * C and result.fills.aggressive_filled == 3 * C
    assert result.fills.aggressive_fill_rate == pytest.approx(0.5)
    assert result.fills.passive_ordered == 0 and result.fills.passive_fill_rate is None
    # An environment that does not report them gets no fill rates at all, rather than a guess.
    assert play(Scripted(BUY_YES), ScriptedEnvironment([dollars(0)])).fills is None
    assert "n/a" in format_table([play(Scripted(BUY_YES), ScriptedEnvironment([dollars(0)]))], markets=1)


def test_each_decision_is_kept_as_a_trading_action_with_the_order_it_decoded_to():
    environment = ScriptedEnvironment([dollars(0, 0, 0)], reports_fills=True)
    result = play(Scripted(BUY_YES, BUY_NO, HOLD), environment, record=True)
    (episode,) = result.played
    first, illegal, hold = episode.actions
    # BUY_YES, aggressive, at the 47 ask (10000 - 5300), the configured 10 contracts, from flat.
    assert (first.step_number, first.timestamp_ms, first.action_type, first.action_index) == (0, 0, "BUY_YES", 1)
    assert (first.order_side, first.price, first.quantity) == (OrderSide.BID, 4700, 10 * C)
    assert (first.position_before, first.position_after) == (0, C)
    assert (first.order_id, first.client_order_id) == ("o1", "c1")
    assert len(first.observation_digest) == 16
    assert (illegal.action_type, illegal.price, illegal.quantity, illegal.order_id) == ("BUY_NO", None, 0, None)
    assert (hold.step_number, hold.timestamp_ms, hold.action_type, hold.position_before) == (2, 2_000, "HOLD", C)
    assert first.observation_digest != hold.observation_digest
    result_row = episode.result()
    assert (result_row.ended_ms, result_row.step_count, result_row.trade_count) == (3_000, 3, 1)
    assert (result_row.total_pnl, result_row.fees_paid) == (MONEY_SCALE, 70_000)  # $1 bonus; $0.07 fees
    assert not play(Scripted(HOLD), ScriptedEnvironment([dollars(0)])).played  # kept only when asked


def test_an_environment_out_of_step_with_its_tapes_is_refused():
    environment = ScriptedEnvironment([dollars(0, 0)])
    environment.tapes = [a_tape(3)]
    with pytest.raises(ValueError, match=r"took 2 steps but its tape has 4 rows"):
        play(DoNothingPolicy(), environment)


def test_the_market_maker_alternates_sides_on_fills_and_flattens_past_its_limit():
    decoder = ActionDecoder(ActionConfig(pricing="passive", order_size=10 * C), FeeSchedule.kalshi_standard())
    maker = SpreadCapturingMarketMaker(decoder, inventory_limit=15 * C)
    every = np.ones(5, dtype=bool)
    no_bid_side = np.array([True, False, True, True, True])

    def decide(position, mask=every):
        return maker.act_at_position(None, mask, position=position)

    assert [decide(0), decide(0)] == [BUY_YES, BUY_YES]  # the bid, kept while it waits
    assert [decide(10 * C), decide(10 * C)] == [BUY_NO, BUY_NO]  # bought: now the ask
    assert decide(3 * C) == BUY_YES  # partly sold: back to the bid
    assert decide(13 * C) == BUY_NO  # bought again: the ask
    assert decide(23 * C) == SELL_YES  # past 15 contracts long: only reduce
    assert decide(16 * C) == SELL_YES
    assert decide(6 * C) == BUY_YES  # inside the limit, after a sale: the bid
    assert decide(6 * C, no_bid_side) == BUY_NO  # no bid possible: the ask instead
    assert decide(-20 * C) == SELL_NO  # past the limit short
    assert decide(-20 * C, np.array([True, True, True, True, False])) == HOLD
    maker.begin_episode()
    assert decide(0) == BUY_YES
    with pytest.raises(ValueError, match="priced 'passive', not 'aggressive'"):
        SpreadCapturingMarketMaker(ActionDecoder(ActionConfig(), FeeSchedule.kalshi_standard()))


def test_the_market_maker_captures_the_spread_on_a_hand_built_tape():
    # YES 45 bid / 55 ask (NO bid 45) for 8 s. A seller hits the 45 bid for 30 contracts at 2.5 s
    # (10 ahead of us, then our 10); a buyer lifts the 55 ask for 30 at 5.5 s.
    events = [
        BookSnapshot("T", 1, 0, yes=((4500, 10 * C),), no=((4500, 10 * C),)),
        PublicTrade("T", 2_500, "t1", 4500, 30 * C, Side.NO),
        PublicTrade("T", 5_500, "t2", 5500, 30 * C, Side.YES),
        MarketResolved("T", 8_000, Side.NO),
    ]
    tape = compile_market(events, ticker="T", session_id=1, config=ReplayConfig(step_ms=1_000))
    environment = OrderbookEnv([tape], actions=ActionConfig(pricing=PricingStrategy.PASSIVE, order_size=10 * C))

    result = evaluate_policy(
        SpreadCapturingMarketMaker(environment.decoder), environment, name="mm", tapes=[tape], record=True
    )

    decisions = [(a.action_type, a.order_side, a.price, a.position_before) for a in result.played[0].actions]
    bid, ask = ("BUY_YES", OrderSide.BID, 4500), ("BUY_NO", OrderSide.ASK, 5500)
    assert decisions == [
        (*bid, 0), (*bid, 0), (*bid, 0),  # the bid waits, fills in the third second
        (*ask, 10 * C), (*ask, 10 * C), (*ask, 10 * C),  # then the ask, filled in the sixth
        (*bid, 0), (*bid, 0),
    ]
    # Bought 10 at $0.45, sold 10 at $0.55, as a maker (no fee): +$1.00 exactly.
    assert result.total_return == pytest.approx(1.0) and result.fees == 0.0 and result.trades == 2
    assert result.played[0].result().total_pnl == MONEY_SCALE


def test_the_baselines_play_the_same_tapes_and_the_market_maker_quotes_passively():
    made = []

    def make(pricing):
        def factory(tapes):
            environment = ScriptedEnvironment([dollars(0, 0)], pricing=pricing)
            environment.tapes = list(tapes)
            made.append(pricing)
            return environment

        return factory

    tapes = [a_tape(2)]
    results = evaluate_against_baselines(
        DoNothingPolicy(), tapes, make_environment=make("aggressive"), make_quoting_environment=make("passive"), name="m"
    )
    assert [r.name for r in results] == ["m", "random", "do-nothing", "market-maker"]
    assert sorted(made) == ["aggressive"] * 3 + ["passive"]
    assert results[3].action_counts[BUY_YES] == 2  # its bid, kept: the fake never fills


def test_the_equity_chart_is_a_png(tmp_path):
    evaluations = [histogram((1, 0, 0, 0, 0), "a", (1.0,)), histogram((1, 0, 0, 0, 0), "b", (-1.0,))]
    path = write_equity_chart(evaluations, tmp_path / "out" / "eq.png", title="t")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (990, 495)  # 9 x 4.5 inches at 110 dpi


class OneMarketStore:
    async def get_session(self, session_id):
        return SessionInfo(session_id, ("T",), "test", 0, 20_000, 1, 0, 0)

    async def read_events(self, session_id):
        return [BookSnapshot("T", 1, 0, yes=((4500, 100),), no=((5300, 100),)), MarketResolved("T", 20_000, Side.NO)]


class OneModelRegistry:
    def __init__(self, record):
        self.record = record
        self.promoted = []

    async def get(self, model_id):
        assert model_id == self.record.model_id
        return self.record

    async def update(self, model_id, *, status=None, metrics=None):
        self.record = attrs.evolve(self.record, status=status or self.record.status, metrics=metrics or self.record.metrics)
        return self.record

    async def promote(self, model_id):
        self.promoted.append(model_id)
        self.record = attrs.evolve(self.record, status="active")
        return self.record


class FakeTradingRecords:
    """Keeps what it is given, as the storage adapters would."""

    def __init__(self):
        self.episodes, self.actions, self.results = [], {}, {}

    async def start_episode(self, model_id, *, market_ticker, mode, started_ms, session_id=None):
        self.episodes.append((model_id, market_ticker, mode, started_ms, session_id))
        episode_id = len(self.episodes)
        self.actions[episode_id] = []
        return attrs.make_class("Started", ["episode_id"])(episode_id)

    async def record_actions(self, episode_id, actions):
        self.actions[episode_id].extend(actions)
        return len(actions)

    async def finish_episode(self, episode_id, result):
        self.results[episode_id] = result


class LoadsABuyer:
    algorithm = "fake"
    hyperparameters = {}

    def __init__(self):
        self.loaded = []

    def load_policy(self, path):
        self.loaded.append(path)
        return Scripted(*[BUY_YES, HOLD] * 10)


def a_record(**changes):
    hyperparameters = {
        "replay": {"step_ms": 2000, "depth_levels": 4}, "sessions": [1, 2], "market_digests": ["0" * 16],
        "market_spans": [{"ticker": "U", "session": 1, "first_ms": 0, "last_ms": 60_000}],  # another market
    }  # fmt: skip
    return attrs.evolve(ModelRecord(3, "m", 2, "fake", "trained", "/models/m.zip", 0, hyperparameters, {"old": 1}), **changes)


async def run_evaluate_model(registry, records, **kwargs):
    seen = []

    def make_environment(pricing):
        def factory(tapes):
            seen.append([(tape.ticker, tape.step_ms, tape.depth_levels, pricing) for tape in tapes])
            # The market maker's account drifts down $1 a step, so its $1 per order nets zero.
            drift = -1 if pricing == "passive" else 0
            environment = ScriptedEnvironment([dollars(*[drift] * 10)], pricing=pricing)
            environment.tapes = list(tapes)
            return environment

        return factory

    result = await evaluate_model(
        store=OneMarketStore(),
        registry=registry,
        records=records,
        trainer=kwargs.pop("trainer", LoadsABuyer()),
        make_environment=make_environment("aggressive"),
        make_quoting_environment=make_environment("passive"),
        model_id=3,
        session_ids=[9],
        **{"min_episodes": 1, **kwargs},  # one market held out: these tests judge it on it
    )
    return result, seen


async def test_evaluate_model_replays_with_the_training_settings_records_and_stores_the_metrics():
    registry, records, trainer = OneModelRegistry(a_record()), FakeTradingRecords(), LoadsABuyer()
    result, seen = await run_evaluate_model(registry, records, trainer=trainer)

    assert trainer.loaded == ["/models/m.zip"]
    # The model, random, do-nothing and the market maker: same market, same replay settings.
    assert sorted(seen) == sorted([[("T", 2000, 4, "aggressive")]] * 3 + [[("T", 2000, 4, "passive")]])
    assert [e.name for e in result.evaluations] == ["fake v2", "random", "do-nothing", "market-maker"]
    # $1 per order: the model's 5 orders earn $5, less than the random policy, whose legal choices
    # are orders 3 times in 4: it is not promoted.
    assert result.evaluations[0].total_return == pytest.approx(5.0)
    assert not result.beat_baselines and not result.promoted
    assert registry.record.status == "retired" and registry.promoted == []  # a finished run, judged and rejected
    evaluation = result.model.metrics["evaluation"]
    assert result.model.metrics["old"] == 1 and evaluation["sessions"] == [9]
    assert evaluation["policies"]["fake v2"]["total_return"] == pytest.approx(5.0)
    assert any(reason.startswith("[FAIL] mean episode return +5.0000 $ <= random") for reason in evaluation["promotion"])
    # The model's one episode and its ten decisions went into the trading records.
    assert records.episodes == [(3, "T", "evaluation", 0, 9)] and result.recorded_episodes == (1,)
    assert [a.action_type for a in records.actions[1]] == ["BUY_YES", "HOLD"] * 5
    assert [a.timestamp_ms for a in records.actions[1]] == list(range(0, 20_000, 2_000))
    assert records.results[1].step_count == 10 and records.results[1].total_pnl == 5 * MONEY_SCALE
    assert evaluation["trading_episodes"] == [1]


class AlwaysBuys:
    def act(self, observation, action_mask=None):
        return BUY_YES if action_mask[BUY_YES] else HOLD


class LoadsAnAlwaysBuyer(LoadsABuyer):
    def load_policy(self, path):
        return AlwaysBuys()


async def test_a_winning_model_is_promoted_only_when_asked_and_only_if_not_collapsed():
    # Always buying earns the fake's $1 a step: more than every baseline, but 100% one action.
    registry = OneModelRegistry(a_record())
    result, _ = await run_evaluate_model(registry, FakeTradingRecords(), trainer=LoadsAnAlwaysBuyer(), promote=True)
    assert result.evaluations[0].collapsed() and not result.beat_baselines and registry.promoted == []

    # With the collapse limit above 100% nothing collapses: it wins, and is promoted when asked.
    registry = OneModelRegistry(a_record())
    result, _ = await run_evaluate_model(
        registry, FakeTradingRecords(), trainer=LoadsAnAlwaysBuyer(), collapse_threshold=1.0
    )
    assert result.beat_baselines and not result.promoted and registry.promoted == []
    assert result.model.status == "trained"  # passed: `models promote` may promote it later
    result, _ = await run_evaluate_model(
        registry, FakeTradingRecords(), trainer=LoadsAnAlwaysBuyer(), collapse_threshold=1.0, promote=True
    )
    assert result.promoted and registry.promoted == [3] and result.model.status == "active"


async def test_an_active_version_that_fails_on_new_sessions_stays_active():
    registry = OneModelRegistry(a_record(status="active"))
    result, _ = await run_evaluate_model(registry, FakeTradingRecords(), promote=True)
    assert not result.beat_baselines and result.model.status == "active" and registry.promoted == []


async def test_sessions_the_model_was_trained_on_are_refused():
    registry = OneModelRegistry(a_record(hyperparameters={"sessions": [9], "market_digests": [], "market_spans": []}))
    with pytest.raises(ValueError, match=r"model 3 \(m v2\) was trained on sessions \[9\]; evaluate it on held-out"):
        await run_evaluate_model(registry, FakeTradingRecords())


async def test_the_same_market_data_under_another_session_id_is_refused():
    (tape,) = await load_tapes(OneMarketStore(), [1], config=ReplayConfig(step_ms=2000, depth_levels=4))
    registry = OneModelRegistry(a_record(hyperparameters={**a_record().hyperparameters, "market_digests": [tape.content_digest()]}))
    with pytest.raises(ValueError, match=r"model 3 \(m v2\) was trained on the same market data as T of session 9 "
                                         r"\(recorded again under another id\)"):
        await run_evaluate_model(registry, FakeTradingRecords())
    assert registry.record.metrics == {"old": 1}  # nothing recorded


def span(first_ms, last_ms, ticker="T"):
    return {"ticker": ticker, "session": 1, "first_ms": first_ms, "last_ms": last_ms}


async def test_a_market_trained_on_over_an_overlapping_time_is_refused_whatever_its_data():
    # Session 9's tape of T has rows at 0, 2 s, ..., 20 s; the model trained on T from 20 s to 60 s
    # (recorded with other events: its digest differs).
    hyperparameters = {**a_record().hyperparameters, "market_spans": [span(20_000, 60_000)]}
    registry, trainer = OneModelRegistry(a_record(hyperparameters=hyperparameters)), LoadsABuyer()
    with pytest.raises(ValueError) as refused:
        await run_evaluate_model(registry, FakeTradingRecords(), trainer=trainer)
    assert str(refused.value) == (
        "model 3 (m v2) was trained on the same market over an overlapping time: T of session 9 "
        "(1970-01-01 00:00:00 UTC to 1970-01-01 00:00:20 UTC) was trained on in session 1 "
        "(1970-01-01 00:00:20 UTC to 1970-01-01 00:01:00 UTC); evaluate it on held-out sessions "
        "(other markets, or this one over another time)"
    )
    assert trainer.loaded == [] and registry.record.metrics == {"old": 1}


@pytest.mark.parametrize("spans", [[span(20_001, 60_000)], [span(-60_000, -1)], [span(0, 20_000, ticker="U")]])
async def test_the_same_ticker_at_another_time_or_another_ticker_at_the_same_time_is_held_out(spans):
    registry = OneModelRegistry(a_record(hyperparameters={**a_record().hyperparameters, "market_spans": spans}))
    result, _ = await run_evaluate_model(registry, FakeTradingRecords())
    assert result.evaluations[0].total_return == pytest.approx(5.0)  # evaluated


@pytest.mark.parametrize(
    ("hyperparameters", "missing"),
    [
        ({"replay": {}}, "'sessions' or 'market_digests' or 'market_spans'"),
        ({"replay": {}, "sessions": [1], "market_spans": []}, "'market_digests'"),
        ({"replay": {}, "market_digests": [], "market_spans": []}, "'sessions'"),
        ({"replay": {}, "sessions": [1], "market_digests": []}, "'market_spans'"),  # trained before they were kept
    ],
)
async def test_a_record_that_does_not_say_what_it_was_trained_on_is_refused(hyperparameters, missing):
    registry, trainer = OneModelRegistry(a_record(hyperparameters=hyperparameters)), LoadsABuyer()
    with pytest.raises(ValueError) as refused:
        await run_evaluate_model(registry, FakeTradingRecords(), trainer=trainer)
    assert str(refused.value) == (
        f"model 3 (m v2) does not say what it was trained on (its hyperparameters have no {missing}), so no "
        "session can be shown to be held out from it; retrain it with `kalshiflow-rl train` to evaluate it"
    )
    assert trainer.loaded == [] and registry.record.metrics == {"old": 1}


# ---------------------------------------------------------------------------------------------
# Promotion: only a version whose held-out evaluation passed
# ---------------------------------------------------------------------------------------------
async def test_promotion_needs_a_passing_held_out_evaluation_and_allows_a_rollback(tmp_path):
    from adapters.storage.sqlite_store import SqliteModelRegistry
    from application.evaluation import PromotionRefused, promote_evaluated

    registry = SqliteModelRegistry(tmp_path / "registry.db")
    await registry.open()
    try:
        register = dict(algorithm="PPO", path="m.zip", created_ms=0, hyperparameters={})
        first = await registry.register("book", **register)
        second = await registry.register("book", **register)
        won = {"beat_baselines": True, "promotion": ["[ok] collapse", "[ok] mean episode return > random"]}
        await registry.update(first.model_id, metrics={"evaluation": won})
        with pytest.raises(PromotionRefused, match=r"model 1 \(book v1\) is training \(its training run has not "
                                                   r"finished\), so it cannot be promoted"):
            await promote_evaluated(registry, first.model_id)  # even with a passing evaluation on record
        for record in (first, second):
            await registry.update(record.model_id, status="trained", metrics={})
        with pytest.raises(PromotionRefused, match="has no held-out evaluation"):
            await promote_evaluated(registry, first.model_id)  # trained, nothing on record
        lost = {"beat_baselines": False, "promotion": ["[ok] collapse", "[FAIL] mean episode return <= random"]}
        await registry.update(first.model_id, metrics={"evaluation": lost})
        with pytest.raises(PromotionRefused, match=r"failed its held-out evaluation.*\n  \[FAIL\] mean episode"):
            await promote_evaluated(registry, first.model_id)
        assert (await registry.get(first.model_id)).status == "trained"

        await registry.update(first.model_id, metrics={"evaluation": won})
        await registry.update(second.model_id, metrics={"beat_baselines": True, "promotion": []})  # the demo's form
        assert (await promote_evaluated(registry, first.model_id)).status == "active"
        assert (await promote_evaluated(registry, second.model_id)).status == "active"
        assert (await registry.get(first.model_id)).status == "retired"
        # A retired version that passed may come back (a rollback).
        assert (await promote_evaluated(registry, first.model_id)).status == "active"
        # One whose latest evaluation failed may not, whatever it passed before.
        await registry.update(second.model_id, metrics={"beat_baselines": True, "evaluation": lost})
        with pytest.raises(PromotionRefused, match="failed its held-out evaluation"):
            await promote_evaluated(registry, second.model_id)
        failed = await registry.register("book", **register, status="failed")
        with pytest.raises(PromotionRefused, match=r"is failed \(its training run failed\)"):
            await promote_evaluated(registry, failed.model_id)
    finally:
        await registry.close()
