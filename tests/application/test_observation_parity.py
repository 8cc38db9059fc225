"""One recorded stream, two paths: replay (tape -> environment) and live (events applied one by
one to the live books -> LiveMarketObservation). Every observation, every action mask and every
decoded order must be the same."""

from collections.abc import Iterator, Sequence

import attrs
import numpy as np
import pytest

from adapters.gym_env import OrderbookEnv
from adapters.simulated_exchange import ExchangeConfig
from adapters.synthetic.market_model import SyntheticMarketConfig, generate_recording
from application.book_state import SharedBookState
from application.observation import LiveMarketObservation, ObservationError
from application.replay import ReplayConfig, compile_session
from domain.actions import ActionConfig, ActionSpace, PricingStrategy
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.features import HISTORY_ROWS, MARKET_FEATURE_COUNT, ObservationBuilder
from domain.orderbook import OrderBook
from domain.values import ONE_CONTRACT, Side

REPLAY = ReplayConfig(step_ms=1_000, depth_levels=4)


@pytest.fixture(scope="module")
def session() -> list[MarketEvent]:
    # Three minutes of two markets: 180 decisions each, well past the features' history window.
    # Recorded as collect records it: each market's scheduled close first, then the market data.
    return generate_recording(SyntheticMarketConfig(seed=11, markets=2, duration_ms=180_000, events_per_second=20.0))


def live_path(
    events: Sequence[MarketEvent], ticker: str, builder: ObservationBuilder
) -> Iterator[LiveMarketObservation]:
    """The live side: the session's events in delivery order into SharedBookState, the market's
    trades into its observer, and a sample at each decision time; yields after each sample."""
    books = SharedBookState()
    first = next(e for e in events if e.ticker == ticker and isinstance(e, BookSnapshot))
    # Time left counts down to the scheduled close (what the live actor reads from the catalog);
    # the resolution only ends the decisions. Decisions sit on the replay's grid: multiples of
    # step_ms on the Unix clock, the first at or after the snapshot.
    close = next(e for e in events if e.ticker == ticker and isinstance(e, MarketScheduled)).close_ms
    end = next(e for e in events if e.ticker == ticker and isinstance(e, MarketResolved)).ts_ms
    step = REPLAY.step_ms
    decisions = [*range(-(-first.ts_ms // step) * step, end, step), end]
    observer = LiveMarketObservation(ticker, replay=REPLAY, expiry_ms=close, builder=builder)
    started = False
    book: list[OrderBook] = []
    books.subscribe(lambda _ticker, live: book.append(live) if not book else None, [ticker])
    stream = iter(events)
    held: MarketEvent | None = None
    for now in decisions:
        while True:
            event = held if held is not None else next(stream, None)
            held = None
            if event is None:
                break
            if event.ticker == ticker and event.ts_ms > now:
                held = event  # our market's next event is in the future: decide now
                break
            if isinstance(event, (BookSnapshot, BookDelta)):
                books.apply(event)
                started = started or (event.ticker == ticker and isinstance(event, BookSnapshot))
            elif isinstance(event, PublicTrade) and event.ticker == ticker and started:
                observer.record_trade(event)
        observer.sample(book[0], now)
        yield observer


@pytest.mark.parametrize(
    "actions",
    [
        ActionConfig(),
        ActionConfig(pricing=PricingStrategy.PASSIVE, space=ActionSpace.SIZED, max_position=100 * ONE_CONTRACT),
        ActionConfig(pricing=PricingStrategy.MID, order_size=5 * ONE_CONTRACT),
    ],
    ids=["single-size-aggressive", "sized-passive", "single-size-mid"],
)
def test_replay_and_live_paths_build_the_same_observations_masks_and_orders(session, actions):
    tapes = compile_session(session, session_id=1, config=REPLAY)
    assert len(tapes) == 2
    env = OrderbookEnv(tapes, actions=actions, exchange=ExchangeConfig(latency_ms=100))
    rng = np.random.default_rng(4)
    for episode, tape in enumerate(tapes):
        live = live_path(session, tape.ticker, env.observation_builder)
        observation, info = env.reset(seed=episode, options={"episode": episode})
        done, steps, orders = False, 0, 0
        while True:
            observer = next(live)
            ticker = tape.ticker
            position = env.ledger.positions.get(ticker)
            quantity = 0 if position is None else position.quantity
            expected = observer.observe(position, env.ledger.cash, env.open_order, env.order_age)
            np.testing.assert_array_equal(observation, expected, err_msg=f"{ticker} row {steps}")
            if done:  # the last row: no decision left to take
                break
            mask = observer.legal_actions(env.decoder, position=quantity, buying_power=env.buying_power)
            assert mask == info["action_mask"].tolist(), f"{ticker} row {steps}"
            for action in range(env.decoder.action_count):
                replayed = env.decode(action)
                decoded = observer.order_for(env.decoder, action, position=quantity, client_order_id="live")
                if replayed is not None:
                    replayed = attrs.evolve(replayed, client_order_id="live")
                assert decoded == replayed, f"{ticker} row {steps} action {action}"
                orders += decoded is not None
            action = int(rng.choice(np.flatnonzero(info["action_mask"])))
            observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            steps += 1
        assert steps == tape.steps - 1 > HISTORY_ROWS
        assert orders > steps  # the comparison covered real orders, not only HOLDs
        assert next(live, None) is None  # both paths ended on the same row


def test_a_window_of_history_gives_the_rows_of_the_whole_tape(session):
    """The live observer keeps HISTORY_ROWS rows only; its market rows still equal the tape's."""
    tape = compile_session(session, session_id=1, config=REPLAY)[0]
    builder = ObservationBuilder(initial_cash=100, max_position=10, order_size=10)
    rows = [observer.market_row().copy() for observer in live_path(session, tape.ticker, builder)]
    np.testing.assert_array_equal(np.array(rows), tape.features)
    assert np.array(rows).shape == (tape.steps, MARKET_FEATURE_COUNT)


def test_a_live_observation_refuses_reads_and_samples_out_of_order():
    builder = ObservationBuilder(initial_cash=100, max_position=10, order_size=10)
    observer = LiveMarketObservation("T", replay=REPLAY, expiry_ms=5_000, builder=builder)
    with pytest.raises(ObservationError, match="no row sampled"):
        observer.market_row()
    book = OrderBook("T")
    book.apply_snapshot(((4500, 10 * ONE_CONTRACT),), ((5300, 10 * ONE_CONTRACT),))
    observer.sample(book, 1_000)
    assert (observer.yes_bid, observer.yes_ask, observer.mark) == (4500, 4700, 4600)
    with pytest.raises(ObservationError, match="not after"):
        observer.sample(book, 1_000)
    with pytest.raises(ObservationError, match="expiry"):
        observer.sample(book, 6_000)


def test_the_mark_carries_over_a_one_sided_live_book():
    builder = ObservationBuilder(initial_cash=100, max_position=10, order_size=10)
    observer = LiveMarketObservation("T", replay=REPLAY, expiry_ms=5_000, builder=builder)
    book = OrderBook("T")
    book.apply_snapshot(((4500, ONE_CONTRACT),), ())
    observer.sample(book, 0)
    assert observer.mark == 5000  # no two-sided row yet: replay's initial mark
    book.apply_snapshot(((4500, ONE_CONTRACT),), ((5300, ONE_CONTRACT),))
    observer.sample(book, 1_000)
    book.apply_delta(Side.NO, 5300, -ONE_CONTRACT)
    observer.sample(book, 2_000)
    assert observer.mark == 4600 and observer.yes_ask == -1


def test_without_a_builder_only_the_market_block_is_available():
    observer = LiveMarketObservation("T", replay=REPLAY, expiry_ms=5_000)
    book = OrderBook("T")
    book.apply_snapshot(((4500, ONE_CONTRACT),), ((5300, ONE_CONTRACT),))
    observer.sample(book, 0)
    assert observer.market_row().shape == (MARKET_FEATURE_COUNT,)
    with pytest.raises(ObservationError, match="ObservationBuilder"):
        observer.observe(None, 100, None, 0)
