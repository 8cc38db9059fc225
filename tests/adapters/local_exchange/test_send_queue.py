"""The bounded per-connection send queue, and the client it protects the exchange from."""

from __future__ import annotations

import asyncio
import socket

import pytest
import websockets

from adapters.local_exchange.send_queue import ItemKind, SendQueue, SendQueueFull


async def test_market_data_is_bounded_and_refused_beyond_capacity():
    queue = SendQueue(capacity=2)
    assert queue.put_data("a", sid=1, ticker="T")
    assert queue.put_data("b", sid=2, ticker="T")
    assert not queue.put_data("c", sid=1, ticker="T")
    queue.put_control("reply")  # replies are not market data
    assert (len(queue), queue.data_queued) == (3, 2)
    assert (await queue.get()).value == "a"
    assert queue.put_data("c", sid=1, ticker="T")
    assert [(await queue.get()).value for _ in range(3)] == ["b", "reply", "c"]
    assert queue.data_queued == 0


async def test_forget_removes_a_sids_queued_data_only_for_the_named_markets():
    queue = SendQueue(capacity=10)
    for sid, ticker in [(1, "A"), (1, "B"), (2, "A"), (1, "A")]:
        queue.put_data(f"{sid}{ticker}", sid=sid, ticker=ticker)
    queue.put_control("reply")
    assert queue.forget(1, frozenset({"A"})) == 2
    assert queue.forget(3) == 0
    assert [(await queue.get()).value for _ in range(len(queue))] == ["1B", "2A", "reply"]
    assert queue.data_queued == 0


async def test_the_writers_actions_keep_their_place_among_the_frames():
    queue = SendQueue(capacity=10)
    queue.put_data("a", sid=1, ticker="T")
    queue.put_stall(0.5)
    queue.put_drop()
    queue.put_close(1001, "bye")
    kinds = [(await queue.get()).kind for _ in range(4)]
    assert kinds == [ItemKind.FRAME, ItemKind.STALL, ItemKind.DROP, ItemKind.CLOSE]


async def test_take_frames_takes_the_run_of_frames_at_the_head_up_to_the_limit():
    queue = SendQueue(capacity=10)
    for frame in "abc":
        queue.put_data(frame, sid=1, ticker="T")
    queue.put_control("reply")
    queue.put_stall(0.5)
    queue.put_data("d", sid=1, ticker="T")
    assert queue.take_frames(2) == ["a", "b"]
    assert queue.take_frames(10) == ["c", "reply"]  # a reply is a frame too; the stall is not
    assert (len(queue), queue.data_queued) == (2, 1)
    assert queue.take_frames(10) == []
    assert (await queue.get()).kind is ItemKind.STALL
    assert queue.take_frames(10) == ["d"] and queue.data_queued == 0


async def test_get_waits_for_the_next_item():
    queue = SendQueue(capacity=1)
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    queue.put_control("late")
    assert (await asyncio.wait_for(waiting, 1)).value == "late"


def test_replies_beyond_the_allowance_are_refused():
    queue = SendQueue(capacity=1, control_allowance=2)
    queue.put_control("1")
    queue.put_control("2")
    with pytest.raises(SendQueueFull):
        queue.put_control("3")


async def test_a_client_that_sends_commands_and_reads_no_replies_is_cut_off(make_exchange, signer):
    async with make_exchange(flow=False) as exchange:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", exchange.port))
        async with websockets.connect(
            exchange.ws_url, sock=sock, additional_headers=signer.websocket_headers(), max_queue=1, proxy=None
        ) as client:
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(15):
                    for command_id in range(200_000):
                        await client.send(f'{{"id":{command_id},"cmd":"list_subscriptions"}}')
        async with asyncio.timeout(5):
            while exchange.connections:
                await asyncio.sleep(0.01)
