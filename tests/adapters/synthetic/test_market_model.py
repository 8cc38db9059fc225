"""The SYNTHETIC market generator: determinism, book invariants, resolution, the planted edge."""

from __future__ import annotations

import collections

import attrs
import numpy as np
import pytest

from adapters.synthetic.market_model import (
    PriceGrid,
    SyntheticMarketConfig,
    SyntheticMarketModel,
    duration_for_events,
    generate,
)
from domain.events import BookDelta, BookSnapshot, MarketResolved, PublicTrade
from domain.orderbook import OrderBook
from domain.values import ONE_CONTRACT, ONE_DOLLAR, Side


def long_run(**overrides) -> SyntheticMarketConfig:
    settings = dict(seed=7, markets=3, events_per_market=12_000, duration_ms=10**9)
    settings.update(overrides)
    return SyntheticMarketConfig(**settings)


def check_invariants(config: SyntheticMarketConfig, events) -> collections.Counter:
    """Replays ``events`` and asserts every invariant the generator promises; returns counts."""
    grid = PriceGrid(config.tick_structure)
    books: dict[str, OrderBook] = {}
    resolved: set[str] = set()
    pending_fill: dict[str, tuple[int, int, int]] = {}  # ticker -> (side, price, count) a trade owes
    seen = collections.Counter()
    last_ts = config.start_ms
    for event in events:
        seen[type(event).__name__] += 1
        ticker = event.ticker
        assert ticker in config.tickers
        assert ticker not in resolved, f"{ticker}: event after resolution"
        assert event.ts_ms >= last_ts, "events out of time order"
        assert config.start_ms <= event.ts_ms <= config.expiry_ms
        last_ts = event.ts_ms
        if isinstance(event, BookSnapshot):
            assert ticker not in books, "a second snapshot"
            books[ticker] = book = OrderBook(ticker)
            book.apply(event)
            for price, count in event.yes + event.no:
                assert grid.contains(price) and count > 0
            assert event.ts_ms == config.start_ms
            continue
        book = books[ticker]  # KeyError: an event before the market's snapshot
        if isinstance(event, BookDelta):
            assert event.delta != 0
            assert grid.contains(event.price), event
            before = book.quantity_at(event.side, event.price)
            assert before + event.delta >= 0, f"delta takes more than rests: {event}, had {before}"
            if ticker in pending_fill:
                assert pending_fill.pop(ticker) == (event.side, event.price, -event.delta), "trade without its delta"
            book.apply_delta(event.side, event.price, event.delta)
            assert not book.is_crossed() and not book.is_locked(), repr(book)
            if not config.fractional_counts:
                assert event.delta % ONE_CONTRACT == 0
        elif isinstance(event, PublicTrade):
            assert ticker not in pending_fill, "two trades without a delta between"
            assert event.count > 0 and grid.contains(event.yes_price)
            # The taker bought its side from the other side's bids: that level existed.
            maker_side = event.taker_side.other
            maker_price = event.yes_price if maker_side is Side.YES else ONE_DOLLAR - event.yes_price
            assert book.quantity_at(maker_side, maker_price) >= event.count
            assert book.best_bid(maker_side) == maker_price, "a trade skipped a better price"
            pending_fill[ticker] = (maker_side, maker_price, event.count)
            if not config.fractional_counts:
                assert event.count % ONE_CONTRACT == 0
        elif isinstance(event, MarketResolved):
            assert event.ts_ms == config.expiry_ms
            assert event.result in (Side.YES, Side.NO)
            resolved.add(ticker)
        else:
            raise AssertionError(f"unexpected event {event!r}")
    assert not pending_fill
    assert resolved == set(config.tickers), "every market resolves"
    return seen


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_events():
    config = SyntheticMarketConfig(seed=11, markets=2, events_per_market=3_000, duration_ms=10**9)
    assert generate(config) == generate(config)


def test_different_seed_different_events():
    first = generate(SyntheticMarketConfig(seed=1, events_per_market=2_000))
    second = generate(SyntheticMarketConfig(seed=2, events_per_market=2_000))
    assert [attrs.evolve(e, ticker="X") for e in first[:50]] != [attrs.evolve(e, ticker="X") for e in second[:50]]


def test_a_market_does_not_depend_on_how_many_share_the_session():
    alone = generate(SyntheticMarketConfig(seed=5, markets=1, events_per_market=2_000, duration_ms=10**9))
    shared = generate(SyntheticMarketConfig(seed=5, markets=3, events_per_market=2_000, duration_ms=10**9))
    assert [e for e in shared if e.ticker == "SYN-5-M0"] == alone


def test_tickers_are_distinct_and_say_synthetic():
    config = SyntheticMarketConfig(seed=42, markets=3)
    assert config.tickers == ("SYN-42-M0", "SYN-42-M1", "SYN-42-M2")


# ---------------------------------------------------------------------------------------------
# Invariants over long runs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tick_structure", "fractional"),
    [("linear_cent", False), ("deci_cent", True), ("tapered_deci_cent", False), ("linear_cent", True)],
)
def test_book_invariants_over_a_long_run(tick_structure, fractional):
    config = long_run(tick_structure=tick_structure, fractional_counts=fractional, jump_rate_per_hour=30.0)
    seen = check_invariants(config, generate(config))
    assert seen["BookSnapshot"] == seen["MarketResolved"] == 3
    assert seen["BookDelta"] > 20_000 and seen["PublicTrade"] > 2_000


def test_invariants_hold_with_the_planted_edge():
    config = long_run(edge_strength=0.9, volatility=0.05)
    check_invariants(config, generate(config))


def test_fractional_counts_appear_only_when_asked():
    fractional = generate(long_run(markets=1, events_per_market=3_000, fractional_counts=True))
    assert any(e.delta % ONE_CONTRACT for e in fractional if isinstance(e, BookDelta))
    assert any(e.count % ONE_CONTRACT for e in fractional if isinstance(e, PublicTrade))


def test_deci_cent_markets_use_sub_penny_prices():
    events = generate(long_run(markets=1, events_per_market=3_000, tick_structure="deci_cent"))
    assert any(e.price % 100 for e in events if isinstance(e, BookDelta))


def test_a_run_to_expiry_spans_the_duration_at_the_event_rate():
    config = SyntheticMarketConfig(seed=3, duration_ms=600_000, events_per_second=5.0)
    events = generate(config)
    seen = check_invariants(config, events)
    assert events[-1] == MarketResolved("SYN-3-M0", config.expiry_ms, events[-1].result)
    steps = 600 * 5  # a step emits zero or more events; on average about one
    assert steps * 0.5 < seen["BookDelta"] + seen["PublicTrade"] < steps * 3


@pytest.mark.parametrize("tick_structure", ["linear_cent", "deci_cent"])  # ~1 and ~2 events an action
@pytest.mark.parametrize("per_market", [300, 6_000])  # the whole flow piloted, or extrapolated
def test_a_duration_for_a_count_of_events_ends_soon_after_them(tick_structure, per_market):
    config = SyntheticMarketConfig(seed=5, markets=3, events_per_market=per_market, tick_structure=tick_structure)
    fitted = attrs.evolve(config, duration_ms=duration_for_events(config, per_market))
    events = generate(fitted)

    flow = [event for event in events if not isinstance(event, MarketResolved)]
    for ticker in fitted.tickers:
        assert sum(event.ticker == ticker for event in flow) >= per_market  # the count ended it
    flow_ms = max(event.ts_ms for event in flow) - fitted.start_ms
    assert flow_ms < fitted.duration_ms < 1.2 * flow_ms  # no long silence before the close
    assert all(event.ts_ms == fitted.expiry_ms for event in events if isinstance(event, MarketResolved))


def test_timestamp_granularity():
    config = SyntheticMarketConfig(seed=3, events_per_market=2_000, timestamp_granularity_ms=1000)
    assert all(e.ts_ms % 1000 == 0 for e in generate(config))


def test_the_market_stays_two_sided_and_tight():
    config = long_run(markets=1, events_per_market=20_000)
    book = OrderBook()
    spreads = []
    for event in generate(config):
        if isinstance(event, (BookSnapshot, BookDelta)):
            book.apply(event)
            spreads.append(book.spread())
    two_sided = [s for s in spreads if s is not None]
    assert len(two_sided) > 0.99 * len(spreads)
    assert np.median(two_sided) <= 300  # three cents


def test_resolution_follows_the_final_price():
    """Across many markets, those that end priced high resolve YES more often."""
    config = SyntheticMarketConfig(seed=9, markets=40, duration_ms=200_000, volatility=0.15, jump_rate_per_hour=20)
    books: dict[str, OrderBook] = {}
    finals: list[tuple[float, int]] = []
    for event in generate(config):
        if isinstance(event, BookSnapshot):
            books[event.ticker] = OrderBook(event.ticker)
        if isinstance(event, (BookSnapshot, BookDelta)):
            books[event.ticker].apply(event)
        elif isinstance(event, MarketResolved):
            book = books[event.ticker]
            # Near $0 or $1 one side can empty out: the price is then at that end.
            price = book.mid() if book.mid() is not None else (0.0 if book.yes_bid < 0 else ONE_DOLLAR)
            finals.append((price / ONE_DOLLAR, 1 if event.result is Side.YES else 0))
    mids, results = np.array(finals).T
    assert 0 < results.sum() < len(results)
    assert np.corrcoef(mids, results)[0, 1] > 0.4


# ---------------------------------------------------------------------------------------------
# The planted edge
# ---------------------------------------------------------------------------------------------
def top_imbalance_vs_future_latent(edge_strength: float, seed: int, horizon: int = 20) -> float:
    config = SyntheticMarketConfig(
        seed=seed, events_per_market=20_000, duration_ms=10**9, edge_strength=edge_strength, initial_probability=0.5
    )
    model = SyntheticMarketModel(config)
    market = model.markets[0]
    book = OrderBook()
    imbalance, latent = [], []
    for event in model.events():  # lazy: the latent read here is the one behind this event
        if isinstance(event, BookSnapshot):
            book.apply(event)
        elif isinstance(event, BookDelta):
            book.apply_delta(event.side, event.price, event.delta)
            yes = book.quantity_at(Side.YES, book.yes_bid) if book.yes_bid >= 0 else 0
            no = book.quantity_at(Side.NO, book.no_bid) if book.no_bid >= 0 else 0
            if yes + no:
                imbalance.append((yes - no) / (yes + no))
                latent.append(market.logit)
    imbalance_now = np.array(imbalance[:-horizon])
    latent_move = np.array(latent[horizon:]) - np.array(latent[:-horizon])
    return float(np.corrcoef(imbalance_now, latent_move)[0, 1])


def test_without_the_edge_the_book_does_not_predict_the_latent():
    assert abs(top_imbalance_vs_future_latent(0.0, seed=0)) < 0.1


def test_the_planted_edge_makes_imbalance_lead_the_latent():
    assert top_imbalance_vs_future_latent(0.9, seed=0) > 0.15


# ---------------------------------------------------------------------------------------------
# Configuration and the price grid
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tick_structure": "quarter_cent"}, "tick_structure"),
        ({"markets": 0}, "markets must be > 0"),
        ({"events_per_second": 0}, "events_per_second must be > 0"),
        ({"volatility": -0.1}, "volatility must be >= 0"),
        ({"initial_probability": 1.0}, "initial_probability must lie in"),
        ({"edge_strength": 1.0}, "edge_strength must lie in"),
        ({"events_per_market": 0}, "events_per_market must be > 0"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        SyntheticMarketConfig(**overrides)


def test_price_grids():
    assert PriceGrid("linear_cent").prices[:2] == [100, 200] and len(PriceGrid("linear_cent").prices) == 99
    assert len(PriceGrid("deci_cent").prices) == 999
    tapered = PriceGrid("tapered_deci_cent")
    assert tapered.contains(10) and tapered.contains(990) and tapered.contains(1000)
    assert not tapered.contains(1010) and tapered.contains(1100) and tapered.contains(9010)
    assert all(tapered.contains(ONE_DOLLAR - p) for p in tapered.prices)  # YES and NO share the grid
    assert tapered.floor_index(1050) == tapered.prices.index(1000)
    assert tapered.below_index(1000) == tapered.prices.index(990)
    assert tapered.floor_index(5) == -1


# ---------------------------------------------------------------------------------------------
# The invariant checker itself must be able to fail
# ---------------------------------------------------------------------------------------------
def corrupted(events, index_of, replace):
    events = list(events)
    position = index_of(events)
    events[position] = replace(events[position])
    return events


@pytest.mark.parametrize(
    "corrupt",
    [
        # a delta that takes more than rests
        lambda events: corrupted(
            events,
            lambda es: next(i for i, e in enumerate(es) if isinstance(e, BookDelta) and e.delta < 0),
            lambda e: attrs.evolve(e, delta=e.delta - 10**6),
        ),
        # a trade at a price that was not on the book
        lambda events: corrupted(
            events,
            lambda es: next(i for i, e in enumerate(es) if isinstance(e, PublicTrade)),
            lambda e: attrs.evolve(e, yes_price=e.yes_price + 100 if e.yes_price < 9000 else e.yes_price - 100),
        ),
        # a delta that crosses the book
        lambda events: corrupted(
            events,
            lambda es: next(i for i, e in enumerate(es) if isinstance(e, BookDelta) and e.delta > 0 and e.side == 0),
            lambda e: attrs.evolve(e, price=9900),
        ),
        # a missing resolution
        lambda events: events[:-1],
    ],
)
def test_the_invariant_checker_catches_corruption(corrupt):
    config = SyntheticMarketConfig(seed=4, events_per_market=1_000, duration_ms=10**9)
    events = generate(config)
    check_invariants(config, events)
    with pytest.raises(AssertionError):
        check_invariants(config, corrupt(events))
