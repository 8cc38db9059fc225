"""The actor's account: its own ledger of fills, kept in step with what the exchange says.

Fills from the gateway's stream are booked into a :class:`~domain.ledger.Ledger` (exact
integers, Kalshi's netting), each once, by fill id. The exchange is the authority, though:
:meth:`TradingAccount.differences` compares the local positions and cash with the exchange's,
and :meth:`TradingAccount.adopt` takes the exchange's numbers. An adoption is booked beside
the ledger as an explicit adjustment, never hidden inside it, so ``ledger`` always says what
our fills alone add up to, and ``adjustments`` what had to be corrected (zero in a healthy run).

What the account held before the actor started (positions and cash read from the exchange at
start-up) is its opening balance, not an adjustment. A market that resolves is booked as a
settlement (:meth:`TradingAccount.settle`): $1 per winning contract, whoever's contracts they were
(our fills', the opening ones, adopted ones), and the market is closed in the account. Contracts adopted without a fill have no
known cost: they are valued at the market's mark like any other, but add nothing to the cost
basis the observation sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from domain.ledger import Ledger, Position
from domain.orders import FeeCorrection, Fill
from domain.values import Side, format_count, format_money


@attrs.frozen
class Mismatch:
    """The local account and the exchange disagree: on a market's position (count units), or on
    cash (``ticker`` None, micro-dollars)."""

    ticker: str | None
    local: int
    exchange: int

    def describe(self) -> str:
        if self.ticker is None:
            return f"cash: local ${format_money(self.local, 4)}, exchange ${format_money(self.exchange, 4)}"
        return f"{self.ticker}: local {format_count(self.local)} contracts, exchange {format_count(self.exchange)}"


class TradingAccount:
    def __init__(
        self, cash: int, positions: Mapping[str, int] | None = None, *, opening_fill_ids: Iterable[str] = ()
    ) -> None:
        """An account that opens with ``cash`` (micro-dollars) and ``positions`` (signed count
        units), as the exchange reported them at start-up; ``opening_fill_ids`` are the fills
        those numbers already include (never booked again)."""
        self.ledger = Ledger(cash)
        self.opening_positions = {ticker: qty for ticker, qty in (positions or {}).items() if qty}
        self.position_adjustments: dict[str, int] = {}
        self.cash_adjustment = 0
        self.fee_corrections = 0  # micro-dollars charged beyond what streamed fills said
        self.adoptions = 0  # mismatches resolved in the exchange's favour
        self.settled: dict[str, Side] = {}  # resolved markets, by result
        self.outside_payouts = 0  # settlement paid on contracts that are not our fills' (opening, adopted)
        self._fill_ids: set[str] = set()
        self._opening_fill_ids = frozenset(opening_fill_ids)
        self.fills: list[Fill] = []  # every fill booked, in booking order

    # -- reads -----------------------------------------------------------------------------------
    @property
    def cash(self) -> int:
        return self.ledger.cash - self.fee_corrections + self.cash_adjustment + self.outside_payouts

    def quantity(self, ticker: str) -> int:
        return (
            self.ledger.quantity(ticker)
            + self.opening_positions.get(ticker, 0)
            + self.position_adjustments.get(ticker, 0)
        )

    def positions(self) -> dict[str, int]:
        """Every market with a non-zero position (signed count units)."""
        tickers = set(self.ledger.positions) | set(self.opening_positions) | set(self.position_adjustments)
        held = {ticker: self.quantity(ticker) for ticker in sorted(tickers)}
        return {ticker: quantity for ticker, quantity in held.items() if quantity}

    def market_cash(self, ticker: str, budget: int) -> int:
        """``ticker``'s cash as if it had an account of its own that started with ``budget`` (as a
        training episode does): the budget less what its open contracts cost, plus what its
        closed ones made, less its fees -- what other markets spend does not move it."""
        position = self.ledger.find_position(ticker)
        if position is None:
            return budget
        return budget - position.cost_basis + position.realized_pnl - position.fees_paid

    def cost_basis(self, ticker: str) -> int:
        """What the contracts bought by our fills cost (opening and adopted contracts: unknown)."""
        return self.ledger.position(ticker).cost_basis

    def market_value(self, ticker: str, mark: int) -> int:
        """The position at YES price ``mark`` (see :meth:`domain.ledger.Position.market_value`)."""
        return Position(ticker, quantity=self.quantity(ticker)).market_value(mark)

    def value(self, marks: Mapping[str, int]) -> int | None:
        """Cash plus every position at its YES mark; None while a held market has no mark yet
        (a value without it would be wrong by that position's worth)."""
        total = self.cash
        for ticker in self.positions():
            mark = marks.get(ticker)
            if mark is None:
                return None
            total += self.market_value(ticker, mark)
        return total

    def is_opening_fill(self, fill_id: str) -> bool:
        return fill_id in self._opening_fill_ids

    def has_fill(self, fill_id: str) -> bool:
        return fill_id in self._fill_ids

    # -- writes ----------------------------------------------------------------------------------
    def apply_fill(self, fill: Fill) -> bool:
        """Book ``fill``; False (nothing booked) if it was booked before."""
        if fill.fill_id in self._fill_ids or fill.fill_id in self._opening_fill_ids:
            return False
        self.ledger.apply_fill(fill)
        self._fill_ids.add(fill.fill_id)
        self.fills.append(fill)
        return True

    def settle(self, ticker: str, result: Side) -> int:
        """Book the resolution of ``ticker``: every contract held there pays $1 if it won, and
        the position closes. Returns the payout (micro-dollars)."""
        if ticker in self.settled:
            raise ValueError(f"{ticker} has already been settled ({self.settled[ticker].name})")
        payout = self.ledger.settle(ticker, result)
        outside = self.opening_positions.pop(ticker, 0) + self.position_adjustments.pop(ticker, 0)
        outside_payout = Position(ticker, quantity=outside).settlement_value(result)
        self.outside_payouts += outside_payout
        self.settled[ticker] = result
        return payout + outside_payout

    def apply_fee_correction(self, correction: FeeCorrection) -> None:
        self.fee_corrections += correction.delta

    def differences(self, positions: Mapping[str, int], cash: int) -> list[Mismatch]:
        """Where the exchange's ``positions`` (non-zero ones; others are flat) and ``cash`` differ
        from ours."""
        mismatches = []
        for ticker in sorted(set(positions) | set(self.positions())):
            local, exchange = self.quantity(ticker), positions.get(ticker, 0)
            if local != exchange:
                mismatches.append(Mismatch(ticker, local, exchange))
        if self.cash != cash:
            mismatches.append(Mismatch(None, self.cash, cash))
        return mismatches

    def adopt(self, mismatches: list[Mismatch]) -> None:
        """Take the exchange's side of each mismatch."""
        for mismatch in mismatches:
            change = mismatch.exchange - mismatch.local
            if mismatch.ticker is None:
                self.cash_adjustment += change
            else:
                adjusted = self.position_adjustments.get(mismatch.ticker, 0) + change
                if adjusted:
                    self.position_adjustments[mismatch.ticker] = adjusted
                else:
                    self.position_adjustments.pop(mismatch.ticker, None)
            self.adoptions += 1
