"""The actor's live market rows: a close time from the exchange, and the feed's public trades in
the trade-flow features (both were missing live: 24 h assumed, flow always zero)."""

from __future__ import annotations

import math

from application.actor_observations import LiveMarketRows
from application.book_state import SharedBookState
from application.replay import ReplayConfig
from domain.events import BookSnapshot, PublicTrade
from domain.features import MARKET_FEATURES
from domain.values import ONE_CONTRACT, Side

FLOW = MARKET_FEATURES.index("trade_flow")
VOLUME_LAST = MARKET_FEATURES.index("trade_volume_last")
TIME_LEFT_LOG = MARKET_FEATURES.index("time_left_log")
MINUTE_MS = 60_000


def books_with(ticker: str) -> SharedBookState:
    books = SharedBookState([ticker])
    books.apply(BookSnapshot(ticker, 1, 0, ((4000, 50 * ONE_CONTRACT),), ((5500, 50 * ONE_CONTRACT),)))
    return books


def test_a_market_without_a_close_time_has_no_rows():
    rows = LiveMarketRows(books_with("A"), replay=ReplayConfig())
    assert rows.sample("A", 1_000) is None
    rows.set_close("A", 1_000 + 30 * MINUTE_MS)
    assert rows.sample("A", 2_000) is not None


def test_time_left_counts_down_to_the_exchanges_close_time():
    rows = LiveMarketRows(books_with("A"), replay=ReplayConfig())
    rows.set_close("A", 90 * MINUTE_MS)
    row = rows.sample("A", 30 * MINUTE_MS).market_row()
    assert math.isclose(row[TIME_LEFT_LOG], math.log1p(60) / 10, rel_tol=1e-6)
    assert rows.sample("A", 90 * MINUTE_MS + 1_000) is None  # past the close: no observation


def test_public_trades_reach_the_trade_flow_features():
    rows = LiveMarketRows(books_with("A"), replay=ReplayConfig())
    rows.set_close("A", 10 * MINUTE_MS)
    quiet = rows.sample("A", 1_000).market_row()
    assert quiet[FLOW] == 0 and quiet[VOLUME_LAST] == 0
    rows.record_trade(PublicTrade("A", 1_500, "t-1", 4500, 30 * ONE_CONTRACT, Side.YES))
    rows.record_trade(PublicTrade("A", 1_600, "t-2", 4500, 10 * ONE_CONTRACT, Side.NO))
    traded = rows.sample("A", 2_000).market_row()
    assert math.isclose(traded[FLOW], (30 - 10) / 40, rel_tol=1e-6)
    assert math.isclose(traded[VOLUME_LAST], math.log1p(40) / math.log(1000), rel_tol=1e-6)


def test_rows_sit_on_the_grid_one_per_step_even_when_sampled_late():
    rows = LiveMarketRows(books_with("A"), replay=ReplayConfig(step_ms=1_000))
    rows.set_close("A", 10 * MINUTE_MS)
    market = rows.sample("A", 1_000)
    assert market is not None and market.rows == 1
    assert rows.sample("A", 1_000) is market and market.rows == 1  # the same grid time: the same row
    assert rows.sample("A", 1_500) is None  # off the grid: no row
    rows.record_trade(PublicTrade("A", 1_700, "t-1", 4500, 30 * ONE_CONTRACT, Side.YES))
    assert rows.sample("A", 4_000) is market  # late: the grid times missed get their rows too
    assert market.rows == 4 and market.last_sample_ms == 4_000 and market.rows_since(1_000) == 3
    assert rows.sample("A", 3_000) is None  # an older row is gone
    assert market.market_row()[VOLUME_LAST] == 0  # the trade went to the first missed row
