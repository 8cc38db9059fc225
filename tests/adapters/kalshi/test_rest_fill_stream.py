"""The fill stream: Kalshi's ``fill`` channel from a small WebSocket server on 127.0.0.1, and the
REST reconciliation that makes every fill arrive exactly once across disconnects."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from adapters.kalshi.fill_stream import KalshiFillStream
from adapters.kalshi.ws_client import KalshiWebSocketClient
from domain.backoff import ExponentialBackoff
from domain.fees import FeeSchedule
from domain.gateway_errors import AuthenticationFailed, ExchangeUnavailable
from domain.orders import FeeCorrection, Fill, OrderSide
from domain.values import ONE_CONTRACT

C = ONE_CONTRACT
FEES = FeeSchedule.kalshi_standard()
TIMEOUT_S = 5.0


def fill_frame(trade_id: str, *, side="yes", action="buy", yes="0.4700", count="2.00", ts_ms=1_000, taker=True) -> bytes:
    no = f"{1 - float(yes):.4f}"
    return orjson.dumps(
        {
            "type": "fill",
            "sid": 1,
            "msg": {
                "trade_id": trade_id,
                "order_id": f"order-{trade_id}",
                "market_ticker": "T1",
                "is_taker": taker,
                "side": side,
                "action": action,
                "yes_price_dollars": yes,
                "no_price_dollars": no,
                "count_fp": count,
                "post_position_fp": count,
                "ts": ts_ms // 1000,
                "ts_ms": ts_ms,
                "client_order_id": f"cid-{trade_id}",
            },
        }
    )


def rest_fill(fill_id: str, *, price=4700, count=2 * C, fee=None, ts_ms=1_000, side=OrderSide.BID) -> Fill:
    fee = FEES.fee(count, price, is_taker=True) if fee is None else fee
    return Fill(fill_id, f"order-{fill_id}", "T1", side, price, count, fee, True, ts_ms)


class FillServer:
    """Accepts a connection, acknowledges ``subscribe`` for ``fill``, then sends what the test
    queues; ``drop()`` closes the current connection."""

    def __init__(self, *, refuse_with: int | None = None) -> None:
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.connections = 0
        self.subscribed = asyncio.Event()
        self.refuse_with = refuse_with
        self._current: ServerConnection | None = None

    async def handler(self, connection: ServerConnection) -> None:
        self.connections += 1
        self._current = connection
        command = orjson.loads(await connection.recv())
        assert command["cmd"] == "subscribe" and command["params"] == {"channels": ["fill"]}
        if self.refuse_with is not None:
            await connection.send(orjson.dumps({"id": command["id"], "type": "error", "msg": {"code": self.refuse_with, "msg": "no"}}))
            await connection.wait_closed()
            return
        await connection.send(orjson.dumps({"type": "subscribed", "id": command["id"], "msg": {"channel": "fill", "sid": 1}}))
        self.subscribed.set()
        sender = asyncio.create_task(self._send(connection))
        await connection.wait_closed()
        sender.cancel()

    async def _send(self, connection: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await self.outbox.get()
                await connection.send(frame)

    async def drop(self) -> None:
        self.subscribed.clear()
        assert self._current is not None
        await self._current.close()


class RestFills:
    """What ``GET /portfolio/fills`` lists, controlled by the test."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.asked: list[int] = []
        self.fail_next = 0

    async def __call__(self, since_ms: int) -> list[Fill]:
        self.asked.append(since_ms)
        if self.fail_next:
            self.fail_next -= 1
            raise ExchangeUnavailable("the exchange is away")
        return [fill for fill in self.fills if fill.ts_ms >= since_ms]


@contextlib.asynccontextmanager
async def running(server: FillServer, rest: RestFills, **options):
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        client = KalshiWebSocketClient(
            f"ws://127.0.0.1:{port}/trade-api/ws/v2", None, backoff=ExponentialBackoff(initial_s=0.01, max_s=0.05)
        )
        stream = KalshiFillStream(client, rest, FEES, **{"reconcile_interval_s": None, **options})
        received: list[Fill] = []
        arrived = asyncio.Event()

        async def collect() -> None:
            async for fill in stream.fills(since_ms=0):
                received.append(fill)
                arrived.set()

        task = asyncio.create_task(collect())
        try:
            yield stream, received, arrived, task
        finally:
            await stream.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, TIMEOUT_S)


async def until(condition, arrived: asyncio.Event) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while not condition():
            await arrived.wait()
            arrived.clear()


async def test_channel_fills_are_delivered_once_with_the_fee_schedules_fee_and_mapped_sides():
    server, rest = FillServer(), RestFills()
    async with running(server, rest) as (stream, received, arrived, _):
        await asyncio.wait_for(server.subscribed.wait(), TIMEOUT_S)
        for frame in (
            fill_frame("a"),
            fill_frame("b", side="no", action="buy", yes="0.4000"),
            fill_frame("c", side="yes", action="sell", yes="0.5000", taker=False),
            fill_frame("d", side="no", action="sell", yes="0.3000"),
            fill_frame("a"),  # a duplicate
        ):
            server.outbox.put_nowait(frame)
        await until(lambda: len(received) >= 4, arrived)
        await asyncio.sleep(0.1)
    assert [(f.fill_id, f.side, f.price) for f in received] == [
        ("a", OrderSide.BID, 4700),
        ("b", OrderSide.ASK, 4000),
        ("c", OrderSide.ASK, 5000),
        ("d", OrderSide.BID, 3000),
    ]
    assert received[0].fee == FEES.fee(2 * C, 4700, is_taker=True) and received[2].fee == 0  # makers: no fee here
    assert stream.duplicates == 1


async def test_a_fill_missed_while_disconnected_is_recovered_from_rest_and_not_repeated():
    server, rest = FillServer(), RestFills()
    async with running(server, rest) as (stream, received, arrived, _):
        await asyncio.wait_for(server.subscribed.wait(), TIMEOUT_S)
        rest.fills.append(rest_fill("a", ts_ms=1_000))
        server.outbox.put_nowait(fill_frame("a", ts_ms=1_000))
        await until(lambda: len(received) == 1, arrived)

        await server.drop()
        # While we are away: fill b happens, and its message is never sent.
        rest.fills.append(rest_fill("b", price=4800, count=C, fee=1_234_0, ts_ms=2_000))
        await until(lambda: len(received) == 2, arrived)  # recovered on reconnect
        server.outbox.put_nowait(fill_frame("b", yes="0.4800", count="1.00", ts_ms=2_000))  # late, after all
        server.outbox.put_nowait(fill_frame("c", ts_ms=3_000))
        await until(lambda: len(received) == 3, arrived)
    assert [f.fill_id for f in received] == ["a", "b", "c"]
    assert received[1].fee == 12_340  # recovered from REST: the fee the exchange charged
    assert server.connections == 2 and stream.from_reconcile == 1 and stream.duplicates == 1
    assert rest.asked[0] == 0 and rest.asked[1] == 0  # from the start; then a lookback before fill a (clamped at 0)


async def test_a_different_fee_found_on_reconciling_is_reported_once_as_a_correction():
    server, rest = FillServer(), RestFills()
    async with running(server, rest) as (stream, received, arrived, _):
        await asyncio.wait_for(server.subscribed.wait(), TIMEOUT_S)
        server.outbox.put_nowait(fill_frame("a", taker=False))  # a maker: the schedule says no fee
        await until(lambda: len(received) == 1, arrived)
        rest.fills.append(rest_fill("a", fee=10_000))  # but this series charges makers
        await server.drop()
        server.outbox.put_nowait(fill_frame("z", ts_ms=5_000))
        await until(lambda: len(received) == 2, arrived)
        assert stream.fee_corrections() == [FeeCorrection("a", "T1", 0, 10_000)]
        assert stream.fee_corrections() == []
    assert FeeCorrection("a", "T1", 0, 10_000).delta == 10_000


async def test_a_failed_reconciliation_is_covered_by_the_next_one():
    server, rest = FillServer(), RestFills()
    rest.fills.append(rest_fill("early", ts_ms=500))
    rest.fail_next = 1
    async with running(server, rest, reconcile_interval_s=0.1) as (_stream, received, arrived, _):
        await until(lambda: len(received) == 1, arrived)
    assert [f.fill_id for f in received] == ["early"]
    assert rest.asked[:2] == [0, 0]


async def test_periodic_reconciliation_books_a_fill_whose_message_was_lost():
    server, rest = FillServer(), RestFills()
    async with running(server, rest, reconcile_interval_s=0.1) as (stream, received, arrived, _):
        await asyncio.wait_for(server.subscribed.wait(), TIMEOUT_S)
        rest.fills.append(rest_fill("lost", ts_ms=7_000))
        await until(lambda: len(received) == 1, arrived)
    assert received[0].fill_id == "lost" and server.connections == 1 and stream.reconciles >= 2


async def test_a_refused_subscription_for_lack_of_authentication_raises():
    server, rest = FillServer(refuse_with=9), RestFills()
    async with running(server, rest) as (_stream, _received, _arrived, task):
        with pytest.raises(AuthenticationFailed):
            await asyncio.wait_for(task, TIMEOUT_S)


async def test_a_stream_from_now_takes_what_the_exchange_already_lists_as_the_past():
    server, rest = FillServer(), RestFills()
    # The exchange's clock is far behind ours (market time): only what it lists tells past from new.
    rest.fills.append(rest_fill("old", ts_ms=1_000))
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        client = KalshiWebSocketClient(f"ws://127.0.0.1:{port}/trade-api/ws/v2", None)
        stream = KalshiFillStream(client, rest, FEES, reconcile_interval_s=0.1)
        received: list[Fill] = []

        async def collect() -> None:
            async for fill in stream.fills():
                received.append(fill)

        task = asyncio.create_task(collect())
        await asyncio.wait_for(server.subscribed.wait(), TIMEOUT_S)
        rest.fills.append(rest_fill("new", ts_ms=2_000))  # never on the channel: found by reconciling
        server.outbox.put_nowait(fill_frame("live"))
        async with asyncio.timeout(TIMEOUT_S):
            while len(received) < 2:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.25)  # a reconciliation or two more: nothing repeats
        await stream.stop()
        await asyncio.wait_for(task, TIMEOUT_S)
    assert sorted(f.fill_id for f in received) == ["live", "new"]
    assert rest.asked[0] == 0  # the baseline, read before subscribing


async def test_a_malformed_fill_message_is_counted_and_skipped():
    server, rest = FillServer(), RestFills()
    async with running(server, rest) as (stream, received, arrived, _):
        await asyncio.wait_for(server.subscribed.wait(), TIMEOUT_S)
        bad_prices = orjson.loads(fill_frame("x"))
        bad_prices["msg"]["no_price_dollars"] = "0.9000"  # does not add up to $1 with 0.47
        no_count = orjson.loads(fill_frame("y"))
        del no_count["msg"]["count_fp"]
        for frame in (orjson.dumps(bad_prices), orjson.dumps(no_count), b"{not json", fill_frame("ok")):
            server.outbox.put_nowait(frame)
        await until(lambda: len(received) == 1, arrived)
    assert [f.fill_id for f in received] == ["ok"] and stream.malformed == 3
