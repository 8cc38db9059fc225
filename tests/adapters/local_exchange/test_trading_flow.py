"""Trading while the synthetic flow runs: resting orders filled by synthetic takers, the
exchange's book always equal to the simulation's it trades in, every fill on the ``fill``
channel and in ``/portfolio/fills``, the account's cash and positions equal to its fills
replayed through a fresh ledger, and settlement when the market resolves."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from adapters.kalshi.rest_client import KalshiRestClient
from adapters.kalshi.rest_markets import KalshiMarketCatalog
from adapters.kalshi.wire import ms_to_rfc3339
from adapters.local_exchange import parse_fault
from adapters.local_exchange.trading.rate_limit import TIERS
from domain.gateway_errors import MarketNotFound
from domain.ports import MarketInfo
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.orders import Fill, OrderSide
from domain.values import ONE_CONTRACT, Side, format_count, format_price, parse_count, parse_fixed, parse_price

C = ONE_CONTRACT


def ledger_from_fills(fills: list[dict], initial: int) -> Ledger:
    ledger = Ledger(initial)
    for f in sorted(fills, key=lambda f: (f["ts_ms"], f["fill_id"])):
        side = OrderSide.BID if f["action"] == "buy" else OrderSide.ASK
        fee = parse_fixed(f["fee_cost"], 6)  # dollars -> micro-dollars
        ledger.apply_fill(
            Fill(
                f["fill_id"], f["order_id"], f["ticker"], side, parse_price(f["yes_price_dollars"]),
                parse_count(f["count_fp"]), fee, f["is_taker"], f["ts_ms"],
            )
        )  # fmt: skip
    return ledger


async def all_fills(client) -> list[dict]:
    fills, cursor = [], None
    while True:
        page = (await client.get("/portfolio/fills", params={"limit": "50", **({"cursor": cursor} if cursor else {})})).json()
        fills.extend(page["fills"])
        cursor = page["cursor"]
        if not cursor:
            return fills


async def test_trading_during_the_flow_keeps_books_fills_and_money_consistent(
    make_exchange, market_config, rest, connect, rebuilder
):
    market = market_config(markets=2)
    tickers = list(market.tickers)
    async with make_exchange(
        flow=False, market=market, speed=20, max_events=2500, rate_tier=TIERS["prime"]
    ) as exchange:
        async with connect(exchange) as ws, rest(exchange) as client:
            await ws.command("subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers})
            await ws.command("subscribe", {"channels": ["fill"]})
            exchange.start_flow()
            placed = 0
            while exchange.end_reason is None and placed < 60:
                ticker = tickers[placed % 2]
                book = exchange.book(ticker)
                if placed % 3 == 2 and book.yes_ask > 0:  # now and then take the ask
                    fields = {"side": "bid", "price": format_price(book.yes_ask), "time_in_force": "immediate_or_cancel"}
                elif placed % 2 and book.yes_ask > 0:  # join the best ask
                    fields = {"side": "ask", "price": format_price(book.yes_ask)}
                else:  # join the best bid
                    fields = {"side": "bid", "price": format_price(max(book.yes_bid, 100))}
                reply = await client.order(ticker=ticker, client_order_id=f"o{placed}", count="3.00", **fields)
                assert reply.status_code == 201, reply.text
                placed += 1
                exchange.engine.flow.catch_up(ticker)
                assert exchange.book(ticker) == exchange.engine.flow.simulation(ticker).book
                await asyncio.sleep(0.02)
            await exchange.wait_finished()
            fills = await all_fills(client)
            balance = (await client.get("/portfolio/balance")).json()
            positions = (await client.get("/portfolio/positions")).json()["market_positions"]
            await exchange.stop()
            frames, _closed = await ws.frames_until_closed()
    assert placed >= 20
    assert any(not f["is_taker"] for f in fills), "no resting order was filled by the synthetic flow"
    assert any(f["is_taker"] for f in fills)
    # The client's rebuilt books are the exchange's (our own deltas included).
    rebuilt = rebuilder().feed(frames)
    assert not rebuilt.seq_problems()
    assert all(rebuilt.books[t] == exchange.book(t) for t in tickers)
    # Every fill came on the fill channel too, with the same fields.
    pushed = [frame["msg"] for frame in map(orjson.loads, frames) if frame.get("type") == "fill"]
    assert sorted(m["trade_id"] for m in pushed) == sorted(f["fill_id"] for f in fills)
    by_id = {f["fill_id"]: f for f in fills}
    for message in pushed:
        fill = by_id[message["trade_id"]]
        assert {k: fill[k] for k in message} == message
    # Cash and positions are the fills replayed through a fresh ledger, to the micro-dollar.
    replayed = ledger_from_fills(fills, exchange.config.starting_balance)
    assert parse_fixed(balance["balance_dollars"], 6) == replayed.cash
    assert {p["ticker"]: p["position_fp"] for p in positions} == {
        t: format_count(replayed.quantity(t)) for t in replayed.positions
    }


async def test_a_resolved_market_pays_out_and_cancels_what_rests(make_exchange, market_config, book_setter, rest):
    market = market_config(markets=1, duration_ms=4_000)
    ticker = market.tickers[0]
    async with make_exchange(flow=False, market=market, fees=FeeSchedule.kalshi_standard()) as exchange:
        book_setter(exchange, ticker, [(3000, 10 * C)], [(5500, 20 * C)])
        async with rest(exchange) as client:
            # 10 YES at 0.45: 4.50 plus fee 0.07 x 10 x 0.45 x 0.55 = 0.17325 -> 0.18.
            bought = await client.order(ticker=ticker, client_order_id="y", side="bid", count="10.00", price="0.4500")
            assert bought.json()["fill_count"] == "10.00"
            resting = await client.order(ticker=ticker, client_order_id="r", side="bid", count="1.00", price="0.0100")
            exchange.start_flow()
            assert await exchange.wait_finished() == "every market resolved"
            result = exchange.markets.market(ticker).result
            own_fills = (await client.get("/portfolio/fills")).json()["fills"]
            assert [f["client_order_id"] for f in own_fills] == ["y"]  # nobody sold down to 0.01
            order = (await client.get(f"/portfolio/orders/{resting.json()['order_id']}")).json()["order"]
            assert order["status"] == "canceled"
            balance = (await client.get("/portfolio/balance")).json()["balance_dollars"]
            position = (await client.get("/portfolio/positions")).json()["market_positions"][0]
            refused = await client.order(ticker=ticker, client_order_id="late", side="bid", count="1.00", price="0.4000")
    paid = "10.00" if result is Side.YES else "0.00"
    assert balance == {"10.00": "1005.3200", "0.00": "995.3200"}[paid]
    assert position["position_fp"] == "0.00"
    assert position["settlement_result"] == result.name.lower()
    assert position["realized_pnl_dollars"] == ("5.5000" if result is Side.YES else "-4.5000")
    assert refused.json()["error"]["code"] == "market_closed"


async def test_the_market_endpoint_gives_its_close_time_and_then_its_result(make_exchange, market_config, rest, signer):
    market = market_config(markets=1, duration_ms=4_000)
    ticker = market.tickers[0]
    async with make_exchange(flow=False, market=market) as exchange:
        catalog_client = KalshiRestClient(exchange.rest_url, signer)
        catalog = KalshiMarketCatalog(catalog_client)
        try:
            async with rest(exchange) as client:
                body = (await client.http.get(f"/trade-api/v2/markets/{ticker}")).json()["market"]
                assert (body["status"], body["result"]) == ("active", "")
                assert body["close_time"] == body["expiration_time"] == ms_to_rfc3339(market.expiry_ms)
                missing = await client.http.get("/trade-api/v2/markets/NOPE")
                assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
            assert await catalog.market(ticker) == MarketInfo(ticker, market.expiry_ms, market.expiry_ms, "active", None)
            with pytest.raises(MarketNotFound):
                await catalog.market("NOPE")
            exchange.start_flow()
            assert await exchange.wait_finished() == "every market resolved"
            resolved = await catalog.market(ticker)
            assert (resolved.status, resolved.result) == ("finalized", exchange.markets.market(ticker).result)
        finally:
            await catalog_client.aclose()


async def test_a_drop_fill_fault_cuts_the_connection_instead_of_sending_that_fill(make_exchange, book_setter, connect, rest):
    ticker = "SYN-7-M0"
    async with make_exchange(flow=False, faults=(parse_fault("drop-fill@2"),)) as exchange:
        book_setter(exchange, ticker, [(4000, 10 * C)], [(5500, 10 * C)])
        async with connect(exchange) as ws, rest(exchange) as client:
            await ws.command("subscribe", {"channels": ["fill"]})
            assert (await ws.json())["type"] == "subscribed"
            for number in (1, 2):
                reply = await client.order(
                    ticker=ticker, client_order_id=f"x{number}", side="bid", count="1.00", price="0.4500",
                    time_in_force="immediate_or_cancel",
                )  # fmt: skip
                assert reply.json()["fill_count"] == "1.00"
            frames, _closed = await ws.frames_until_closed()
            listed = (await client.get("/portfolio/fills")).json()["fills"]
    assert [orjson.loads(frame)["msg"]["client_order_id"] for frame in frames] == ["x1"]
    assert sorted(fill["client_order_id"] for fill in listed) == ["x1", "x2"]  # REST still has the lost one
    assert exchange.fill_cuts == 1
