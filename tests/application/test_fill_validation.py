"""Fill-rate validation on a fake fill model: which probes are sent, and how they add up."""

import attrs
import pytest

from application.fill_validation import (
    FillRate,
    ProbeSettings,
    format_fill_report,
    measure_fill_rates,
    validate_fills,
)
from application.replay import ReplayConfig, compile_market
from domain.actions import PricingStrategy
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved
from domain.fees import FeeSchedule
from domain.market_tape import MarketTape
from domain.orders import OrderRequest, OrderSide
from domain.ports import ProbeFill, SessionInfo, SessionNotFound
from domain.values import ONE_CONTRACT, Side

C = ONE_CONTRACT
FEES = FeeSchedule.kalshi_standard()


def events(ticker="T", seconds=90):
    """Bid 0.45, ask 0.48 throughout (mid 0.46 for a bid, 0.47 for an ask), then resolution."""
    return [
        BookSnapshot(ticker, 1, 0, yes=((4500, 20 * C),), no=((5200, 20 * C),)),
        BookDelta(ticker, 2, 10_000, Side.YES, 4500, C),
        MarketResolved(ticker, seconds * 1000, Side.YES),
    ]


def tape(ticker="T", seconds=90) -> MarketTape:
    return compile_market(events(ticker, seconds), ticker=ticker, session_id=1, config=ReplayConfig(step_ms=1000))


@attrs.define
class FakeProbe:
    """Fills aggressive buys on arrival and passive ones half, after 4 s; never the mid."""

    name: str = "fake"
    sent: list[tuple[str, int, OrderRequest, int]] = attrs.field(factory=list)

    def probe(self, tape: MarketTape, request: OrderRequest, *, row: int, horizon_ms: int) -> ProbeFill:
        self.sent.append((tape.ticker, row, request, horizon_ms))
        at_the_ask = request.price == (4800 if request.side is OrderSide.BID else 4500)
        at_the_bid = request.price == (4500 if request.side is OrderSide.BID else 4800)
        if at_the_ask:
            return ProbeFill(request.count, request.count, request.count, 100, 100)
        if at_the_bid:
            waited = 4000 if request.side is OrderSide.BID else 2000
            return ProbeFill(request.count, request.count // 2, 0, waited, None)
        return ProbeFill(request.count, 0, 0, None, None)


def test_probes_buy_yes_and_no_every_interval_at_each_strategys_price():
    fake = FakeProbe()
    settings = ProbeSettings(order_size=5 * C, every_ms=30_000, horizon_ms=20_000)
    measure_fill_rates([tape()], [fake], settings, fees=FEES)
    sent = {(row, request.side, request.price) for _, row, request, _ in fake.sent}
    rows = (0, 30, 60)  # 90 s of market: every 30 s, each with a step after it
    assert sent == {
        (row, side, price)
        for row in rows
        for side, price in [
            (OrderSide.BID, 4500), (OrderSide.ASK, 4800),  # passive: buy YES at the bid, NO at 1 - ask
            (OrderSide.BID, 4600), (OrderSide.ASK, 4700),  # mid, rounded away from the market
            (OrderSide.BID, 4800), (OrderSide.ASK, 4500),  # aggressive: at the ask / the bid
        ]
    }
    assert {request.count for *_, request, _ in fake.sent} == {5 * C}
    assert {horizon for *_, horizon in fake.sent} == {20_000}


def test_fill_rates_add_up_per_model_and_strategy():
    probes = [FakeProbe("one"), FakeProbe("two")]
    report = measure_fill_rates([tape("A"), tape("B")], probes, ProbeSettings(), fees=FEES)
    assert [(rate.model, rate.strategy.value) for rate in report.rates] == [
        (model, strategy) for model in ("one", "two") for strategy in ("passive", "mid", "aggressive")
    ]
    passive = report.rate("one", "passive")
    assert passive.orders == 2 * 3 * 2  # markets x probe rows x sides
    assert (passive.fill_rate, passive.full_fill_rate, passive.contract_fill_rate) == (1.0, 0.0, 0.5)
    assert passive.taker_share == 0.0 and passive.mean_first_fill_ms == 3000 and passive.median_first_fill_ms == 3000
    aggressive = report.rate("one", PricingStrategy.AGGRESSIVE)
    assert (aggressive.fill_rate, aggressive.taker_share, aggressive.mean_full_fill_ms) == (1.0, 1.0, 100)
    mid = report.rate("two", "mid")
    assert (mid.fill_rate, mid.mean_first_fill_ms, mid.mean_full_fill_ms) == (0.0, None, None)
    with pytest.raises(KeyError):
        report.rate("three", "mid")


def test_the_report_is_a_table_with_one_line_per_model_and_strategy():
    report = measure_fill_rates([tape()], [FakeProbe("risk-averse, 100 ms")], ProbeSettings(), fees=FEES)
    text = format_fill_report(report)
    assert text.splitlines()[0] == (
        "Fill rates on 1 markets: buys of YES and of NO, 10 contracts, one every 30 s, followed for 60 s"
    )
    passive = next(line for line in text.splitlines() if "passive" in line)
    assert passive.split() == [
        "risk-averse,", "100", "ms", "passive", "6", "100%", "0%", "50%", "0%", "3.0", "3.0", "-"
    ]


def test_rates_of_nothing_are_zero_not_errors():
    empty = FillRate("m", PricingStrategy.MID, 0, 0, 0, 0, 0, 0, 0, (), ())
    rates = (empty.fill_rate, empty.contract_fill_rate, empty.taker_share, empty.mean_first_fill_ms)
    assert rates == (0.0, 0.0, 0.0, None)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="horizon_ms"):
        ProbeSettings(horizon_ms=0)
    with pytest.raises(ValueError, match="strategy"):
        ProbeSettings(strategies=())
    with pytest.raises(ValueError):
        ProbeSettings(strategies=("sideways",))
    with pytest.raises(ValueError, match="fill model"):
        measure_fill_rates([tape()], [], ProbeSettings(), fees=FEES)


class FakeStore:
    def __init__(self, sessions: dict[int, list[MarketEvent]]) -> None:
        self.sessions = sessions

    async def get_session(self, session_id: int) -> SessionInfo:
        if session_id not in self.sessions:
            raise SessionNotFound(session_id)
        return SessionInfo(session_id, ("T",), "test", 0, None, 1, 1, 0)

    async def read_events(self, session_id: int) -> list[MarketEvent]:
        return self.sessions[session_id]


async def test_the_use_case_reads_the_sessions_and_measures():
    fake = FakeProbe()
    store = FakeStore({1: events("A"), 2: events("B")})
    report = await validate_fills(
        store, [1, 2], probes=[fake], settings=ProbeSettings(), fees=FEES, replay=ReplayConfig(step_ms=1000)
    )
    assert report.markets == 2 and {ticker for ticker, *_ in fake.sent} == {"A", "B"}
    with pytest.raises(SessionNotFound):
        await validate_fills(store, [3], probes=[fake], settings=ProbeSettings(), fees=FEES, replay=ReplayConfig())
    with pytest.raises(ValueError, match="no market"):
        await validate_fills(
            FakeStore({4: []}), [4], probes=[fake], settings=ProbeSettings(), fees=FEES, replay=ReplayConfig()
        )
