"""The simulated exchange behind the OrderGateway port: what the contract suite cannot see --
latency, the replay driving maker fills into the stream, settlement, and each refusal's type.

Book as in test_exchange.py: YES bids 0.45 x 20, 0.44 x 10; NO bids 0.53 x 5, 0.52 x 10 (YES asks
0.47 x 5, 0.48 x 10); one row a second; money in micro-dollars.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.simulated_exchange import ExchangeConfig, ReplayedMarket, SimulatedExchange, SimulatedOrderGateway
from application.replay import ReplayConfig, compile_market
from domain.events import BookSnapshot, MarketResolved, PublicTrade
from domain.fees import FeeSchedule
from domain.gateway_errors import (
    DuplicateClientOrderId,
    InsufficientBalance,
    InvalidOrder,
    InvalidPrice,
    MarketNotFound,
    OrderNotFound,
    OrderRejected,
)
from domain.ledger import Ledger
from domain.orders import OrderRequest, OrderSide, OrderStatus, TimeInForce
from domain.ports import OrderGateway
from domain.values import MONEY_SCALE, ONE_CONTRACT, Side

C = ONE_CONTRACT
FEES = FeeSchedule.kalshi_standard()


def market(*events) -> ReplayedMarket:
    book = BookSnapshot("T", 1, 0, yes=((4400, 10 * C), (4500, 20 * C)), no=((5200, 10 * C), (5300, 5 * C)))
    tape = compile_market(
        [book, *events, MarketResolved("T", 10_000, Side.YES)],
        ticker="T",
        session_id=1,
        config=ReplayConfig(step_ms=1000, depth_levels=5),
    )
    return ReplayedMarket(tape)


def gateway(*events, latency_ms=0, cash=100 * MONEY_SCALE) -> SimulatedOrderGateway:
    exchange = SimulatedExchange(Ledger(cash), FEES, config=ExchangeConfig(latency_ms=latency_ms))
    return SimulatedOrderGateway(exchange, [market(*events)])


def bid(price, count, client_order_id="c1", **options) -> OrderRequest:
    return OrderRequest("T", OrderSide.BID, price, count, client_order_id, **options)


def test_it_satisfies_the_port():
    assert isinstance(gateway(), OrderGateway)


async def test_with_latency_a_request_takes_effect_at_the_first_row_after_it_arrives():
    venue = gateway(latency_ms=1500)
    order = await venue.create_order(bid(4700, C))
    assert order.status is OrderStatus.EXECUTED
    assert venue.row("T") == 2  # sent at 0 s, effective at 1.5 s: the market moved on to row 2 (2 s)
    [fill] = await venue.fills()
    assert fill.ts_ms == 1500 and fill.price == 4700


async def test_a_resting_bid_filled_by_a_later_trade_is_streamed_when_the_replay_reaches_it():
    venue = gateway(PublicTrade("T", 3000, "t1", 4500, 30 * C, Side.NO))  # sellers hit the 0.45 bids
    received = []

    async def collect():
        async for fill in venue.stream_fills():
            received.append(fill)

    task = asyncio.create_task(collect())
    await asyncio.sleep(0)  # the stream starts listening
    order = await venue.create_order(bid(4500, 2 * C))
    assert order.status is OrderStatus.RESTING
    fills = venue.advance("T", 4)
    await asyncio.sleep(0)
    assert [(f.order_id, f.price, f.count, f.is_taker, f.fee) for f in fills] == [(order.order_id, 4500, 2 * C, False, 0)]
    assert received == fills
    assert (await venue.get_order(order.order_id)).status is OrderStatus.EXECUTED
    await venue.close()
    await asyncio.wait_for(task, 1.0)


async def test_a_stream_from_a_time_replays_what_was_filled_since_then_first():
    venue = gateway()
    await venue.create_order(bid(4700, C))
    stream = venue.stream_fills(0)
    first = await anext(stream)
    assert first.price == 4700
    await venue.close()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_orders_returned_are_snapshots_not_the_exchanges_live_objects():
    venue = gateway(PublicTrade("T", 3000, "t1", 4500, 30 * C, Side.NO))
    order = await venue.create_order(bid(4500, C))
    venue.advance("T", 4)
    assert order.status is OrderStatus.RESTING  # as acknowledged
    assert (await venue.get_order(order.order_id)).status is OrderStatus.EXECUTED


async def test_settlement_cancels_orders_and_pays_out_through_the_ledger():
    venue = gateway()
    await venue.create_order(bid(4700, C, "a"))
    resting = await venue.create_order(bid(4000, C, "b"))
    cash = await venue.balance()
    settlement = venue.settle("T", Side.YES)
    assert settlement.payout == C * 10_000
    assert await venue.balance() == cash + C * 10_000
    assert await venue.positions() == {}
    assert await venue.open_orders() == []
    assert (await venue.get_order(resting.order_id)).status is OrderStatus.CANCELED


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (bid(4700, 1_000 * C), InsufficientBalance),
        (OrderRequest("T", OrderSide.ASK, 4500, C, "r", reduce_only=True), InvalidOrder),
        (bid(4700, 50 * C, time_in_force=TimeInForce.FILL_OR_KILL), OrderRejected),
        (OrderRequest("NOPE", OrderSide.BID, 4500, C, "m"), MarketNotFound),
        (bid(4550, C), InvalidPrice),  # off the linear_cent grid
    ],
)
async def test_each_refusal_has_its_type_and_the_exchanges_reason(request_, error):
    venue = gateway(cash=10 * MONEY_SCALE)
    with pytest.raises(error) as raised:
        await venue.create_order(request_)
    assert raised.value.message
    assert await venue.fills() == [] and await venue.open_orders() == []


async def test_a_refused_order_leaves_its_client_order_id_free():
    venue = gateway(cash=10 * MONEY_SCALE)
    with pytest.raises(InsufficientBalance):
        await venue.create_order(bid(4700, 1_000 * C, "again"))
    assert (await venue.create_order(bid(4700, C, "again"))).status is OrderStatus.EXECUTED
    with pytest.raises(DuplicateClientOrderId):
        await venue.create_order(bid(4000, C, "again"))


async def test_amending_to_a_total_not_above_what_filled_is_invalid():
    venue = gateway()
    order = await venue.create_order(bid(4000, C))
    with pytest.raises(InvalidOrder):
        await venue.amend_order(order.order_id, price=4000, count=0, client_order_id="c2")
    with pytest.raises(OrderNotFound):
        await venue.amend_order("sim-order-999", price=4000, count=C, client_order_id="c3")


async def test_cancelling_an_order_that_filled_meanwhile_is_order_not_found():
    venue = gateway(PublicTrade("T", 500, "t1", 4500, 30 * C, Side.NO), latency_ms=100)
    order = await venue.create_order(bid(4500, C))  # effective at 0.1 s: rests, row 1 (1 s) reached
    assert (await venue.get_order(order.order_id)).status is OrderStatus.EXECUTED  # the 0.5 s trade filled it
    with pytest.raises(OrderNotFound, match="executed"):
        await venue.cancel_order(order.order_id)


async def test_an_order_or_amend_off_the_tick_grid_is_an_invalid_price_and_the_old_order_stands():
    venue = gateway()
    with pytest.raises(InvalidPrice, match=r"price \$0\.4550 is off the tick grid: a linear_cent market has ticks of \$0\.0100"):
        await venue.create_order(bid(4550, C))
    order = await venue.create_order(bid(4000, C))
    with pytest.raises(InvalidPrice):
        await venue.amend_order(order.order_id, price=4005, count=C, client_order_id="c2")
    assert [o.order_id for o in await venue.open_orders()] == [order.order_id]
    deci = SimulatedOrderGateway(SimulatedExchange(Ledger(MONEY_SCALE), FEES, config=ExchangeConfig(latency_ms=0)))
    deci.open_market(market(), price_levels="deci_cent")
    assert (await deci.create_order(bid(4050, C))).status is OrderStatus.RESTING
