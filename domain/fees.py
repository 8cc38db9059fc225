"""Kalshi's trading fee: ``rate x C x P x (1 - P)``, rounded up twice.

For ``C`` contracts at YES price ``P`` dollars, a taker pays ``0.07 x C x P x (1 - P)`` and a maker
``0.0175 x C x P x (1 - P)`` on series with maker fees (nothing elsewhere). The exchange rounds
the amount up to $0.0001, then up to the account's precision (usually $0.01). The formula is
symmetric in ``P`` and ``1 - P``, so a YES price and the matching NO price cost the same fee.

Everything is integer arithmetic on the domain units (see ``domain.values``): no float or
decimal ever touches a fee.
"""

from __future__ import annotations

import attrs

from domain.values import COUNT_SCALE, MONEY_SCALE, ONE_DOLLAR, PRICE_SCALE

RATE_SCALE = 10_000  # rates are parts per ten thousand: 700 is 7%

# rate/RATE_SCALE x count/COUNT_SCALE x price/PRICE_SCALE x (1 - price)/PRICE_SCALE dollars,
# x MONEY_SCALE for micro-dollars: one exact integer division by this.
FEE_DENOMINATOR = RATE_SCALE * COUNT_SCALE * PRICE_SCALE * PRICE_SCALE // MONEY_SCALE

KALSHI_TAKER_RATE = 700
KALSHI_MAKER_RATE = 175
FEE_INCREMENT_MICROS = 100  # $0.0001
CENT_ACCOUNT_INCREMENT_MICROS = 10_000  # $0.01


class FeeError(ValueError):
    """A fee schedule that cannot exist, or a fee asked for an impossible trade."""


def _check_rate(_instance: object, attribute: attrs.Attribute, rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise FeeError(f"{attribute.name} must be an integer in parts per {RATE_SCALE}, got {rate!r}")
    if not 0 <= rate <= RATE_SCALE:
        raise FeeError(
            f"{attribute.name} must be between 0 and {RATE_SCALE} parts per {RATE_SCALE}, got {rate}"
        )


def _check_increment(_instance: object, attribute: attrs.Attribute, increment: int) -> None:
    if isinstance(increment, bool) or not isinstance(increment, int) or increment <= 0:
        raise FeeError(
            f"{attribute.name} must be a positive integer of micro-dollars, got {increment!r}"
        )


@attrs.frozen
class FeeSchedule:
    """Fee rates in parts per 10_000 and the two rounding steps in micro-dollars."""

    taker_rate: int = attrs.field(validator=_check_rate)
    maker_rate: int = attrs.field(default=0, validator=_check_rate)
    fee_increment_micros: int = attrs.field(default=FEE_INCREMENT_MICROS, validator=_check_increment)
    account_increment_micros: int = attrs.field(
        default=CENT_ACCOUNT_INCREMENT_MICROS, validator=_check_increment
    )

    def __attrs_post_init__(self) -> None:
        if self.account_increment_micros % self.fee_increment_micros:
            raise FeeError(
                f"account_increment_micros ({self.account_increment_micros}) must be a multiple of "
                f"fee_increment_micros ({self.fee_increment_micros})"
            )

    @classmethod
    def kalshi_standard(
        cls, *, account_increment_micros: int = CENT_ACCOUNT_INCREMENT_MICROS
    ) -> FeeSchedule:
        """Takers pay 7%; makers pay nothing (most series)."""
        return cls(KALSHI_TAKER_RATE, 0, account_increment_micros=account_increment_micros)

    @classmethod
    def kalshi_with_maker_fees(
        cls, *, account_increment_micros: int = CENT_ACCOUNT_INCREMENT_MICROS
    ) -> FeeSchedule:
        """Takers pay 7%, makers 1.75% (series that charge maker fees)."""
        return cls(
            KALSHI_TAKER_RATE, KALSHI_MAKER_RATE, account_increment_micros=account_increment_micros
        )

    @classmethod
    def zero(cls) -> FeeSchedule:
        return cls(0, 0)

    def fee(self, count: int, price: int, *, is_taker: bool) -> int:
        """The fee in micro-dollars for ``count`` count units at YES ``price`` price units."""
        # Plain ints in range (the simulated exchange's every order) skip the detailed checks.
        if not (type(count) is int and type(price) is int and count >= 0 and 0 <= price <= ONE_DOLLAR):
            _check_fee_inputs(count, price)
        rate = self.taker_rate if is_taker else self.maker_rate
        exact = rate * count * price * (ONE_DOLLAR - price)  # in 1/FEE_DENOMINATOR micro-dollars
        step = self.fee_increment_micros
        fee = -(-exact // (FEE_DENOMINATOR * step)) * step  # ceil to $0.0001
        step = self.account_increment_micros
        return -(-fee // step) * step  # then ceil to the account's precision


def _check_fee_inputs(count: object, price: object) -> None:
    """Refuse what :meth:`FeeSchedule.fee` cannot price (int subclasses other than bool pass)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise FeeError(f"fee count must be a non-negative integer of count units, got {count!r}")
    if isinstance(price, bool) or not isinstance(price, int) or not 0 <= price <= ONE_DOLLAR:
        raise FeeError(f"fee price must be an integer of price units in 0..{ONE_DOLLAR}, got {price!r}")
