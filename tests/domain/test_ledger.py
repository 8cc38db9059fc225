"""Positions, cash and settlement: hand-computed scenarios and conservation properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ledger import Ledger, LedgerError, Position, PositionSnapshot
from domain.orders import Fill, OrderSide
from domain.values import ONE_CONTRACT, ONE_DOLLAR, Side, parse_count, parse_price

BID, ASK = OrderSide.BID, OrderSide.ASK
_fill_ids = itertools.count()


def dollars(text: str) -> int:
    """A dollar amount as micro-dollars: dollars("4.50") == 4_500_000."""
    whole, _, frac = text.lstrip("-").partition(".")
    micros = int(whole) * 1_000_000 + int(frac.ljust(6, "0") or "0")
    return -micros if text.startswith("-") else micros


def fill(side: OrderSide, price: str, contracts: str, *, fee: str = "0", ticker: str = "MKT") -> Fill:
    return Fill(
        fill_id=f"f{next(_fill_ids)}",
        order_id="o1",
        ticker=ticker,
        side=side,
        price=parse_price(price),
        count=parse_count(contracts),
        fee=dollars(fee),
        is_taker=True,
        ts_ms=0,
    )


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(dollars("100"))


def test_opening_yes_costs_the_yes_price(ledger):
    realized = ledger.apply_fill(fill(BID, "0.40", "10"))

    position = ledger.position("MKT")
    assert realized == 0
    assert ledger.cash == dollars("96")
    assert (position.quantity, position.cost_basis) == (10 * ONE_CONTRACT, dollars("4"))
    assert position.side is Side.YES
    assert position.average_entry_price == parse_price("0.40")


def test_adding_to_yes_averages_the_entry(ledger):
    ledger.apply_fill(fill(BID, "0.40", "10"))
    ledger.apply_fill(fill(BID, "0.50", "10"))

    position = ledger.position("MKT")
    assert ledger.cash == dollars("91")
    assert position.cost_basis == dollars("9")
    assert position.average_entry_price == parse_price("0.45")


def test_partial_close_with_profit_books_proceeds_minus_the_share_of_cost(ledger):
    ledger.apply_fill(fill(BID, "0.40", "10"))
    ledger.apply_fill(fill(BID, "0.50", "10"))

    realized = ledger.apply_fill(fill(ASK, "0.60", "5"))

    position = ledger.position("MKT")
    # 5 of 20 contracts close: proceeds 5 x 0.60 = 3.00, cost removed 9.00 x 5/20 = 2.25
    assert realized == dollars("0.75")
    assert ledger.cash == dollars("94")
    assert (position.quantity, position.cost_basis) == (15 * ONE_CONTRACT, dollars("6.75"))
    assert position.realized_pnl == dollars("0.75")


def test_one_ask_can_flip_yes_into_no(ledger):
    ledger.apply_fill(fill(BID, "0.45", "15"))  # cost 6.75

    realized = ledger.apply_fill(fill(ASK, "0.70", "20"))

    position = ledger.position("MKT")
    # closes 15 YES at 0.70 (+10.50, realised 10.50 - 6.75), opens 5 NO at 0.30 (-1.50)
    assert realized == dollars("3.75")
    assert ledger.cash == dollars("100") - dollars("6.75") + dollars("10.50") - dollars("1.50")
    assert (position.quantity, position.cost_basis) == (-5 * ONE_CONTRACT, dollars("1.50"))
    assert position.side is Side.NO
    assert position.average_entry_price == parse_price("0.30")  # the NO price paid


def test_one_bid_can_flip_no_into_yes(ledger):
    ledger.apply_fill(fill(ASK, "0.40", "2"))  # 2 NO at 0.60: cost 1.20

    realized = ledger.apply_fill(fill(BID, "0.30", "5"))

    position = ledger.position("MKT")
    # closes 2 NO at 0.70 (+1.40, realised 0.20), opens 3 YES at 0.30 (-0.90)
    assert realized == dollars("0.20")
    assert ledger.cash == dollars("100") - dollars("1.20") + dollars("1.40") - dollars("0.90")
    assert (position.quantity, position.cost_basis) == (3 * ONE_CONTRACT, dollars("0.90"))


def test_no_opens_at_one_minus_the_price_and_closes_the_same_way(ledger):
    ledger.apply_fill(fill(ASK, "0.45", "10"))  # buys 10 NO at 0.55
    assert ledger.cash == dollars("94.50")
    assert ledger.position("MKT").quantity == -10 * ONE_CONTRACT

    realized = ledger.apply_fill(fill(BID, "0.35", "10"))  # sells 10 NO at 0.65

    position = ledger.position("MKT")
    assert realized == dollars("1.00")  # sold YES at 0.45, bought it back at 0.35
    assert ledger.cash == dollars("101")
    assert (position.quantity, position.cost_basis, position.side) == (0, 0, None)
    assert position.average_entry_price is None


def test_fractional_contracts(ledger):
    ledger.apply_fill(fill(BID, "0.40", "0.50"))

    assert ledger.cash == dollars("99.80")
    assert ledger.position("MKT").quantity == 50


def test_closing_in_pieces_removes_all_the_cost_without_losing_a_micro_dollar(ledger):
    for price in ("0.33", "0.34", "0.34"):
        ledger.apply_fill(fill(BID, price, "1"))  # cost 1.01 over 3 contracts
    position = ledger.position("MKT")

    removed = []
    for _ in range(3):
        before = position.cost_basis
        ledger.apply_fill(fill(ASK, "0.50", "1"))
        removed.append(before - position.cost_basis)

    assert removed == [336_666, 336_667, 336_667]  # floor of the share; the last close takes the rest
    assert position.realized_pnl == dollars("1.50") - dollars("1.01")


def test_fees_come_off_cash_and_are_tracked_beside_realised_pnl(ledger):
    ledger.apply_fill(fill(BID, "0.50", "10", fee="0.18"))
    realized = ledger.apply_fill(fill(ASK, "0.60", "10", fee="0.17"))

    position = ledger.position("MKT")
    assert realized == dollars("1.00")  # gross of fees
    assert ledger.cash == dollars("100") + dollars("1.00") - dollars("0.35")
    assert ledger.fees_paid == position.fees_paid == dollars("0.35")
    assert ledger.trades == 2


@pytest.mark.parametrize(
    "result, payout, realized",
    [(Side.YES, dollars("10"), dollars("6")), (Side.NO, 0, dollars("-4"))],
)
def test_settling_yes_contracts(ledger, result, payout, realized):
    ledger.apply_fill(fill(BID, "0.40", "10"))

    assert ledger.settle("MKT", result) == payout

    position = ledger.position("MKT")
    assert ledger.cash == dollars("96") + payout
    assert (position.quantity, position.cost_basis, position.realized_pnl) == (0, 0, realized)
    assert position.settled is result


@pytest.mark.parametrize(
    "result, payout, realized",
    [(Side.NO, dollars("10"), dollars("4.50")), (Side.YES, 0, dollars("-5.50"))],
)
def test_settling_no_contracts(ledger, result, payout, realized):
    ledger.apply_fill(fill(ASK, "0.45", "10"))  # 10 NO at 0.55

    assert ledger.settle("MKT", result) == payout

    assert ledger.cash == dollars("94.50") + payout
    assert ledger.position("MKT").realized_pnl == realized
    assert ledger.realized_pnl == realized


def test_settling_a_market_never_traded_pays_nothing(ledger):
    assert ledger.settle("OTHER", Side.YES) == 0
    assert ledger.cash == dollars("100")


def test_a_settled_market_takes_no_more_fills_or_settlements(ledger):
    ledger.settle("MKT", Side.YES)

    with pytest.raises(LedgerError, match="MKT has already settled YES"):
        ledger.apply_fill(fill(BID, "0.40", "1"))
    with pytest.raises(LedgerError, match="MKT has already settled YES"):
        ledger.settle("MKT", Side.NO)


def test_booking_from_terms_is_applying_the_fill():
    fills = [fill(BID, "0.40", "10", fee="0.17"), fill(ASK, "0.55", "4", fee="0.07"), fill(ASK, "0.30", "12")]
    applied, booked = Ledger(dollars("100")), Ledger(dollars("100"))
    for each in fills:
        realized = applied.apply_fill(each)
        assert booked.book(each.ticker, each.side, each.price, each.count, each.fee) == realized
        assert booked.snapshot() == applied.snapshot()
    booked.settle("MKT", Side.NO)
    with pytest.raises(LedgerError, match="MKT has already settled NO"):
        booked.book("MKT", BID, parse_price("0.40"), ONE_CONTRACT, 0)


def test_marking_positions(ledger):
    ledger.apply_fill(fill(BID, "0.40", "10", ticker="A"))
    ledger.apply_fill(fill(ASK, "0.45", "10", ticker="B"))  # 10 NO at 0.55
    marks = {"A": parse_price("0.55"), "B": parse_price("0.55")}

    assert ledger.market_value("A", marks["A"]) == dollars("5.50")
    assert ledger.market_value("B", marks["B"]) == dollars("4.50")  # NO is worth 1 - 0.55
    assert ledger.unrealized_pnl(marks) == dollars("1.50") + dollars("-1.00")
    assert ledger.portfolio_value(marks) == dollars("90.50") + dollars("5.50") + dollars("4.50")


def test_flat_positions_need_no_mark(ledger):
    ledger.apply_fill(fill(BID, "0.40", "1"))
    ledger.apply_fill(fill(ASK, "0.40", "1"))

    assert ledger.portfolio_value({}) == ledger.cash == dollars("100")


def test_closing_count_says_how_much_of_a_fill_closes(ledger):
    ledger.apply_fill(fill(BID, "0.40", "3"))

    assert ledger.closing_count(fill(ASK, "0.50", "5")) == 3 * ONE_CONTRACT
    assert ledger.closing_count(fill(ASK, "0.50", "1")) == ONE_CONTRACT
    assert ledger.closing_count(fill(BID, "0.50", "1")) == 0
    assert ledger.closing_count(fill(BID, "0.50", "1", ticker="OTHER")) == 0


def test_snapshot_is_a_frozen_copy(ledger):
    ledger.apply_fill(fill(BID, "0.40", "10", fee="0.17", ticker="B"))
    ledger.apply_fill(fill(ASK, "0.60", "10", ticker="A"))

    snapshot = ledger.snapshot()
    ledger.apply_fill(fill(BID, "0.40", "10", ticker="B"))

    assert snapshot.cash == dollars("100") - dollars("4") - dollars("0.17") - dollars("4")
    assert (snapshot.trades, snapshot.fees_paid, snapshot.realized_pnl) == (2, dollars("0.17"), 0)
    assert snapshot.positions == (
        PositionSnapshot("A", -10 * ONE_CONTRACT, dollars("4"), 0, 0, None),
        PositionSnapshot("B", 10 * ONE_CONTRACT, dollars("4"), 0, dollars("0.17"), None),
    )


def test_unknown_tickers_read_as_flat_without_being_registered(ledger):
    assert ledger.position("NEW").quantity == 0
    assert ledger.quantity("NEW") == 0
    assert "NEW" not in ledger.positions


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"count": 0}, "count must be positive"),
        ({"count": -100}, "count must be positive"),
        ({"price": 0}, "price must be strictly between"),
        ({"price": ONE_DOLLAR}, "price must be strictly between"),
        ({"fee": -1}, "fee must not be negative"),
    ],
)
def test_impossible_fills_are_refused(ledger, bad, message):
    fields = {"fill_id": "f", "order_id": "o", "ticker": "MKT", "side": BID, "price": 5000, "count": 100}
    fields |= {"fee": 0, "is_taker": True, "ts_ms": 0} | bad

    with pytest.raises(LedgerError, match=message):
        ledger.apply_fill(Fill(**fields))
    assert (ledger.cash, ledger.trades, ledger.quantity("MKT")) == (dollars("100"), 0, 0)


def test_bad_marks_and_missing_marks_are_refused(ledger):
    ledger.apply_fill(fill(BID, "0.40", "1"))

    with pytest.raises(LedgerError, match="mark must be a YES price"):
        ledger.market_value("MKT", ONE_DOLLAR + 1)
    with pytest.raises(LedgerError, match="no mark price for open position in MKT"):
        ledger.portfolio_value({"OTHER": 5000})


@pytest.mark.parametrize("cash", [-1, 1.5, True])
def test_initial_cash_must_be_non_negative_micro_dollars(cash):
    with pytest.raises(LedgerError, match="initial cash"):
        Ledger(cash)


def test_settlement_needs_a_side(ledger):
    with pytest.raises(LedgerError, match="settlement result must be a Side"):
        ledger.settle("MKT", "yes")


# -- properties -------------------------------------------------------------------------------

TICKERS = ("A", "B")
INITIAL = dollars("1000")

fills = st.lists(
    st.builds(
        Fill,
        fill_id=st.just("f"),
        order_id=st.just("o"),
        ticker=st.sampled_from(TICKERS),
        side=st.sampled_from(OrderSide),
        price=st.integers(min_value=1, max_value=ONE_DOLLAR - 1),
        count=st.integers(min_value=1, max_value=50 * ONE_CONTRACT),
        fee=st.integers(min_value=0, max_value=200_000),
        is_taker=st.booleans(),
        ts_ms=st.just(0),
    ),
    max_size=40,
)
outcomes = st.fixed_dictionaries({ticker: st.sampled_from(Side) for ticker in TICKERS})
marks = st.fixed_dictionaries({ticker: st.integers(0, ONE_DOLLAR) for ticker in TICKERS})


def yes_equivalent_final_cash(fill_list: list[Fill], results: dict[str, Side]) -> int:
    """Every bid pays p, every ask receives p, YES-net exposure pays $1 on a YES result."""
    cash = INITIAL
    net_yes = dict.fromkeys(TICKERS, 0)
    for f in fill_list:
        sign = 1 if f.side is BID else -1
        cash += -sign * f.price * f.count - f.fee
        net_yes[f.ticker] += sign * f.count
    return cash + sum(net_yes[t] * ONE_DOLLAR for t in TICKERS if results[t] is Side.YES)


def booked(fill_list: list[Fill]) -> Ledger:
    ledger = Ledger(INITIAL)
    for f in fill_list:
        ledger.apply_fill(f)
    return ledger


@given(fill_list=fills, results=outcomes)
def test_settled_cash_equals_yes_equivalent_accounting(fill_list, results):
    ledger = booked(fill_list)

    for ticker in TICKERS:
        ledger.settle(ticker, results[ticker])

    assert ledger.cash == yes_equivalent_final_cash(fill_list, results)
    assert ledger.cash - INITIAL == ledger.realized_pnl - ledger.fees_paid


@given(fill_list=fills, results=outcomes)
def test_cash_plus_settlement_value_before_settling_equals_the_same_sum(fill_list, results):
    ledger = booked(fill_list)

    value = ledger.cash + sum(ledger.position(t).settlement_value(results[t]) for t in TICKERS)

    assert value == yes_equivalent_final_cash(fill_list, results)


@given(fill_list=fills, mark_prices=marks)
def test_realised_plus_unrealised_pnl_accounts_for_every_micro_dollar(fill_list, mark_prices):
    ledger = Ledger(INITIAL)
    realized_returned = 0
    for f in fill_list:
        realized_returned += ledger.apply_fill(f)
        for position in ledger.positions.values():
            held = abs(position.quantity)
            assert 0 <= position.cost_basis <= held * ONE_DOLLAR
            assert (position.cost_basis == 0) == (held == 0)

    assert realized_returned == ledger.realized_pnl
    assert ledger.portfolio_value(mark_prices) - INITIAL == (
        ledger.realized_pnl + ledger.unrealized_pnl(mark_prices) - ledger.fees_paid
    )
    for ticker in TICKERS:
        net = sum((c.count if c.side is BID else -c.count) for c in fill_list if c.ticker == ticker)
        assert ledger.quantity(ticker) == net


@given(
    side=st.sampled_from(OrderSide), count=st.integers(1, 10_000), quantity=st.integers(-10_000, 10_000)
)
def test_closing_count_is_what_apply_closes(side, count, quantity):
    position = Position("MKT", quantity=quantity, cost_basis=abs(quantity) * 5000)
    expected = position.closing_count(side, count)

    position.apply(side, 5000, count, 0)

    if quantity * position.quantity < 0:  # flipped: the whole old position closed
        assert expected == abs(quantity)
    else:
        assert expected == max(0, abs(quantity) - abs(position.quantity))
