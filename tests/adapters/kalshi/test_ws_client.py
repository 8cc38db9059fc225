"""The Kalshi ingestion client against a small Kalshi WebSocket v2 server written here (a fake,
on 127.0.0.1): signed handshakes, subscriptions, gaps, duplicates, junk, lost connections,
silence, error codes -- and at the end, books equal to the server's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from http import HTTPStatus

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from adapters.kalshi import wire
from adapters.kalshi.auth import (
    AuthRejected,
    RequestSigner,
    generate_keypair,
    private_key_from_pem,
    public_key_from_pem,
    verify_request,
)
from adapters.kalshi.latency import LatencyHistogram
from adapters.kalshi.market_data import KalshiMarketDataFeed
from adapters.kalshi.ws_client import FeedUnavailable, HandshakeRejected, KalshiWebSocketClient
from adapters.storage import SqliteOrderbookStore
from application.book_state import SharedBookState
from application.recording import record_session
from domain.backoff import ExponentialBackoff
from domain.events import BookDelta, BookSnapshot, MarketEvent, PublicTrade
from domain.orderbook import OrderBook
from domain.values import Side

TICKERS = ("KXA-1", "KXB-2", "KXC-3")
WS_PATH = "/trade-api/ws/v2"
TINY_BACKOFF = ExponentialBackoff(initial_s=0.01, max_s=0.08)


# ---------------------------------------------------------------------------------------------
# The fake exchange
# ---------------------------------------------------------------------------------------------
class _Session:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.subs: dict[int, tuple[str, tuple[str, ...]]] = {}
        self.seq: dict[object, int] = {}
        self.late: list[bytes] = []


class FakeKalshi:
    """Kalshi's WebSocket v2 as far as the client needs it. Keeps the true books; publishes
    deltas and trades to every subscription that covers the market, with optional faults:
    ``skip`` (numbered but never sent), ``duplicate`` (sent twice), ``late`` (sent after the
    next message). ``per_market_seq`` numbers each market on its own; ``refuse_get_snapshot``
    answers ``get_snapshot`` with error 13, ``ignore_get_snapshot`` not at all; a subscribe naming one of ``unknown_markets`` gets
    error 16; ``silent`` stops all answers and messages."""

    def __init__(
        self,
        public_keys: dict,
        tickers: Iterable[str] = TICKERS,
        *,
        era: wire.Era = "current",
        per_market_seq: bool = False,
        refuse_get_snapshot: bool = False,
        ignore_get_snapshot: bool = False,
        unknown_markets: Iterable[str] = (),
    ) -> None:
        self.public_keys = public_keys
        self.unknown_markets = frozenset(unknown_markets)
        self.books = {ticker: OrderBook(ticker) for ticker in tickers}
        for index, book in enumerate(self.books.values()):
            book.apply_snapshot([(4000 + 100 * index, 1000), (4500, 200)], [(5000, 300)])
        self.era = era
        self.per_market_seq = per_market_seq
        self.refuse_get_snapshot = refuse_get_snapshot
        self.ignore_get_snapshot = ignore_get_snapshot
        self.silent = False
        self.handshakes: list[dict[str, str]] = []
        self.commands: list[dict] = []
        self.sessions: list[_Session] = []
        self._next_sid = 0
        self._server = None
        self.port = 0
        self._clock_ms = 1_781_159_489_000

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, process_request=self._authenticate, compression=None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- handshake and commands ------------------------------------------------------------------
    def _authenticate(self, connection: ServerConnection, request):
        headers = dict(request.headers.raw_items())
        self.handshakes.append(headers)
        try:
            verify_request(headers, "GET", request.path, self.public_keys, now_ms=time.time_ns() // 1_000_000)
        except AuthRejected as rejected:
            response = connection.respond(HTTPStatus.UNAUTHORIZED, orjson.dumps(rejected.body()).decode())
            return response
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        session = _Session(ws)
        self.sessions.append(session)
        try:
            async for raw in ws:
                command = orjson.loads(raw)
                self.commands.append(command)
                if not self.silent:
                    await self._command(session, command)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.remove(session)

    async def _command(self, session: _Session, command: dict) -> None:
        command_id, params = command.get("id"), command.get("params", {})
        if command["cmd"] == "subscribe":
            tickers = tuple(params["market_tickers"])
            if self.unknown_markets.intersection(tickers):
                await self._send(session, wire.error_message(command_id, 16, "Market not found"))
                return
            for channel in params["channels"]:
                self._next_sid += 1
                sid = self._next_sid
                session.subs[sid] = (channel, tickers)
                await self._send(session, wire.subscribed_message(command_id, channel, sid))
                if channel == "orderbook_delta":
                    for ticker in tickers:
                        await self._send_snapshot(session, sid, ticker)
        elif command["cmd"] == "update_subscription" and params.get("action") == "get_snapshot":
            (sid,) = params["sids"]
            if self.refuse_get_snapshot:
                await self._send(session, wire.error_message(command_id, 13, "Unsupported action"))
                return
            if self.ignore_get_snapshot:
                return
            await self._send(session, wire.ok_message(command_id, sid))
            for ticker in session.subs[sid][1]:
                await self._send_snapshot(session, sid, ticker)
        elif command["cmd"] == "unsubscribe":
            for sid in params["sids"]:
                session.subs.pop(sid, None)
                await self._send(session, wire.unsubscribed_message(command_id, sid))
        elif command["cmd"] == "list_subscriptions":
            listed = [(channel, sid) for sid, (channel, _) in session.subs.items()]
            await self._send(session, wire.list_subscriptions_message(command_id, listed))

    # -- publishing ------------------------------------------------------------------------------
    async def delta(self, ticker: str, side: Side, price: int, size: int, fault: str | None = None) -> None:
        self.books[ticker].apply_delta(side, price, size)
        self._clock_ms += 7
        for session in list(self.sessions):
            for sid, (channel, tickers) in list(session.subs.items()):
                if channel != "orderbook_delta" or ticker not in tickers:
                    continue
                seq = self._next_seq(session, sid, ticker)
                event = BookDelta(ticker, seq, self._clock_ms, side, price, size, sid)
                frame = wire.encode(wire.delta_message(event, sid, seq, self.era))
                if fault == "skip":
                    continue
                if fault == "late":
                    session.late.append(frame)
                    continue
                await self._send_frame(session, frame)
                if fault == "duplicate":
                    await self._send_frame(session, frame)

    async def trade(self, ticker: str, yes_price: int, count: int, taker: Side) -> None:
        self._clock_ms += 3
        for session in list(self.sessions):
            for sid, (channel, tickers) in list(session.subs.items()):
                if channel == "trade" and ticker in tickers:
                    event = PublicTrade(ticker, self._clock_ms, f"t{self._clock_ms}", yes_price, count, taker)
                    await self._send(session, wire.trade_message(event, sid, era=self.era))

    async def send_raw(self, frame: bytes | str) -> None:
        for session in list(self.sessions):
            await session.ws.send(frame)

    async def drop_connections(self) -> None:
        for session in list(self.sessions):
            session.ws.transport.abort()

    async def _send_snapshot(self, session: _Session, sid: int, ticker: str) -> None:
        book = self.books[ticker]
        seq = self._next_seq(session, sid, ticker)
        event = BookSnapshot(ticker, seq, 0, book.levels(Side.YES), book.levels(Side.NO), sid)
        await self._send(session, wire.snapshot_message(event, sid, seq, self.era))

    def _next_seq(self, session: _Session, sid: int, ticker: str) -> int:
        key = (sid, ticker) if self.per_market_seq else sid
        session.seq[key] = session.seq.get(key, 0) + 1
        return session.seq[key]

    async def _send(self, session: _Session, message: dict) -> None:
        await self._send_frame(session, wire.encode(message))

    async def _send_frame(self, session: _Session, frame: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await session.ws.send(frame.decode())
            while session.late:
                await session.ws.send(session.late.pop(0).decode())


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys():
    private_pem, public_pem = generate_keypair()
    return private_key_from_pem(private_pem), public_key_from_pem(public_pem)


@pytest.fixture
def signer(keys):
    return RequestSigner("key-1", keys[0])


@pytest.fixture
async def exchange(keys, request):
    options = getattr(request, "param", {})
    server = FakeKalshi({"key-1": keys[1]}, **options)
    await server.start()
    yield server
    await server.stop()


class Running:
    """A feed consumed on a task, its events collected; stopped at the end of the test."""

    def __init__(self, feed: KalshiMarketDataFeed) -> None:
        self.feed = feed
        self.events: list[MarketEvent] = []
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.feed.events():
            self.events.append(event)

    async def stop(self) -> None:
        await self.feed.stop()
        await asyncio.wait_for(self.task, timeout=5)


@pytest.fixture
async def run_feed(signer):
    running: list[Running] = []

    def start(server: FakeKalshi, books: SharedBookState | None = None, **options) -> Running:
        client_options = {
            key: options.pop(key) for key in ("backoff", "max_attempts", "random") if key in options
        }
        client_options.setdefault("backoff", TINY_BACKOFF)
        client = KalshiWebSocketClient(server.url, options.pop("signer", signer), **client_options)
        tickers = options.pop("tickers", tuple(server.books))
        feed = KalshiMarketDataFeed(client, tickers, books=books, **options)
        running.append(Running(feed))
        return running[-1]

    yield start
    for each in running:
        if not each.task.done():
            await each.stop()


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def in_sync_with(books: SharedBookState, server: FakeKalshi) -> bool:
    return all(books.is_in_sync(t) and books.snapshot(t) == server.books[t] for t in server.books)


async def publish_some(server: FakeKalshi, rounds: int = 5) -> None:
    for i in range(rounds):
        for index, ticker in enumerate(server.books):
            # Whole cents and whole contracts, so the legacy wire can carry them too.
            await server.delta(ticker, Side(i % 2), 3000 + 100 * index + 100 * (i % 10), 100 * (1 + i))
            await server.delta(ticker, Side.YES, 4500, -100)


# ---------------------------------------------------------------------------------------------
# Connecting and subscribing
# ---------------------------------------------------------------------------------------------
async def test_the_handshake_is_signed_and_the_markets_are_subscribed_at_once(exchange, run_feed):
    books = SharedBookState(TICKERS)
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))

    (handshake,) = exchange.handshakes
    assert handshake["KALSHI-ACCESS-KEY"] == "key-1"
    assert abs(int(handshake["KALSHI-ACCESS-TIMESTAMP"]) - time.time_ns() // 1_000_000) < 5_000
    (subscribe,) = exchange.commands
    assert subscribe["cmd"] == "subscribe"
    assert subscribe["params"] == {"channels": ["orderbook_delta", "trade"], "market_tickers": list(TICKERS)}

    await publish_some(exchange)
    await exchange.trade("KXB-2", 4700, 300, Side.NO)
    await until(lambda: running.feed.stats().trades == 1)
    assert in_sync_with(books, exchange)

    stats = running.feed.stats()
    assert (stats.snapshots, stats.deltas, stats.gaps, stats.malformed) == (3, 30, 0, 0)
    assert [type(e).__name__ for e in running.events].count("BookDelta") == 30
    assert isinstance(running.events[-1], PublicTrade)
    assert running.events[-1].yes_price == 4700 and running.events[-1].count == 300
    assert stats.latency_count == 33 and stats.latency_p50_us <= stats.latency_p99_us


@pytest.mark.parametrize("exchange", [{"era": "legacy"}], indirect=True)
async def test_the_legacy_wire_format_gives_the_same_books(exchange, run_feed):
    books = SharedBookState()
    run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))
    await publish_some(exchange)
    await until(lambda: in_sync_with(books, exchange))


async def test_markets_are_split_over_subscriptions_when_asked(exchange, run_feed):
    books = SharedBookState()
    run_feed(exchange, books, markets_per_subscription=2, channels=("orderbook_delta",))
    await until(lambda: in_sync_with(books, exchange))
    assert [command["params"]["market_tickers"] for command in exchange.commands] == [
        ["KXA-1", "KXB-2"],
        ["KXC-3"],
    ]
    await publish_some(exchange)
    await until(lambda: in_sync_with(books, exchange))


async def test_a_bad_key_is_refused_at_the_handshake_and_not_retried(exchange, run_feed, keys):
    stranger = RequestSigner("unknown-key", keys[0])
    running = run_feed(exchange, signer=stranger)
    with pytest.raises(HandshakeRejected, match="HTTP 401.*NOT_FOUND"):
        await asyncio.wait_for(running.task, timeout=5)
    assert len(exchange.handshakes) == 1


async def test_an_unreachable_server_gives_up_after_the_allowed_attempts(exchange, run_feed):
    await exchange.stop()
    running = run_feed(exchange, max_attempts=3)
    with pytest.raises(FeedUnavailable, match="after 3 consecutive attempts"):
        await asyncio.wait_for(running.task, timeout=5)


# ---------------------------------------------------------------------------------------------
# Sequence faults
# ---------------------------------------------------------------------------------------------
async def test_a_gap_invalidates_the_books_and_a_fresh_snapshot_resynchronises_them(exchange, run_feed):
    books = SharedBookState()
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))

    await exchange.delta("KXA-1", Side.YES, 4200, 500, fault="skip")  # lost on the way
    await exchange.delta("KXB-2", Side.NO, 5100, 40)  # shows the gap
    await until(lambda: running.feed.stats().gaps == 1)
    await until(lambda: in_sync_with(books, exchange))

    # One shared sequence: every market of the subscription was invalid until its new snapshot.
    assert [books.stats(t).invalidations for t in TICKERS] == [1, 1, 1]
    assert running.feed.stats().snapshots == 6
    get_snapshot = [c for c in exchange.commands if c["cmd"] == "update_subscription"]
    assert get_snapshot[0]["params"]["action"] == "get_snapshot"
    assert get_snapshot[0]["params"]["sids"] == [1]
    stats = running.feed.stats()
    assert (stats.gaps, stats.resyncs, stats.resubscribes) == (1, 1, 0)

    await publish_some(exchange)
    await until(lambda: in_sync_with(books, exchange))


@pytest.mark.parametrize("exchange", [{"ignore_get_snapshot": True}], indirect=True)
async def test_no_delta_touches_an_invalid_book_and_overdue_snapshots_make_the_subscription_again(
    exchange, run_feed
):
    books = SharedBookState()
    running = run_feed(exchange, books, resync_timeout_s=0.5)
    await until(lambda: in_sync_with(books, exchange))
    await exchange.delta("KXA-1", Side.YES, 4200, 500, fault="skip")
    await exchange.delta("KXB-2", Side.NO, 5100, 40)
    await exchange.delta("KXC-3", Side.NO, 5200, 70)
    await until(lambda: running.feed.stats().gaps == 1)

    # get_snapshot goes unanswered: every book stays invalid, and no delta reached one.
    assert not any(books.is_in_sync(t) for t in TICKERS)
    assert running.feed.stats().deltas == 0
    assert all(books.stats(t).refused_deltas == 0 for t in TICKERS)  # the feed never offered them

    await until(lambda: running.feed.stats().resubscribes == 1)  # after resync_timeout_s
    await until(lambda: in_sync_with(books, exchange))
    await publish_some(exchange)
    await until(lambda: in_sync_with(books, exchange))


async def test_a_duplicate_is_dropped(exchange, run_feed):
    books = SharedBookState()
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))
    await exchange.delta("KXA-1", Side.YES, 4200, 500, fault="duplicate")
    await exchange.delta("KXA-1", Side.YES, 4200, 1)
    await until(lambda: running.feed.stats().deltas == 2)

    assert running.feed.stats().duplicates == 1
    assert in_sync_with(books, exchange)
    assert books.snapshot("KXA-1").quantity_at(Side.YES, 4200) == 501
    assert running.feed.stats().resyncs == 0


async def test_an_out_of_order_message_is_caught_and_the_books_resynchronised(exchange, run_feed):
    books = SharedBookState()
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))
    await exchange.delta("KXA-1", Side.YES, 4200, 500, fault="late")  # arrives after the next one
    await exchange.delta("KXA-1", Side.NO, 5300, 25)
    # The later seq shows a gap; the earlier one, arriving after it, is dropped with the rest.
    await until(lambda: running.feed.stats().gaps == 1 and running.feed.stats().unsynced >= 1)
    await until(lambda: in_sync_with(books, exchange))
    assert books.snapshot("KXA-1").quantity_at(Side.YES, 4200) == 500  # from the fresh snapshot


@pytest.mark.parametrize("exchange", [{"refuse_get_snapshot": True}], indirect=True)
async def test_when_get_snapshot_is_refused_the_subscription_is_made_again(exchange, run_feed):
    books = SharedBookState()
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))
    await exchange.delta("KXC-3", Side.YES, 4200, 500, fault="skip")
    await exchange.delta("KXC-3", Side.YES, 4300, 5)
    await until(lambda: running.feed.stats().resubscribes == 1)
    await until(lambda: in_sync_with(books, exchange))

    cmds = [(c["cmd"], c.get("params", {}).get("sids")) for c in exchange.commands]
    assert ("unsubscribe", [1]) in cmds
    assert exchange.commands[-1]["params"] == {"channels": ["orderbook_delta"], "market_tickers": list(TICKERS)}
    # The old sid's leftovers are ignored; the new one counts from 1.
    await publish_some(exchange)
    await until(lambda: in_sync_with(books, exchange))


@pytest.mark.parametrize("exchange", [{"per_market_seq": True}], indirect=True)
async def test_a_server_numbering_each_market_on_its_own_is_detected_and_followed(exchange, run_feed, caplog):
    books = SharedBookState()
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))
    await publish_some(exchange)
    await until(lambda: running.feed.stats().deltas == 30)

    assert in_sync_with(books, exchange)
    assert "numbers seq per market" in caplog.text
    await exchange.delta("KXB-2", Side.YES, 4200, 500, fault="skip")
    await exchange.delta("KXB-2", Side.YES, 4200, 1)  # a gap in KXB-2's own numbering
    await until(lambda: running.feed.stats().gaps == 1)
    await until(lambda: in_sync_with(books, exchange))


# ---------------------------------------------------------------------------------------------
# Junk and errors
# ---------------------------------------------------------------------------------------------
async def test_malformed_and_unknown_messages_are_counted_logged_and_never_touch_a_book(exchange, run_feed, caplog):
    books = SharedBookState()
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))
    before = books.snapshot("KXA-1")
    caplog.set_level(logging.WARNING, logger="adapters.kalshi.market_data")

    await exchange.send_raw("{this is not json")
    await exchange.send_raw(b"\x00\xff binary junk")
    await exchange.send_raw(orjson.dumps({"type": "ticker", "sid": 9, "msg": {"market_ticker": "KXA-1", "price": 1}}))
    bad_delta = {
        "type": "orderbook_delta",
        "sid": 1,
        "seq": 5,
        "msg": {"market_ticker": "KXA-1", "price_dollars": "1.5000", "delta_fp": "10.00", "side": "yes", "ts_ms": 1},
    }
    await exchange.send_raw(orjson.dumps(bad_delta))
    await exchange.send_raw("x" * 5000)
    await until(lambda: running.feed.stats().malformed == 4 and running.feed.stats().unknown == 1)

    assert books.snapshot("KXA-1") == before
    assert "is not JSON" in caplog.text
    assert "1.5000" in caplog.text  # the offending payload, quoted
    assert "type 'ticker'" in caplog.text
    longest = max(len(record.getMessage()) for record in caplog.records)
    assert longest < 1000  # payloads are truncated
    await publish_some(exchange)
    await until(lambda: in_sync_with(books, exchange))
    assert running.feed.stats().gaps == 0  # the junk took no sequence number


@pytest.mark.parametrize("code", [10, 17, 25])
async def test_errors_that_break_a_subscription_make_every_subscription_again(exchange, run_feed, code):
    books = SharedBookState()
    running = run_feed(exchange, books)
    await until(lambda: in_sync_with(books, exchange))
    await exchange.send_raw(wire.encode(wire.error_message(None, code, "Subscription buffer overflow")))
    await until(lambda: running.feed.stats().resubscribes == 2)  # the book and the trade subscription
    await until(lambda: in_sync_with(books, exchange))

    subscribes = [c["params"]["channels"] for c in exchange.commands if c["cmd"] == "subscribe"]
    assert subscribes == [["orderbook_delta", "trade"], ["orderbook_delta"], ["trade"]]
    await publish_some(exchange)
    await exchange.trade("KXA-1", 4500, 100, Side.YES)
    await until(lambda: running.feed.stats().trades == 1 and in_sync_with(books, exchange))
    assert running.feed.stats().stale == 0


async def test_an_unknown_market_does_not_cost_the_others_their_data(keys, run_feed, caplog):
    server = FakeKalshi({"key-1": keys[1]}, unknown_markets={"NOPE-1"})
    await server.start()
    try:
        books = SharedBookState()
        running = run_feed(server, books, tickers=(*TICKERS, "NOPE-1"))
        await until(lambda: in_sync_with(books, server))
        await until(lambda: running.feed.stats().error_replies == 2)  # the whole chunk, then NOPE-1 alone
        assert "subscribing to NOPE-1 failed: code 16, Market not found" in caplog.text
        await publish_some(server)
        await until(lambda: in_sync_with(books, server))
    finally:
        await server.stop()


# ---------------------------------------------------------------------------------------------
# Lost connections
# ---------------------------------------------------------------------------------------------
async def test_a_lost_connection_reconnects_with_growing_jittered_backoff_and_signs_afresh(exchange, run_feed):
    books = SharedBookState()
    running = run_feed(exchange, books, random=lambda: 1.0)
    await until(lambda: in_sync_with(books, exchange))

    await exchange.stop()  # the server goes away for a while
    await exchange.drop_connections()
    await until(lambda: not any(books.is_in_sync(t) for t in TICKERS))
    client = running.feed._client
    await until(lambda: client.failed_attempts >= 4)
    exchange.books["KXA-1"].apply_delta(Side.NO, 5200, 77)  # the market moved meanwhile
    await exchange.start()  # back, on the same port
    await until(lambda: in_sync_with(books, exchange))

    assert client.waits[:5] == [0.01, 0.02, 0.04, 0.08, 0.08]  # full jitter pinned at the ceiling
    first, *others = exchange.handshakes
    assert others and all(h["KALSHI-ACCESS-SIGNATURE"] != first["KALSHI-ACCESS-SIGNATURE"] for h in others)
    assert running.feed.stats().reconnects == 1
    await publish_some(exchange)
    await until(lambda: in_sync_with(books, exchange))


async def test_silence_past_the_staleness_timeout_is_treated_as_a_lost_connection(exchange, run_feed):
    books = SharedBookState()
    running = run_feed(exchange, books, stale_after_s=0.4)
    await until(lambda: in_sync_with(books, exchange))
    exchange.silent = True

    # >= : on a loaded machine a reconnect to the still-silent server may go stale again.
    await until(lambda: running.feed.stats().stale_disconnects >= 1)
    assert any(c["cmd"] == "list_subscriptions" for c in exchange.commands)  # probed first
    exchange.silent = False
    await until(lambda: running.feed.stats().reconnects >= 1 and in_sync_with(books, exchange))


async def test_stop_ends_the_events(exchange, run_feed):
    running = run_feed(exchange)
    await until(lambda: running.feed.stats().snapshots == 3)
    await running.stop()
    assert running.task.done() and running.task.exception() is None


def test_bad_settings_are_refused():
    client = KalshiWebSocketClient("ws://127.0.0.1:1/trade-api/ws/v2", None)
    with pytest.raises(ValueError, match="at least one market"):
        KalshiMarketDataFeed(client, [])
    with pytest.raises(ValueError, match="channels must be among"):
        KalshiMarketDataFeed(client, ["T"], channels=("ticker",))
    with pytest.raises(ValueError, match="must start with ws:// or wss://"):
        KalshiWebSocketClient("https://example.com", None)


# ---------------------------------------------------------------------------------------------
# The whole pipeline: socket -> books -> write queue -> SQLite
# ---------------------------------------------------------------------------------------------
async def test_a_recording_of_the_live_feed_replays_to_the_servers_books(exchange, signer, tmp_path):
    store = SqliteOrderbookStore(tmp_path / "recordings.db")
    await store.open()
    books = SharedBookState(TICKERS)
    client = KalshiWebSocketClient(exchange.url, signer, backoff=TINY_BACKOFF)
    feed = KalshiMarketDataFeed(client, TICKERS, books=books)

    class Clock:
        def now_ms(self) -> int:
            return time.time_ns() // 1_000_000

    recording = asyncio.create_task(
        record_session(feed, store, tickers=TICKERS, source="kalshi", batch_size=7, clock=Clock(), flush_interval_ms=50)
    )
    await until(lambda: in_sync_with(books, exchange))
    await publish_some(exchange, rounds=10)
    await exchange.delta("KXB-2", Side.YES, 4200, 500, fault="skip")  # a gap and its resync, recorded
    await exchange.delta("KXB-2", Side.YES, 4200, 3)
    await until(lambda: feed.stats().resyncs == 1)
    await until(lambda: in_sync_with(books, exchange))
    await publish_some(exchange, rounds=3)
    await until(lambda: feed.stats().deltas == 78)
    await feed.stop()
    summary = await asyncio.wait_for(recording, timeout=10)

    replayed = {ticker: OrderBook(ticker) for ticker in TICKERS}
    for event in await store.read_events(summary.session_id):
        if isinstance(event, (BookSnapshot, BookDelta)):
            replayed[event.ticker].apply(event)
    assert replayed == exchange.books
    assert summary.deltas == 78 and summary.snapshots == 6
    await store.close()


def test_the_latency_histogram_reports_upper_bounds_within_an_eighth():
    histogram = LatencyHistogram()
    assert histogram.quantile_us(0.5) is None
    for ns in range(1, 100_001):
        histogram.record(ns)
    assert 50_000 <= histogram.quantile_ns(0.5) <= 50_000 * 1.125
    assert 99_000 <= histogram.quantile_ns(0.99) <= 99_000 * 1.125
    assert histogram.quantile_ns(1.0) == 100_000
    assert histogram.summary_us()["count"] == 100_000
