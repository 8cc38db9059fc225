"""Fill-rate validation: how often passive, mid and aggressive orders fill, measured on replays.

Fill rates are an outcome of the fill model, not an input to it. This use case measures them:
on every market of the chosen sessions, every ``every_ms`` of market time, it sends probing
orders -- a buy of YES and a buy of NO, priced by each pricing strategy of the action decoder
(``domain.actions``: passive at the bid, mid, aggressive at the ask) -- through each fill model
(a :class:`~domain.ports.FillProbe`: the simulated exchange with one queue model), each probe
alone in a fresh account, and follows it for ``horizon_ms``. The report gives, per fill model
and strategy, the share of orders that filled at all and in full, the share of contracts filled,
how much of it crossed on arrival (taker), and the time to the first and to the full fill.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import attrs

from application.replay import ReplayConfig, load_tapes
from domain.actions import Action, ActionConfig, ActionDecoder, PricingStrategy
from domain.fees import FeeSchedule
from domain.market_tape import MarketTape
from domain.orders import OrderRequest
from domain.ports import FillProbe, OrderbookStore, ProbeFill
from domain.values import ONE_CONTRACT, ONE_DOLLAR


def _positive(_instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _strategies(value: Sequence[PricingStrategy | str]) -> tuple[PricingStrategy, ...]:
    strategies = tuple(PricingStrategy(strategy) for strategy in value)
    if not strategies:
        raise ValueError("at least one pricing strategy is needed")
    return strategies


@attrs.frozen
class ProbeSettings:
    """What to probe with: order size (count units), how often and for how long (ms), and how."""

    order_size: int = attrs.field(default=10 * ONE_CONTRACT, validator=_positive)
    every_ms: int = attrs.field(default=30_000, validator=_positive)
    horizon_ms: int = attrs.field(default=60_000, validator=_positive)
    strategies: tuple[PricingStrategy, ...] = attrs.field(
        default=(PricingStrategy.PASSIVE, PricingStrategy.MID, PricingStrategy.AGGRESSIVE), converter=_strategies
    )


@attrs.frozen
class FillRate:
    """One fill model and one pricing strategy over every probe. Times in ms."""

    model: str
    strategy: PricingStrategy
    orders: int
    filled_orders: int  # filled at least in part
    full_orders: int  # filled in full
    rejected_orders: int
    contracts_ordered: int  # count units
    contracts_filled: int
    taker_filled: int  # count units filled on arrival, crossing the book
    first_fill_ms: tuple[int, ...]  # per order that filled at all
    full_fill_ms: tuple[int, ...]  # per order that filled in full

    @property
    def fill_rate(self) -> float:
        return self.filled_orders / self.orders if self.orders else 0.0

    @property
    def full_fill_rate(self) -> float:
        return self.full_orders / self.orders if self.orders else 0.0

    @property
    def contract_fill_rate(self) -> float:
        return self.contracts_filled / self.contracts_ordered if self.contracts_ordered else 0.0

    @property
    def taker_share(self) -> float:
        return self.taker_filled / self.contracts_filled if self.contracts_filled else 0.0

    @property
    def mean_first_fill_ms(self) -> float | None:
        return statistics.fmean(self.first_fill_ms) if self.first_fill_ms else None

    @property
    def median_first_fill_ms(self) -> float | None:
        return statistics.median(self.first_fill_ms) if self.first_fill_ms else None

    @property
    def mean_full_fill_ms(self) -> float | None:
        return statistics.fmean(self.full_fill_ms) if self.full_fill_ms else None

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "strategy": self.strategy.value,
            "orders": self.orders,
            "fill_rate": self.fill_rate,
            "full_fill_rate": self.full_fill_rate,
            "contract_fill_rate": self.contract_fill_rate,
            "taker_share": self.taker_share,
            "rejected_orders": self.rejected_orders,
            "mean_first_fill_ms": self.mean_first_fill_ms,
            "median_first_fill_ms": self.median_first_fill_ms,
            "mean_full_fill_ms": self.mean_full_fill_ms,
        }


@attrs.frozen
class FillReport:
    markets: int
    settings: ProbeSettings
    rates: tuple[FillRate, ...]  # per model, then per strategy, in the order given

    def rate(self, model: str, strategy: PricingStrategy | str) -> FillRate:
        strategy = PricingStrategy(strategy)
        for rate in self.rates:
            if rate.model == model and rate.strategy is strategy:
                return rate
        raise KeyError(f"no fill rate for model {model!r} and strategy {strategy.value!r}")


def measure_fill_rates(
    tapes: Sequence[MarketTape], probes: Sequence[FillProbe], settings: ProbeSettings, *, fees: FeeSchedule
) -> FillReport:
    """Probe every tape with every fill model and pricing strategy (see the module docstring)."""
    if not probes:
        raise ValueError("at least one fill model (probe) is needed")
    rates = []
    for probe in probes:
        for strategy in settings.strategies:
            decoder = ActionDecoder(
                ActionConfig(order_size=settings.order_size, pricing=strategy, max_position=settings.order_size), fees
            )
            fills = [
                probe.probe(tape, request, row=row, horizon_ms=settings.horizon_ms)
                for tape in tapes
                for row in _probe_rows(tape, settings.every_ms)
                for request in _requests(decoder, tape, row)
            ]
            rates.append(_fill_rate(probe.name, strategy, fills))
    return FillReport(len(tapes), settings, tuple(rates))


async def validate_fills(
    store: OrderbookStore,
    session_ids: Sequence[int],
    *,
    probes: Sequence[FillProbe],
    settings: ProbeSettings,
    fees: FeeSchedule,
    replay: ReplayConfig,
    cache_dir: Path | None = None,
) -> FillReport:
    """The use case: load the sessions' tapes (from the cache when it has them) and measure."""
    tapes = await load_tapes(store, session_ids, config=replay, cache_dir=cache_dir)
    if not tapes:
        raise ValueError(f"sessions {list(session_ids)} hold no market with a snapshot and a step to replay")
    return measure_fill_rates(tapes, probes, settings, fees=fees)


def format_fill_report(report: FillReport) -> str:
    """The report as a fixed-width text table."""
    settings = report.settings
    width = max([len("fill model"), *(len(rate.model) for rate in report.rates)]) + 2
    header = (
        f"{'fill model':<{width}}{'pricing':<12}{'orders':>7}{'filled':>8}{'full':>7}{'contracts':>10}"
        f"{'taker':>7}{'first fill s':>13}{'median s':>10}{'full fill s':>12}"
    )
    lines = [
        f"Fill rates on {report.markets} markets: buys of YES and of NO, {settings.order_size / ONE_CONTRACT:g} "
        f"contracts, one every {settings.every_ms / 1000:g} s, followed for {settings.horizon_ms / 1000:g} s",
        header,
        "-" * len(header),
    ]
    for rate in report.rates:
        lines.append(
            f"{rate.model:<{width}}{rate.strategy.value:<12}{rate.orders:>7d}{_percent(rate.fill_rate):>8}"
            f"{_percent(rate.full_fill_rate):>7}{_percent(rate.contract_fill_rate):>10}{_percent(rate.taker_share):>7}"
            f"{_seconds(rate.mean_first_fill_ms):>13}{_seconds(rate.median_first_fill_ms):>10}"
            f"{_seconds(rate.mean_full_fill_ms):>12}"
        )
    lines.append(
        "filled: orders with any fill; full: filled in full; contracts: share of contracts filled; "
        "taker: share of the filled contracts that crossed on arrival; times from sending the order."
    )
    return "\n".join(lines)


def _probe_rows(tape: MarketTape, every_ms: int) -> list[int]:
    """Rows at least ``every_ms`` apart, from the first, each with a step after it."""
    rows = []
    next_ms = int(tape.times[0])
    for row, time_ms in enumerate(tape.times[:-1].tolist()):
        if time_ms >= next_ms:
            rows.append(row)
            next_ms = time_ms + every_ms
    return rows


def _requests(decoder: ActionDecoder, tape: MarketTape, row: int) -> list[OrderRequest]:
    yes_bid = int(tape.bid_prices[row, 0, 0])
    no_bid = int(tape.bid_prices[row, 1, 0])
    yes_ask = ONE_DOLLAR - no_bid if no_bid >= 0 else -1
    requests = []
    for action in (Action.BUY_YES, Action.BUY_NO):
        request = decoder.decode(
            action, ticker=tape.ticker, yes_bid=yes_bid, yes_ask=yes_ask, position=0, client_order_id="probe"
        )
        if request is not None:  # no price on an empty side: nothing to probe there
            requests.append(request)
    return requests


def _fill_rate(model: str, strategy: PricingStrategy, fills: Sequence[ProbeFill]) -> FillRate:
    return FillRate(
        model=model,
        strategy=strategy,
        orders=len(fills),
        filled_orders=sum(1 for fill in fills if fill.filled),
        full_orders=sum(1 for fill in fills if fill.full_fill_ms is not None),
        rejected_orders=sum(1 for fill in fills if fill.rejected),
        contracts_ordered=sum(fill.count for fill in fills),
        contracts_filled=sum(fill.filled for fill in fills),
        taker_filled=sum(fill.taker_filled for fill in fills),
        first_fill_ms=tuple(fill.first_fill_ms for fill in fills if fill.first_fill_ms is not None),
        full_fill_ms=tuple(fill.full_fill_ms for fill in fills if fill.full_fill_ms is not None),
    )


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"


def _seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}"
