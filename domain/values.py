"""Exact fixed-point units for prices, counts and money.

Kalshi quotes dollar strings with four decimals ("0.4500") and fixed-point counts with two
("120.00"). The domain holds every one of them as a plain integer in the smallest unit the wire
can express, so arithmetic is exact and the hot paths stay on ints:

* price  -- ten-thousandths of a dollar: ``"0.4500"`` -> 4500, one dollar is ``ONE_DOLLAR``.
* count  -- hundredths of a contract:    ``"120.00"`` -> 12000, one contract is ``ONE_CONTRACT``.
* money  -- millionths of a dollar (micro-dollars). price x count lands here exactly:
  4500 x 12000 = 54_000_000 micro-dollars = $54.00.

Floats never enter the ledger; they appear only in normalised features and statistics.
"""

from __future__ import annotations

import decimal
import enum
import math

PRICE_DECIMALS = 4
COUNT_DECIMALS = 2
MONEY_DECIMALS = 6

PRICE_SCALE = 10**PRICE_DECIMALS
COUNT_SCALE = 10**COUNT_DECIMALS
MONEY_SCALE = 10**MONEY_DECIMALS

ONE_DOLLAR = PRICE_SCALE  # a price: what a winning contract pays
ONE_CONTRACT = COUNT_SCALE
ONE_CENT_PRICE = PRICE_SCALE // 100
MONEY_PER_CENT = MONEY_SCALE // 100

# The price ladder a book indexes: every price from 0 to $1 inclusive, in price units.
LADDER_SIZE = ONE_DOLLAR + 1


class Side(enum.IntEnum):
    """The two contracts of a binary market. Ints, so hot paths can index with them."""

    YES = 0
    NO = 1

    @property
    def other(self) -> "Side":
        return Side.NO if self is Side.YES else Side.YES

    @classmethod
    def parse(cls, text: str) -> "Side":
        try:
            return _SIDE_NAMES[text]
        except (KeyError, TypeError):
            raise ValueError(f"side must be 'yes' or 'no', got {text!r}") from None


_SIDE_NAMES = {"yes": Side.YES, "no": Side.NO, "YES": Side.YES, "NO": Side.NO}


class FixedPointError(ValueError):
    """A decimal value that cannot be held exactly at the requested precision."""


def parse_fixed(value: str | int | float, decimals: int, *, what: str = "value") -> int:
    """Parse a decimal (string, or a JSON number) into an integer with ``decimals`` places.

    Exact: ``parse_fixed("0.4500", 4) == 4500``. More significant digits than ``decimals``
    are refused rather than rounded -- corrupt data is worse than no data.
    """
    if isinstance(value, bool):
        raise FixedPointError(f"{what}: expected a decimal, got {value!r}")
    if isinstance(value, int):
        return value * 10**decimals
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FixedPointError(f"{what}: not a finite number: {value!r}")
        # repr() is the shortest string that round-trips, i.e. what the sender wrote.
        text = format(decimal.Decimal(repr(value)), "f")
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise FixedPointError(f"{what}: expected a decimal string or number, got {type(value).__name__}")

    negative = text.startswith("-")
    body = text[1:] if negative or text.startswith("+") else text
    whole, dot, frac = body.partition(".")
    if not whole and not frac or not (whole or "0").isdigit() or (dot and frac and not frac.isdigit()):
        raise FixedPointError(f"{what}: not a decimal number: {value!r}")
    if len(frac) > decimals:
        extra = frac[decimals:]
        if extra.strip("0"):
            raise FixedPointError(
                f"{what}: {value!r} has more than {decimals} decimal places; refusing to round"
            )
        frac = frac[:decimals]
    number = int(whole or "0") * 10**decimals + int(frac.ljust(decimals, "0") or "0")
    return -number if negative else number


def format_fixed(number: int, decimals: int) -> str:
    """The inverse of :func:`parse_fixed`: ``format_fixed(4500, 4) == "0.4500"``."""
    sign = "-" if number < 0 else ""
    whole, frac = divmod(abs(number), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}" if decimals else f"{sign}{whole}"


def parse_price(value: str | int | float) -> int:
    """A dollar price ("0.4500") to price units; refuses anything outside [0, 1]."""
    price = parse_fixed(value, PRICE_DECIMALS, what="price")
    if not 0 <= price <= ONE_DOLLAR:
        raise FixedPointError(f"price: {value!r} is outside $0..$1")
    return price


def parse_count(value: str | int | float) -> int:
    """A fixed-point count ("120.00", may be signed for deltas) to hundredths of a contract."""
    return parse_fixed(value, COUNT_DECIMALS, what="count")


def price_from_cents(cents: int) -> int:
    """A legacy-era integer-cent price (1..99) to price units."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise FixedPointError(f"legacy price must be integer cents, got {cents!r}")
    if not 0 <= cents <= 100:
        raise FixedPointError(f"legacy price {cents} is outside 0..100 cents")
    return cents * ONE_CENT_PRICE


def count_from_contracts(contracts: int) -> int:
    """A legacy-era integer count to hundredths of a contract."""
    if isinstance(contracts, bool) or not isinstance(contracts, int):
        raise FixedPointError(f"legacy count must be an integer, got {contracts!r}")
    return contracts * ONE_CONTRACT


def format_price(price: int) -> str:
    return format_fixed(price, PRICE_DECIMALS)


def format_count(count: int) -> str:
    return format_fixed(count, COUNT_DECIMALS)


def format_money(micros: int, decimals: int = 2) -> str:
    """Micro-dollars as a dollar string, rounded half away from zero to ``decimals`` places."""
    step = 10 ** (MONEY_DECIMALS - decimals)
    sign = -1 if micros < 0 else 1
    rounded = (abs(micros) + step // 2) // step
    return format_fixed(sign * rounded, decimals)


def notional(price: int, count: int) -> int:
    """price units x count units = micro-dollars, exactly."""
    return price * count
