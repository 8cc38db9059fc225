"""A real local exchange on 127.0.0.1 and a small Kalshi client built from the project's own
pieces (signer, parser, order book), for the exchange's tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from adapters.kalshi.auth import RequestSigner, generate_keypair, private_key_from_pem, public_key_from_pem
from adapters.kalshi.parsing import MalformedMessage, ParsedMessage, parse_frame
from adapters.local_exchange import ExchangeConfig, LocalExchange
from adapters.synthetic.market_model import NOISE, SyntheticMarketConfig
from domain.events import BookDelta, BookSnapshot
from domain.orderbook import OrderBook
from domain.values import Side

KEY_ID = "local-exchange-test-key"
TIMEOUT_S = 5.0


@pytest.fixture(scope="session")
def keypair() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture(scope="session")
def signer(keypair) -> RequestSigner:
    return RequestSigner(KEY_ID, private_key_from_pem(keypair[0]))


@pytest.fixture(scope="session")
def api_keys(keypair) -> dict:
    return {KEY_ID: public_key_from_pem(keypair[1])}


def default_market(**overrides: Any) -> SyntheticMarketConfig:
    return SyntheticMarketConfig(**{"seed": 7, "markets": 3, **overrides})


@pytest.fixture
def market_config() -> Callable[..., SyntheticMarketConfig]:
    """The tests' synthetic market (seed 7, three markets), with overrides."""
    return default_market


@pytest.fixture
def make_exchange(api_keys) -> Callable[..., contextlib.AbstractAsyncContextManager[LocalExchange]]:
    """``async with make_exchange(flow=False, max_events=500, market=...) as exchange``.

    Defaults: three synthetic markets, as fast as possible. ``flow=False`` holds the order flow
    until the test calls ``exchange.start_flow()`` (so clients can subscribe first)."""

    @contextlib.asynccontextmanager
    async def running(*, flow: bool = True, **overrides: Any) -> AsyncIterator[LocalExchange]:
        config = ExchangeConfig(**{"api_keys": api_keys, "market": default_market(), "speed": 0, **overrides})
        exchange = LocalExchange(config)
        await exchange.start(flow=flow)
        try:
            yield exchange
        finally:
            await exchange.stop(drain_timeout_s=2.0)

    return running


class Client:
    """One signed WebSocket connection, speaking JSON commands and reading parsed frames."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._ids = itertools.count(1)

    async def command(self, cmd: str, params: dict | None = None, *, command_id: int | None = None) -> int:
        command_id = next(self._ids) if command_id is None else command_id
        command: dict[str, Any] = {"id": command_id, "cmd": cmd}
        if params is not None:
            command["params"] = params
        await self.connection.send(orjson.dumps(command).decode())
        return command_id

    async def send_raw(self, frame: str) -> None:
        await self.connection.send(frame)

    async def frame(self, timeout: float = TIMEOUT_S) -> str:
        return await asyncio.wait_for(self.connection.recv(), timeout)

    async def message(self, timeout: float = TIMEOUT_S) -> ParsedMessage:
        return parse_frame(await self.frame(timeout), received_ms=0)

    async def json(self, timeout: float = TIMEOUT_S) -> dict:
        return orjson.loads(await self.frame(timeout))

    async def messages(self, count: int, timeout: float = TIMEOUT_S) -> list[ParsedMessage]:
        return [await self.message(timeout) for _ in range(count)]

    async def silent_for(self, seconds: float) -> bool:
        """True when nothing arrives for ``seconds``."""
        try:
            await asyncio.wait_for(self.connection.recv(), seconds)
        except TimeoutError:
            return True
        return False

    async def frames_until_closed(self, timeout: float = 20.0) -> tuple[list[str], Exception]:
        """Every frame until the server ends the connection, and how it ended."""
        frames: list[str] = []
        async with asyncio.timeout(timeout):  # one deadline: no wait_for (and its task) per frame
            while True:
                try:
                    frames.append(await self.connection.recv())
                except websockets.ConnectionClosed as closed:
                    return frames, closed


@pytest.fixture
def connect(signer) -> Callable[..., contextlib.AbstractAsyncContextManager[Client]]:
    """``async with connect(exchange) as client``: a signed connection to the exchange."""

    @contextlib.asynccontextmanager
    async def connected(exchange: LocalExchange, **options: Any) -> AsyncIterator[Client]:
        async with websockets.connect(
            exchange.ws_url, additional_headers=signer.websocket_headers(), proxy=None, **options
        ) as connection:
            yield Client(connection)

    return connected


@attrs.define
class BookRebuilder:
    """Follows book messages the way a careful client does: snapshot, then deltas, checking
    every sid's seq runs 1, 2, 3, ... with no gap and no repeat."""

    books: dict[str, OrderBook] = attrs.field(factory=dict)
    seqs: dict[int, list[int]] = attrs.field(factory=dict)
    malformed: list[MalformedMessage] = attrs.field(factory=list)
    others: list[ParsedMessage] = attrs.field(factory=list)

    def feed(self, frames: list[str]) -> BookRebuilder:
        for frame in frames:
            try:
                message = parse_frame(frame, received_ms=0)
            except MalformedMessage as error:
                self.malformed.append(error)
                continue
            if isinstance(message, BookSnapshot):
                self.books.setdefault(message.ticker, OrderBook(message.ticker)).apply(message)
            elif isinstance(message, BookDelta):
                self.books[message.ticker].apply(message)
            else:
                self.others.append(message)
                continue
            self.seqs.setdefault(message.sid, []).append(message.seq)
        return self

    def seq_problems(self) -> dict[int, list[int]]:
        return {sid: seqs for sid, seqs in self.seqs.items() if seqs != list(range(1, len(seqs) + 1))}


@pytest.fixture
def rebuilder() -> Callable[[], BookRebuilder]:
    return BookRebuilder


# -- the REST trade API -----------------------------------------------------------------------
class RestClient:
    """Signed requests to the exchange's REST API; paths are given after ``/trade-api/v2``."""

    def __init__(self, http: httpx.AsyncClient, signer: RequestSigner) -> None:
        self.http = http
        self.signer = signer

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict | None = None, headers: dict | None = None
    ) -> httpx.Response:
        full = f"/trade-api/v2{path}"
        signed = self.signer.headers(method, full) if headers is None else headers
        content = None if json is None else orjson.dumps(json)
        return await self.http.request(method, full, content=content, params=params, headers=signed)

    async def get(self, path: str, **options: Any) -> httpx.Response:
        return await self.request("GET", path, **options)

    async def post(self, path: str, json: Any = None, **options: Any) -> httpx.Response:
        return await self.request("POST", path, json=json, **options)

    async def delete(self, path: str, json: Any = None, **options: Any) -> httpx.Response:
        return await self.request("DELETE", path, json=json, **options)

    async def order(self, **fields: Any) -> httpx.Response:
        """Create an order: good-till-canceled unless ``time_in_force`` says otherwise."""
        return await self.post("/portfolio/events/orders", {"time_in_force": "good_till_canceled", **fields})


@pytest.fixture
def rest(signer) -> Callable[..., contextlib.AbstractAsyncContextManager[RestClient]]:
    """``async with rest(exchange) as client``: signed HTTP requests to the exchange."""

    @contextlib.asynccontextmanager
    async def connected(exchange: LocalExchange, key_signer: RequestSigner | None = None) -> AsyncIterator[RestClient]:
        base = f"http://127.0.0.1:{exchange.port}"
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=TIMEOUT_S) as http:
            yield RestClient(http, key_signer or signer)

    return connected


def set_book(exchange: LocalExchange, ticker: str, yes: Sequence = (), no: Sequence = ()) -> None:
    """Replace a market's book, inside the simulation and on the exchange, with noise traders'
    orders: ``(price, count)`` levels, or ``(price, [count, count, ...])`` for several orders
    queued at one price (first = first in line). Counts in count units."""
    simulation = exchange.engine.flow.simulation(ticker)
    levels: list[list[tuple[int, int]]] = [[], []]
    for side, wanted in ((0, yes), (1, no)):
        simulation.queues[side].clear()
        for quotes in simulation.quotes:
            quotes[side].clear()
        for price, counts in wanted:
            counts = counts if isinstance(counts, list) else [counts]
            simulation.queues[side][price] = [[NOISE, count] for count in counts]
            levels[side].append((price, sum(counts)))
    simulation.book.apply_snapshot(levels[0], levels[1])
    ts = exchange.markets.market(ticker).last_ts_ms
    exchange.markets.publish(BookSnapshot(ticker, None, ts, tuple(sorted(levels[0])), tuple(sorted(levels[1]))))


def synthetic_taker(exchange: LocalExchange, ticker: str, side: Side, limit: int, count: int) -> int:
    """A synthetic marketable order, through the simulation's own matching (``_take``): buys
    ``side`` up to ``limit``; its events are published and the engine told, as the flow does.
    Returns what was left unfilled."""
    simulation = exchange.engine.flow.simulation(ticker)
    out: list = []
    left = simulation._take(int(side), limit, count, exchange.markets.market(ticker).last_ts_ms, out)
    for event in out:
        exchange.markets.publish(event)
    exchange.engine.on_caught_up(ticker)
    return left


@pytest.fixture
def book_setter() -> Callable[..., None]:
    return set_book


@pytest.fixture
def taker() -> Callable[..., int]:
    return synthetic_taker
