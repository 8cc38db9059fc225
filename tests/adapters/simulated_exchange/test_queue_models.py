"""Queue models on their own: positions in count units, hand-computed."""

import math
import random

import pytest

from adapters.simulated_exchange import (
    LogProbability,
    PowerProbability,
    ProbabilisticQueueModel,
    RiskAverseQueueModel,
    queue_model_named,
)
from adapters.simulated_exchange.queue_models import PAIRING_MS
from domain.values import ONE_CONTRACT

C = ONE_CONTRACT


class FixedDraw:
    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


def test_an_order_joins_behind_what_is_at_its_level():
    position = RiskAverseQueueModel().join(20 * C, 20 * C)
    assert (position.ahead, position.level, position.traded) == (20 * C, 20 * C, 0)
    assert RiskAverseQueueModel().join(20 * C, -5).ahead == 0


@pytest.mark.parametrize("model", [RiskAverseQueueModel(), ProbabilisticQueueModel()])
def test_a_trade_at_our_price_eats_the_queue_ahead_first_then_reaches_us(model):
    position, rng = model.join(20 * C, 20 * C), random.Random(0)
    assert model.on_trade(position, 15 * C, rng) == 0 and position.ahead == 5 * C
    assert model.on_trade(position, 8 * C, rng) == 3 * C and position.ahead == 0
    assert model.on_trade(position, 4 * C, rng) == 4 * C


def test_risk_averse_the_queue_ahead_only_shrinks_to_stay_within_the_level():
    model, rng = RiskAverseQueueModel(), random.Random(0)
    position = model.join(20 * C, 20 * C)
    model.on_level(position, 50 * C, rng)  # joiners behind us
    assert position.ahead == 20 * C
    model.on_level(position, 40 * C, rng)  # a cancellation: never credited
    assert position.ahead == 20 * C
    model.on_level(position, 12 * C, rng)  # the level is smaller than what we thought ahead
    assert position.ahead == 12 * C and position.level == 12 * C


def test_probabilistic_a_decrease_the_trades_explain_is_not_a_cancellation():
    model = ProbabilisticQueueModel()
    position = model.join(20 * C, 20 * C)
    model.on_level(position, 40 * C, FixedDraw(0.99))  # 20 join behind
    model.on_trade(position, 10 * C, FixedDraw(0.99))
    model.on_level(position, 30 * C, FixedDraw(0.99))  # the trade's own decrease
    assert position.ahead == 10 * C and position.traded == 0


@pytest.mark.parametrize(("draw", "ahead"), [(0.89, 20 * C), (0.91, 10 * C)])
def test_probabilistic_a_cancellation_comes_from_behind_with_the_power_probability(draw, ahead):
    model = ProbabilisticQueueModel(PowerProbability(2))
    position = model.join(10 * C, 20 * C)  # 20 ahead of us ...
    position.level = 80 * C  # ... and 60 behind
    # p_behind = 60^2 / (60^2 + 20^2) = 0.9
    model.on_level(position, 70 * C, FixedDraw(draw))
    assert position.ahead == ahead


def test_probabilistic_what_behind_cannot_cover_comes_from_ahead():
    model = ProbabilisticQueueModel()
    position = model.join(25 * C, 20 * C)  # 20 ahead, 5 behind
    model.on_level(position, 10 * C, FixedDraw(0.0))  # 15 cancel "from behind": only 5 were there
    assert position.ahead == 10 * C


def test_probability_functions():
    assert PowerProbability(2).behind(20.0, 20.0) == 0.5
    assert PowerProbability(2).behind(20.0, 60.0) == pytest.approx(0.9)
    assert PowerProbability(1).behind(10.0, 30.0) == pytest.approx(0.75)
    assert PowerProbability(3).behind(0.0, 5.0) == 1.0 and PowerProbability(3).behind(5.0, 0.0) == 0.0
    assert LogProbability().behind(10.0, 10.0) == 0.5
    assert LogProbability().behind(1.0, 9.0) == pytest.approx(math.log(10) / (math.log(10) + math.log(2)))
    assert LogProbability().behind(7.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="positive"):
        PowerProbability(0)


def test_models_are_selected_by_name_and_say_their_name():
    for name in ("risk-averse", "probabilistic-log", "probabilistic-power-2", "probabilistic-power-0.5"):
        assert queue_model_named(name).name == name
    assert queue_model_named("probabilistic-power-3") == ProbabilisticQueueModel(PowerProbability(3.0))
    for bad in ("fifo", "probabilistic-power-", "probabilistic-power-0", "probabilistic-power-x"):
        with pytest.raises(ValueError, match="unknown queue model"):
            queue_model_named(bad)


@pytest.mark.parametrize("model", [RiskAverseQueueModel(), ProbabilisticQueueModel()])
@pytest.mark.parametrize("trade_first", [True, False])
def test_a_trade_and_the_decrease_it_causes_count_once_in_either_order(model, trade_first):
    """20 ahead, a 15-lot trade at our price and the level's 20 -> 5: nothing reaches us, 5 stay
    ahead, whichever of the two the recording shows first."""
    position, rng = model.join(20 * C, 20 * C), FixedDraw(0.0)
    if trade_first:
        reached = model.on_trade(position, 15 * C, rng, 1000)
        model.on_level(position, 5 * C, rng, 1000)
    else:
        model.on_level(position, 5 * C, rng, 1000)  # a cancellation for now: the queue clamped to 5
        assert position.ahead == 5 * C and (position.unexplained, position.removed) == (15 * C, 15 * C)
        reached = model.on_trade(position, 15 * C, rng, 1000)
    assert reached == 0 and position.ahead == 5 * C
    assert (position.traded, position.unexplained, position.removed) == (0, 0, 0)
    assert model.on_trade(position, 8 * C, rng, 3000) == 3 * C  # a later trade: 5 ahead, then 3 for us


@pytest.mark.parametrize("trade_first", [True, False])
def test_risk_averse_a_trade_pairs_with_part_of_a_decrease_and_the_rest_stays_a_cancellation(trade_first):
    model, rng = RiskAverseQueueModel(), random.Random(0)
    position = model.join(30 * C, 10 * C)  # 10 ahead, 20 behind
    if trade_first:
        reached = model.on_trade(position, 12 * C, rng, 0)
        model.on_level(position, 8 * C, rng, 0)  # 12 traded + 10 cancelled
    else:
        model.on_level(position, 8 * C, rng, 0)
        reached = model.on_trade(position, 12 * C, rng, 0)
    assert reached == 2 * C and position.ahead == 0


def test_a_decrease_and_a_trade_too_far_apart_do_not_pair():
    model, rng = RiskAverseQueueModel(), random.Random(0)
    position = model.join(20 * C, 20 * C)
    model.on_level(position, 5 * C, rng, 1000)  # a cancellation (risk-averse: the clamp)
    assert model.on_trade(position, 15 * C, rng, 1000 + PAIRING_MS + 1) == 10 * C  # a trade of its own


def test_the_level_growing_in_between_ends_the_pairing():
    model, rng = RiskAverseQueueModel(), random.Random(0)
    position = model.join(20 * C, 20 * C)
    model.on_level(position, 5 * C, rng, 0)
    model.on_level(position, 9 * C, rng, 0)
    assert (position.unexplained, position.removed) == (0, 0)
    assert model.on_trade(position, 15 * C, rng, 0) == 10 * C
