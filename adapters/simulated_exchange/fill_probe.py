"""The fill-probe port on the simulated exchange: one order, alone in a replayed market.

Each probe gets a fresh account (cash enough for any probe) and a fresh exchange, so probes
never meet each other's consumed liquidity or queue; the probabilistic queue model's generator
is seeded from the probe's seed, row and order, so a report is reproducible.
"""

from __future__ import annotations

import random

from adapters.simulated_exchange.exchange import ExchangeConfig, SimulatedExchange
from adapters.simulated_exchange.replayed_market import ReplayedMarket
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.market_tape import MarketTape
from domain.orders import OrderRequest
from domain.ports import ProbeFill
from domain.values import MONEY_SCALE

_PROBE_CASH = 1_000_000 * MONEY_SCALE  # no probe is ever refused for cash


class SimulatedFillProbe:
    def __init__(self, config: ExchangeConfig, fees: FeeSchedule, *, seed: int = 0, name: str | None = None) -> None:
        self.config = config
        self.fees = fees
        self.seed = seed
        self._name = name or f"{config.queue_model.name}, {config.latency_ms} ms"
        self._markets: dict[int, tuple[MarketTape, ReplayedMarket]] = {}  # by id(tape), tape kept alive

    @property
    def name(self) -> str:
        return self._name

    def probe(self, tape: MarketTape, request: OrderRequest, *, row: int, horizon_ms: int) -> ProbeFill:
        market = self._market(tape)
        if not 0 <= row < market.last_row:
            last = market.last_row - 1
            raise ValueError(f"{tape.ticker}: a probe needs a row with a step after it, 0..{last}, got {row}")
        if horizon_ms <= 0:
            raise ValueError(f"horizon_ms must be positive, got {horizon_ms}")
        rng = random.Random(f"{self.seed}/{tape.session_id}/{tape.ticker}/{row}/{request.side}/{request.price}")
        exchange = SimulatedExchange(Ledger(_PROBE_CASH), self.fees, config=self.config, rng=rng, id_prefix="probe")
        exchange.open_market(market)
        sent = market.times[row]
        deadline = sent + horizon_ms
        order = exchange.submit(request, ts_ms=sent)
        filled = taker = 0
        first = full = None
        while row < market.last_row and market.times[row] < deadline and order.status.is_open:
            row += 1
            for execution in exchange.advance(tape.ticker, row):
                fill = execution.fill
                if fill.ts_ms > deadline:
                    break
                filled += fill.count
                taker += fill.count if fill.is_taker else 0
                if first is None:
                    first = fill.ts_ms - sent
                if filled == request.count:
                    full = fill.ts_ms - sent
        return ProbeFill(request.count, filled, taker, first, full, rejected=bool(exchange.rejections))

    def _market(self, tape: MarketTape) -> ReplayedMarket:
        held = self._markets.get(id(tape))
        if held is None or held[0] is not tape:
            held = self._markets[id(tape)] = (tape, ReplayedMarket(tape))
        return held[1]
