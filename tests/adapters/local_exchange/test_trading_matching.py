"""The matching engine through the REST API, against books set by hand: crossing orders walk
the levels (exact VWAP and fees), partial fills, immediate-or-cancel and fill-or-kill, resting
orders queued behind the depth at their price, self-trade prevention, cancel and amend."""

from __future__ import annotations

import pytest

from domain.values import ONE_CONTRACT, Side

T0 = "SYN-7-M0"
C = ONE_CONTRACT  # one contract in count units
# YES bids 0.40 x 50 and 0.42 x 20; NO bids 0.55 x 10, 0.54 x 20, 0.50 x 30 (YES asks 0.45, 0.46, 0.50).
YES = [(4000, 50 * C), (4200, 20 * C)]
NO = [(5500, 10 * C), (5400, 20 * C), (5000, 30 * C)]


@pytest.fixture
async def exchange(make_exchange, book_setter):
    async with make_exchange(flow=False) as exchange:
        book_setter(exchange, T0, YES, NO)
        yield exchange


async def test_a_crossing_bid_walks_the_levels_at_exact_vwap_and_fees(exchange, rest):
    async with rest(exchange) as client:
        reply = await client.order(ticker=T0, client_order_id="c1", side="bid", count="25.00", price="0.4600")
        assert reply.status_code == 201, reply.text
        body = reply.json()
        # 10 at 0.45 and 15 at 0.46: (4.50 + 6.90) / 25 = 0.4560.
        # Fees per level: 0.07 x 10 x 0.45 x 0.55 = 0.17325 -> 0.18; 0.07 x 15 x 0.46 x 0.54 = 0.26082 -> 0.27.
        assert body["fill_count"] == "25.00"
        assert body["remaining_count"] == "0.00"
        assert body["average_fill_price"] == "0.4560"
        assert body["average_fee_paid"] == "0.0180"  # 0.45 / 25
        assert body["status"] == "executed"
        balance = (await client.get("/portfolio/balance")).json()
        assert balance == {"balance": 98_815, "balance_dollars": "988.1500", "updated_ts": balance["updated_ts"]}
        positions = (await client.get("/portfolio/positions")).json()["market_positions"]
        assert positions == [
            {
                "ticker": T0,
                "position_fp": "25.00",
                "market_exposure_dollars": "11.4000",
                "realized_pnl_dollars": "0.0000",
                "fees_paid_dollars": "0.4500",
                "resting_orders_count": 0,
                "settlement_result": None,
            }
        ]
        fills = (await client.get("/portfolio/fills")).json()["fills"]
        assert [(f["yes_price_dollars"], f["count_fp"], f["fee_cost"], f["is_taker"], f["side"], f["action"]) for f in fills] == [
            ("0.4600", "15.00", "0.2700", True, "yes", "buy"),  # newest first
            ("0.4500", "10.00", "0.1800", True, "yes", "buy"),
        ]
    book = exchange.book(T0)
    assert book.quantity_at(Side.NO, 5500) == 0
    assert book.quantity_at(Side.NO, 5400) == 5 * C
    assert book == exchange.engine.flow.simulation(T0).book


async def test_a_crossing_ask_fills_what_crosses_and_rests_the_rest_as_a_no_bid(exchange, rest, connect):
    async with connect(exchange) as ws, rest(exchange) as client:
        await ws.command("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [T0]})
        await ws.json()  # subscribed
        await ws.json()  # snapshot
        reply = await client.order(ticker=T0, client_order_id="a1", side="ask", count="60.00", price="0.4100")
        body = reply.json()
        # Only the YES bid at 0.42 is at or above 0.41: 20 fill there, 40 rest as a NO bid at 0.59.
        # Fee 0.07 x 20 x 0.42 x 0.58 = 0.34104 -> 0.35. Selling YES short buys NO: 20 x 0.58 = 11.60.
        assert (body["fill_count"], body["remaining_count"], body["average_fill_price"]) == ("20.00", "40.00", "0.4200")
        assert body["status"] == "resting"
        deltas = [(await ws.json())["msg"] for _ in range(2)]
        assert [(d["side"], d["price_dollars"], d["delta_fp"], d["client_order_id"]) for d in deltas] == [
            ("yes", "0.4200", "-20.00", "a1"),  # consumed depth leaves the book
            ("no", "0.5900", "40.00", "a1"),  # the rest joins it
        ]
        assert (await client.get("/portfolio/balance")).json()["balance_dollars"] == "988.0500"
        position = (await client.get("/portfolio/positions")).json()["market_positions"][0]
        assert (position["position_fp"], position["resting_orders_count"]) == ("-20.00", 1)
        fills = (await client.get("/portfolio/fills")).json()["fills"]
        assert [(f["side"], f["action"], f["yes_price_dollars"], f["no_price_dollars"]) for f in fills] == [
            ("yes", "sell", "0.4200", "0.5800")
        ]


async def test_immediate_or_cancel_fills_what_it_can_and_cancels_the_rest(exchange, rest):
    async with rest(exchange) as client:
        body = (
            await client.order(
                ticker=T0, client_order_id="i1", side="bid", count="40.00", price="0.4600", time_in_force="immediate_or_cancel"
            )
        ).json()
        assert (body["fill_count"], body["remaining_count"], body["status"]) == ("30.00", "0.00", "canceled")
        # (10 x 0.45 + 20 x 0.46) / 30 = 13.70 / 30 = 0.456666... -> 0.4567
        assert body["average_fill_price"] == "0.4567"
    assert exchange.book(T0).quantity_at(Side.YES, 4600) == 0  # nothing rested


async def test_fill_or_kill_fills_whole_or_is_refused_changing_nothing(exchange, rest):
    async with rest(exchange) as client:
        refused = await client.order(
            ticker=T0, client_order_id="f1", side="bid", count="31.00", price="0.4600", time_in_force="fill_or_kill"
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "fill_or_kill_insufficient_resting_volume"
        assert exchange.book(T0).quantity_at(Side.NO, 5500) == 10 * C
        assert (await client.get("/portfolio/balance")).json()["balance_dollars"] == "1000.0000"
        # Refused, so the client order id was never used.
        filled = await client.order(
            ticker=T0, client_order_id="f1", side="bid", count="30.00", price="0.4600", time_in_force="fill_or_kill"
        )
        assert filled.status_code == 201
        assert (filled.json()["fill_count"], filled.json()["status"]) == ("30.00", "executed")


async def test_post_only_rests_or_is_refused_when_it_would_cross(exchange, rest):
    async with rest(exchange) as client:
        refused = await client.order(ticker=T0, client_order_id="p1", side="bid", count="1.00", price="0.4500", post_only=True)
        assert refused.status_code == 400
        assert refused.json() == {
            "error": {
                "code": "invalid_order",
                "message": "post-only bid at 0.4500 would cross the book",
                "details": "post only cross",
            }
        }
        rested = await client.order(ticker=T0, client_order_id="p2", side="bid", count="1.00", price="0.4400", post_only=True)
        assert rested.json()["status"] == "resting"
    assert exchange.book(T0).quantity_at(Side.YES, 4400) == 1 * C


async def queue_position(client, order_id: str) -> str:
    return (await client.get(f"/portfolio/orders/{order_id}/queue_position")).json()["queue_position_fp"]


async def test_a_resting_order_queues_behind_the_depth_at_its_price_and_fills_when_trades_reach_it(
    exchange, rest, taker, connect
):
    async with connect(exchange) as ws, rest(exchange) as client:
        await ws.command("subscribe", {"channels": ["fill"]})
        assert (await ws.json())["msg"] == {"channel": "fill", "sid": 1}
        order_id = (await client.order(ticker=T0, client_order_id="r1", side="bid", count="10.00", price="0.4200")).json()[
            "order_id"
        ]
        assert await queue_position(client, order_id) == "20.00"  # the 20 already at 0.42 come first
        assert taker(exchange, T0, Side.NO, 5800, 15 * C) == 0  # a synthetic seller takes 15 of them
        assert await queue_position(client, order_id) == "5.00"
        assert (await client.get(f"/portfolio/orders/{order_id}")).json()["order"]["fill_count_fp"] == "0.00"
        taker(exchange, T0, Side.NO, 5800, 12 * C)  # 5 to the last of them, 7 to us
        order = (await client.get(f"/portfolio/orders/{order_id}")).json()["order"]
        assert (order["fill_count_fp"], order["remaining_count_fp"], order["status"]) == ("7.00", "3.00", "resting")
        assert await queue_position(client, order_id) == "0.00"
        fill = (await client.get("/portfolio/fills")).json()["fills"][0]
        message = await ws.json()
        assert message == {
            "type": "fill",
            "sid": 1,
            "msg": {
                "trade_id": fill["fill_id"],
                "order_id": order_id,
                "market_ticker": T0,
                "is_taker": False,
                "side": "yes",
                "action": "buy",
                "yes_price_dollars": "0.4200",
                "no_price_dollars": "0.5800",
                "count_fp": "7.00",
                "post_position_fp": "7.00",
                "ts": fill["ts"],
                "ts_ms": fill["ts_ms"],
                "client_order_id": "r1",
            },
        }
        assert fill["fee_cost"] == "0.0000"  # the standard schedule charges makers nothing
    assert exchange.book(T0) == exchange.engine.flow.simulation(T0).book
    assert exchange.book(T0).quantity_at(Side.YES, 4200) == 3 * C


class _Choices:
    """A stand-in random source for the simulation's noise cancel: this side and price, all of it."""

    def __init__(self, side: int, price: int) -> None:
        self.side, self.price = side, price

    def randrange(self, *_args):
        return self.side

    def choice(self, _options):
        return self.price

    def random(self):
        return 0.0


async def test_synthetic_cancels_advance_a_resting_order_only_by_what_stood_ahead_of_it(exchange, rest):
    simulation = exchange.engine.flow.simulation(T0)
    async with rest(exchange) as client:
        order_id = (await client.order(ticker=T0, client_order_id="q1", side="bid", count="10.00", price="0.4200")).json()[
            "order_id"
        ]
        out: list = []
        simulation._add(0, 4200, 5 * C, -1, 0, out)  # a noise trader joins behind us
        for event in out:
            exchange.markets.publish(event)
        simulation.rng = _Choices(0, 4200)
        out.clear()
        simulation._noise_cancel(0, out)  # the most recent noise order at 0.42 is the one behind us
        assert out[0].delta == -5 * C
        assert await queue_position(client, order_id) == "20.00"
        out.clear()
        simulation._noise_cancel(0, out)  # now the one ahead
        assert await queue_position(client, order_id) == "0.00"


async def test_cancel_takes_the_rest_off_the_book_once(exchange, rest):
    async with rest(exchange) as client:
        order_id = (await client.order(ticker=T0, client_order_id="x1", side="bid", count="10.00", price="0.4300")).json()[
            "order_id"
        ]
        cancelled = await client.delete(f"/portfolio/events/orders/{order_id}")
        assert cancelled.status_code == 200
        assert cancelled.json()["reduced_by"] == "10.00"
        again = await client.delete(f"/portfolio/events/orders/{order_id}")
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"
        order = (await client.get(f"/portfolio/orders/{order_id}")).json()["order"]
        assert (order["status"], order["remaining_count_fp"]) == ("canceled", "0.00")
        reused = await client.order(ticker=T0, client_order_id="x1", side="bid", count="1.00", price="0.4300")
        assert reused.status_code == 409
        assert reused.json()["error"]["code"] == "order_already_exists"
    assert exchange.book(T0).quantity_at(Side.YES, 4300) == 0


async def test_amend_keeps_the_queue_place_only_for_a_size_decrease(exchange, rest):
    simulation = exchange.engine.flow.simulation(T0)
    async with rest(exchange) as client:
        order_id = (await client.order(ticker=T0, client_order_id="m1", side="bid", count="10.00", price="0.4200")).json()[
            "order_id"
        ]
        out: list = []
        simulation._add(0, 4200, 5 * C, -1, 0, out)  # someone joins behind us
        for event in out:
            exchange.markets.publish(event)

        async def amend(count: str, price: str, old: str, new: str):
            body = {
                "ticker": T0,
                "side": "bid",
                "price": price,
                "count": count,
                "client_order_id": old,
                "updated_client_order_id": new,
            }
            return await client.post(f"/portfolio/events/orders/{order_id}/amend", body)

        smaller = await amend("6.00", "0.4200", "m1", "m2")
        assert smaller.status_code == 200, smaller.text
        assert (smaller.json()["old_order"]["remaining_count_fp"], smaller.json()["order"]["remaining_count_fp"]) == (
            "10.00",
            "6.00",
        )
        assert await queue_position(client, order_id) == "20.00"  # still ahead of the 5
        larger = await amend("8.00", "0.4200", "m2", "m3")
        assert larger.json()["order"]["client_order_id"] == "m3"
        assert await queue_position(client, order_id) == "25.00"  # back of the line
        assert exchange.book(T0).quantity_at(Side.YES, 4200) == 33 * C
        stale = await amend("8.00", "0.4200", "m1", "m4")
        assert stale.status_code == 400  # m1 is no longer the order's client id
        taken = await amend("8.00", "0.4200", "m3", "m1")
        assert taken.status_code == 409  # m1 was used
        # Amended to a crossing price it trades: 8 at the best YES ask, 0.45.
        crossing = await amend("8.00", "0.4500", "m3", "m5")
        assert crossing.json()["order"]["status"] == "executed"
        assert crossing.json()["order"]["average_fill_price"] == "0.4500"
    assert exchange.book(T0).quantity_at(Side.YES, 4200) == 25 * C
    assert exchange.book(T0) == simulation.book


async def test_self_trade_prevention_stops_the_taker_or_cancels_the_resting_order(exchange, rest):
    async with rest(exchange) as client:
        # Our ask at 0.44 becomes the best NO bid (0.56): the first thing a crossing bid meets.
        own = (await client.order(ticker=T0, client_order_id="s1", side="ask", count="5.00", price="0.4400")).json()
        blocked = (await client.order(ticker=T0, client_order_id="s2", side="bid", count="10.00", price="0.4600")).json()
        assert (blocked["fill_count"], blocked["status"]) == ("0.00", "canceled")
        assert (await client.get(f"/portfolio/orders/{own['order_id']}")).json()["order"]["status"] == "resting"
        maker = (
            await client.order(
                ticker=T0,
                client_order_id="s3",
                side="bid",
                count="10.00",
                price="0.4600",
                self_trade_prevention_type="maker",
            )
        ).json()
        assert (maker["fill_count"], maker["average_fill_price"]) == ("10.00", "0.4500")
        assert (await client.get(f"/portfolio/orders/{own['order_id']}")).json()["order"]["status"] == "canceled"
    assert exchange.book(T0).quantity_at(Side.NO, 5600) == 0


async def test_an_order_the_cash_cannot_cover_is_refused_but_closing_needs_no_cash(make_exchange, book_setter, rest):
    async with make_exchange(flow=False, starting_balance=12_000_000) as exchange:  # $12.00
        book_setter(exchange, T0, YES, NO)
        async with rest(exchange) as client:
            # 25 at 0.45/0.46 cost 11.40 + 0.45 fees = 11.85: affordable; 26 (one more at 0.46, 0.47 more) is not.
            refused = await client.order(ticker=T0, client_order_id="b0", side="bid", count="26.00", price="0.4600")
            assert refused.status_code == 400
            assert refused.json()["error"] == {
                "code": "insufficient_balance",
                "message": "the order needs $12.3200 and $12.0000 is available",
            }
            bought = await client.order(ticker=T0, client_order_id="b1", side="bid", count="25.00", price="0.4600")
            assert bought.json()["fill_count"] == "25.00"
            assert (await client.get("/portfolio/balance")).json()["balance_dollars"] == "0.1500"
            # Selling what we hold needs no cash: it rests (a NO bid at 0.50) and holds nothing back.
            sell = await client.order(ticker=T0, client_order_id="b2", side="ask", count="25.00", price="0.5000")
            assert sell.status_code == 201, sell.text
            more = await client.order(ticker=T0, client_order_id="b3", side="ask", count="1.00", price="0.5000")
            assert more.json()["error"]["code"] == "insufficient_balance"  # that one would open NO


async def test_a_resolved_market_refuses_orders(make_exchange, rest):
    async with make_exchange(flow=False) as exchange:
        exchange.markets.market(T0).result = Side.YES
        async with rest(exchange) as client:
            refused = await client.order(ticker=T0, client_order_id="z", side="bid", count="1.00", price="0.4000")
            assert refused.status_code == 400
            assert refused.json()["error"] == {"code": "market_closed", "message": f"market {T0} has resolved"}
