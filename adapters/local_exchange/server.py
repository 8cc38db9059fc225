"""The local Kalshi exchange: Kalshi's WebSocket API v2 on 127.0.0.1, fed by the SYNTHETIC market.

One Starlette app served by uvicorn, so HTTP and WebSocket share one port: Kalshi's REST trade
API (V2) under ``/trade-api/v2`` (:mod:`adapters.local_exchange.trading`: one account per API
key, a matching engine trading inside the synthetic books) and, at ``/trade-api/ws/v2``:

* the handshake's ``KALSHI-ACCESS-*`` headers are verified against the configured public keys
  (:func:`adapters.kalshi.auth.verify_request`); a missing header, a bad signature, an unknown
  key or a timestamp more than ``max_clock_skew_ms`` away gets HTTP 401 with Kalshi's JSON body;
* each accepted connection is an :class:`~adapters.local_exchange.connection.ExchangeConnection`,
  which also carries its key's account's fills on the private ``fill`` channel;
* the server pings every ``heartbeat_s`` seconds with the payload ``heartbeat``.

The order flow (:mod:`adapters.local_exchange.market_feed`) plays the synthetic markets into
the exchange's books (:class:`~adapters.local_exchange.markets.ExchangeMarkets`), which every
connection follows. A bounded run (``max_events`` / ``duration_s``) ends by itself:
:meth:`LocalExchange.wait_finished` returns, and :meth:`LocalExchange.stop` lets every
connection send what it has queued before closing it (code 1001).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from adapters.kalshi import wire
from adapters.kalshi.auth import MAX_SKEW_MS, WS_PATH, AuthRejected, verify_request
from adapters.local_exchange.connection import ABORT_EXTENSION, SEND_FRAMES_EXTENSION, ExchangeConnection
from adapters.local_exchange.faults import Fault, faults_for_connection
from adapters.local_exchange.market_feed import SyntheticOrderFlow
from adapters.local_exchange.markets import ExchangeMarkets
from adapters.local_exchange.trading.accounts import Account
from adapters.local_exchange.trading.matching import MatchingEngine
from adapters.local_exchange.trading.rate_limit import TIERS, RateLimiter, RateTier
from adapters.local_exchange.trading.rest_api import REST_PATH, TradingApi
from adapters.synthetic.market_model import SyntheticMarketConfig, SyntheticMarketModel
from domain.fees import FeeSchedule
from domain.orderbook import OrderBook
from domain.values import MONEY_SCALE

HOST = "127.0.0.1"  # never anything else: the exchange is for this machine only
DEFAULT_BALANCE = 1_000 * MONEY_SCALE  # $1,000 per account
HEARTBEAT = b"heartbeat"
PONG_TIMEOUT_S = 20.0
STARTUP_TIMEOUT_S = 10.0
# An idle HTTP connection is kept this long. uvicorn's default (5 s) races a client that reuses
# its connection after a pause of about that length: the request meets a closing socket
# (httpx.ReadError). Load balancers in front of real exchanges keep ~60 s.
KEEP_ALIVE_S = 75


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def legacy_problems(market: SyntheticMarketConfig) -> list[str]:
    """What stops the legacy wire (whole cents, whole contracts, whole-second trades) from
    carrying this synthetic market exactly."""
    problems = []
    if market.tick_structure != "linear_cent":
        problems.append(f"the tick structure must be linear_cent, not {market.tick_structure}")
    if market.fractional_counts:
        problems.append("counts must be whole contracts")
    if market.timestamp_granularity_ms % 1000:
        problems.append(f"event times must be whole seconds (granularity {market.timestamp_granularity_ms} ms)")
    if market.start_ms % 1000:
        problems.append(f"the start time must be a whole second (start_ms {market.start_ms})")
    return problems


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@attrs.frozen(kw_only=True)
class ExchangeConfig:
    """Everything the exchange needs. ``api_keys`` maps the accepted key ids to their keys."""

    api_keys: Mapping[str, rsa.RSAPublicKey] = attrs.field(converter=dict)
    market: SyntheticMarketConfig = attrs.field(factory=SyntheticMarketConfig)
    port: int = 0  # 0: any free port
    era: wire.Era = "current"
    speed: float = 1.0  # event time per wall time; 0: as fast as possible
    max_events: int | None = None  # stop after publishing this many market events
    duration_s: float | None = None  # stop after this many seconds
    faults: tuple[Fault, ...] = attrs.field(default=(), converter=tuple)
    send_buffer: int = 10_000  # market-data messages a connection may have waiting
    heartbeat_s: float = 10.0
    max_clock_skew_ms: int = MAX_SKEW_MS
    starting_balance: int = DEFAULT_BALANCE  # micro-dollars, for each API key's account
    fees: FeeSchedule = attrs.field(factory=FeeSchedule.kalshi_standard)
    rate_tier: RateTier = TIERS["basic"]

    def __attrs_post_init__(self) -> None:
        _check(bool(self.api_keys), "api_keys must name at least one accepted key")
        _check(0 <= self.port <= 65_535, f"port must lie in [0, 65535], got {self.port}")
        _check(self.era in wire.ERAS, f"era must be 'current' or 'legacy', got {self.era!r}")
        _check(math.isfinite(self.speed) and self.speed >= 0, f"speed must be >= 0, got {self.speed}")
        _check(self.max_events is None or self.max_events >= 1, f"max_events must be >= 1, got {self.max_events}")
        _check(
            self.duration_s is None or (math.isfinite(self.duration_s) and self.duration_s > 0),
            f"duration_s must be > 0, got {self.duration_s}",
        )
        _check(self.send_buffer >= 1, f"send_buffer must be >= 1, got {self.send_buffer}")
        _check(
            isinstance(self.starting_balance, int) and self.starting_balance >= 0,
            f"starting_balance must be a whole number of micro-dollars >= 0, got {self.starting_balance!r}",
        )
        _check(
            math.isfinite(self.heartbeat_s) and self.heartbeat_s > 0, f"heartbeat_s must be > 0, got {self.heartbeat_s}"
        )
        if self.era == "legacy":
            problems = legacy_problems(self.market)
            _check(not problems, "the legacy era cannot carry this market exactly: " + "; ".join(problems))


class KalshiWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with four touches: it pings with Kalshi's ``heartbeat``
    payload instead of random bytes (the pong echoes it, which is all the keepalive checks);
    it lends the app the transport's ``abort`` (scope extension ``kalshiflow.abort``) to cut a
    client that stopped reading, and :meth:`send_frames` (``kalshiflow.send_frames``) to send
    a burst of frames in one write; and it counts a handshake answered with a rejection (our
    401) as complete, so uvicorn does not log each rejected client as an application error."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # there is none when the upgrade was refused
        if scope is not None:
            scope["extensions"][ABORT_EXTENSION] = {"abort": self.transport.abort}
            scope["extensions"][SEND_FRAMES_EXTENSION] = {"send_frames": self.send_frames}

    async def send_frames(self, texts: Sequence[str]) -> None:
        """What ``websocket.send`` does for each text frame, with one transport write for all:
        the same flow control (wait while the transport is paused) and the same errors."""
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if self.close_sent:
            raise RuntimeError("cannot send a frame after the close frame")
        try:
            for text in texts:
                self.conn.send_text(text.encode())
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True

    def send_keepalive_ping(self) -> None:
        self.ping_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        self.pending_ping_payload = HEARTBEAT
        self.ping_sent_at = self.loop.time()
        self.conn.send_ping(HEARTBEAT)
        self.transport.write(b"".join(self.conn.data_to_send()))
        if self.ping_timeout is not None:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
        else:
            self.schedule_ping()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C belongs to whoever runs the event loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalExchange:
    """Start with :meth:`start` (or ``async with``); clients connect to :attr:`ws_url`."""

    def __init__(self, config: ExchangeConfig) -> None:
        self.config = config
        self.markets = ExchangeMarkets(config.market.tickers)
        self._flow = SyntheticOrderFlow(
            SyntheticMarketModel(config.market), self.markets, speed=config.speed, max_events=config.max_events
        )
        self.accounts = {key_id: Account(key_id, config.starting_balance) for key_id in config.api_keys}
        self.engine = MatchingEngine(
            self._flow, self.markets, config.fees, self.accounts, is_trading=self._is_trading
        )
        self.trading_api = TradingApi(
            self.engine, config.api_keys, RateLimiter(config.rate_tier), max_clock_skew_ms=config.max_clock_skew_ms
        )
        self.connections: dict[int, ExchangeConnection] = {}  # live ones, by number
        self.connections_served = 0
        self.fill_cuts = 0  # connections cut by a drop-fill fault, each losing a fill message
        self.end_reason: str | None = None
        self._finished = asyncio.Event()
        self._stopping = False
        self._port: int | None = None
        self._server: _EmbeddedServer | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._flow_task: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None

    # -- addresses and state -----------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the exchange has not started")
        return self._port

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}{WS_PATH}"

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.port}{REST_PATH}"

    @property
    def tickers(self) -> tuple[str, ...]:
        return self.markets.tickers

    @property
    def events_published(self) -> int:
        return self.markets.published

    def book(self, ticker: str) -> OrderBook:
        """A copy of the exchange's current book of ``ticker``: the truth clients rebuild."""
        return self.markets.book(ticker)

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute(WS_PATH, self._serve_websocket), *self.trading_api.routes()]

    def _is_trading(self) -> bool:
        return not (self._stopping or self._flow.finished or self.end_reason is not None)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, *, flow: bool = True) -> None:
        """Open the markets, listen on 127.0.0.1, and (unless ``flow=False``: call
        :meth:`start_flow` later) start the order flow."""
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it an HTTP reply written as headers then body waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.config.port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._flow.open_markets()
        config = uvicorn.Config(
            Starlette(routes=self.routes()),
            ws=KalshiWebSocketProtocol,
            ws_ping_interval=self.config.heartbeat_s,
            ws_ping_timeout=PONG_TIMEOUT_S,
            ws_per_message_deflate=False,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
        self._server = _EmbeddedServer(config)
        self._serve_task = asyncio.create_task(self._server.serve(sockets=[sock]), name="local-exchange-server")
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()  # raises what stopped it
                raise RuntimeError("the exchange's server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the exchange's server did not start within {STARTUP_TIMEOUT_S} s")
            await asyncio.sleep(0.005)
        if self.config.duration_s is not None:
            self._timer_task = asyncio.create_task(self._end_after(self.config.duration_s), name="local-exchange-timer")
        if flow:
            self.start_flow()

    def start_flow(self) -> None:
        if self._flow_task is None:
            self._flow_task = asyncio.create_task(self._run_flow(), name="local-exchange-flow")

    async def _run_flow(self) -> None:
        try:
            end = await self._flow.run()
        except Exception as error:  # a bug: end the run (stop() re-raises it) rather than hang
            self._finish(f"the order flow failed: {error!r}")
            raise
        self._finish(end.value)

    async def _end_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._flow_task is not None:
            self._flow_task.cancel()
        self._finish("duration elapsed")

    def _finish(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self._finished.set()

    async def wait_finished(self) -> str:
        """Wait for the run to end by itself (max events, duration, every market resolved);
        returns why."""
        await self._finished.wait()
        assert self.end_reason is not None
        return self.end_reason

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the flow, let each connection send what it has queued, close them, stop serving."""
        if self._stopping:
            return
        self._stopping = True
        for task in (self._timer_task, self._flow_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._finish("stopped")
        for connection in list(self.connections.values()):
            connection.close()
        deadline = asyncio.get_running_loop().time() + drain_timeout_s
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections.values()):
            connection.abandon()  # its client stopped reading: cut it
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            await self._serve_task

    async def __aenter__(self) -> LocalExchange:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- one connection ------------------------------------------------------------------------
    async def _serve_websocket(self, websocket: WebSocket) -> None:
        try:
            key_id = verify_request(
                websocket.headers,
                "GET",
                websocket.scope["path"],
                self.config.api_keys,
                _wall_clock_ms(),
                self.config.max_clock_skew_ms,
            )
        except AuthRejected as rejected:
            await websocket.send_denial_response(JSONResponse(rejected.body(), status_code=rejected.http_status))
            return
        if self._stopping:
            body = {"error": {"code": "service_unavailable", "message": "the exchange is closing"}}
            await websocket.send_denial_response(JSONResponse(body, status_code=503))
            return
        await websocket.accept()
        account = self.accounts[key_id]
        self.connections_served += 1
        number = self.connections_served
        connection = ExchangeConnection(
            number,
            websocket,
            self.markets,
            era=self.config.era,
            faults=faults_for_connection(self.config.faults, number),
            send_buffer=self.config.send_buffer,
            owns_client_order=account.client_order_ids.__contains__,
        )
        self.connections[number] = connection
        self.markets.add_listener(connection.on_market_event)
        account.add_listener(connection.on_fill)
        try:
            await connection.run()
        finally:
            self.fill_cuts += connection.cut_at_fill
            account.remove_listener(connection.on_fill)
            self.markets.remove_listener(connection.on_market_event)
            del self.connections[number]
