"""Kalshi frames (recorded-style resources, both eras) parsed to domain values."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from adapters.kalshi.parsing import (
    PAYLOAD_EXCERPT,
    ErrorReply,
    MalformedMessage,
    OkReply,
    Subscribed,
    SubscriptionInfo,
    Unsubscribed,
    UnknownMessage,
    WsErrorCode,
    parse_frame,
    parse_message,
    rfc3339_to_ms,
)
from domain.events import BookDelta, BookSnapshot, PublicTrade
from domain.orderbook import OrderBook
from domain.values import Side

FRAMES = Path(__file__).resolve().parents[2] / "resources" / "kalshi_frames"
RECEIVED_MS = 1_781_000_000_000
NY = "KXHIGHNY-26JUN11-B85.5"
FED = "FED-23DEC-T3.00"
BTC = "KXBTCD-26JUN1117-T108999.99"


def frame(name: str) -> bytes:
    return (FRAMES / name).read_bytes()


def parse(name: str, received_ms: int | None = RECEIVED_MS):
    return parse_frame(frame(name), received_ms)


# ---------------------------------------------------------------------------------------------
# Current era
# ---------------------------------------------------------------------------------------------
def test_current_snapshot_from_the_protocol_page():
    assert parse("current/snapshot.json") == BookSnapshot(
        NY, seq=1, ts_ms=RECEIVED_MS, yes=((4500, 12000), (4700, 300)), no=((4800, 200),), sid=1
    )


def test_snapshot_without_any_time_needs_a_receive_time():
    with pytest.raises(MalformedMessage, match="no ts_ms or ts, and no receive time"):
        parse("current/snapshot.json", received_ms=None)


def test_current_delta_from_the_protocol_page():
    assert parse("current/delta.json") == BookDelta(
        NY, seq=2, ts_ms=1781159489957, side=Side.YES, price=4700, delta=-300, sid=1
    )


def test_delta_caused_by_our_own_order_keeps_the_client_order_id():
    delta = parse("current/delta_own_order.json")
    assert delta == BookDelta(
        NY, seq=3, ts_ms=1781159490101, side=Side.NO, price=4600, delta=500, sid=1, client_order_id="kf-000017"
    )


def test_values_arriving_as_json_numbers_are_parsed_exactly():
    delta = parse("current/delta_json_numbers.json")
    assert (delta.price, delta.delta, delta.ts_ms) == (4700, -150, 1781159490200)


def test_delta_time_comes_from_rfc3339_ts_when_ts_ms_is_missing():
    assert parse("current/delta_ts_only.json").ts_ms == 1781159491250


def test_deci_cent_fractional_snapshot_is_exact_and_sorted_ascending():
    snapshot = parse("current/snapshot_deci_cent_fractional.json")
    assert snapshot.ticker == BTC and snapshot.sid == 3
    assert snapshot.yes == ((10, 150050), (20, 700), (30, 1225))  # sent out of order; best last
    assert snapshot.no == ((9950, 75),)


def test_empty_and_missing_sides_are_empty_tuples():
    snapshot = parse("current/snapshot_one_side_missing.json")
    assert snapshot.yes == () and snapshot.no == ()


def test_current_trade():
    assert parse("current/trade.json") == PublicTrade(
        NY,
        ts_ms=1781159491042,
        trade_id="d91bc706-ee49-470d-82d8-11418bda6fed",
        yes_price=3600,
        count=13600,
        taker_side=Side.NO,
        seq=None,
        sid=11,
    )


def test_fractional_sub_penny_trade_with_seq():
    trade = parse("current/trade_fractional_subpenny.json")
    assert (trade.yes_price, trade.no_price, trade.count, trade.taker_side, trade.seq) == (30, 9970, 25, Side.YES, 7)


# ---------------------------------------------------------------------------------------------
# Legacy era
# ---------------------------------------------------------------------------------------------
def test_legacy_snapshot_in_cents_and_contracts():
    assert parse("legacy/snapshot.json") == BookSnapshot(
        FED,
        seq=2,
        ts_ms=RECEIVED_MS,
        yes=((800, 30000), (2200, 33300)),
        no=((5400, 2000), (5600, 14600)),
        sid=2,
    )


def test_transitional_snapshot_prefers_the_dollar_fields():
    snapshot = parse("legacy/snapshot_with_dollars.json")
    assert snapshot.yes == ((800, 30000), (2200, 33300))
    assert snapshot.no == ((5400, 2000),)


def test_descending_levels_are_normalised_to_ascending():
    assert parse("legacy/snapshot_descending.json").yes == ((800, 30000), (2200, 33300))


def test_legacy_delta_with_rfc3339_ts():
    assert parse("legacy/delta_rfc3339.json") == BookDelta(
        FED, seq=3, ts_ms=1762178531512, side=Side.YES, price=9600, delta=-5400, sid=2
    )


def test_legacy_delta_with_integer_seconds_ts():
    delta = parse("legacy/delta_seconds.json")
    assert (delta.ts_ms, delta.side, delta.price, delta.delta) == (1762178531000, Side.NO, 5400, 1200)


def test_legacy_delta_without_ts_takes_the_receive_time():
    assert parse("legacy/delta_no_ts.json").ts_ms == RECEIVED_MS
    with pytest.raises(MalformedMessage, match="no receive time"):
        parse("legacy/delta_no_ts.json", received_ms=None)


def test_legacy_delta_with_dollars_beside_the_cents():
    delta = parse("legacy/delta_with_dollars.json")
    assert (delta.price, delta.delta, delta.ts_ms) == (4700, -300, 1770026400000)


def test_legacy_trade():
    trade = parse("legacy/trade.json")
    assert (trade.ticker, trade.yes_price, trade.count, trade.taker_side, trade.ts_ms) == (
        "HIGHNY-22DEC23-B53.5",
        3600,
        13600,
        Side.NO,
        1669149841000,
    )


def test_a_legacy_session_rebuilds_the_book():
    book = OrderBook(FED)
    book.apply(parse("legacy/snapshot.json"))
    book.apply(parse("legacy/delta_seconds.json"))  # NO 54c +12
    book.apply(parse("legacy/delta_no_ts.json"))  # YES 22c -333: the level goes
    assert book.levels(Side.YES) == ((800, 30000),)
    assert book.levels(Side.NO) == ((5400, 3200), (5600, 14600))
    assert book.yes_ask == 10_000 - 5600


def test_a_delta_that_differs_between_price_and_price_dollars_trusts_the_dollars():
    message = orjson.loads(frame("legacy/delta_with_dollars.json"))
    message["msg"]["price"] = 46  # the exact field wins
    assert parse_message(message).price == 4700


# ---------------------------------------------------------------------------------------------
# Control messages
# ---------------------------------------------------------------------------------------------
def test_subscribed_ack():
    assert parse("control/subscribed.json") == Subscribed(id=1, channel="orderbook_delta", sid=1)


def test_unsubscribed():
    assert parse("control/unsubscribed.json") == Unsubscribed(id=2, sid=1)
    assert parse_frame(b'{"type":"unsubscribed","id":2,"msg":{"sid":9}}') == Unsubscribed(id=2, sid=9)


def test_error_reply_with_its_code():
    reply = parse("control/error.json")
    assert reply == ErrorReply(id=3, code=16, msg="Market not found")
    assert WsErrorCode(reply.code) is WsErrorCode.MARKET_NOT_FOUND
    assert not WsErrorCode(reply.code).needs_resubscribe
    assert WsErrorCode.SUBSCRIPTION_BUFFER_OVERFLOW.needs_resubscribe


def test_ok_reply_to_update_subscription():
    assert parse("control/ok_update_subscription.json") == OkReply(
        id=4, sid=1, seq=222, market_tickers=("T1", "T2", "T3")
    )


def test_ok_reply_to_list_subscriptions():
    reply = parse("control/ok_list_subscriptions.json")
    assert reply.subscriptions == (SubscriptionInfo("orderbook_delta", 1), SubscriptionInfo("trade", 2))


def test_unknown_types_are_reported_not_raised():
    message = parse("control/ticker.json")
    assert isinstance(message, UnknownMessage)
    assert message.type == "ticker"
    assert message.payload["msg"]["yes_bid_dollars"] == "0.4500"


# ---------------------------------------------------------------------------------------------
# Malformed frames
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("malformed/truncated.txt", "frame is not JSON"),
        ("malformed/not_an_object.json", "frame is not a JSON object"),
        ("malformed/no_type.json", "missing field 'type'"),
        ("malformed/delta_missing_msg.json", "orderbook_delta: missing 'msg'"),
        ("malformed/delta_bad_side.json", "side must be 'yes' or 'no', got 'maybe'"),
        ("malformed/delta_no_price.json", "neither 'price_dollars' nor 'price'"),
        ("malformed/delta_price_too_precise.json", "more than 4 decimal places"),
        ("malformed/delta_price_above_one_dollar.json", r"outside \$0..\$1"),
        ("malformed/delta_missing_ticker.json", "missing field 'market_ticker'"),
        ("malformed/legacy_delta_float_cents.json", "legacy price must be integer cents"),
        ("malformed/snapshot_duplicate_price.json", "YES side repeats price 0.4500"),
        ("malformed/snapshot_zero_count.json", "NO level at '0.4800' has count '0.00' <= 0"),
        ("malformed/snapshot_level_not_pair.json", r"YES level must be \[price, count\]"),
        ("malformed/trade_prices_disagree.json", "do not add up to \\$1"),
        ("malformed/error_without_code.json", "error code must be an integer"),
    ],
)
def test_malformed_frames_name_what_was_wrong(name, reason):
    with pytest.raises(MalformedMessage, match=reason) as caught:
        parse(name)
    error = caught.value
    assert isinstance(error, ValueError)
    text = frame(name).decode()
    assert error.payload == (text if len(text) <= PAYLOAD_EXCERPT else text[:PAYLOAD_EXCERPT] + "...")
    assert error.reason in str(error)


def test_the_payload_in_an_error_is_truncated():
    huge = b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"' + b"X" * 5000 + b'"}}'
    with pytest.raises(MalformedMessage) as caught:
        parse_frame(huge)
    assert len(caught.value.payload) == PAYLOAD_EXCERPT + 3
    assert caught.value.payload.startswith('{"type":"orderbook_delta"')


@pytest.mark.parametrize(
    "body",
    [
        {"side": "yes", "price_dollars": "0.4700", "delta_fp": "1.00", "market_ticker": "T", "ts_ms": "soon"},
        {"side": "yes", "price_dollars": "0.4700", "delta_fp": True, "market_ticker": "T", "ts_ms": 1},
        {"side": "yes", "price_dollars": ["0.47"], "delta_fp": "1.00", "market_ticker": "T", "ts_ms": 1},
        {"side": "yes", "price_dollars": "0.4700", "delta_fp": "1.00", "market_ticker": 7, "ts_ms": 1},
    ],
)
def test_wrongly_typed_fields_are_malformed(body):
    with pytest.raises(MalformedMessage):
        parse_message({"type": "orderbook_delta", "sid": 1, "seq": 2, "msg": body})


def test_non_integer_seq_is_malformed():
    message = orjson.loads(frame("current/delta.json"))
    message["seq"] = "2"
    with pytest.raises(MalformedMessage, match="seq must be an integer"):
        parse_message(message)


def test_rfc3339_parsing():
    assert rfc3339_to_ms("2026-06-11T06:31:29.957081Z") == 1781159489957
    assert rfc3339_to_ms("2026-06-11T08:31:29.957+02:00") == 1781159489957
    with pytest.raises(ValueError, match="no UTC offset"):
        rfc3339_to_ms("2026-06-11T06:31:29")
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        rfc3339_to_ms("yesterday")
