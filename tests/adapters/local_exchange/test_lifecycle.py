"""Starting, bounding and stopping the exchange, and the settings it refuses."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from adapters.local_exchange import ExchangeConfig, LocalExchange, parse_fault
from adapters.synthetic.market_model import SyntheticMarketConfig


async def test_a_duration_bound_ends_the_run_by_itself(make_exchange):
    started = time.monotonic()
    async with make_exchange(speed=1.0, duration_s=0.4) as exchange:
        assert await asyncio.wait_for(exchange.wait_finished(), 5) == "duration elapsed"
        elapsed = time.monotonic() - started
        published = exchange.events_published
        await asyncio.sleep(0.1)
        assert exchange.events_published == published  # the flow has stopped
    assert 0.4 <= elapsed < 1.5
    assert published > len(exchange.tickers)  # the opening books, and then some flow


async def test_stopping_closes_each_connection_with_going_away_after_what_was_queued(make_exchange, connect):
    async with make_exchange(flow=False) as exchange, connect(exchange) as client:
        await client.command("subscribe", {"channels": ["orderbook_delta"], "market_tickers": list(exchange.tickers)})
        await client.frame()  # the ack: the snapshots are queued with it
        await exchange.stop()
        frames, closed = await client.frames_until_closed(timeout=5)
        assert len(frames) == len(exchange.tickers)  # every snapshot, then the close
        assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "exchange closing")
        assert exchange.end_reason == "stopped"


async def test_the_exchange_listens_on_the_port_it_is_given(api_keys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exchange = LocalExchange(ExchangeConfig(api_keys=api_keys, port=port))
    await exchange.start(flow=False)
    try:
        assert exchange.ws_url == f"ws://127.0.0.1:{port}/trade-api/ws/v2"
        assert exchange.rest_url == f"http://127.0.0.1:{port}/trade-api/v2"
        taken = LocalExchange(ExchangeConfig(api_keys=api_keys, port=port))
        with pytest.raises(OSError):
            await taken.start(flow=False)
    finally:
        await exchange.stop()


@pytest.mark.slow
async def test_an_idle_http_connection_outlives_a_pause_of_several_seconds(make_exchange):
    # uvicorn's default keep-alive (5 s) closed idle connections while clients went on reusing
    # them: a request sent as the server closed met httpx.ReadError. One socket, two requests
    # 6 s apart, both answered.
    request = b"GET /trade-api/v2/exchange/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    async with make_exchange(flow=False) as exchange:
        reader, writer = await asyncio.open_connection("127.0.0.1", exchange.port)
        try:
            for pause_s in (0.0, 6.0):
                await asyncio.sleep(pause_s)
                writer.write(request)
                await writer.drain()
                status = await asyncio.wait_for(reader.readline(), 5)
                assert status.startswith(b"HTTP/1.1 200"), status
                headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = next(
                    int(line.split(b":")[1]) for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length")
                )
                await asyncio.wait_for(reader.readexactly(length), 5)
        finally:
            writer.close()


def test_an_exchange_that_has_not_started_has_no_address(api_keys):
    with pytest.raises(RuntimeError, match="not started"):
        LocalExchange(ExchangeConfig(api_keys=api_keys)).ws_url


@pytest.mark.parametrize(
    "settings, complaint",
    [
        ({"api_keys": {}}, "at least one accepted key"),
        ({"port": 70_000}, "port"),
        ({"era": "future"}, "era"),
        ({"speed": -1.0}, "speed"),
        ({"speed": float("nan")}, "speed"),
        ({"max_events": 0}, "max_events"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"send_buffer": 0}, "send_buffer"),
        ({"heartbeat_s": 0.0}, "heartbeat_s"),
        ({"era": "legacy", "market": SyntheticMarketConfig(tick_structure="deci_cent")}, "linear_cent"),
        ({"era": "legacy", "market": SyntheticMarketConfig(fractional_counts=True)}, "whole contracts"),
        ({"era": "legacy", "market": SyntheticMarketConfig()}, "whole seconds"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(api_keys, settings, complaint):
    with pytest.raises(ValueError, match=complaint):
        ExchangeConfig(**{"api_keys": api_keys, **settings})


def test_faults_and_a_legacy_market_that_fits_are_accepted(api_keys):
    config = ExchangeConfig(
        api_keys=api_keys,
        era="legacy",
        market=SyntheticMarketConfig(timestamp_granularity_ms=1000),
        faults=[parse_fault("stall@3:1")],
    )
    assert config.faults == (parse_fault("stall@3:1"),)
