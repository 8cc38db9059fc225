"""Kalshi live market data: the :class:`~domain.ports.MarketDataFeed` port over WebSocket v2.

:class:`KalshiMarketDataFeed` subscribes to ``orderbook_delta`` and ``trade`` for its markets
(``markets_per_subscription`` to a command), checks every book message's ``seq``, applies what
is in order to the shared books (:class:`~domain.ports.LiveBooks`), and yields each applied
event and each trade from :meth:`events`, in arrival order. The consumer runs inline in the
same task (an async generator), so its work -- offering the event to the write queue -- is done
before the next frame is read, and nothing here waits on a database.

Sequence numbers count per subscription (``sid``). Kalshi's page says markets sharing a
subscription share the counter, without confirming it, so both are handled: a market's fresh
snapshot numbered at or below what its subscription has already seen can only come from
per-market counters, and switches that subscription to one check per market (after a resync).

What is never allowed to happen is a wrong book:

* a **gap** marks the subscription's books invalid (they refuse deltas) and asks for fresh
  snapshots with ``update_subscription``/``get_snapshot``; if that is refused, or the snapshots
  do not come within ``resync_timeout_s``, the subscription is dropped and made again (a new
  sid restarts at seq 1). Messages of a dropped subscription are ignored;
* a **duplicate** (seq at or below the last) is dropped;
* a **malformed** or **unknown** message is counted and logged with its payload (truncated),
  and touches nothing;
* errors 10, 17 and 25 (the subscription is broken) make every subscription again;
* a lost connection marks every book invalid; the client reconnects with backoff and jitter
  and subscribes afresh. No frame for ``stale_after_s`` (half of it idle sends a
  ``list_subscriptions`` probe) counts as a lost connection.

``latency`` measures each book message from the moment its frame was read to the moment its
book was updated (parsing, checking, applying, listeners).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from time import perf_counter_ns

import attrs
import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from adapters.kalshi.latency import LatencyHistogram
from adapters.kalshi.parsing import (
    ErrorReply,
    MalformedMessage,
    OkReply,
    Subscribed,
    UnknownMessage,
    Unsubscribed,
    WsErrorCode,
    parse_frame,
)
from adapters.kalshi.ws_client import KalshiWebSocketClient
from domain.events import BookDelta, BookSnapshot, MarketEvent, PublicTrade
from domain.orderbook import BookError
from domain.ports import LiveBooks
from domain.sequence import SeqStatus, SequenceCheck

log = logging.getLogger(__name__)

BOOK_CHANNEL = "orderbook_delta"
TRADE_CHANNEL = "trade"
CHANNELS = (BOOK_CHANNEL, TRADE_CHANNEL)
_RESUBSCRIBE_CODES = frozenset(code.value for code in WsErrorCode if code.needs_resubscribe)
_LOGGED_IN_FULL = 10  # bad messages logged one by one; after that, one log line per 1000
_EXCERPT = 200
_LOOP_TURN_NS = 1_000_000  # a busy reader lets the event loop run other tasks at least this often

_IN_ORDER = SeqStatus.IN_ORDER
_DUPLICATE = SeqStatus.DUPLICATE
_GAP = SeqStatus.GAP


@attrs.frozen
class FeedStats:
    messages: int  # frames received
    snapshots: int  # applied
    deltas: int  # applied
    trades: int
    gaps: int
    duplicates: int
    unsynced: int  # book messages dropped while their book awaited a snapshot
    stale: int  # messages of a subscription given up, or not ours
    resyncs: int  # fresh snapshots requested
    resubscribes: int  # subscriptions made again
    reconnects: int
    stale_disconnects: int  # connections given up for silence
    malformed: int
    unknown: int
    error_replies: int
    latency_count: int
    latency_p50_us: float | None
    latency_p99_us: float | None


@attrs.define(eq=False)
class _Subscription:
    sid: int
    channel: str
    tickers: tuple[str, ...]
    ticker_set: frozenset[str] = attrs.field(init=False)
    check: SequenceCheck = attrs.field(factory=SequenceCheck)
    per_market: dict[str, SequenceCheck] | None = None  # set once the server shows per-market seqs
    live: set[str] = attrs.field(factory=set)  # markets whose book is in sync through this sid
    resync_deadline: float | None = None  # monotonic: snapshots of every market are due by then
    snapshot_request: int | None = None  # the outstanding get_snapshot command

    def __attrs_post_init__(self) -> None:
        self.ticker_set = frozenset(self.tickers)

    def check_for(self, ticker: str) -> SequenceCheck:
        if self.per_market is None:
            return self.check
        check = self.per_market.get(ticker)
        if check is None:
            check = self.per_market[ticker] = SequenceCheck()
        return check

    def forget_sequence(self) -> None:
        self.check.last = None
        if self.per_market is not None:
            self.per_market.clear()


@attrs.define(eq=False)
class _PendingSubscribe:
    tickers: tuple[str, ...]
    channels: set[str]  # not yet acknowledged


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class KalshiMarketDataFeed:
    """Live events of ``tickers`` through ``client``; books kept in ``books`` (optional)."""

    def __init__(
        self,
        client: KalshiWebSocketClient,
        tickers: Sequence[str],
        *,
        books: LiveBooks | None = None,
        channels: Sequence[str] = CHANNELS,
        markets_per_subscription: int = 100,
        stale_after_s: float = 60.0,
        resync_timeout_s: float = 10.0,
        now_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        tickers = tuple(dict.fromkeys(tickers))
        if not tickers:
            raise ValueError("the feed needs at least one market ticker")
        if not all(isinstance(ticker, str) and ticker for ticker in tickers):
            raise ValueError(f"market tickers must be non-empty text, got {tickers!r}")
        unknown = [channel for channel in channels if channel not in CHANNELS]
        if unknown or not channels:
            raise ValueError(f"channels must be among {CHANNELS}, got {tuple(channels)!r}")
        if markets_per_subscription < 1:
            raise ValueError(f"markets_per_subscription must be >= 1, got {markets_per_subscription}")
        if not stale_after_s > 0 or not resync_timeout_s > 0:
            raise ValueError("stale_after_s and resync_timeout_s must be > 0")
        self.tickers = tickers
        self._client = client
        self._books = books
        self._channels = tuple(channels)
        self._chunk = markets_per_subscription
        self._stale_after = stale_after_s
        self._resync_timeout = resync_timeout_s
        self._now_ms = now_ms
        self.latency = LatencyHistogram()

        # Per connection.
        self._subs: dict[int, _Subscription] = {}
        self._pending_subscribes: dict[int, _PendingSubscribe] = {}
        self._snapshot_requests: dict[int, int] = {}  # command id -> sid
        self._outbox: collections.deque[bytes] = collections.deque()
        self._send_lock = asyncio.Lock()
        self._last_frame_ns = 0
        self._probe_ns = 0
        self._healthy = False

        self._messages = self._snapshots = self._deltas = self._trades = 0
        self._gaps = self._duplicates = self._unsynced = self._stale = 0
        self._resyncs = self._resubscribes = self._stale_disconnects = 0
        self._malformed = self._unknown = self._error_replies = 0

    # -- the port ----------------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[MarketEvent]:
        """Applied book events and trades, until :meth:`stop`. Raises
        :class:`~adapters.kalshi.ws_client.HandshakeRejected` on bad credentials and
        :class:`~adapters.kalshi.ws_client.FeedUnavailable` after too many failed attempts."""
        async with contextlib.aclosing(self._client.connections()) as connections:
            async for connection in connections:
                self._connection_opened()
                watchdog = asyncio.create_task(self._watch(connection), name="kalshi-feed-watchdog")
                try:
                    for chunk_start in range(0, len(self.tickers), self._chunk):
                        self._subscribe(self.tickers[chunk_start : chunk_start + self._chunk], self._channels)
                    await self._send_outbox(connection)
                    receive, handle = connection.recv, self._handle
                    turn_ns = perf_counter_ns()
                    while True:
                        try:
                            # Undecoded: orjson reads the UTF-8 bytes as they came.
                            frame = await receive(decode=False)
                        except ConnectionClosedOK:
                            break  # a clean close; the client decides whether to reconnect
                        received_ns = perf_counter_ns()
                        event = handle(frame, received_ns)
                        if self._outbox:
                            await self._send_outbox(connection)
                        if event is not None:
                            yield event
                        if received_ns - turn_ns > _LOOP_TURN_NS:
                            # recv() does not suspend while frames are buffered, and one socket
                            # read buffers a thousand: without this a burst would keep the write
                            # queue's flusher (and the watchdog) off the loop until it is over.
                            await asyncio.sleep(0)
                            turn_ns = perf_counter_ns()
                except ConnectionClosed as error:
                    log.warning("Kalshi connection lost: %s", error)
                finally:
                    watchdog.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watchdog
                    self._connection_lost()

    async def stop(self) -> None:
        """Ends :meth:`events` after the frame in hand."""
        await self._client.stop()

    def stats(self) -> FeedStats:
        return FeedStats(
            messages=self._messages,
            snapshots=self._snapshots,
            deltas=self._deltas,
            trades=self._trades,
            gaps=self._gaps,
            duplicates=self._duplicates,
            unsynced=self._unsynced,
            stale=self._stale,
            resyncs=self._resyncs,
            resubscribes=self._resubscribes,
            reconnects=self._client.reconnects,
            stale_disconnects=self._stale_disconnects,
            malformed=self._malformed,
            unknown=self._unknown,
            error_replies=self._error_replies,
            latency_count=self.latency.count,
            latency_p50_us=self.latency.quantile_us(0.5),
            latency_p99_us=self.latency.quantile_us(0.99),
        )

    # -- one frame (the hot path) --------------------------------------------------------------------
    def _handle(self, frame: str | bytes, received_ns: int) -> MarketEvent | None:
        self._messages += 1
        self._last_frame_ns = received_ns
        try:
            message = parse_frame(frame, self._now_ms())
        except MalformedMessage as error:
            self._malformed += 1
            self._log_bad("malformed", self._malformed, str(error))
            return None
        kind = message.__class__
        if kind is BookDelta:
            event = self._on_delta(message)  # type: ignore[arg-type]
        elif kind is BookSnapshot:
            event = self._on_snapshot(message)  # type: ignore[arg-type]
        elif kind is PublicTrade:
            return self._on_trade(message)  # type: ignore[arg-type]
        elif kind is UnknownMessage:
            self._unknown += 1
            unknown: UnknownMessage = message  # type: ignore[assignment]
            self._log_bad("unknown", self._unknown, f"type {unknown.type!r}: {_excerpt(unknown.payload)}")
            return None
        else:
            self._on_control(message)
            return None
        self.latency.record(perf_counter_ns() - received_ns)
        return event

    def _on_delta(self, delta: BookDelta) -> BookDelta | None:
        sub = self._subs.get(delta.sid)  # type: ignore[arg-type]
        if sub is None or sub.channel != BOOK_CHANNEL:
            self._stale += 1
            return None
        seq = delta.seq
        if seq is None:  # cannot be placed; the next delta will show the gap it leaves
            self._malformed += 1
            self._log_bad("malformed", self._malformed, f"orderbook_delta without seq: {delta!r}")
            return None
        check = sub.check if sub.per_market is None else sub.check_for(delta.ticker)
        last = check.last
        status = check.check(seq)
        if status is _IN_ORDER:
            if delta.ticker not in sub.live:
                self._unsynced += 1
                return None
            if self._books is not None:
                self._books.apply(delta)
            self._deltas += 1
            return delta
        if status is _DUPLICATE:
            self._duplicates += 1
            return None
        if status is _GAP:
            self._gaps += 1
            self._resync(sub, f"gap in sequence: seq {seq} after {last} ({delta.ticker})")
            return None
        self._unsynced += 1
        return None

    def _on_snapshot(self, snapshot: BookSnapshot) -> BookSnapshot | None:
        sub = self._subs.get(snapshot.sid)  # type: ignore[arg-type]
        if sub is None or sub.channel != BOOK_CHANNEL or snapshot.ticker not in sub.ticker_set:
            self._stale += 1
            return None
        seq = snapshot.seq
        if seq is None:
            self._malformed += 1
            self._log_bad("malformed", self._malformed, f"orderbook_snapshot without seq: {snapshot.ticker}")
            return None
        ticker = snapshot.ticker
        check = sub.check_for(ticker)
        if sub.per_market is None and ticker not in sub.live and check.last is not None and seq <= check.last:
            # A fresh snapshot numbered at or below what this sid has seen: with a shared counter
            # that cannot happen, so the server counts per market.
            log.warning("sid %d numbers seq per market; checking each market on its own from now", sub.sid)
            sub.per_market = {}
            self._resync(sub, "switching to per-market sequence checks")
            check = sub.check_for(ticker)
        if check.last is None:
            check.start(seq)
        else:
            last = check.last
            status = check.check(seq)
            if status is _DUPLICATE:
                self._duplicates += 1
                return None
            if status is _GAP:
                self._gaps += 1
                if sub.per_market is None:  # something of another market may be lost too
                    self._resync(sub, f"gap in sequence: snapshot seq {seq} after {last} ({ticker})")
                check.start(seq)
        if self._books is not None:
            try:
                self._books.apply(snapshot)
            except BookError as error:
                self._malformed += 1
                self._log_bad("malformed", self._malformed, f"snapshot refused by the book: {error}")
                self._resync(sub, f"unusable snapshot of {ticker}")
                return None
        sub.live.add(ticker)
        self._snapshots += 1
        if len(sub.live) == len(sub.ticker_set):
            sub.resync_deadline = None
            sub.snapshot_request = None
        if not self._healthy:
            self._healthy = True
            self._client.mark_healthy()
        return snapshot

    def _on_trade(self, trade: PublicTrade) -> PublicTrade | None:
        sub = self._subs.get(trade.sid)  # type: ignore[arg-type]
        if sub is None or sub.channel != TRADE_CHANNEL:
            self._stale += 1
            return None
        self._trades += 1
        return trade

    # -- control messages ----------------------------------------------------------------------------
    def _on_control(self, message: object) -> None:
        if isinstance(message, Subscribed):
            self._on_subscribed(message)
        elif isinstance(message, ErrorReply):
            self._on_error(message)
        elif isinstance(message, (OkReply, Unsubscribed)):
            pass  # acknowledgements; the probe's answer counts as a sign of life, nothing more

    def _on_subscribed(self, message: Subscribed) -> None:
        pending = self._pending_subscribes.get(message.id)  # type: ignore[arg-type]
        if pending is None or message.channel not in pending.channels:
            log.warning("unexpected subscription acknowledgement %r; ignoring its messages", message)
            return
        pending.channels.discard(message.channel)
        if not pending.channels:
            del self._pending_subscribes[message.id]  # type: ignore[arg-type]
        sub = _Subscription(message.sid, message.channel, pending.tickers)
        if message.channel == BOOK_CHANNEL:
            sub.resync_deadline = time.monotonic() + self._resync_timeout
        self._subs[message.sid] = sub

    def _on_error(self, error: ErrorReply) -> None:
        self._error_replies += 1
        sid = self._snapshot_requests.pop(error.id, None)  # type: ignore[arg-type]
        if sid is not None:
            sub = self._subs.get(sid)
            if sub is not None:
                sub.snapshot_request = None
                self._resubscribe(sub, f"get_snapshot refused (code {error.code}: {error.msg})")
            return
        pending = self._pending_subscribes.pop(error.id, None)  # type: ignore[arg-type]
        if pending is not None:
            self._subscribe_failed(pending, error)
            return
        if error.code in _RESUBSCRIBE_CODES:
            log.warning("Kalshi error %d (%s): subscribing again", error.code, error.msg)
            for sub in list(self._subs.values()):
                self._resubscribe(sub, f"error {error.code}")
            return
        log.warning("Kalshi error reply to command %s: code %d, %s", error.id, error.code, error.msg)

    def _subscribe_failed(self, pending: _PendingSubscribe, error: ErrorReply) -> None:
        channels = tuple(channel for channel in self._channels if channel in pending.channels)
        if error.code in _RESUBSCRIBE_CODES:
            self._resubscribes += 1
            log.warning("subscribing failed with error %d (%s); trying again", error.code, error.msg)
            self._subscribe(pending.tickers, channels)
        elif error.code == WsErrorCode.MARKET_NOT_FOUND and len(pending.tickers) > 1:
            # One unknown market must not cost the others their data: one command each.
            log.warning("subscribing to %d markets failed: %s; subscribing one by one", len(pending.tickers), error.msg)
            for ticker in pending.tickers:
                self._subscribe((ticker,), channels)
        else:
            log.error("subscribing to %s failed: code %d, %s", ", ".join(pending.tickers), error.code, error.msg)

    # -- commands ------------------------------------------------------------------------------------
    def _subscribe(self, tickers: Sequence[str], channels: Sequence[str]) -> None:
        command_id, frame = self._client.command(
            "subscribe", {"channels": list(channels), "market_tickers": list(tickers)}
        )
        self._pending_subscribes[command_id] = _PendingSubscribe(tuple(tickers), set(channels))
        self._outbox.append(frame)

    def _resync(self, sub: _Subscription, reason: str) -> None:
        """Invalidates the subscription's books and asks for fresh snapshots."""
        self._resyncs += 1
        log.warning("sid %d: %s; resynchronising %d markets", sub.sid, reason, len(sub.tickers))
        sub.forget_sequence()
        self._invalidate(sub)
        sub.resync_deadline = time.monotonic() + self._resync_timeout
        if sub.snapshot_request is None:
            command_id, frame = self._client.command(
                "update_subscription",
                {"sids": [sub.sid], "action": "get_snapshot", "market_tickers": list(sub.tickers)},
            )
            sub.snapshot_request = command_id
            self._snapshot_requests[command_id] = sub.sid
            self._outbox.append(frame)

    def _resubscribe(self, sub: _Subscription, reason: str) -> None:
        """Drops the subscription and makes it again: a new sid, seq from 1, fresh snapshots."""
        self._resubscribes += 1
        log.warning("sid %d: %s; subscribing its %d markets again", sub.sid, reason, len(sub.tickers))
        self._invalidate(sub)
        del self._subs[sub.sid]
        _, frame = self._client.command("unsubscribe", {"sids": [sub.sid]})
        self._outbox.append(frame)
        self._subscribe(sub.tickers, (sub.channel,))

    def _invalidate(self, sub: _Subscription) -> None:
        if self._books is not None:
            for ticker in sub.live:
                self._books.await_snapshot(ticker)
        sub.live.clear()

    async def _send_outbox(self, connection: ClientConnection) -> None:
        async with self._send_lock:  # commands go out in the order they were made
            while self._outbox:
                await connection.send(self._outbox.popleft())

    # -- connection lifecycle ------------------------------------------------------------------------
    def _connection_opened(self) -> None:
        self._subs.clear()
        self._pending_subscribes.clear()
        self._snapshot_requests.clear()
        self._outbox.clear()
        self._last_frame_ns = self._probe_ns = perf_counter_ns()
        self._healthy = False

    def _connection_lost(self) -> None:
        if self._books is not None:
            for sub in self._subs.values():
                for ticker in sub.live:
                    self._books.await_snapshot(ticker)
        self._subs.clear()

    async def _watch(self, connection: ClientConnection) -> None:
        """Silence, overdue snapshots: what no frame will tell the reader."""
        tick = min(self._stale_after / 4, self._resync_timeout / 2, 1.0)
        while True:
            await asyncio.sleep(tick)
            now_ns = perf_counter_ns()
            idle_s = (now_ns - self._last_frame_ns) / 1e9
            if idle_s >= self._stale_after:
                self._stale_disconnects += 1
                log.warning("no message from Kalshi for %.1f s; reconnecting", idle_s)
                await connection.close()
                return
            if idle_s >= self._stale_after / 2 and self._probe_ns <= self._last_frame_ns:
                self._probe_ns = now_ns
                self._outbox.append(self._client.command("list_subscriptions")[1])
            now = time.monotonic()
            for sub in list(self._subs.values()):
                overdue = sub.resync_deadline is not None and now >= sub.resync_deadline
                if overdue and len(sub.live) < len(sub.ticker_set):
                    self._resubscribe(sub, f"snapshots did not arrive within {self._resync_timeout} s")
            if self._outbox:
                try:
                    await self._send_outbox(connection)
                except ConnectionClosed:
                    return

    def _log_bad(self, kind: str, count: int, detail: str) -> None:
        if count <= _LOGGED_IN_FULL or count % 1000 == 0:
            log.warning("%s message #%d ignored: %s", kind, count, detail)


def _excerpt(payload: object) -> str:
    try:
        text = orjson.dumps(payload).decode()
    except TypeError:
        text = repr(payload)
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."
