"""The few messages the exchange sends that :mod:`adapters.kalshi.wire` does not build.

* ``ticker`` (Kalshi's shape, partly unconfirmed: see kalshi-protocol.md). The synthetic
  market tracks no positions, so there is no open interest to report and the field is left
  out rather than invented.
* the unsolicited ``error`` 25 that drops an overflowing subscription; it names the sid.
* a torn frame, for the ``malformed`` fault.
* ``fill`` (private): one execution of the connection's account, fields as
  :func:`adapters.local_exchange.trading.formats.fill_fields` gives them.
"""

from __future__ import annotations

from adapters.kalshi import wire
from adapters.kalshi.parsing import WsErrorCode
from adapters.local_exchange.markets import TickerUpdate
from adapters.local_exchange.trading.accounts import AccountFill
from adapters.local_exchange.trading.formats import fill_fields
from domain.values import ONE_CENT_PRICE, ONE_CONTRACT, format_count, format_price


def ticker_message(update: TickerUpdate, sid: int, era: wire.Era = "current") -> wire.Message:
    if era == "current":
        msg: wire.Message = {
            "market_ticker": update.ticker,
            "market_id": wire.market_id_for(update.ticker),
            "price_dollars": format_price(update.last_price),
            "yes_bid_dollars": format_price(update.yes_bid),
            "yes_ask_dollars": format_price(update.yes_ask),
            "volume_fp": format_count(update.volume),
            "ts": update.ts_ms // 1000,
            "ts_ms": update.ts_ms,
        }
    else:  # legacy markets are whole cents and whole contracts (the exchange checks at start)
        msg = {
            "market_ticker": update.ticker,
            "market_id": wire.market_id_for(update.ticker),
            "price": update.last_price // ONE_CENT_PRICE,
            "yes_bid": update.yes_bid // ONE_CENT_PRICE,
            "yes_ask": update.yes_ask // ONE_CENT_PRICE,
            "volume": update.volume // ONE_CONTRACT,
            "ts": update.ts_ms // 1000,
        }
    return {"type": "ticker", "sid": sid, "msg": msg}


def overflow_message(sid: int, channel: str) -> wire.Message:
    """Unsolicited, so without a command id; after it the subscription is gone."""
    message = wire.error_message(
        None,
        WsErrorCode.SUBSCRIPTION_BUFFER_OVERFLOW,
        f"subscription buffer overflow: the client is not reading fast enough; "
        f"{channel} sid {sid} was dropped, subscribe again",
    )
    del message["id"]
    message["sid"] = sid
    return message


def torn_frame(frame: str) -> str:
    """The first half of a frame: what a client gets when a frame is cut short (not JSON)."""
    return frame[: max(1, len(frame) // 2)]


def fill_message(fill: AccountFill, sid: int) -> wire.Message:
    """Current era only: fills arrived after the legacy fields were gone."""
    return {"type": "fill", "sid": sid, "msg": fill_fields(fill)}
