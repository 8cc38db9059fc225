import warnings

import attrs
import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from adapters.gym_env import ENV_ID, OrderbookEnv
from adapters.simulated_exchange import ExchangeConfig
from adapters.synthetic.market_model import SyntheticMarketConfig, generate_recording
from application.replay import ReplayConfig, compile_market, compile_session
from domain.actions import Action, ActionConfig, ActionSpace, ActionSpaceMismatch, PricingStrategy
from domain.events import BookDelta, BookSnapshot, MarketResolved, MarketScheduled, PublicTrade
from domain.fees import FeeSchedule
from domain.features import MARKET_FEATURES, ORDER_FEATURES, ORDER_OFFSET, PORTFOLIO_FEATURES, PORTFOLIO_OFFSET
from domain.orders import OrderSide, OrderStatus
from domain.rewards import RewardFunction
from domain.values import MONEY_SCALE, ONE_CONTRACT, Side

C = ONE_CONTRACT
START = 100 * MONEY_SCALE


def quiet_market(ticker="T", result=Side.YES, steps=4):
    """YES bid 0.45 x 20, NO bid 0.53 x 20 (YES ask 0.47) for ``steps`` seconds, then resolution."""
    return [
        BookSnapshot(ticker, 1, 0, yes=((4500, 20 * C),), no=((5300, 20 * C),)),
        MarketResolved(ticker, steps * 1000, result),
    ]


def busy_market(ticker, seed, seconds=60):
    rng = np.random.default_rng(seed)
    events = [BookSnapshot(ticker, 1, 0, yes=((4400, 30 * C), (4500, 20 * C)), no=((5300, 20 * C), (5200, 40 * C)))]
    for t in range(100, seconds * 1000, 250):
        side = Side(int(rng.integers(2)))
        price = int(rng.choice([4300, 4400, 4500] if side is Side.YES else [5100, 5200, 5300]))
        events.append(BookDelta(ticker, None, t, side, price, int(rng.integers(-10, 11)) * C))
        if rng.random() < 0.3:
            events.append(PublicTrade(ticker, t, f"{t}", int(rng.integers(4300, 4800)), int(rng.integers(1, 5)) * C, side))
    events.append(MarketResolved(ticker, seconds * 1000, Side(int(rng.integers(2)))))
    return events


def tape(events, ticker="T"):
    return compile_market(events, ticker=ticker, session_id=1, config=ReplayConfig(step_ms=1000, depth_levels=5))


@pytest.fixture(scope="module")
def busy_tapes():
    return [tape(busy_market(f"M{i}", i), f"M{i}") for i in range(3)]


def test_passes_the_gymnasium_and_stable_baselines3_checkers(busy_tapes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checkers warn about render modes we do not have
        gymnasium_check_env(OrderbookEnv(busy_tapes), skip_render_check=True)
    sb3_check_env(OrderbookEnv(busy_tapes), warn=False)


def test_is_registered_under_its_id(busy_tapes):
    env = gymnasium.make(ENV_ID, tapes=busy_tapes)
    observation, _ = env.reset(seed=1)
    assert env.observation_space.contains(observation)
    env.close()


def test_buy_and_hold_to_resolution_books_fill_fee_and_payout():
    env = OrderbookEnv([tape(quiet_market())], reward=RewardFunction(scale=1.0))
    _, info = env.reset(seed=0)
    assert info["portfolio_value"] == START
    _, reward, terminated, truncated, info = env.step(Action.BUY_YES)
    # 10 YES at 0.47 = $4.70, fee 0.07 x 10 x 0.47 x 0.53 -> $0.18; marked at 0.46: value 99.72
    assert info["position"] == 10 * C
    assert info["portfolio_value"] == START - 4_700_000 - 180_000 + 4_600_000
    assert reward == pytest.approx(-0.28)
    total = reward
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(Action.HOLD)
        total += reward
    assert terminated and not truncated
    assert info["portfolio_value"] == START - 4_880_000 + 10 * MONEY_SCALE  # settled YES: $1 each
    assert total == pytest.approx(5.12)
    summary = info["episode_summary"]
    assert summary["total_return"] == pytest.approx(5.12) and summary["trades"] == 1 and summary["win_rate"] == 1.0
    assert info["action_counts"] == [3, 1, 0, 0, 0]


def test_an_unresolved_recording_truncates_instead_of_terminating():
    events = quiet_market()[:-1] + [BookDelta("T", 2, 3000, Side.YES, 4500, C)]
    env = OrderbookEnv([tape(events)])
    env.reset(seed=0)
    done = (False, False)
    while not any(done):
        *_, terminated, truncated, _ = env.step(Action.HOLD)
        done = (terminated, truncated)
    assert done == (False, True)


@pytest.mark.parametrize("compiled", [True, False])
def test_trading_stops_at_the_scheduled_close_and_the_result_still_settles(compiled):
    # Closes at 3 s, resolves at 10 s (Kalshi settles after the close). A resting bid would fill
    # on the trade at 5 s -- after the close, where no order can fill -- and the live actor makes
    # no decision past the close: the episode ends at the close's row, settled by the result.
    events = [
        MarketScheduled("T", -5, close_ms=3_000, expiration_ms=10_000),
        BookSnapshot("T", 1, 0, yes=((4500, 20 * C),), no=((5300, 20 * C),)),
        PublicTrade("T", 5_000, "after-close", 4400, 20 * C, Side.NO),
        MarketResolved("T", 10_000, Side.YES),
    ]
    env = OrderbookEnv([tape(events)], actions=ActionConfig(pricing=PricingStrategy.PASSIVE), compiled=compiled)
    _, info = env.reset(seed=0)
    assert info["steps"] == 3  # rows at 0, 1 and 2 s decide; the row at 3 s is the close
    env.step(Action.HOLD)
    _, _, terminated, _, info = env.step(Action.BUY_YES)  # a bid at 0.45, resting at the close
    assert not terminated and env.open_order is not None
    _, _, terminated, truncated, info = env.step(Action.HOLD)
    assert (terminated, truncated) == (True, False)
    assert info["position"] == 0 and info["portfolio_value"] == START  # never filled; cancelled
    with pytest.raises(RuntimeError, match="ended"):
        env.step(Action.HOLD)


def test_a_tape_recorded_after_its_close_allows_only_hold():
    events = [MarketScheduled("T", -5, close_ms=0), *quiet_market()]
    env = OrderbookEnv([tape(events)])
    _, info = env.reset(seed=0)
    assert info["action_mask"].tolist() == [True, False, False, False, False]
    *_, terminated, _, info = env.step(Action.BUY_YES)
    assert terminated and info["illegal_action"] and info["position"] == 0


@pytest.mark.parametrize("pricing", list(PricingStrategy))
def test_a_sub_cent_market_is_traded_on_its_own_grid(pricing):
    # A deci-cent market's book sits at prices like $0.445: orders priced off it must be accepted.
    recording = generate_recording(SyntheticMarketConfig(seed=2, markets=1, duration_ms=60_000, tick_structure="deci_cent"))
    tapes = compile_session(recording, session_id=1, config=ReplayConfig())
    assert [t.price_levels for t in tapes] == ["deci_cent"]
    env = OrderbookEnv(tapes, actions=ActionConfig(pricing=pricing))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    done = False
    while not done:
        *_, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        done = terminated or truncated
    assert info["orders_placed"] > 10
    assert [r.reason for r in env._exchange.rejections if "tick grid" in r.reason] == []


@pytest.mark.parametrize("compiled", [True, False])
def test_an_order_the_mask_allows_is_not_refused_for_cash_on_an_unchanged_book(compiled):
    # YES ask 0.47 x 3 only: BUY_YES 10 takes 3 (fee on 3, rounded up) and rests 7 (fee on 7
    # reserved, rounded up) -- a cent more than one fee on 10. With a cent less, it is masked.
    from domain.actions import cash_required

    events = [BookSnapshot("T", 1, 0, yes=((4500, 100 * C),), no=((5300, 3 * C),)), MarketResolved("T", 10_000, Side.YES)]
    exact = cash_required(OrderSide.BID, 4700, 10 * C, 0, FeeSchedule.kalshi_standard())
    for cash, legal in ((exact + 10_000, True), (exact + 9_999, False)):
        env = OrderbookEnv([tape(events)], initial_cash=cash, compiled=compiled, exchange=ExchangeConfig(latency_ms=0))
        _, info = env.reset(seed=0)
        assert bool(info["action_mask"][Action.BUY_YES]) is legal
        *_, info = env.step(Action.BUY_YES)
        assert env._exchange.rejections == [] and info["position"] == (3 * C if legal else 0)


@pytest.mark.parametrize("compiled", [True, False])
def test_the_position_never_passes_the_limit_when_a_replaced_order_fills_while_its_cancel_travels(compiled):
    # Limit 20, orders of 10, passive, 100 ms latency. Row 0: bid 10 at 0.45 (5 ahead) fills by
    # the sale at 0.5 s. Row 1: bid 10 at 0.45. Row 2: the best bid is 0.46 now, so BUY_YES is a
    # new bid at 0.46 replacing the one at 0.45 -- whose cancel lands at 2.1 s, after the sale at
    # 2.05 s fills it; the new bid then fills by the sale at 2.15 s. Sized beside the open bid,
    # the new one has no room (10 held + 10 open): the position stops at 20, not 30.
    events = [
        BookSnapshot("T", 1, 0, yes=((4500, 5 * C),), no=((5300, 100 * C),)),
        PublicTrade("T", 500, "a", 4500, 15 * C, Side.NO),
        BookDelta("T", 2, 1500, Side.YES, 4600, 5 * C),
        PublicTrade("T", 2050, "b", 4500, 15 * C, Side.NO),
        PublicTrade("T", 2150, "c", 4600, 15 * C, Side.NO),
        MarketResolved("T", 5000, Side.YES),
    ]
    actions = ActionConfig(pricing=PricingStrategy.PASSIVE, max_position=20 * C, order_size=10 * C)
    env = OrderbookEnv([tape(events)], actions=actions, compiled=compiled)
    env.reset(seed=0)
    positions = []
    for action in (Action.BUY_YES, Action.BUY_YES, Action.BUY_YES, Action.HOLD):
        *_, info = env.step(action)
        positions.append(info["position"] // C)
    assert positions == [10, 10, 20, 20]
    assert not info["action_mask"][Action.BUY_YES]  # at the limit


@pytest.mark.parametrize("compiled", [True, False])
def test_a_position_can_be_closed_with_no_cash_left_for_the_fee(compiled):
    # All the cash goes into 10 YES at 0.47 ($4.70 + $0.18 fee, and the mask's cent to spare):
    # $0.01 is left, less than a sale's $0.18 fee -- which the sale's $4.50 pays, as on Kalshi.
    from domain.actions import cash_required

    events = [BookSnapshot("T", 1, 0, yes=((4500, 100 * C),), no=((5300, 100 * C),)), MarketResolved("T", 10_000, Side.NO)]
    cash = cash_required(OrderSide.BID, 4700, 10 * C, 0, FeeSchedule.kalshi_standard()) + 10_000
    env = OrderbookEnv([tape(events)], initial_cash=cash, compiled=compiled, exchange=ExchangeConfig(latency_ms=0))
    env.reset(seed=0)
    *_, info = env.step(Action.BUY_YES)
    assert info["position"] == 10 * C and env.ledger.cash == 10_000
    assert info["action_mask"][Action.SELL_YES]
    *_, info = env.step(Action.SELL_YES)  # 10 at the 0.45 bid: +$4.50 - $0.18
    assert info["position"] == 0 and env.ledger.cash == 10_000 + 4_500_000 - 180_000
    assert env._exchange.rejections == []


def test_illegal_actions_do_nothing_and_are_counted():
    env = OrderbookEnv([tape(quiet_market())])
    _, info = env.reset(seed=0)
    assert not info["action_mask"][Action.SELL_YES]  # nothing to sell yet
    _, reward, *_, info = env.step(Action.SELL_YES)
    assert info["illegal_action"] and info["position"] == 0 and reward == 0.0
    for _ in range(3):
        *_, info = env.step(Action.HOLD)
    assert info["illegal_actions"] == 1


def test_a_passive_order_rests_and_fills_when_a_trade_prints_through_it():
    events = quiet_market(steps=3)
    events.insert(1, PublicTrade("T", 1500, "x", 4400, 4 * C, Side.NO))  # a sale below our 0.45 bid
    env = OrderbookEnv([tape(events)], actions=ActionConfig(pricing=PricingStrategy.PASSIVE))
    env.reset(seed=0)
    observation, _, _, _, info = env.step(Action.BUY_YES)  # bid 10 at 0.45: rests through row 1
    assert info["position"] == 0
    assert observation[ORDER_OFFSET + ORDER_FEATURES.index("has_resting_bid")] == 1.0
    observation, _, _, _, info = env.step(Action.HOLD)  # the trade in (1000, 2000] fills 4
    assert info["position"] == 4 * C
    assert observation[ORDER_OFFSET + ORDER_FEATURES.index("order_remaining")] == pytest.approx(0.6)
    assert observation[PORTFOLIO_OFFSET + PORTFOLIO_FEATURES.index("position")] == pytest.approx(4 / 50)


def test_the_same_seed_and_actions_replay_the_same_episode(busy_tapes):
    def run(seed):
        env = OrderbookEnv(busy_tapes)
        observation, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = [observation]
        rewards = []
        for _ in range(40):
            action = int(rng.choice(np.flatnonzero(info["action_mask"])))
            observation, reward, terminated, truncated, info = env.step(action)
            trace.append(observation)
            rewards.append(reward)
            if terminated or truncated:
                observation, info = env.reset()
        return np.array(trace), rewards

    (trace, rewards), (again, rewards_again) = run(5), run(5)
    np.testing.assert_array_equal(trace, again)
    assert rewards == rewards_again
    other, _ = run(6)
    assert not np.array_equal(trace, other)  # the seed matters: it picks the episodes


def _replayed(env):
    """The market view the episode's exchange replays (shared between copies)."""
    exchange = env._exchange
    return exchange._market if env._compiled else exchange._replay(env._ticker).market


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_copies_share_each_tape_replay_but_not_their_state(busy_tapes, compiled):
    def random_agent(seed):
        env = OrderbookEnv(busy_tapes, compiled=compiled)
        observation, info = env.reset(seed=seed, options={"episode": 0})
        rng = np.random.default_rng(seed)
        while True:
            action = int(rng.choice(np.flatnonzero(info["action_mask"])))
            observation, reward, terminated, truncated, info = env.step(action)
            yield env, observation, reward, info["portfolio_value"]
            if terminated or truncated:
                return

    def alone(seed):
        return [(observation.tobytes(), reward, value) for _, observation, reward, value in random_agent(seed)]

    expected = {seed: alone(seed) for seed in (1, 2)}
    first, second = random_agent(1), random_agent(2)
    interleaved = {1: [], 2: []}
    for (env_a, obs_a, reward_a, value_a), (env_b, obs_b, reward_b, value_b) in zip(first, second):
        assert _replayed(env_a) is _replayed(env_b)
        interleaved[1].append((obs_a.tobytes(), reward_a, value_a))
        interleaved[2].append((obs_b.tobytes(), reward_b, value_b))
    assert interleaved == expected  # one copy's orders never touch the other's replay


def test_a_dropped_tape_leaves_the_shared_replay_cache():
    import gc
    import weakref

    from adapters.gym_env.orderbook_env import _SHARED_ROWS

    env = OrderbookEnv([tape(quiet_market())])
    env.reset(seed=0)
    gone = weakref.ref(env.tapes[0])
    assert env.tapes[0] in _SHARED_ROWS
    del env
    gc.collect()
    assert gone() is None


def test_rewards_add_up_to_the_episode_return(busy_tapes):
    env = OrderbookEnv(busy_tapes, reward=RewardFunction(scale=1.0))
    _, info = env.reset(seed=3, options={"episode": 1})
    rng = np.random.default_rng(1)
    total, done = 0.0, False
    while not done:
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        observation, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
        assert env.observation_space.contains(observation)
    assert total == pytest.approx(info["episode_summary"]["total_return"], abs=1e-9)
    assert info["portfolio_value"] == START + round(info["episode_summary"]["total_return"] * MONEY_SCALE)


def test_reset_picks_the_requested_episode_and_refuses_a_bad_one(busy_tapes):
    env = OrderbookEnv(busy_tapes)
    _, info = env.reset(options={"episode": 2})
    assert info["episode"] == 2 and env.episode_count == 3
    with pytest.raises(ValueError, match="episode"):
        env.reset(options={"episode": 3})


def test_step_before_reset_or_after_the_end_is_an_error():
    env = OrderbookEnv([tape(quiet_market(steps=1))])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(RuntimeError, match="ended"):
        env.step(0)


def test_the_observation_never_names_a_market():
    one = OrderbookEnv([tape(quiet_market("AAA"), "AAA")]).reset(seed=0)[0]
    two = OrderbookEnv([tape(quiet_market("ZZZ"), "ZZZ")]).reset(seed=0)[0]
    np.testing.assert_array_equal(one, two)


def test_needs_tapes():
    with pytest.raises(ValueError, match="tape"):
        OrderbookEnv([])


# ---------------------------------------------------------------------------------------------
# The simulated exchange behind the environment: latency, queue, no look-ahead
# ---------------------------------------------------------------------------------------------
def test_an_order_acts_on_the_book_as_it_stands_when_it_lands():
    events = quiet_market(steps=3)
    events.insert(1, BookDelta("T", 2, 50, Side.NO, 5300, -20 * C))  # the 0.47 offer goes at 50 ms
    events.insert(2, BookDelta("T", 3, 60, Side.NO, 5200, 20 * C))  # 0.48 is offered instead
    outcome = {}
    for latency_ms in (0, 100):
        env = OrderbookEnv([tape(events)], exchange=ExchangeConfig(latency_ms=latency_ms))
        env.reset(seed=0)
        observation, *_, info = env.step(Action.BUY_YES)  # decided on row 0: a bid at its ask, 0.47
        outcome[latency_ms] = (info["position"], observation[ORDER_OFFSET + ORDER_FEATURES.index("has_resting_bid")])
    # At once, it takes the 0.47 offer; 100 ms later that offer is gone and the bid rests.
    assert outcome == {0: (10 * C, 0.0), 100: (0, 1.0)}


def test_sending_the_same_order_again_keeps_it_and_its_place_in_the_queue():
    events = quiet_market(steps=4)
    events[1:1] = [
        BookDelta("T", 2, 1200, Side.YES, 4500, 30 * C),  # joiners behind us
        PublicTrade("T", 2500, "a", 4500, 25 * C, Side.NO),  # the 20 ahead, then 5 for us
        BookDelta("T", 3, 2500, Side.YES, 4500, -25 * C),
    ]
    env = OrderbookEnv([tape(events)], actions=ActionConfig(pricing=PricingStrategy.PASSIVE))
    env.reset(seed=0)
    env.step(Action.BUY_YES)  # bid 10 at 0.45, behind the 20 there
    env.step(Action.BUY_YES)  # the same order: left working
    *_, info = env.step(Action.HOLD)
    assert info["position"] == 5 * C
    *_, info = env.step(Action.HOLD)
    assert info["orders_placed"] == 1 and info["orders_rejected"] == 0


def test_an_order_lands_on_the_book_of_its_landing_time_not_of_the_next_row():
    # Sent on row 0 with 100 ms of latency, the bid lands at 100 ms, where the 0.47 offer still
    # stands; that the offer leaves at 500 ms -- before row 1 -- must not matter.
    events = quiet_market(steps=3)
    later = events[:1] + [BookDelta("T", 2, 500, Side.NO, 5300, -20 * C)] + events[1:]
    positions = []
    for recording in (events, later):
        env = OrderbookEnv([tape(recording)], exchange=ExchangeConfig(latency_ms=100))
        env.reset(seed=0)
        *_, info = env.step(Action.BUY_YES)
        positions.append(info["position"])
    assert positions == [10 * C, 10 * C]


@pytest.mark.parametrize("latency_ms", [0, 100, 2500])
def test_nothing_after_a_row_changes_what_the_agent_saw_up_to_it(latency_ms):
    cut_ms = 30_000
    base = busy_market("M", 7)
    later = [event for event in base if event.ts_ms > cut_ms and isinstance(event, (BookDelta, PublicTrade))]
    # Another future: a seller sweeping the YES bids right after the cut, every later trade
    # tripled and every later book change a cent lower.
    sweep = [PublicTrade("M", cut_ms + 1, "sweep", 4300, 500 * C, Side.NO)]
    future = [event for event in base if event.ts_ms <= cut_ms] + sweep
    future += [
        attrs.evolve(e, count=3 * e.count) if isinstance(e, PublicTrade) else attrs.evolve(e, price=e.price - 100)
        for e in later
    ]
    future.append(base[-1])  # the resolution
    actions = np.random.default_rng(3).integers(0, 5, size=59).tolist()

    def run(events):
        env = OrderbookEnv([tape(events, "M")], exchange=ExchangeConfig(latency_ms=latency_ms))
        observation, _ = env.reset(seed=0)
        seen, rewards = [observation], []
        for action in actions:
            observation, reward, *_ = env.step(action)
            seen.append(observation)
            rewards.append(reward)
        return np.array(seen), rewards

    (seen, rewards), (seen_other, rewards_other) = run(base), run(future)
    rows = cut_ms // 1000 + 1  # rows 0..30 are stamped at or before the cut
    np.testing.assert_array_equal(seen[:rows], seen_other[:rows])
    assert rewards[: rows - 1] == rewards_other[: rows - 1]
    assert not np.array_equal(seen[rows:], seen_other[rows:])  # the future did differ


# ---------------------------------------------------------------------------------------------
# Action spaces, one order per market, one market per episode
# ---------------------------------------------------------------------------------------------
SIZED = ActionConfig(space=ActionSpace.SIZED, max_position=100 * C)


def test_the_sized_action_space_passes_the_checkers_and_masks_all_21_actions(busy_tapes):
    env = OrderbookEnv(busy_tapes, actions=SIZED)
    assert env.action_space.n == 21 == env.decoder.action_count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gymnasium_check_env(OrderbookEnv(busy_tapes, actions=SIZED), skip_render_check=True)
    sb3_check_env(OrderbookEnv(busy_tapes, actions=SIZED), warn=False)
    _, info = env.reset(seed=0)
    assert info["action_mask"].shape == (21,) and env.action_masks().tolist() == info["action_mask"].tolist()
    names = env.decoder.action_names
    legal = {names[action] for action in np.flatnonzero(info["action_mask"])}
    assert "BUY_YES_100" in legal and not any(name.startswith("SELL") for name in legal)  # flat: nothing to sell


def test_a_sized_action_places_its_size():
    env = OrderbookEnv([tape(quiet_market())], actions=SIZED, exchange=ExchangeConfig(latency_ms=0))
    env.reset(seed=0)
    *_, info = env.step(env.decoder.action_names.index("BUY_YES_20"))
    assert info["position"] == 20 * C  # all of it at the 0.47 offer of 20
    *_, info = env.step(env.decoder.action_names.index("SELL_YES_5"))
    assert info["position"] == 15 * C
    env.step(0)
    *_, info = env.step(0)  # the fourth and last decision
    assert info["action_counts"][env.decoder.action_names.index("BUY_YES_20")] == 1 and len(info["action_counts"]) == 21


def test_an_environment_refuses_a_model_of_the_other_action_space(busy_tapes):
    five, sized = OrderbookEnv(busy_tapes), OrderbookEnv(busy_tapes, actions=SIZED)
    with pytest.raises(ActionSpaceMismatch, match="21 actions.*'single-size'"):
        five.decoder.check_model(sized.action_space.n, model="a sized model")
    with pytest.raises(ActionSpaceMismatch, match="5 actions.*'sized'"):
        sized.decoder.check_model(five.action_space.n)


def test_a_new_decision_replaces_the_markets_open_order():
    env = OrderbookEnv([tape(quiet_market(steps=4))], actions=ActionConfig(pricing=PricingStrategy.PASSIVE))
    env.reset(seed=0)
    env.step(Action.BUY_YES)  # a bid at 0.45 rests
    assert (env.open_order.side, env.open_order.price) == (OrderSide.BID, 4500)
    first = env.open_order
    env.step(Action.BUY_NO)  # changed its mind: NO at its bid 0.53, an ask at 0.47
    assert not first.status.is_open
    assert (env.open_order.side, env.open_order.price) == (OrderSide.ASK, 4700)
    assert first.status is OrderStatus.CANCELED  # one order per market: the bid was pulled
    *_, info = env.step(Action.HOLD)  # holding leaves it working
    assert env.open_order.side is OrderSide.ASK and info["position"] == 0


def test_an_episode_is_one_market_from_its_first_row_to_its_last():
    a = [MarketScheduled("A", 0, close_ms=20_000), *busy_market("A", 1, seconds=20)]
    b = busy_market("B", 2, seconds=50)
    session = sorted(a + b, key=lambda event: event.ts_ms)
    tapes = compile_session(session, session_id=1, config=ReplayConfig(step_ms=1000, depth_levels=5))
    both = OrderbookEnv(tapes)
    alone = OrderbookEnv([tape(a, "A")])
    time_left = MARKET_FEATURES.index("time_left_hour")
    actions = np.random.default_rng(0).integers(0, 5, size=20).tolist()
    runs = []
    for env, options in ((both, {"episode": 0}), (alone, None)):
        observation, _ = env.reset(seed=3, options=options)
        seen, done = [observation], False
        for action in actions:
            assert not done
            observation, _, terminated, truncated, _ = env.step(action)
            seen.append(observation)
            done = terminated or truncated
        assert done  # 20 seconds: rows at 0, 1, ..., 20 s -- 20 decisions, then the episode is over
        runs.append(np.array(seen))
    np.testing.assert_array_equal(runs[0], runs[1])  # market B never shows in A's episode
    assert runs[0][0, time_left] == pytest.approx(20 / 3600) and runs[0][-1, time_left] == 0.0
