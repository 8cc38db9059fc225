"""Domain -> Kalshi wire -> domain, in both eras."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.kalshi import wire
from adapters.kalshi.parsing import (
    ErrorReply,
    OkReply,
    Subscribed,
    SubscriptionInfo,
    Unsubscribed,
    WsErrorCode,
    parse_frame,
)
from domain.events import BookDelta, BookSnapshot, PublicTrade
from domain.values import Side

FRAMES = Path(__file__).resolve().parents[2] / "resources" / "kalshi_frames"
TS = 1_781_159_489_957


def round_trip(message: dict, received_ms: int | None = None):
    return parse_frame(wire.encode(message), received_ms)


# ---------------------------------------------------------------------------------------------
# Exact shapes
# ---------------------------------------------------------------------------------------------
def test_current_delta_has_the_recorded_shape():
    recorded = orjson.loads((FRAMES / "current/delta.json").read_bytes())
    event = parse_frame((FRAMES / "current/delta.json").read_bytes())
    built = wire.delta_message(event, sid=1, seq=2, market_id=recorded["msg"]["market_id"])
    assert built["msg"].pop("ts") == "2026-06-11T06:31:29.957Z"  # ms precision of ours
    recorded["msg"].pop("ts")
    assert built == recorded


def test_current_snapshot_has_the_recorded_shape():
    recorded = orjson.loads((FRAMES / "current/snapshot.json").read_bytes())
    event = parse_frame((FRAMES / "current/snapshot.json").read_bytes(), received_ms=TS)
    assert wire.snapshot_message(event, 1, 1, market_id=recorded["msg"]["market_id"]) == recorded


def test_legacy_snapshot_and_trade_have_the_documented_shape():
    recorded = orjson.loads((FRAMES / "legacy/snapshot.json").read_bytes())
    event = parse_frame((FRAMES / "legacy/snapshot.json").read_bytes(), received_ms=TS)
    assert wire.snapshot_message(event, 2, 2, era="legacy") == recorded
    recorded = orjson.loads((FRAMES / "legacy/trade.json").read_bytes())
    event = parse_frame((FRAMES / "legacy/trade.json").read_bytes())
    assert wire.trade_message(event, 11, era="legacy") == recorded


def test_current_trade_has_the_recorded_shape():
    recorded = orjson.loads((FRAMES / "current/trade.json").read_bytes())
    event = parse_frame((FRAMES / "current/trade.json").read_bytes())
    assert wire.trade_message(event, 11) == recorded


def test_market_id_is_a_stable_uuid_per_ticker():
    assert wire.market_id_for("T1") == wire.market_id_for("T1") != wire.market_id_for("T2")
    assert len(wire.market_id_for("T1")) == 36


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("era", ["current", "legacy"])
def test_snapshot_round_trip(era):
    event = BookSnapshot("T1", seq=7, ts_ms=TS, yes=((100, 500), (4500, 12000)), no=((5000, 100),), sid=3)
    assert round_trip(wire.snapshot_message(event, 3, 7, era), received_ms=TS) == event


@pytest.mark.parametrize("era", ["current", "legacy"])
def test_empty_snapshot_round_trip(era):
    event = BookSnapshot("T1", seq=1, ts_ms=TS, yes=(), no=(), sid=1)
    message = wire.snapshot_message(event, 1, 1, era)
    assert "yes" not in message["msg"] and "yes_dollars_fp" not in message["msg"]
    assert round_trip(message, received_ms=TS) == event


@pytest.mark.parametrize("era", ["current", "legacy"])
@pytest.mark.parametrize("side", [Side.YES, Side.NO])
@pytest.mark.parametrize("delta", [-300, 300])
def test_delta_round_trip(era, side, delta):
    event = BookDelta("T1", seq=9, ts_ms=TS, side=side, price=4700, delta=delta, sid=1, client_order_id="c-1")
    assert round_trip(wire.delta_message(event, 1, 9, era)) == event


@pytest.mark.parametrize("era", ["current", "legacy"])
@pytest.mark.parametrize("taker", [Side.YES, Side.NO])
def test_trade_round_trip(era, taker):
    event = PublicTrade("T1", 1_781_159_489_000, "t-1", yes_price=3600, count=13600, taker_side=taker, sid=2)
    assert round_trip(wire.trade_message(event, 2, None, era)) == event
    with_seq = PublicTrade("T1", 1_781_159_489_000, "t-1", 3600, 13600, taker, seq=4, sid=2)
    assert round_trip(wire.trade_message(with_seq, 2, 4, era)) == with_seq


def test_sub_penny_and_fractional_values_round_trip_in_the_current_era():
    snapshot = BookSnapshot("DC", seq=1, ts_ms=TS, yes=((10, 1), (20, 150050)), no=((9980, 75),), sid=1)
    message = wire.snapshot_message(snapshot, 1, 1)
    assert message["msg"]["yes_dollars_fp"] == [["0.0010", "0.01"], ["0.0020", "1500.50"]]
    assert round_trip(message, received_ms=TS) == snapshot
    delta = BookDelta("DC", seq=2, ts_ms=TS, side=Side.YES, price=10, delta=-25, sid=1)
    message = wire.delta_message(delta, 1, 2)
    assert (message["msg"]["price_dollars"], message["msg"]["delta_fp"]) == ("0.0010", "-0.25")
    assert round_trip(message) == delta
    trade = PublicTrade("DC", ts_ms=TS, trade_id="t", yes_price=10, count=1, taker_side=Side.NO, sid=2)
    assert round_trip(wire.trade_message(trade, 2)) == trade


@given(
    price=st.integers(1, 9_999),
    delta=st.integers(-10**9, 10**9).filter(bool),
    ts=st.integers(0, 4_102_444_800_000),
    side=st.sampled_from(Side),
)
def test_any_current_era_delta_round_trips(price, delta, ts, side):
    event = BookDelta("T", seq=1, ts_ms=ts, side=side, price=price, delta=delta, sid=1)
    assert round_trip(wire.delta_message(event, 1, 1)) == event


@given(
    cents=st.integers(1, 99),
    contracts=st.integers(-10**6, 10**6).filter(bool),
    ts=st.integers(0, 4_102_444_800_000),
)
def test_any_whole_cent_legacy_delta_round_trips(cents, contracts, ts):
    event = BookDelta("T", seq=1, ts_ms=ts, side=Side.NO, price=cents * 100, delta=contracts * 100, sid=1)
    assert round_trip(wire.delta_message(event, 1, 1, "legacy")) == event


# ---------------------------------------------------------------------------------------------
# What the legacy era cannot say
# ---------------------------------------------------------------------------------------------
def test_legacy_refuses_sub_penny_prices():
    delta = BookDelta("DC", seq=2, ts_ms=TS, side=Side.YES, price=10, delta=100)
    with pytest.raises(wire.UnrepresentableOnWire, match="0.0010 is sub-penny"):
        wire.delta_message(delta, 1, 2, "legacy")
    snapshot = BookSnapshot("DC", seq=1, ts_ms=TS, yes=((4510, 100),), no=())
    with pytest.raises(wire.UnrepresentableOnWire, match="0.4510 is sub-penny"):
        wire.snapshot_message(snapshot, 1, 1, "legacy")


def test_legacy_refuses_fractional_counts():
    delta = BookDelta("DC", seq=2, ts_ms=TS, side=Side.YES, price=4500, delta=-150)
    with pytest.raises(wire.UnrepresentableOnWire, match="-1.50 is fractional"):
        wire.delta_message(delta, 1, 2, "legacy")
    trade = PublicTrade("DC", ts_ms=1_781_159_489_000, trade_id="t", yes_price=4500, count=25, taker_side=Side.NO)
    with pytest.raises(wire.UnrepresentableOnWire, match="0.25 is fractional"):
        wire.trade_message(trade, 2, era="legacy")


def test_legacy_refuses_sub_second_trade_times():
    trade = PublicTrade("DC", ts_ms=TS, trade_id="t", yes_price=4500, count=100, taker_side=Side.NO)
    with pytest.raises(wire.UnrepresentableOnWire, match="whole seconds"):
        wire.trade_message(trade, 2, era="legacy")


def test_unknown_era_is_refused():
    delta = BookDelta("DC", seq=2, ts_ms=TS, side=Side.YES, price=4500, delta=100)
    with pytest.raises(ValueError, match="era must be"):
        wire.delta_message(delta, 1, 2, "v3")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Control messages
# ---------------------------------------------------------------------------------------------
def test_control_messages_round_trip():
    assert round_trip(wire.subscribed_message(1, "trade", 2)) == Subscribed(1, "trade", 2)
    assert round_trip(wire.unsubscribed_message(3, 2)) == Unsubscribed(3, 2)
    assert round_trip(wire.error_message(4, WsErrorCode.UNKNOWN_SID, "Unknown sid")) == ErrorReply(4, 7, "Unknown sid")
    assert round_trip(wire.ok_message(5, sid=1, seq=40, market_tickers=["A", "B"])) == OkReply(
        5, sid=1, seq=40, market_tickers=("A", "B")
    )
    listed = round_trip(wire.list_subscriptions_message(6, [("orderbook_delta", 1), ("trade", 2)]))
    assert listed == OkReply(6, subscriptions=(SubscriptionInfo("orderbook_delta", 1), SubscriptionInfo("trade", 2)))


def test_error_message_shape():
    assert wire.error_message(1, 16, "Market not found") == {
        "type": "error",
        "id": 1,
        "msg": {"code": 16, "msg": "Market not found"},
    }


def test_ms_to_rfc3339():
    assert wire.ms_to_rfc3339(TS) == "2026-06-11T06:31:29.957Z"
    assert wire.ms_to_rfc3339(0) == "1970-01-01T00:00:00.000Z"
