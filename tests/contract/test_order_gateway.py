"""The OrderGateway contract: one suite of behaviours, run against every implementation
(``gateway_venue`` in conftest.py: the simulated exchange, and the local exchange over HTTP and
WebSocket when it serves the trade API). Expectations are computed from the venue's own book,
which holds still during a test, with Kalshi's fee function. Money in micro-dollars."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from domain.gateway_errors import (
    DuplicateClientOrderId,
    InsufficientBalance,
    OrderNotFound,
    OrderRejected,
    PostOnlyCross,
)
from domain.orders import Fill, OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.values import ONE_CENT_PRICE, ONE_CONTRACT, ONE_DOLLAR

C = ONE_CONTRACT
STREAM_TIMEOUT_S = 10.0
_ids = itertools.count(1)


def client_id() -> str:
    return f"contract-{next(_ids)}-{uuid.uuid4().hex[:8]}"


def bid(venue, price: int, count: int, **options) -> OrderRequest:
    return OrderRequest(venue.ticker, OrderSide.BID, price, count, client_id(), **options)


def ask(venue, price: int, count: int, **options) -> OrderRequest:
    return OrderRequest(venue.ticker, OrderSide.ASK, price, count, client_id(), **options)


async def yes_asks(venue) -> list[tuple[int, int]]:
    """YES asks best (lowest) first: $1 minus each NO bid."""
    _, no = await venue.book()
    return [(ONE_DOLLAR - price, size) for price, size in no if 0 < ONE_DOLLAR - price < ONE_DOLLAR]


async def best_yes_bid(venue) -> int:
    yes, _ = await venue.book()
    return yes[0][0]


async def resting_price(venue) -> int:
    """A whole-cent YES bid well below the book's best bid: valid on every tick grid, and nothing
    will trade against it while the book holds still."""
    best = await best_yes_bid(venue)
    return max(ONE_CENT_PRICE, (best - 5 * ONE_CENT_PRICE) // ONE_CENT_PRICE * ONE_CENT_PRICE)


def walk(levels: list[tuple[int, int]], limit: int, count: int, *, buying: bool) -> list[tuple[int, int]]:
    """The (price, count) fills a taker gets, best level first, up to its limit."""
    fills = []
    for price, size in levels:
        beyond_limit = price > limit if buying else price < limit
        if beyond_limit:
            break
        take = min(size, count)
        fills.append((price, take))
        count -= take
        if not count:
            break
    return fills


def of_order(fills: list[Fill], order_id: str) -> list[tuple[int, int, bool]]:
    return [(fill.price, fill.count, fill.is_taker) for fill in fills if fill.order_id == order_id]


async def crossing_bid(venue) -> tuple[OrderRequest, list[tuple[int, int]]]:
    """A bid through the first ask level into the second (when the first is small), and the
    fills it must get."""
    asks = await yes_asks(venue)
    first_price, first_size = asks[0]
    if first_size <= 10 * C and len(asks) > 1:
        count, limit = first_size + C, asks[1][0]
    else:
        count, limit = C, first_price
    request = bid(venue, limit, count, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL)
    return request, walk(asks, limit, count, buying=True)


# ---------------------------------------------------------------------------------------------
# Crossing
# ---------------------------------------------------------------------------------------------
async def test_a_crossing_bid_fills_at_the_books_prices_with_kalshis_taker_fee(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    since = venue.now_ms()
    request, expected = await crossing_bid(venue)

    order = await gateway.create_order(request)

    assert order.status is OrderStatus.EXECUTED
    assert order.filled == request.count == sum(count for _, count in expected)
    assert order.client_order_id == request.client_order_id
    fills = [fill for fill in await gateway.fills(since) if fill.order_id == order.order_id]
    assert [(fill.price, fill.count, fill.is_taker) for fill in fills] == [(p, c, True) for p, c in expected]
    for fill in fills:
        assert fill.side is OrderSide.BID and fill.ticker == venue.ticker
        assert fill.fee == venue.fees.fee(fill.count, fill.price, is_taker=True)
    assert len({fill.fill_id for fill in fills}) == len(fills)


async def test_a_crossing_ask_sells_yes_into_the_yes_bids(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    since = venue.now_ms()
    best = await best_yes_bid(venue)
    order = await gateway.create_order(ask(venue, best, C, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL))
    assert order.status is OrderStatus.EXECUTED
    fills = await gateway.fills(since)
    assert of_order(fills, order.order_id) == [(best, C, True)]
    fill = next(fill for fill in fills if fill.order_id == order.order_id)
    assert fill.side is OrderSide.ASK
    assert fill.fee == venue.fees.fee(C, best, is_taker=True)


async def test_balance_and_positions_move_by_exactly_the_fills_and_fees(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    since = venue.now_ms()
    cash_before = await gateway.balance()
    position_before = (await gateway.positions()).get(venue.ticker, 0)

    request, _ = await crossing_bid(venue)
    bought = await gateway.create_order(request)
    best = await best_yes_bid(venue)
    sold = await gateway.create_order(ask(venue, best, C, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL))

    fills = await gateway.fills(since)
    buys = [fill for fill in fills if fill.order_id == bought.order_id]
    sells = [fill for fill in fills if fill.order_id == sold.order_id]
    assert sum(fill.count for fill in buys) == request.count and sum(fill.count for fill in sells) == C
    # Buying YES from flat pays price x count; selling YES we hold receives price x count; fees off cash.
    expected_cash = (
        cash_before
        - sum(fill.price * fill.count + fill.fee for fill in buys)
        + sum(fill.price * fill.count - fill.fee for fill in sells)
    )
    assert await gateway.balance() == expected_cash
    assert (await gateway.positions()).get(venue.ticker, 0) == position_before + request.count - C


# ---------------------------------------------------------------------------------------------
# Resting, cancelling, amending
# ---------------------------------------------------------------------------------------------
async def test_a_resting_order_is_listed_open_and_readable(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    request = bid(venue, await resting_price(venue), 2 * C)
    order = await gateway.create_order(request)

    assert order.status is OrderStatus.RESTING and order.filled == 0 and order.remaining == 2 * C
    listed = {o.order_id: o for o in await gateway.open_orders(venue.ticker)}
    assert order.order_id in listed
    seen = listed[order.order_id]
    assert (seen.client_order_id, seen.side, seen.price, seen.count, seen.ticker) == (
        request.client_order_id,
        OrderSide.BID,
        request.price,
        request.count,
        venue.ticker,
    )
    assert order.order_id in {o.order_id for o in await gateway.open_orders()}
    read = await gateway.get_order(order.order_id)
    assert read.status is OrderStatus.RESTING and read.price == request.price


async def test_cancel_takes_a_resting_order_off_the_book(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    order = await gateway.create_order(bid(venue, await resting_price(venue), C))

    cancelled = await gateway.cancel_order(order.order_id)

    assert cancelled.order_id == order.order_id
    assert cancelled.status is OrderStatus.CANCELED and cancelled.remaining == 0 and cancelled.filled == 0
    assert order.order_id not in {o.order_id for o in await gateway.open_orders(venue.ticker)}
    with pytest.raises(OrderNotFound):
        await gateway.cancel_order(order.order_id)


async def test_cancelling_an_unknown_order_is_order_not_found(gateway_venue):
    with pytest.raises(OrderNotFound) as raised:
        await gateway_venue.gateway.cancel_order(str(uuid.uuid4()))
    assert raised.value.message


async def test_a_client_order_id_cannot_be_used_twice_even_after_a_cancel(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    price = await resting_price(venue)
    first = bid(venue, price, C)
    order = await gateway.create_order(first)
    again = OrderRequest(venue.ticker, OrderSide.BID, price, C, first.client_order_id)

    with pytest.raises(DuplicateClientOrderId):
        await gateway.create_order(again)
    await gateway.cancel_order(order.order_id)
    with pytest.raises(DuplicateClientOrderId):
        await gateway.create_order(again)
    assert [o.order_id for o in await gateway.open_orders(venue.ticker)].count(order.order_id) == 0


async def test_amend_replaces_price_and_size_and_the_replacement_rests(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    price = await resting_price(venue)
    order = await gateway.create_order(bid(venue, price, 2 * C))
    new_price = max(ONE_CENT_PRICE, price - ONE_CENT_PRICE)
    new_id = client_id()

    amended = await gateway.amend_order(order.order_id, price=new_price, count=3 * C, client_order_id=new_id)

    assert amended.status is OrderStatus.RESTING
    assert (amended.price, amended.remaining, amended.client_order_id) == (new_price, 3 * C, new_id)
    open_now = {o.order_id: o for o in await gateway.open_orders(venue.ticker)}
    assert amended.order_id in open_now
    assert (open_now[amended.order_id].price, open_now[amended.order_id].remaining) == (new_price, 3 * C)
    ours = [o for o in open_now.values() if o.client_order_id in (order.client_order_id, new_id)]
    assert [o.order_id for o in ours] == [amended.order_id]  # cancel-and-replace: one order left
    with pytest.raises(OrderNotFound):
        await gateway.amend_order(str(uuid.uuid4()), price=new_price, count=C, client_order_id=client_id())


async def test_batches_report_each_order_on_its_own(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    price = await resting_price(venue)
    first, second = bid(venue, price, C), bid(venue, price, 2 * C)
    reused = OrderRequest(venue.ticker, OrderSide.BID, price, C, first.client_order_id)

    created = await gateway.create_orders([first, second, reused])

    assert [type(result).__name__ for result in created[:2]] == ["Order", "Order"]
    assert isinstance(created[2], DuplicateClientOrderId)
    assert [o.status for o in created[:2]] == [OrderStatus.RESTING, OrderStatus.RESTING]
    ids = [created[0].order_id, created[1].order_id]
    cancelled = await gateway.cancel_orders([*ids, str(uuid.uuid4())])
    assert [o.status for o in cancelled[:2]] == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert isinstance(cancelled[2], OrderNotFound)
    assert not set(ids) & {o.order_id for o in await gateway.open_orders(venue.ticker)}


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------
async def test_an_order_the_account_cannot_pay_for_is_refused_and_changes_nothing(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    cash = await gateway.balance()
    price = await resting_price(venue)
    too_many = (cash // price // C + 10) * C  # contracts beyond what the cash buys at this price

    with pytest.raises(InsufficientBalance) as raised:
        await gateway.create_order(bid(venue, price, too_many))
    assert isinstance(raised.value, OrderRejected) and raised.value.message
    assert await gateway.balance() == cash
    assert all(o.count != too_many for o in await gateway.open_orders(venue.ticker))


async def test_a_post_only_order_that_would_cross_is_refused(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    asks = await yes_asks(venue)
    since = venue.now_ms()
    with pytest.raises(PostOnlyCross):
        await gateway.create_order(bid(venue, asks[0][0], C, post_only=True))
    assert await gateway.fills(since) == []


# ---------------------------------------------------------------------------------------------
# Fills as they happen
# ---------------------------------------------------------------------------------------------
async def test_fills_are_streamed_once_each_and_match_the_listed_fills(gateway_venue):
    venue, gateway = gateway_venue, gateway_venue.gateway
    since = venue.now_ms()
    streamed: list[Fill] = []
    first_fill = asyncio.Event()

    async def collect() -> None:
        async for fill in gateway.stream_fills(since):
            streamed.append(fill)
            first_fill.set()

    collector = asyncio.create_task(collect())
    try:
        request, expected = await crossing_bid(venue)
        order = await gateway.create_order(request)
        listed = [fill for fill in await gateway.fills(since) if fill.order_id == order.order_id]
        assert len(listed) == len(expected)
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            while len([fill for fill in streamed if fill.order_id == order.order_id]) < len(listed):
                await first_fill.wait()
                first_fill.clear()
        await asyncio.sleep(0.3)  # time for a duplicate to show up, were there one
    finally:
        await gateway.close()  # ends every stream
        await asyncio.wait_for(collector, STREAM_TIMEOUT_S)
    ours = [fill for fill in streamed if fill.order_id == order.order_id]
    assert sorted(fill.fill_id for fill in ours) == sorted(fill.fill_id for fill in listed)
    assert len({fill.fill_id for fill in streamed}) == len(streamed)
    by_id = {fill.fill_id: fill for fill in listed}
    for fill in ours:
        assert (fill.price, fill.count, fill.side, fill.is_taker, fill.fee) == (
            by_id[fill.fill_id].price,
            by_id[fill.fill_id].count,
            by_id[fill.fill_id].side,
            by_id[fill.fill_id].is_taker,
            by_id[fill.fill_id].fee,
        )
