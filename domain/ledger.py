"""Positions, cash and settlement the way Kalshi books them, exact to the micro-dollar.

A position is one signed quantity per market: ``+N`` is N YES contracts, ``-N`` is N NO contracts
(count units). A fill is a YES price on one ladder (see ``domain.orders``):

* a bid buys YES at ``p``. Holding NO, it first closes NO -- Kalshi nets the pair and hands back
  ``$1`` per pair, which is the same as selling NO at ``1 - p`` -- and any remainder opens YES.
* an ask sells YES at ``p``, i.e. buys NO at ``1 - p``. Holding YES, it first closes YES at ``p``;
  any remainder opens NO at ``1 - p``.

Cash moves as Kalshi moves it (opening costs the price of the contract on its own side; closing
returns the price of the side being closed), so the ledger can be reconciled with the exchange
balance to the cent. Fees always come off cash.

Cost basis is what the open contracts cost, each on its own side. Closing ``c`` of ``|q|``
removes ``cost_basis x c // |q|`` (exactly all of it when ``c == |q|``), so realised P&L plus
the remaining basis always equals what was paid: no micro-dollar is lost. Realised P&L is gross;
fees are tracked beside it.

Money is micro-dollars, prices price units, counts count units -- all ints.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

import attrs

from domain.orders import Fill, OrderSide
from domain.values import ONE_DOLLAR, Side


class LedgerError(ValueError):
    """A fill, settlement or mark the ledger refuses to book."""


def _check_mark(ticker: str, mark: int) -> None:
    if isinstance(mark, bool) or not isinstance(mark, int) or not 0 <= mark <= ONE_DOLLAR:
        raise LedgerError(
            f"{ticker}: mark must be a YES price in 0..{ONE_DOLLAR} price units, got {mark!r}"
        )


# Enum members looked up through their class cost a Python-level call on 3.11 (~0.15 us);
# the per-step paths below compare against these module constants instead.
_BID = OrderSide.BID


@attrs.frozen
class PositionSnapshot:
    ticker: str
    quantity: int
    cost_basis: int
    realized_pnl: int
    fees_paid: int
    settled: Side | None


@attrs.define(eq=False)
class Position:
    """One market's holding: signed quantity, cost of the open contracts, P&L booked so far."""

    ticker: str
    quantity: int = 0  # count units; + YES, - NO
    cost_basis: int = 0  # micro-dollars paid for the open contracts, each on its own side
    realized_pnl: int = 0  # micro-dollars, before fees
    fees_paid: int = 0
    settled: Side | None = None  # the result, once the market has resolved

    @property
    def side(self) -> Side | None:
        if self.quantity > 0:
            return Side.YES
        return Side.NO if self.quantity < 0 else None

    @property
    def average_entry_price(self) -> int | None:
        """Average price paid per contract on the held side, in price units rounded half up.

        For display and features; ``cost_basis`` and ``quantity`` are the exact values.
        """
        held = abs(self.quantity)
        if not held:
            return None
        return (2 * self.cost_basis + held) // (2 * held)

    def closing_count(self, side: OrderSide, count: int) -> int:
        """How much of a ``count`` fill on ``side`` would close this position rather than add to it."""
        if side is _BID:
            return min(count, -self.quantity) if self.quantity < 0 else 0
        return min(count, self.quantity) if self.quantity > 0 else 0

    def market_value(self, mark: int) -> int:
        """The open contracts at YES price ``mark``: YES ``q x m``, NO ``|q| x (1 - m)``."""
        if type(mark) is not int or not 0 <= mark <= ONE_DOLLAR:  # valued every step: check plain ints cheaply
            _check_mark(self.ticker, mark)
        if self.quantity >= 0:
            return self.quantity * mark
        return -self.quantity * (ONE_DOLLAR - mark)

    def unrealized_pnl(self, mark: int) -> int:
        return self.market_value(mark) - self.cost_basis

    def settlement_value(self, result: Side) -> int:
        """The payout at resolution: $1 per contract on the winning side."""
        if self.quantity > 0 and result is Side.YES:
            return self.quantity * ONE_DOLLAR
        if self.quantity < 0 and result is Side.NO:
            return -self.quantity * ONE_DOLLAR
        return 0

    def snapshot(self) -> PositionSnapshot:
        return PositionSnapshot(
            self.ticker, self.quantity, self.cost_basis, self.realized_pnl, self.fees_paid, self.settled
        )

    def apply(self, side: OrderSide, price: int, count: int, fee: int) -> tuple[int, int]:
        """Book a fill; returns ``(cash change, realised P&L change)`` in micro-dollars.

        Callers validate; this is the per-step hot path, so plain int arithmetic only.
        """
        if side is _BID:
            direction, open_price = 1, price  # buys YES at p, closes NO at 1 - p
        else:
            direction, open_price = -1, ONE_DOLLAR - price  # buys NO at 1 - p, closes YES at p
        cash = -fee
        realized = 0
        held_against = -self.quantity * direction  # > 0: contracts this fill closes first
        if held_against > 0:
            closed = count if count < held_against else held_against
            removed = self.cost_basis * closed // held_against  # floor; all of it when going flat
            proceeds = (ONE_DOLLAR - open_price) * closed
            realized = proceeds - removed
            cash += proceeds
            self.cost_basis -= removed
            self.quantity += closed * direction
            count -= closed
        if count:
            paid = open_price * count
            cash -= paid
            self.cost_basis += paid
            self.quantity += count * direction
        self.realized_pnl += realized
        self.fees_paid += fee
        return cash, realized


@attrs.frozen
class LedgerSnapshot:
    initial_cash: int
    cash: int
    fees_paid: int
    trades: int
    realized_pnl: int
    positions: tuple[PositionSnapshot, ...]  # sorted by ticker


# Validated once, at construction: per-write hooks would run on every step's bookkeeping.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Ledger:
    """Cash and positions of one account, as Kalshi keeps them."""

    initial_cash: int = attrs.field()
    cash: int = attrs.field(init=False)
    fees_paid: int = attrs.field(init=False, default=0)
    trades: int = attrs.field(init=False, default=0)
    _positions: dict[str, Position] = attrs.field(init=False, factory=dict)

    @initial_cash.validator
    def _check_initial_cash(self, _attribute: object, cash: int) -> None:
        if isinstance(cash, bool) or not isinstance(cash, int) or cash < 0:
            raise LedgerError(
                f"initial cash must be a non-negative integer of micro-dollars, got {cash!r}"
            )

    def __attrs_post_init__(self) -> None:
        self.cash = self.initial_cash

    @property
    def positions(self) -> Mapping[str, Position]:
        """Every market the ledger has booked, flat ones included (read-only view)."""
        return types.MappingProxyType(self._positions)

    def position(self, ticker: str) -> Position:
        """The position in ``ticker``; a fresh flat one (not registered) if never traded."""
        found = self._positions.get(ticker)
        return found if found is not None else Position(ticker)

    def quantity(self, ticker: str) -> int:
        found = self._positions.get(ticker)
        return found.quantity if found is not None else 0

    def find_position(self, ticker: str) -> Position | None:
        """The position in ``ticker``, None if never traded (the environment asks every step)."""
        return self._positions.get(ticker)

    def closing_count(self, fill: Fill) -> int:
        """How much of ``fill`` would close an open position. Ask before :meth:`apply_fill`."""
        position = self._positions.get(fill.ticker)
        return 0 if position is None else position.closing_count(fill.side, fill.count)

    def apply_fill(self, fill: Fill) -> int:
        """Book one execution; returns the realised P&L it produced (micro-dollars, before fees)."""
        if fill.count <= 0:
            raise LedgerError(
                f"fill {fill.fill_id}: count must be positive, got {fill.count} count units"
            )
        if not 0 < fill.price < ONE_DOLLAR:
            raise LedgerError(
                f"fill {fill.fill_id}: price must be strictly between $0 and $1, "
                f"got {fill.price} price units"
            )
        if fill.fee < 0:
            raise LedgerError(
                f"fill {fill.fill_id}: fee must not be negative, got {fill.fee} micro-dollars"
            )
        position = self._positions.get(fill.ticker)
        if position is not None and position.settled is not None:
            raise LedgerError(
                f"fill {fill.fill_id}: market {fill.ticker} has already settled {position.settled.name}"
            )
        return self.book(fill.ticker, fill.side, fill.price, fill.count, fill.fee)

    def book(self, ticker: str, side: OrderSide, price: int, count: int, fee: int) -> int:
        """Book an execution given as its terms, which the caller has validated (the simulated
        exchange's fills, in training, without building a :class:`Fill` for each); returns the
        realised P&L. :meth:`apply_fill` checks a fill and books it through here."""
        position = self._positions.get(ticker)
        if position is None:
            position = self._positions[ticker] = Position(ticker)
        elif position.settled is not None:
            raise LedgerError(f"market {ticker} has already settled {position.settled.name}")
        cash, realized = position.apply(side, price, count, fee)
        self.cash += cash
        self.fees_paid += fee
        self.trades += 1
        return realized

    def settle(self, ticker: str, result: Side) -> int:
        """Resolve ``ticker``: pay $1 per winning contract, close the position; returns the payout."""
        if not isinstance(result, Side):
            raise LedgerError(f"{ticker}: settlement result must be a Side, got {result!r}")
        position = self._positions.get(ticker)
        if position is None:
            position = self._positions[ticker] = Position(ticker)
        elif position.settled is not None:
            raise LedgerError(f"market {ticker} has already settled {position.settled.name}")
        payout = position.settlement_value(result)
        position.realized_pnl += payout - position.cost_basis
        position.quantity = 0
        position.cost_basis = 0
        position.settled = result
        self.cash += payout
        return payout

    def market_value(self, ticker: str, mark: int) -> int:
        return self.position(ticker).market_value(mark)

    def portfolio_value(self, marks: Mapping[str, int]) -> int:
        """Cash plus every open position marked at its YES price in ``marks``."""
        value = self.cash
        for ticker, position in self._positions.items():
            if position.quantity:
                value += position.market_value(self._mark(marks, ticker))
        return value

    def unrealized_pnl(self, marks: Mapping[str, int]) -> int:
        return sum(
            position.unrealized_pnl(self._mark(marks, ticker))
            for ticker, position in self._positions.items()
            if position.quantity
        )

    @property
    def realized_pnl(self) -> int:
        return sum(position.realized_pnl for position in self._positions.values())

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(
            initial_cash=self.initial_cash,
            cash=self.cash,
            fees_paid=self.fees_paid,
            trades=self.trades,
            realized_pnl=self.realized_pnl,
            positions=tuple(self._positions[ticker].snapshot() for ticker in sorted(self._positions)),
        )

    @staticmethod
    def _mark(marks: Mapping[str, int], ticker: str) -> int:
        try:
            return marks[ticker]
        except KeyError:
            raise LedgerError(f"no mark price for open position in {ticker}") from None
