"""The HTTP face of live ingestion (``kalshiflow-rl serve``): health, counters, books, a stream.

:func:`create_app` builds a Starlette app around a :class:`~entrypoints.ingestion.LiveIngestion`
that someone else runs (``serve`` runs it in the background on the same event loop):

=================================  ==============================================================
``GET  /rl/health``                each component's status -- store, write_queue, feed, actor;
                                   200 when all are usable, 503 otherwise
``GET  /rl/status``                counters: messages, gaps, resyncs, reconnects, queue depth, rows
                                   written, errors, book latency p50/p99, every market's book
``GET  /rl/orderbook/snapshot``    ``?ticker=T``: the book now (levels as the wire spells them:
                                   ``"0.4500"`` dollars, ``"120.00"`` contracts), best bids and
                                   asks, spread, mid, whether it is in sequence; 400 / 404
``WS   /rl/ws/orderbook``          ``[?ticker=T...]``: every book at once, then each book again
                                   whenever it changes (at most every ``interval_s``)
``POST /rl/admin/flush``           writes what the queue holds now; returns the counts
``POST /rl/admin/kill``            the actor's kill switch: cancels every open order and stops
                                   trading; returns what it cancelled (409 without an actor)
``GET  /rl/actor/fills``           every fill the actor's account booked (409 without an actor)
=================================  ==============================================================

Nothing here can hold the feed up: a handler reads counters and copies a book between two
frames; the stream's book listener records which market changed (one dict store) and a
background task builds the messages. Each WebSocket client has a bounded queue; a client too
slow to empty it is dropped (close code 1013), never waited for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from application.book_state import SharedBookState, UnknownMarket
from domain.orderbook import NO_PRICE, OrderBook
from domain.values import ONE_DOLLAR, Side, format_count, format_fixed, format_price
from entrypoints.ingestion import IngestionState, LiveIngestion

log = logging.getLogger(__name__)

STORE_PING_TIMEOUT_S = 2.0
FLUSH_TIMEOUT_S = 10.0
STREAM_QUEUE_SIZE = 256  # messages a client may have waiting before it is dropped
STREAM_INTERVAL_S = 0.05  # a market's book goes out at most this often (a burst: one message)
CLOSE_TIMEOUT_S = 1.0  # a dropped client's close frame may wait this long for its socket
TOO_SLOW = 1013  # "try again later"
POLICY_VIOLATION = 1008

_USABLE = frozenset({"ok", "connected", "degraded", "disabled"})

ActorStatus = Callable[[], Mapping[str, Any]]
ActorKill = Callable[[], Awaitable[Mapping[str, Any]]]
ActorFills = Callable[[], list[dict[str, Any]]]
KILL_TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------------
# A book, as JSON
# ---------------------------------------------------------------------------------------------
def book_view(books: SharedBookState, ticker: str) -> dict[str, Any]:
    """The book of ``ticker`` now; raises :class:`UnknownMarket`. Levels ascend by price (the
    best bid last) as in Kalshi's ``orderbook_snapshot``; prices and counts are wire strings."""
    book = books.snapshot(ticker)
    stats = books.stats(ticker)
    return {
        "ticker": ticker,
        "seq_status": stats.status.value,
        "yes_dollars_fp": _levels(book, Side.YES),
        "no_dollars_fp": _levels(book, Side.NO),
        "best": {
            "yes_bid": _price(book.yes_bid),
            "yes_ask": _price(book.yes_ask),
            "no_bid": _price(book.no_bid),
            "no_ask": _price(book.no_ask),
        },
        "spread": None if book.spread() is None else format_price(book.spread()),  # type: ignore[arg-type]
        "mid": _mid(book),
        "snapshots": stats.snapshots,
        "deltas": stats.deltas,
        "last_update_ms": stats.last_update_ms,
    }


def _levels(book: OrderBook, side: Side) -> list[list[str]]:
    return [[format_price(price), format_count(count)] for price, count in book.levels(side)]


def _price(price: int) -> str | None:
    return None if price == NO_PRICE else format_price(price)


def _mid(book: OrderBook) -> str | None:
    """The YES mid, exact: four decimals, or five when it falls between two price units."""
    if book.yes_bid == NO_PRICE or book.no_bid == NO_PRICE:
        return None
    twice = book.yes_bid + ONE_DOLLAR - book.no_bid
    return format_price(twice // 2) if twice % 2 == 0 else format_fixed(twice * 5, 5)


# ---------------------------------------------------------------------------------------------
# The stream
# ---------------------------------------------------------------------------------------------
class StreamClient:
    """One WebSocket client's messages: a bounded queue that drops the client when full."""

    def __init__(self, tickers: frozenset[str] | None, capacity: int) -> None:
        self.tickers = tickers  # None: every market
        self.capacity = capacity
        self.dropped = False
        self._messages: collections.deque[str] = collections.deque()
        self._ready = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Messages queued, not yet sent."""
        return len(self._messages)

    def wants(self, ticker: str) -> bool:
        return self.tickers is None or ticker in self.tickers

    def offer(self, message: str) -> bool:
        """Queues ``message``; False (and the client is dropped) when the queue is full."""
        if self.dropped:
            return False
        if len(self._messages) >= self.capacity:
            self.dropped = True
            self._messages.clear()
            self._ready.set()
            return False
        self._messages.append(message)
        self._ready.set()
        return True

    async def next(self) -> str | None:
        """The next message, waiting for one; None once the client is dropped."""
        while True:
            if self.dropped:
                return None
            if self._messages:
                return self._messages.popleft()
            self._ready.clear()
            await self._ready.wait()


class BookStream:
    """Book updates fanned out to clients. :meth:`run` is the broadcaster (a background task).

    The listener subscribed to the books only notes which market changed; the broadcaster turns
    each changed market into one message -- the book as it is then, so a burst of deltas costs
    one message -- and offers it to every client that wants it. Nobody listens while no client
    is connected.
    """

    def __init__(
        self, books: SharedBookState, *, queue_size: int = STREAM_QUEUE_SIZE, interval_s: float = STREAM_INTERVAL_S
    ) -> None:
        if queue_size < 1 or interval_s < 0:
            raise ValueError(f"queue_size must be >= 1 and interval_s >= 0, got {queue_size}, {interval_s}")
        self._books = books
        self._queue_size = queue_size
        self._interval = interval_s
        self._clients: set[StreamClient] = set()
        self._changed: dict[str, None] = {}  # an ordered set
        self._wakeup = asyncio.Event()
        self._listening = False
        self.messages_sent = 0  # offered to a client
        self.clients_dropped = 0

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def connect(self, tickers: frozenset[str] | None = None) -> StreamClient:
        """A new client, its queue already holding the current book of each market it wants."""
        wanted = [ticker for ticker in self._books.tickers if tickers is None or ticker in tickers]
        client = StreamClient(tickers, capacity=max(self._queue_size, 2 * len(wanted)))
        for ticker in wanted:
            client.offer(self._message(ticker))
        self._clients.add(client)
        if not self._listening:
            self._books.subscribe(self._on_update)
            self._listening = True
        return client

    def disconnect(self, client: StreamClient) -> None:
        self._clients.discard(client)
        if not self._clients and self._listening:
            self._books.unsubscribe(self._on_update)
            self._listening = False
            self._changed.clear()

    def _on_update(self, ticker: str, _book: OrderBook) -> None:
        # On the feed's path, after every applied update: one dict store, nothing more.
        self._changed[ticker] = None
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            changed, self._changed = self._changed, {}
            for ticker in changed:
                message = None
                for client in tuple(self._clients):
                    if not client.wants(ticker):
                        continue
                    if message is None:
                        message = self._message(ticker)
                    if client.offer(message):
                        self.messages_sent += 1
                    else:
                        self.clients_dropped += 1
                        log.warning("book stream: a client fell %d messages behind; dropped", client.capacity)
                        self.disconnect(client)
            if self._interval:
                await asyncio.sleep(self._interval)

    def _message(self, ticker: str) -> str:
        return orjson.dumps({"type": "book", **book_view(self._books, ticker)}).decode()


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------
def create_app(
    ingestion: LiveIngestion,
    *,
    actor_enabled: bool = False,
    actor_status: ActorStatus | None = None,
    actor_kill: ActorKill | None = None,
    actor_fills: ActorFills | None = None,
    stream_queue_size: int = STREAM_QUEUE_SIZE,
    stream_interval_s: float = STREAM_INTERVAL_S,
) -> Starlette:
    """The service over ``ingestion`` (run elsewhere). ``actor_status`` reports the actor when
    one runs beside the ingestion; with ``actor_enabled`` and none, the actor is unavailable."""
    endpoints = _Endpoints(
        ingestion, BookStream(ingestion.books, queue_size=stream_queue_size, interval_s=stream_interval_s),
        actor_enabled=actor_enabled, actor_status=actor_status, actor_kill=actor_kill, actor_fills=actor_fills,
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        broadcaster = asyncio.create_task(endpoints.stream.run(), name="book-stream")
        try:
            yield
        finally:
            broadcaster.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await broadcaster

    app = Starlette(
        routes=[
            Route("/rl/health", endpoints.health, methods=["GET"]),
            Route("/rl/status", endpoints.status, methods=["GET"]),
            Route("/rl/orderbook/snapshot", endpoints.snapshot, methods=["GET"]),
            Route("/rl/admin/flush", endpoints.flush, methods=["POST"]),
            Route("/rl/admin/kill", endpoints.kill, methods=["POST"]),
            Route("/rl/actor/fills", endpoints.fills, methods=["GET"]),
            WebSocketRoute("/rl/ws/orderbook", endpoints.stream_books),
        ],
        lifespan=lifespan,
    )
    return app


def _json(body: Mapping[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


class _Endpoints:
    def __init__(
        self,
        ingestion: LiveIngestion,
        stream: BookStream,
        *,
        actor_enabled: bool,
        actor_status: ActorStatus | None,
        actor_kill: ActorKill | None = None,
        actor_fills: ActorFills | None = None,
    ) -> None:
        self.ingestion = ingestion
        self.stream = stream
        self.actor_enabled = actor_enabled
        self.actor_status = actor_status
        self.actor_kill = actor_kill
        self.actor_fills = actor_fills

    # -- health --------------------------------------------------------------------------------
    async def health(self, _request: Request) -> Response:
        components = {
            "store": await self._store(),
            "write_queue": self._write_queue(),
            "feed": self._feed(),
            "actor": self._actor(),
        }
        healthy = all(component["status"] in _USABLE for component in components.values())
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "recording": self.ingestion.state.value,
            "session_id": self.ingestion.session_id,
            "components": components,
        }
        return _json(body, 200 if healthy else 503)

    async def _store(self) -> dict[str, Any]:
        session_id = self.ingestion.session_id
        if session_id is None:
            return {"status": "starting"}
        try:
            async with asyncio.timeout(STORE_PING_TIMEOUT_S):
                await self.ingestion.store.get_session(session_id)
        except Exception as error:  # down, timed out, refused: all mean unusable now
            return {"status": "unreachable", "error": f"{type(error).__name__}: {error}"}
        return {"status": "ok"}

    def _write_queue(self) -> dict[str, Any]:
        queue = self.ingestion.queue
        if queue is None:
            return {"status": "starting"}
        stats = queue.stats()
        status = "failed" if stats.failure is not None else "ok"
        return {
            "status": status,
            "failure": stats.failure,
            "depth": stats.queue_depth,
            "pending": stats.pending,
            "spill_pending": stats.spill_pending,
            "retries": stats.retries,
        }

    def _feed(self) -> dict[str, Any]:
        state = self.ingestion.state
        books = self.ingestion.books
        in_sync = sum(1 for ticker in books.tickers if books.is_in_sync(ticker))
        detail = {
            "markets": len(books.tickers),
            "markets_in_sync": in_sync,
            "reconnects": self.ingestion.feed.stats().reconnects,
        }
        if state is not IngestionState.RECORDING:
            status = {IngestionState.IDLE: "starting", IngestionState.DRAINING: "stopping"}.get(state, "stopped")
            return {"status": status, "failure": self.ingestion.failure, **detail}
        if in_sync == len(books.tickers):
            status = "connected"
        elif in_sync:
            status = "degraded"  # some books await a snapshot (a gap, a market not subscribed)
        else:
            status = "disconnected"
        return {"status": status, **detail}

    def _actor(self) -> dict[str, Any]:
        if not self.actor_enabled:
            return {"status": "disabled"}
        if self.actor_status is None:
            return {"status": "unavailable", "error": "RL_ACTOR_ENABLED is true but no actor runs in this service"}
        return dict(self.actor_status())

    # -- status --------------------------------------------------------------------------------
    async def status(self, _request: Request) -> Response:
        counters = self.ingestion.counters()
        feed, queue = counters.feed, counters.queue
        errors = counters.errors
        books = self.ingestion.books
        body = {
            "state": counters.state.value,
            "session_id": counters.session_id,
            "messages": feed.messages,
            "gaps": feed.gaps,
            "resyncs": feed.resyncs,
            "reconnects": feed.reconnects,
            "queue_depth": queue.queue_depth if queue else 0,
            "rows_written": queue.written if queue else 0,
            "errors": sum(errors.values()),
            "latency_p50_us": feed.latency_p50_us,
            "latency_p99_us": feed.latency_p99_us,
            "feed": {
                "snapshots": feed.snapshots,
                "deltas": feed.deltas,
                "trades": feed.trades,
                "duplicates": feed.duplicates,
                "unsynced": feed.unsynced,
                "stale": feed.stale,
                "resubscribes": feed.resubscribes,
                "stale_disconnects": feed.stale_disconnects,
            },
            "queue": None
            if queue is None
            else {
                "accepted": queue.accepted,
                "folded": queue.folded,
                "written": queue.written,
                "pending": queue.pending,
                "depth": queue.queue_depth,
                "high_water": queue.memory_high_water,
                "spilled": queue.spilled,
                "spill_pending": queue.spill_pending,
                "batches": queue.batches,
                "retries": queue.retries,
                "failure": queue.failure,
            },
            "error_counts": errors,
            "actor": self._actor(),
            "stream": {
                "clients": self.stream.client_count,
                "messages_sent": self.stream.messages_sent,
                "clients_dropped": self.stream.clients_dropped,
            },
            "markets": [
                {
                    "ticker": stats.ticker,
                    "seq_status": stats.status.value,
                    "snapshots": stats.snapshots,
                    "deltas": stats.deltas,
                    "refused_deltas": stats.refused_deltas,
                    "invalidations": stats.invalidations,
                    "last_update_ms": stats.last_update_ms,
                }
                for stats in books.all_stats()
            ],
        }
        return _json(body)

    # -- one book ------------------------------------------------------------------------------
    async def snapshot(self, request: Request) -> Response:
        ticker = request.query_params.get("ticker")
        if not ticker:
            return _json({"error": "give the market: /rl/orderbook/snapshot?ticker=TICKER"}, 400)
        try:
            return _json(book_view(self.ingestion.books, ticker))
        except UnknownMarket:
            markets = list(self.ingestion.books.tickers)
            return _json({"error": f"no book for market {ticker!r}", "markets": markets}, 404)

    # -- the stream ----------------------------------------------------------------------------
    async def stream_books(self, websocket: WebSocket) -> None:
        wanted = websocket.query_params.getlist("ticker")
        await websocket.accept()
        unknown = [ticker for ticker in wanted if ticker not in self.ingestion.books.tickers]
        if unknown:
            error = {
                "type": "error",
                "error": f"no book for market(s) {', '.join(unknown)}",
                "markets": list(self.ingestion.books.tickers),
            }
            await websocket.send_text(orjson.dumps(error).decode())
            await websocket.close(POLICY_VIOLATION, "unknown market")
            return
        client = self.stream.connect(frozenset(wanted) or None)
        sender = asyncio.create_task(self._send(websocket, client))
        receiver = asyncio.create_task(_until_disconnected(websocket))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_left = receiver.done()
            self.stream.disconnect(client)
            for task in (sender, receiver):
                task.cancel()
                # The client is gone or going either way: how its socket failed is no news.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if client.dropped and not client_left:
            # Its socket may be full: the close frame gets a moment, then uvicorn's keepalive ends it.
            with contextlib.suppress(TimeoutError, WebSocketDisconnect, OSError, RuntimeError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await websocket.close(TOO_SLOW, "too slow: the book stream dropped this client")

    async def _send(self, websocket: WebSocket, client: StreamClient) -> None:
        while (message := await client.next()) is not None:
            await websocket.send_text(message)

    # -- admin ---------------------------------------------------------------------------------
    async def flush(self, _request: Request) -> Response:
        queue = self.ingestion.queue
        if queue is None:
            return _json({"error": "not recording yet: no write queue to flush"}, 409)
        try:
            written = await queue.flush(timeout_s=FLUSH_TIMEOUT_S)
        except TimeoutError:
            stats = queue.stats()
            error = f"the store did not take the queue within {FLUSH_TIMEOUT_S} s"
            return _json({"error": error, "rows_written": stats.written, "pending": stats.pending}, 504)
        stats = queue.stats()
        body = {"written": written, "rows_written": stats.written, "pending": stats.pending, "failure": stats.failure}
        return _json(body, 200 if stats.failure is None else 503)


    async def kill(self, _request: Request) -> Response:
        if self.actor_kill is None:
            return _json({"error": "no actor runs in this service: nothing to kill"}, 409)
        try:
            async with asyncio.timeout(KILL_TIMEOUT_S):
                result = await self.actor_kill()
        except TimeoutError:
            error = f"the exchange did not confirm the cancels within {KILL_TIMEOUT_S} s; trading is stopped"
            return _json({"error": error, "halted": True}, 504)
        return _json(dict(result))

    async def fills(self, _request: Request) -> Response:
        if self.actor_fills is None:
            return _json({"error": "no actor runs in this service: no fills"}, 409)
        fills = self.actor_fills()
        return _json({"count": len(fills), "fills": fills})


async def _until_disconnected(websocket: WebSocket) -> None:
    """Reads (and ignores) what the client sends until it goes away."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
