"""The signed handshake, the way Kalshi checks it, and the server's heartbeat pings."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import pytest_asyncio
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from adapters.kalshi.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestSigner,
    generate_keypair,
    private_key_from_pem,
)
from adapters.kalshi.parsing import Subscribed
from adapters.local_exchange import ExchangeConfig, LocalExchange

# One exchange for the module (the heartbeat test starts its own, with a short interval).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(api_keys):
    exchange = LocalExchange(ExchangeConfig(api_keys=api_keys))
    await exchange.start(flow=False)
    yield exchange
    await exchange.stop()


async def rejection(exchange, headers) -> tuple[int, dict]:
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with websockets.connect(exchange.ws_url, additional_headers=headers, proxy=None):
            pass
    response = caught.value.response
    return response.status_code, orjson.loads(bytes(response.body))


async def test_a_correctly_signed_handshake_is_accepted(exchange, connect):
    async with connect(exchange) as client:
        await client.command("subscribe", {"channels": ["trade"]})
        assert await client.message() == Subscribed(1, "trade", 1)


@pytest.mark.parametrize("missing", [KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER])
async def test_a_missing_header_is_refused_with_401(exchange, signer, missing):
    headers = signer.websocket_headers()
    del headers[missing]
    status, body = await rejection(exchange, headers)
    assert status == 401
    assert body["error"]["code"] == "signature_is_missing_from_headers"
    assert missing in body["error"]["message"]


def _another_key_signer(key_id: str) -> RequestSigner:
    return RequestSigner(key_id, private_key_from_pem(generate_keypair(1024)[0]))


@pytest.mark.parametrize(
    "make_headers, code, details",
    [
        pytest.param(
            lambda signer: _another_key_signer(signer.key_id).websocket_headers(),
            "authentication_error",
            "INCORRECT_API_KEY_SIGNATURE",
            id="signed with another key",
        ),
        pytest.param(
            lambda signer: signer.headers("GET", "/trade-api/v2/ws/v2"),
            "authentication_error",
            "INCORRECT_API_KEY_SIGNATURE",
            id="signed over another path",
        ),
        pytest.param(
            lambda signer: {**signer.websocket_headers(), SIGNATURE_HEADER: "not base64!"},
            "authentication_error",
            "INCORRECT_API_KEY_SIGNATURE",
            id="signature not base64",
        ),
        pytest.param(
            lambda signer: _another_key_signer("somebody-else").websocket_headers(),
            "authentication_error",
            "NOT_FOUND",
            id="unknown key id",
        ),
        pytest.param(
            lambda signer: signer.websocket_headers(now_ms=time.time_ns() // 1_000_000 - 60_000),
            "header_timestamp_expired",
            None,
            id="stale timestamp",
        ),
        pytest.param(
            lambda signer: signer.websocket_headers(now_ms=time.time_ns() // 1_000_000 + 60_000),
            "header_timestamp_expired",
            None,
            id="timestamp from the future",
        ),
        pytest.param(
            lambda signer: signer.websocket_headers(now_ms=time.time_ns() // 1_000_000_000),
            "header_timestamp_expired",
            None,
            id="seconds, not milliseconds",
        ),
    ],
)
async def test_a_bad_or_stale_signature_is_refused_as_kalshi_does(exchange, signer, make_headers, code, details):
    served = exchange.connections_served
    status, body = await rejection(exchange, make_headers(signer))
    assert exchange.connections_served == served
    assert status == 401
    assert body["error"]["code"] == code
    assert body["error"].get("details") == details
    assert body["error"]["message"]


async def test_the_exchange_keeps_serving_after_rejecting_a_client(exchange, signer, connect):
    stale = signer.websocket_headers(now_ms=1)
    assert (await rejection(exchange, stale))[0] == 401
    async with connect(exchange) as client:
        await client.command("list_subscriptions")
        assert (await client.message()).subscriptions == ()


async def test_the_server_pings_with_a_heartbeat_payload(make_exchange, signer):
    """Read raw frames (a normal client answers pings without showing them)."""
    async with make_exchange(flow=False, heartbeat_s=0.15) as exchange:
        reader, writer = await asyncio.open_connection("127.0.0.1", exchange.port)
        protocol = ClientProtocol(parse_uri(exchange.ws_url))
        request = protocol.connect()
        request.headers.update(signer.websocket_headers())
        protocol.send_request(request)
        writer.write(b"".join(protocol.data_to_send()))
        pings: list[tuple[float, bytes]] = []
        handshake: list[Response] = []
        deadline = time.monotonic() + 3.0
        while len(pings) < 3 and time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(65_536), deadline - time.monotonic())
            assert data, "the server closed the connection"
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Response):
                    handshake.append(event)
                elif isinstance(event, Frame) and event.opcode is Opcode.PING:
                    pings.append((time.monotonic(), event.data))
            writer.write(b"".join(protocol.data_to_send()))  # the pongs
        writer.close()

    assert [response.status_code for response in handshake] == [101]
    assert [payload for _, payload in pings] == [b"heartbeat"] * 3
    gaps = [later - earlier for (earlier, _), (later, _) in zip(pings, pings[1:])]
    assert all(0.1 < gap < 0.6 for gap in gaps), gaps
