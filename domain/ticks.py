"""Kalshi's tick grids: a market's ``price_level_structure`` says which YES prices it accepts.

``linear_cent``: $0.01 everywhere; ``deci_cent``: $0.001 everywhere; ``tapered_deci_cent``:
$0.001 below $0.10 and above $0.90, $0.01 between. The grids are symmetric about $0.50, so a
NO price is on the grid exactly when its YES price is. Prices are in price units ($0.0001).
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.values import ONE_DOLLAR

PRICE_LEVEL_STRUCTURES = ("linear_cent", "deci_cent", "tapered_deci_cent")
CENT, DECI_CENT = 100, 10
_TAPER_LOW, _TAPER_HIGH = 1_000, 9_000  # $0.10 and $0.90: the tapered grid's cent band


def check_structure(structure: str, *, name: str = "price_level_structure") -> str:
    if structure not in PRICE_LEVEL_STRUCTURES:
        raise ValueError(f"{name} must be one of {', '.join(PRICE_LEVEL_STRUCTURES)}, got {structure!r}")
    return structure


def tick_at(structure: str, price: int) -> int:
    """The tick size at ``price`` on a ``structure`` grid."""
    if structure == "linear_cent":
        return CENT
    if structure == "deci_cent" or price < _TAPER_LOW or price > _TAPER_HIGH:
        return DECI_CENT
    return CENT


def _dollars(price: int) -> str:
    return f"${price // ONE_DOLLAR}.{price % ONE_DOLLAR:04d}"


def off_grid(structure: str, price: int) -> str | None:
    """Why ``price`` cannot be ordered on a ``structure`` market (Kalshi's 400 ``invalid_price``),
    or None when it is on the grid."""
    tick = tick_at(structure, price)
    if not price % tick:
        return None
    return f"price {_dollars(price)} is off the tick grid: a {structure} market has ticks of {_dollars(tick)} there"


def coarsest_structure(prices: Iterable[int]) -> str:
    """The coarsest grid holding every price in ``prices`` (YES or NO prices alike): the grid a
    market's recording shows it has, when the recording does not say. Orders priced off its
    book -- at a bid, an ask, or a mid rounded to the cent -- are on it."""
    tapered = False
    for price in prices:
        if price % CENT:
            if _TAPER_LOW < price < _TAPER_HIGH:
                return "deci_cent"
            tapered = True
    return "tapered_deci_cent" if tapered else "linear_cent"
