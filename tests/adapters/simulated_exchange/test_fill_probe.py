"""The fill probe: one order, alone, followed for a horizon. Times in ms from sending."""

import pytest

from adapters.simulated_exchange import ExchangeConfig, ProbabilisticQueueModel, SimulatedFillProbe
from application.replay import ReplayConfig, compile_market
from domain.events import BookDelta, BookSnapshot, MarketResolved, PublicTrade
from domain.fees import FeeSchedule
from domain.orders import OrderRequest, OrderSide
from domain.ports import FillProbe, ProbeFill
from domain.values import ONE_CONTRACT, Side

C = ONE_CONTRACT


def tape(*events):
    recorded = [
        BookSnapshot("T", 1, 0, yes=((4500, 20 * C),), no=((5300, 5 * C),)),  # bid 0.45, ask 0.47 x 5
        *events,
        MarketResolved("T", 10_000, Side.YES),
    ]
    return compile_market(recorded, ticker="T", session_id=3, config=ReplayConfig(step_ms=1000))


def probe(latency_ms=100, **kwargs):
    return SimulatedFillProbe(ExchangeConfig(latency_ms=latency_ms, **kwargs), FeeSchedule.kalshi_standard())


def bid(price, count):
    return OrderRequest("T", OrderSide.BID, price, count, "probe")


def test_it_is_the_fill_probe_port_and_names_its_fill_model():
    assert isinstance(probe(), FillProbe)
    assert probe().name == "risk-averse, 100 ms"
    assert probe(0, queue_model=ProbabilisticQueueModel()).name == "probabilistic-power-2, 0 ms"


def test_an_aggressive_order_fills_on_arrival_partly_as_a_taker_and_the_rest_later():
    # 5 at the ask on arrival (100 ms); the other 5 rest at 0.47 and are met by a sale at 0.46.
    sale = PublicTrade("T", 2300, "t", 4600, 9 * C, Side.NO)
    fill = probe().probe(tape(sale), bid(4700, 10 * C), row=1, horizon_ms=5000)
    assert fill == ProbeFill(10 * C, 10 * C, 5 * C, first_fill_ms=100, full_fill_ms=1300)


def test_a_passive_order_behind_the_queue_does_not_fill_and_the_horizon_ends_the_probe():
    events = (
        PublicTrade("T", 1500, "a", 4500, 15 * C, Side.NO),  # 15 of the 20 ahead
        PublicTrade("T", 4500, "b", 4400, 10 * C, Side.NO),  # through our bid, but after the horizon
    )
    early = probe().probe(tape(*events), bid(4500, 10 * C), row=0, horizon_ms=3000)
    assert early == ProbeFill(10 * C, 0, 0, None, None)
    late = probe().probe(tape(*events), bid(4500, 10 * C), row=0, horizon_ms=5000)
    assert late == ProbeFill(10 * C, 10 * C, 0, first_fill_ms=4500, full_fill_ms=4500)


def test_probes_do_not_share_consumed_liquidity():
    one = probe().probe(tape(), bid(4700, 5 * C), row=0, horizon_ms=1000)
    two = probe().probe(tape(), bid(4700, 5 * C), row=1, horizon_ms=1000)
    assert one.taker_filled == two.taker_filled == 5 * C


def test_a_probe_needs_a_row_with_a_step_after_it():
    with pytest.raises(ValueError, match="row"):
        probe().probe(tape(), bid(4700, 5 * C), row=10, horizon_ms=1000)
