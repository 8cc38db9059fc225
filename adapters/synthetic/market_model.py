"""SYNTHETIC order flow for binary markets -- generated data, not recordings of any real market.

Nothing here comes from Kalshi. This is a seeded, deterministic simulation used to exercise the
system (ingestion, storage, replay, training) without network access. Agents trained on it
learn about this model, not about real markets. Its tickers say so: ``SYN-<seed>-M<i>``.

The model, per market:

* **Latent probability.** A hidden YES probability ``p`` does a random walk in logit space
  (``volatility`` per square-root second) with occasional jumps (``jump_rate_per_hour``, normal
  jumps of ``jump_size`` in logit). At expiry the market resolves YES with probability ``p``.
* **Market makers** (``makers`` of them) quote bids on YES around ``p`` and bids on NO around
  ``1 - p``, ``maker_half_spread`` away from fair value (maker ``m`` one more tick out per
  ``m``), ``maker_levels`` levels deep. A refresh cancels the quotes that left the target band
  and tops up the ones that were taken.
* **Noise traders** post limit bids near the touch (sometimes inside the spread) and cancel
  part or all of them later.
* **Marketable orders** cross the spread: mostly from traders who see that ``p`` is beyond the
  ask, otherwise random. They consume the opposite side's bids best-first (FIFO within a
  level) up to a limit a few ticks through the touch, printing one ``PublicTrade`` per level
  followed by the matching negative ``BookDelta``; part of them rest the unfilled remainder.

The exchange side is a real :class:`domain.orderbook.OrderBook` plus a FIFO queue of
(owner, size) per level. Every add is checked against the other side so the book is never
crossed or locked (YES bid + NO bid < $1); cancels and fills never take more than rests.

**Planted edge** (off by default: ``edge_strength=0``). For learning tests: the increments of
the latent walk are drawn ``edge_lead_steps`` steps ahead, and with ``edge_strength`` k > 0 an
*informed quoter* joins the best bid of the side the latent is about to move toward, sized
``3 * maker_size * k * |tanh(z)|`` contracts (z: the upcoming move in standard deviations), and
withdraws when the view flips. Top-of-book imbalance then leads the latent probability -- and
the price, which follows it -- by about ``edge_lead_steps`` steps, so an agent CAN learn
something. The quoter joins, never improves, the bid: it moves no price by itself. Whether the
edge pays after the spread depends on ``volatility`` and ``edge_lead_steps``: the upcoming move
must beat the spread. Without the knob the latent walk is a martingale that nothing in the
book predicts.

Tick structures: ``linear_cent`` ($0.01), ``deci_cent`` ($0.001), ``tapered_deci_cent``
($0.001 below $0.10 and above $0.90, $0.01 between). Timestamps are integer milliseconds from
``start_ms``, exponential inter-arrival times at ``events_per_second`` actions per market,
floored to ``timestamp_granularity_ms``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterator

import attrs

from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.orderbook import OrderBook
from domain.ticks import PRICE_LEVEL_STRUCTURES
from domain.values import LADDER_SIZE, ONE_CONTRACT, ONE_DOLLAR, Side

TICK_STRUCTURES = PRICE_LEVEL_STRUCTURES  # the markets' price_level_structure
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

NOISE = -1  # the owner of noise traders' and takers' resting orders
_SIDES = (Side.YES, Side.NO)

# What one step of a market does, as cumulative probabilities.
_MAKER_REFRESH = 0.35
_NOISE_ADD = 0.60
_NOISE_CANCEL = 0.80  # the rest are marketable orders
_INFORMED_SHARE = 0.6  # of marketable orders, when fair value is beyond a touch
_REST_REMAINDER = 0.3  # chance a marketable order rests what it could not fill
_LOGIT_BOUND = 5.0  # p stays within about [0.7%, 99.3%]


def _positive(_instance: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _probability(_instance: object, _attribute: object, value: float | None) -> None:
    if value is not None and not 0.01 <= value <= 0.99:
        raise ValueError(f"initial_probability must lie in [0.01, 0.99], got {value!r}")


def _edge(_instance: object, _attribute: object, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"edge_strength must lie in [0, 1), got {value!r}")


@attrs.frozen(kw_only=True)
class SyntheticMarketConfig:
    """Everything the generator needs; same config (seed included) -> same events."""

    seed: int = 0
    markets: int = attrs.field(default=1, validator=_positive)
    start_ms: int = attrs.field(default=DEFAULT_START_MS, validator=_non_negative)
    duration_ms: int = attrs.field(default=3_600_000, validator=_positive)
    # Stop starting new actions after this many events per market (None: run to expiry).
    events_per_market: int | None = None
    events_per_second: float = attrs.field(default=10.0, validator=_positive)  # actions per market
    tick_structure: str = attrs.field(default="linear_cent", validator=attrs.validators.in_(TICK_STRUCTURES))
    initial_probability: float | None = attrs.field(default=None, validator=_probability)
    volatility: float = attrs.field(default=0.01, validator=_non_negative)  # logit per sqrt(second)
    jump_rate_per_hour: float = attrs.field(default=1.0, validator=_non_negative)
    jump_size: float = attrs.field(default=0.5, validator=_non_negative)  # logit std of a jump
    fractional_counts: bool = False
    makers: int = attrs.field(default=3, validator=_positive)
    maker_levels: int = attrs.field(default=3, validator=_positive)
    maker_half_spread: int = attrs.field(default=100, validator=_non_negative)  # price units
    maker_size: int = attrs.field(default=40, validator=_positive)  # contracts, mean per level
    noise_size: int = attrs.field(default=8, validator=_positive)  # contracts, mean
    taker_size: int = attrs.field(default=10, validator=_positive)  # contracts, mean
    edge_strength: float = attrs.field(default=0.0, validator=_edge)
    edge_lead_steps: int = attrs.field(default=20, validator=_positive)
    timestamp_granularity_ms: int = attrs.field(default=1, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.events_per_market is not None and self.events_per_market <= 0:
            raise ValueError(f"events_per_market must be > 0 or None, got {self.events_per_market}")

    @property
    def tickers(self) -> tuple[str, ...]:
        return tuple(f"SYN-{self.seed}-M{i}" for i in range(self.markets))

    @property
    def expiry_ms(self) -> int:
        return self.start_ms + self.duration_ms


class PriceGrid:
    """The valid prices of a tick structure strictly between $0 and $1, moved by index."""

    __slots__ = ("prices", "_floor")

    def __init__(self, structure: str) -> None:
        if structure == "linear_cent":
            prices = list(range(100, ONE_DOLLAR, 100))
        elif structure == "deci_cent":
            prices = list(range(10, ONE_DOLLAR, 10))
        elif structure == "tapered_deci_cent":
            prices = [p for p in range(10, ONE_DOLLAR, 10) if p < 1000 or p > 9000 or p % 100 == 0]
        else:
            raise ValueError(f"tick_structure must be one of {TICK_STRUCTURES}, got {structure!r}")
        self.prices = prices
        floor = [-1] * LADDER_SIZE
        index = -1
        for price in range(LADDER_SIZE):
            if index + 1 < len(prices) and prices[index + 1] == price:
                index += 1
            floor[price] = index
        self._floor = floor

    def floor_index(self, price: int) -> int:
        """Index of the highest valid price <= ``price`` (-1 if none)."""
        if price < 0:
            return -1
        return self._floor[min(price, ONE_DOLLAR)]

    def below_index(self, price: int) -> int:
        """Index of the highest valid price < ``price`` (-1 if none)."""
        return self.floor_index(price - 1)

    def contains(self, price: int) -> bool:
        return 0 <= price <= ONE_DOLLAR and self._floor[price] >= 0 and self.prices[self._floor[price]] == price


class MarketSimulation:
    """One synthetic market: the latent walk, the exchange-side book and its participants."""

    def __init__(self, config: SyntheticMarketConfig, index: int, grid: PriceGrid) -> None:
        self.config = config
        self.ticker = config.tickers[index]
        self.grid = grid
        # A string seed is hashed with SHA-512: stable across runs and PYTHONHASHSEED.
        self.rng = random.Random(f"kalshiflow-synthetic:{config.seed}:{index}")
        self.book = OrderBook(self.ticker)
        self.queues: tuple[dict[int, list[list[int]]], dict[int, list[list[int]]]] = ({}, {})
        # Quotes by owner: the makers, then the informed quoter of the planted edge.
        self.quotes: list[tuple[dict[int, int], dict[int, int]]] = [({}, {}) for _ in range(config.makers + 1)]
        self._informed = config.makers
        self.trades = 0
        self.emitted = 0

        rng = self.rng
        p0 = config.initial_probability if config.initial_probability is not None else rng.uniform(0.15, 0.85)
        self.logit = math.log(p0 / (1 - p0))
        self._mean_dt_ms = 1000.0 / config.events_per_second
        self._future: deque[tuple[float, float]] = deque()
        self._upcoming = 0.0  # sum of the queued increments: where the latent is headed
        for _ in range(config.edge_lead_steps):
            self._draw_step()
        lead_seconds = config.edge_lead_steps * self._mean_dt_ms / 1000.0
        self._upcoming_scale = max(config.volatility * math.sqrt(lead_seconds), 1e-9)
        self.elapsed_ms = 0.0

    # -- latent --------------------------------------------------------------------------
    @property
    def probability(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit))

    def _draw_step(self) -> None:
        config, rng = self.config, self.rng
        dt = rng.expovariate(1.0 / self._mean_dt_ms)
        dx = config.volatility * math.sqrt(dt / 1000.0) * rng.gauss(0.0, 1.0)
        jump_p = config.jump_rate_per_hour * dt / 3_600_000.0
        if jump_p > 0 and rng.random() < jump_p:
            dx += rng.gauss(0.0, config.jump_size)
        self._future.append((dt, dx))
        self._upcoming += dx

    def _advance(self) -> None:
        dt, dx = self._future.popleft()
        self._upcoming -= dx
        self._draw_step()
        self.elapsed_ms += dt
        self.logit = min(_LOGIT_BOUND, max(-_LOGIT_BOUND, self.logit + dx))

    def _conviction(self) -> float:
        """The planted edge's view in [-k, k]: positive when the latent is about to rise."""
        return self.config.edge_strength * math.tanh(self._upcoming / self._upcoming_scale)

    # -- order primitives ----------------------------------------------------------------
    def _max_index(self, side: int) -> int:
        """Highest grid index a bid on ``side`` may take without locking or crossing the book."""
        other = self.book.best_bid(1 - side)
        if other < 0:
            return len(self.grid.prices) - 1
        return self.grid.below_index(ONE_DOLLAR - other)

    def _add(self, side: int, price: int, qty: int, owner: int, ts: int, out: list[MarketEvent]) -> None:
        self.book.apply_delta(side, price, qty)
        self.queues[side].setdefault(price, []).append([owner, qty])
        if owner >= 0:
            mine = self.quotes[owner][side]
            mine[price] = mine.get(price, 0) + qty
        out.append(BookDelta(self.ticker, None, ts, _SIDES[side], price, qty))

    def _remove(self, side: int, price: int, qty: int, ts: int, out: list[MarketEvent]) -> None:
        self.book.apply_delta(side, price, -qty)
        out.append(BookDelta(self.ticker, None, ts, _SIDES[side], price, -qty))

    def _size(self, mean_contracts: float) -> int:
        count = (1 + int(self.rng.expovariate(1.0 / mean_contracts))) * ONE_CONTRACT
        if self.config.fractional_counts:
            count += self.rng.randrange(ONE_CONTRACT)
        return count

    # -- participants ----------------------------------------------------------------------
    def _maker_refresh(self, maker: int, side: int, ts: int, out: list[MarketEvent]) -> None:
        config, grid, rng = self.config, self.grid, self.rng
        fair = self.probability * ONE_DOLLAR
        if side:
            fair = ONE_DOLLAR - fair
        top = grid.floor_index(int(fair) - config.maker_half_spread) - maker
        highest = self._max_index(side)
        targets: dict[int, int] = {}
        for depth in range(config.maker_levels):
            index = top - depth
            if index < 0:
                break
            if index <= highest:  # above it the quote would lock or cross the book
                count = max(1, round(config.maker_size * (0.5 + rng.random()))) * ONE_CONTRACT
                if config.fractional_counts:
                    count += rng.randrange(ONE_CONTRACT)
                targets[grid.prices[index]] = count
        mine = self.quotes[maker][side]
        for price in [p for p in mine if p not in targets]:
            self._cancel_owner(side, price, maker, ts, out)
        for price, count in targets.items():
            have = mine.get(price, 0)
            if have < count // 2:
                self._add(side, price, count - have, maker, ts, out)

    def _cancel_owner(self, side: int, price: int, owner: int, ts: int, out: list[MarketEvent]) -> None:
        queue = self.queues[side][price]
        removed = sum(entry[1] for entry in queue if entry[0] == owner)
        kept = [entry for entry in queue if entry[0] != owner]
        if kept:
            self.queues[side][price] = kept
        else:
            del self.queues[side][price]
        del self.quotes[owner][side][price]
        self._remove(side, price, removed, ts, out)

    def _informed_quote(self, ts: int, out: list[MarketEvent]) -> None:
        """The planted edge: rest size at the best bid of the side the latent is heading to."""
        conviction = self._conviction()
        side = 0 if conviction > 0 else 1
        owner = self._informed
        wanted = round(3 * self.config.maker_size * abs(conviction)) * ONE_CONTRACT
        best = self.book.best_bid(side)
        for held_side in (0, 1):
            for price, held in list(self.quotes[owner][held_side].items()):
                keep = held_side == side and price == best and wanted // 2 <= held <= 2 * wanted
                if not keep:
                    self._cancel_owner(held_side, price, owner, ts, out)
        if wanted and best >= 0 and not self.quotes[owner][side]:
            self._add(side, best, wanted, owner, ts, out)

    def _noise_add(self, ts: int, out: list[MarketEvent]) -> None:
        rng, grid = self.rng, self.grid
        side = rng.randrange(2)
        highest = self._max_index(side)
        best = self.book.best_bid(side)
        if best >= 0:
            anchor = grid.floor_index(best)
        else:
            fair = self.probability * ONE_DOLLAR
            anchor = grid.floor_index(int(fair if side == 0 else ONE_DOLLAR - fair)) - 1
        if rng.random() < 0.25 and anchor < highest:
            index = rng.randint(anchor + 1, highest)  # improve the bid, inside the spread
        else:
            index = min(anchor - int(rng.expovariate(0.6)), highest)
        if index < 0:
            return
        self._add(side, grid.prices[index], self._size(self.config.noise_size), NOISE, ts, out)

    def _noise_cancel(self, ts: int, out: list[MarketEvent]) -> None:
        rng = self.rng
        side = rng.randrange(2)
        levels = self.queues[side]
        if not levels:
            return
        price = rng.choice(list(levels))
        queue = levels[price]
        for position in range(len(queue) - 1, -1, -1):  # the most recent noise order there
            entry = queue[position]
            if entry[0] == NOISE:
                break
        else:
            return
        unit = 1 if self.config.fractional_counts else ONE_CONTRACT  # whole contracts stay whole
        qty = entry[1] if rng.random() < 0.6 else max(unit, entry[1] * rng.randrange(1, 100) // 100 // unit * unit)
        entry[1] -= qty
        if entry[1] == 0:
            del queue[position]
            if not queue:
                del levels[price]
        self._remove(side, price, qty, ts, out)

    def _marketable(self, ts: int, out: list[MarketEvent]) -> None:
        rng, grid, book = self.rng, self.grid, self.book
        fair_yes = self.probability * ONE_DOLLAR
        edge_yes = fair_yes - book.yes_ask if book.yes_ask >= 0 else -1.0
        edge_no = (ONE_DOLLAR - fair_yes) - book.no_ask if book.no_ask >= 0 else -1.0
        if max(edge_yes, edge_no) > 0 and rng.random() < _INFORMED_SHARE:
            side = 0 if edge_yes >= edge_no else 1
        else:
            side = rng.randrange(2)
        ask = book.best_ask(side)
        if ask < 0:
            return
        sweep = int(rng.expovariate(1.5))  # how many ticks through the touch the limit goes
        limit = grid.prices[min(grid.floor_index(ask) + sweep, len(grid.prices) - 1)]
        remaining = self._take(side, limit, self._size(self.config.taker_size), ts, out)
        if remaining and rng.random() < _REST_REMAINDER and grid.floor_index(limit) <= self._max_index(side):
            self._add(side, limit, remaining, NOISE, ts, out)

    def _take(self, side: int, limit: int, qty: int, ts: int, out: list[MarketEvent]) -> int:
        """Buy ``side`` up to ``limit``: match the other side's bids at >= $1 - limit, best first,
        FIFO within a level. Returns what was left unfilled."""
        other = 1 - side
        floor = ONE_DOLLAR - limit
        levels = self.queues[other]
        book = self.book
        while qty:
            best = book.best_bid(other)
            if best < floor:  # also when the side is empty (-1)
                break
            queue = levels[best]
            filled = 0
            while qty and queue:
                entry = queue[0]
                take = entry[1] if entry[1] <= qty else qty
                entry[1] -= take
                qty -= take
                filled += take
                owner = entry[0]
                if owner >= 0:
                    mine = self.quotes[owner][other]
                    left = mine[best] - take
                    if left:
                        mine[best] = left
                    else:
                        del mine[best]
                if not entry[1]:
                    queue.pop(0)
            if not queue:
                del levels[best]
            self.trades += 1
            trade_id = f"{self.ticker}-T{self.trades:07d}"
            yes_price = ONE_DOLLAR - best if side == 0 else best
            out.append(PublicTrade(self.ticker, ts, trade_id, yes_price, filled, _SIDES[side]))
            self._remove(other, best, filled, ts, out)
        return qty

    # -- the stream ------------------------------------------------------------------------
    def _timestamp(self) -> int:
        granularity = self.config.timestamp_granularity_ms
        return self.config.start_ms + int(self.elapsed_ms) // granularity * granularity

    def opening_snapshot(self) -> BookSnapshot:
        """Seed the book with every maker's quotes and a few noise orders; return it."""
        discard: list[MarketEvent] = []
        ts = self.config.start_ms
        for maker in range(self.config.makers):
            self._maker_refresh(maker, 0, ts, discard)
            self._maker_refresh(maker, 1, ts, discard)
        for _ in range(2 * self.config.maker_levels):
            self._noise_add(ts, discard)
        return BookSnapshot(self.ticker, None, ts, self.book.levels(0), self.book.levels(1))

    def events(self) -> Iterator[MarketEvent]:
        """The whole life of the market: snapshot, deltas and trades in time order, resolution."""
        config, rng = self.config, self.rng
        yield self.opening_snapshot()
        self.emitted = 1
        cap = config.events_per_market
        expiry = config.expiry_ms
        out: list[MarketEvent] = []
        makers = config.makers
        informed = config.edge_strength > 0
        while cap is None or self.emitted < cap:
            self._advance()
            ts = self._timestamp()
            if ts >= expiry:
                break
            if informed:
                self._informed_quote(ts, out)
            roll = rng.random()
            if roll < _MAKER_REFRESH:
                self._maker_refresh(rng.randrange(makers), rng.randrange(2), ts, out)
            elif roll < _NOISE_ADD:
                self._noise_add(ts, out)
            elif roll < _NOISE_CANCEL:
                self._noise_cancel(ts, out)
            else:
                self._marketable(ts, out)
            if out:
                self.emitted += len(out)
                yield from out
                out.clear()
        result = Side.YES if rng.random() < self.probability else Side.NO
        self.emitted += 1
        yield MarketResolved(self.ticker, expiry, result)


class SyntheticMarketModel:
    """Several synthetic markets, their events interleaved in time order (ties: market order)."""

    def __init__(self, config: SyntheticMarketConfig) -> None:
        self.config = config
        grid = PriceGrid(config.tick_structure)
        self.markets = [MarketSimulation(config, i, grid) for i in range(config.markets)]

    @property
    def tickers(self) -> tuple[str, ...]:
        return self.config.tickers

    def events(self) -> Iterator[MarketEvent]:
        """Lazy; call once per model (the markets are consumed as they go)."""
        streams = [market.events() for market in self.markets]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=_event_time)


def _event_time(event: MarketEvent) -> int:
    return event.ts_ms


def generate(config: SyntheticMarketConfig) -> list[MarketEvent]:
    """Every event of a synthetic session, as a list."""
    return list(SyntheticMarketModel(config).events())


def duration_for_events(config: SyntheticMarketConfig, events_per_market: int, slack: float = 0.1) -> int:
    """How long ``config``'s markets take to emit ``events_per_market`` events each, with ``slack``
    to spare, measured on a short pilot run (events per action differ with the tick grid).

    A session that stops after a count of events can then close about when its flow ends,
    instead of after a long silence that a replay would turn into rows where nothing happens.
    """
    pilot_events = min(events_per_market, 2_000)
    pilot = attrs.evolve(config, events_per_market=pilot_events, duration_ms=10**12)
    slowest_ms = 0
    for market in SyntheticMarketModel(pilot).markets:
        last_ms = config.start_ms
        for event in market.events():
            if not isinstance(event, MarketResolved):
                last_ms = event.ts_ms
        slowest_ms = max(slowest_ms, last_ms - config.start_ms)
    return max(1_000, math.ceil(slowest_ms * events_per_market / pilot_events * (1 + slack)))


def schedules(config: SyntheticMarketConfig) -> list[MarketScheduled]:
    """What is known of the markets before they run: each closes (and resolves) at the expiry.
    Stamped at the start, as a recording learns them before the first event."""
    expiry = config.expiry_ms
    return [MarketScheduled(ticker, config.start_ms, expiry, expiry) for ticker in config.tickers]


def generate_recording(config: SyntheticMarketConfig) -> list[MarketEvent]:
    """A synthetic session as ``collect`` records it: the markets' schedules, then every event.
    (The feed's own stream, and :func:`generate`, carry no schedule: it comes from the catalog.)"""
    return [*schedules(config), *generate(config)]
