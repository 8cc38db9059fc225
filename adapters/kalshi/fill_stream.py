"""Our fills as they happen: Kalshi's private ``fill`` WebSocket channel, reconciled over REST.

:meth:`KalshiFillStream.fills` yields each of the account's fills exactly once:

1. On every (re)connection (signed afresh by :class:`~adapters.kalshi.ws_client.KalshiWebSocketClient`,
   with backoff) it subscribes to ``fill`` and waits for the acknowledgement.
2. Only then does it **reconcile**: ``GET /portfolio/fills`` from a little before the newest fill
   it has delivered (``lookback_ms``; the stream's start the first time; a stream "from now"
   first reads what the exchange already lists, before subscribing, as the past). A fill that happened
   while the connection was down is delivered from there. Subscribing first means no fill can
   slip between the REST read and the channel: it is in one, the other, or both.
3. Then it relays the channel. Fills are deduplicated by id (the channel's ``trade_id`` is the
   REST ``fill_id``), so a fill seen both ways is delivered once.

Every ``reconcile_interval_s`` of the connection it reconciles again, which also books a fill
whose message was lost without the connection dropping.

**Fees.** The channel's message carries no fee. A fill from the channel is delivered at once
with the fee computed by the configured :class:`~domain.fees.FeeSchedule` -- the same function
training and the simulated exchange use -- and a fill recovered from REST carries the exchange's
own ``fee_cost``. When a later reconciliation finds the exchange charged a different fee for a
fill already delivered (a series with maker fees the schedule did not know), the difference is
recorded as a :class:`~domain.orders.FeeCorrection` (:meth:`KalshiFillStream.fee_corrections`)
and logged; the actor's periodic balance sync settles it in the exchange's favour regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from adapters.kalshi.parsing import ErrorReply, FillMessage, MalformedMessage, Subscribed, parse_frame
from adapters.kalshi.rest_client import refuse_production
from adapters.kalshi.ws_client import KalshiWebSocketClient
from domain.fees import FeeSchedule
from domain.gateway_errors import AuthenticationFailed, ExchangeUnavailable, RateLimited
from domain.orders import FeeCorrection, Fill

log = logging.getLogger(__name__)

FILL_CHANNEL = "fill"
DEFAULT_LOOKBACK_MS = 60_000
_AUTH_REQUIRED = 9  # WebSocket error code: authentication required


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class FillStreamError(ConnectionError):
    """The exchange would not give us the fill channel on this connection."""


class KalshiFillStream:
    """The account's fills over ``client`` (``wss://.../trade-api/ws/v2``), reconciled with
    ``rest_fills(since_ms)`` (the REST gateway's :meth:`fills`)."""

    def __init__(
        self,
        client: KalshiWebSocketClient,
        rest_fills: Callable[[int], Awaitable[list[Fill]]],
        fees: FeeSchedule,
        *,
        lookback_ms: int = DEFAULT_LOOKBACK_MS,
        reconcile_interval_s: float | None = 30.0,
        subscribe_timeout_s: float = 10.0,
        now_ms: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        refuse_production(client.url, "the WebSocket URL")
        if lookback_ms < 0:
            raise ValueError(f"lookback_ms must be >= 0, got {lookback_ms}")
        if reconcile_interval_s is not None and not reconcile_interval_s > 0:
            raise ValueError(f"reconcile_interval_s must be > 0 or None, got {reconcile_interval_s}")
        self._client = client
        self._rest_fills = rest_fills
        self._fees = fees
        self._lookback_ms = lookback_ms
        self._reconcile_interval = reconcile_interval_s
        self._subscribe_timeout = subscribe_timeout_s
        self._now_ms = now_ms
        self._delivered: dict[str, int] = {}  # fill id -> the fee it was delivered with
        self._newest_ms: int | None = None
        self._unreconciled_from: int | None = None
        self._corrections: list[FeeCorrection] = []
        # Counters, for status pages and tests.
        self.from_channel = 0
        self.from_reconcile = 0
        self.duplicates = 0
        self.reconciles = 0
        self.malformed = 0

    @property
    def connects(self) -> int:
        return self._client.connects

    def fee_corrections(self) -> list[FeeCorrection]:
        """Fee differences found since the last call."""
        found, self._corrections = self._corrections, []
        return found

    async def stop(self) -> None:
        await self._client.stop()

    async def fills(self, since_ms: int | None = None) -> AsyncIterator[Fill]:
        """Fills at or after ``since_ms`` on the exchange's clock, once each, until :meth:`stop`.
        With None, fills from now: what the exchange already lists is taken as the past (a
        baseline read before subscribing), so no clock of ours is compared with the exchange's.
        Raises :class:`~adapters.kalshi.ws_client.HandshakeRejected` on bad credentials."""
        since = 0
        if since_ms is None:
            for fill in await self._rest_fills(0):
                self._delivered[fill.fill_id] = fill.fee  # the past: never delivered, never repeated
                if self._newest_ms is None or fill.ts_ms > self._newest_ms:
                    self._newest_ms = fill.ts_ms
        else:
            since = since_ms
        async with contextlib.aclosing(self._client.connections()) as connections:
            async for connection in connections:
                try:
                    early = await self._subscribe(connection)
                    for fill in await self._reconcile(since):
                        yield fill
                    self._client.mark_healthy()
                    for message in early:
                        fill = self._from_channel(message)
                        if fill is not None:
                            yield fill
                    async with contextlib.aclosing(self._relay(connection, since)) as relayed:
                        async for fill in relayed:
                            yield fill
                except ConnectionClosed as closed:
                    if not self._client.stopping:
                        log.warning("fill channel connection lost: %s", closed)
                except (FillStreamError, TimeoutError) as error:
                    log.warning("fill channel unavailable on this connection (%s); reconnecting", error)

    # -- one connection --------------------------------------------------------------------------
    async def _subscribe(self, connection: ClientConnection) -> list[FillMessage]:
        """Subscribes to ``fill``; returns fills that arrived before the acknowledgement."""
        command_id, frame = self._client.command("subscribe", {"channels": [FILL_CHANNEL]})
        await connection.send(frame.decode())
        early: list[FillMessage] = []
        async with asyncio.timeout(self._subscribe_timeout):
            while True:
                message = self._parse(await connection.recv(decode=False))
                if isinstance(message, Subscribed) and message.id == command_id:
                    return early
                if isinstance(message, ErrorReply) and message.id == command_id:
                    if message.code == _AUTH_REQUIRED:
                        raise AuthenticationFailed(message.msg, code=str(message.code))
                    raise FillStreamError(f"subscribing to {FILL_CHANNEL} refused: {message.code} {message.msg}")
                if isinstance(message, FillMessage):
                    early.append(message)

    async def _relay(self, connection: ClientConnection, since: int) -> AsyncIterator[Fill]:
        """The channel's fills, with a reconciliation every ``reconcile_interval_s``."""
        loop = asyncio.get_running_loop()
        interval = self._reconcile_interval
        next_reconcile = None if interval is None else loop.time() + interval
        while True:
            timeout = None if next_reconcile is None else max(0.0, next_reconcile - loop.time())
            try:
                frame = await asyncio.wait_for(connection.recv(decode=False), timeout)
            except TimeoutError:
                for fill in await self._reconcile(since):
                    yield fill
                next_reconcile = loop.time() + interval  # type: ignore[operator]
                continue
            message = self._parse(frame)
            if isinstance(message, FillMessage):
                fill = self._from_channel(message)
                if fill is not None:
                    yield fill

    def _parse(self, frame: bytes | str) -> object:
        try:
            return parse_frame(frame, self._now_ms())
        except MalformedMessage as error:
            self.malformed += 1
            log.warning("malformed message on the fill channel: %s", error)
            return None

    # -- delivering once -------------------------------------------------------------------------
    def _from_channel(self, message: FillMessage) -> Fill | None:
        # No time filter: what the channel sends happened after we subscribed, whatever the
        # exchange's clock says.
        if message.trade_id in self._delivered:
            self.duplicates += 1
            return None
        fill = Fill(
            message.trade_id,
            message.order_id,
            message.ticker,
            message.side,
            message.price,
            message.count,
            self._fees.fee(message.count, message.price, is_taker=message.is_taker),
            message.is_taker,
            message.ts_ms,
        )
        self.from_channel += 1
        self._deliver(fill)
        return fill

    async def _reconcile(self, since: int) -> list[Fill]:
        """REST fills from a lookback before the newest delivered; those not yet delivered."""
        self.reconciles += 1
        start = since if self._newest_ms is None else max(since, self._newest_ms - self._lookback_ms)
        if self._unreconciled_from is not None:  # a reconciliation failed: cover its span too
            start = min(start, self._unreconciled_from)
        try:
            listed = await self._rest_fills(start)
        except (ExchangeUnavailable, RateLimited) as error:
            self._unreconciled_from = start
            log.warning("fill reconciliation failed (%s); retrying at the next one", error)
            return []
        self._unreconciled_from = None
        missed: list[Fill] = []
        for fill in listed:
            if fill.ts_ms < since:
                continue
            reported = self._delivered.get(fill.fill_id)
            if reported is None:
                missed.append(fill)
                self._deliver(fill)
            elif reported != fill.fee:
                correction = FeeCorrection(fill.fill_id, fill.ticker, reported, fill.fee)
                log.warning("exchange charged a different fee than streamed: %s", correction)
                self._corrections.append(correction)
                self._delivered[fill.fill_id] = fill.fee
        if missed:
            log.info("reconciliation recovered %d fill(s) the channel had not delivered", len(missed))
        self.from_reconcile += len(missed)
        return missed

    def _deliver(self, fill: Fill) -> None:
        self._delivered[fill.fill_id] = fill.fee
        if self._newest_ms is None or fill.ts_ms > self._newest_ms:
            self._newest_ms = fill.ts_ms
