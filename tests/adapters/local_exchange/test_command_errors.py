"""Every refused command gets one ``error`` with Kalshi's code, echoes the command id, and
changes nothing."""

from __future__ import annotations

import orjson
import pytest
import pytest_asyncio

from adapters.kalshi.parsing import ErrorReply, OkReply, Subscribed, WsErrorCode
from adapters.local_exchange import ExchangeConfig, LocalExchange
from adapters.synthetic.market_model import SyntheticMarketConfig

# One exchange serves the whole module (each test opens its own connection, so its sids start
# at 1): starting and stopping a server per case would cost more than the cases.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(api_keys):
    config = ExchangeConfig(api_keys=api_keys, market=SyntheticMarketConfig(seed=7, markets=3))
    exchange = LocalExchange(config)
    await exchange.start(flow=False)
    yield exchange
    await exchange.stop()

T0 = "SYN-7-M0"  # a market of the test exchange (seed 7)

# (what to send first, so the command under test has a sid to talk about) -> (command, code)
CASES = {
    "params required": ([], {"cmd": "subscribe"}, WsErrorCode.PARAMS_REQUIRED),
    "channels required": ([], {"cmd": "subscribe", "params": {"market_tickers": [T0]}}, WsErrorCode.CHANNELS_REQUIRED),
    "sids required": ([], {"cmd": "unsubscribe", "params": {"sids": []}}, WsErrorCode.SIDS_REQUIRED),
    "update without sids": (
        [],
        {"cmd": "update_subscription", "params": {"action": "get_snapshot"}},
        WsErrorCode.SIDS_REQUIRED,
    ),
    "unknown command": ([], {"cmd": "subscribe_everything", "params": {}}, WsErrorCode.UNKNOWN_COMMAND),
    "unknown sid": ([], {"cmd": "unsubscribe", "params": {"sids": [9]}}, WsErrorCode.UNKNOWN_SID),
    "unknown sid in an update": (
        [],
        {"cmd": "update_subscription", "params": {"sids": [9], "action": "get_snapshot"}},
        WsErrorCode.UNKNOWN_SID,
    ),
    "unknown channel": (
        [],
        {"cmd": "subscribe", "params": {"channels": ["trade", "market_positions"], "market_tickers": [T0]}},
        WsErrorCode.UNKNOWN_CHANNEL,
    ),
    "invalid parameter": (
        [],
        {"cmd": "subscribe", "params": {"channels": ["trade"], "market_tickers": T0}},
        WsErrorCode.INVALID_PARAMETER,
    ),
    "exactly one sid": (
        ["trade", "ticker"],
        {"cmd": "update_subscription", "params": {"sids": [1, 2], "action": "get_snapshot"}},
        WsErrorCode.EXACTLY_ONE_SID_REQUIRED,
    ),
    "unsupported action": (
        ["orderbook_delta"],
        {"cmd": "update_subscription", "params": {"sids": [1], "action": "replace_markets", "market_tickers": [T0]}},
        WsErrorCode.UNSUPPORTED_ACTION,
    ),
    "get_snapshot of a trade sid": (
        ["trade"],
        {"cmd": "update_subscription", "params": {"sids": [1], "action": "get_snapshot"}},
        WsErrorCode.UNSUPPORTED_ACTION,
    ),
    "action required": (
        ["orderbook_delta"],
        {"cmd": "update_subscription", "params": {"sids": [1], "market_tickers": [T0]}},
        WsErrorCode.ACTION_REQUIRED,
    ),
    "book needs a market": (
        [],
        {"cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}},
        WsErrorCode.MARKET_TICKER_REQUIRED,
    ),
    "add_markets needs a market": (
        ["orderbook_delta"],
        {"cmd": "update_subscription", "params": {"sids": [1], "action": "add_markets"}},
        WsErrorCode.MARKET_TICKER_REQUIRED,
    ),
    "market not found": (
        [],
        {"cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": [T0, "NOPE-1"]}},
        WsErrorCode.MARKET_NOT_FOUND,
    ),
    "add an unknown market": (
        ["orderbook_delta"],
        {"cmd": "update_subscription", "params": {"sids": [1], "action": "add_markets", "market_tickers": ["NOPE-1"]}},
        WsErrorCode.MARKET_NOT_FOUND,
    ),
}


@pytest.mark.parametrize("setup, command, code", CASES.values(), ids=CASES.keys())
async def test_a_refused_command_gets_kalshis_error_code_and_changes_nothing(exchange, connect, setup, command, code):
    async with connect(exchange) as client:
        assert T0 in exchange.tickers
        for channel in setup:
            await client.command("subscribe", {"channels": [channel], "market_tickers": [T0]})
            assert isinstance(await client.message(), Subscribed)
            if channel == "orderbook_delta":
                await client.message()  # its snapshot
        await client.send_raw(f'{{"id": 77, {_members(command)}}}')

        error = await client.message()
        assert isinstance(error, ErrorReply), error
        assert (error.id, error.code) == (77, code)
        assert error.msg

        await client.command("list_subscriptions", command_id=78)
        listing = await client.message()
        assert isinstance(listing, OkReply) and listing.id == 78
        assert [s.sid for s in listing.subscriptions] == list(range(1, len(setup) + 1))
        assert await client.silent_for(0.05)  # one error, nothing else


def _members(command: dict) -> str:
    """The command's JSON members, to send after our own id."""
    return orjson.dumps(command).decode()[1:-1]


@pytest.mark.parametrize("frame", ["not json at all", "[1, 2, 3]", '{"id": 5, "cmd": "subscribe"'])
async def test_a_frame_that_is_not_a_command_is_unable_to_process(exchange, connect, frame):
    async with connect(exchange) as client:
        await client.send_raw(frame)
        error = await client.message()
        assert (error.id, error.code) == (None, WsErrorCode.UNABLE_TO_PROCESS)
        # The connection carries on.
        await client.command("subscribe", {"channels": ["trade"]}, command_id=6)
        assert await client.message() == Subscribed(6, "trade", 1)


async def test_a_command_id_that_is_not_an_integer_is_an_invalid_parameter(exchange, connect):
    async with connect(exchange) as client:
        await client.send_raw('{"id": "one", "cmd": "list_subscriptions"}')
        error = await client.message()
        assert error.code == WsErrorCode.INVALID_PARAMETER and "id" in error.msg
