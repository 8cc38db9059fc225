"""Money, averages and fills as Kalshi spells them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.kalshi.wire import ms_to_rfc3339
from domain.orders import OrderSide
from domain.values import ONE_DOLLAR, format_count, format_fixed, format_price

if TYPE_CHECKING:
    from adapters.local_exchange.trading.accounts import AccountFill

_MICROS_PER_PRICE_UNIT = 100  # $0.0001 in micro-dollars


def dollars(micros: int) -> str:
    """Micro-dollars as a dollar string: four decimals when exact (fees, whole-cent prices x
    whole contracts), six otherwise (a sub-penny price times a fractional count) -- never rounded."""
    if micros % _MICROS_PER_PRICE_UNIT == 0:
        return format_fixed(micros // _MICROS_PER_PRICE_UNIT, 4)
    return format_fixed(micros, 6)


def per_count(total: int, count: int) -> int:
    """``total`` (micro-dollars) per contract over ``count`` count units, in price units rounded
    half up. Micro-dollars / count units = price units, as one contract is 100 count units and
    $0.0001 is 100 micro-dollars."""
    return (2 * total + count) // (2 * count) if count else 0


def fill_fields(fill: AccountFill) -> dict[str, object]:
    """What the fill channel and ``/portfolio/fills`` both say of a fill. A bid's fill is side
    "yes" action "buy", an ask's side "yes" action "sell"; prices four decimals, counts two."""
    execution = fill.fill
    return {
        "trade_id": execution.fill_id,
        "order_id": execution.order_id,
        "market_ticker": execution.ticker,
        "is_taker": execution.is_taker,
        "side": "yes",
        "action": "buy" if execution.side is OrderSide.BID else "sell",
        "yes_price_dollars": format_price(execution.price),
        "no_price_dollars": format_price(ONE_DOLLAR - execution.price),
        "count_fp": format_count(execution.count),
        "post_position_fp": format_count(fill.post_position),
        "ts": execution.ts_ms // 1000,
        "ts_ms": execution.ts_ms,
        "client_order_id": fill.client_order_id,
    }


def rfc3339(ts_ms: int) -> str:
    return ms_to_rfc3339(ts_ms)
