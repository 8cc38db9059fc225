"""The WebSocket connection to Kalshi: signed handshakes, reconnection, commands.

:meth:`KalshiWebSocketClient.connections` yields one open connection at a time and, when it is
lost, opens the next: every handshake is signed afresh (the signature covers a timestamp that
the server checks against its clock), and attempts are spaced by exponential backoff with full
jitter. The backoff grows with consecutive failures and is reset by :meth:`mark_healthy`, which
the user calls once a connection has proved itself (e.g. delivered a snapshot); a server that
accepts and immediately drops us is therefore retried ever more slowly, not in a tight loop.

A handshake refused with HTTP 401 or 403 (bad key, bad signature, clock skew) raises
:class:`HandshakeRejected` at once: retrying cannot fix credentials.

What the connection carries is not this module's business: see :mod:`adapters.kalshi.market_data`.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException

from adapters.kalshi.auth import RequestSigner
from domain.backoff import ExponentialBackoff

log = logging.getLogger(__name__)

DEFAULT_RECONNECT = ExponentialBackoff(initial_s=0.5, max_s=30.0)
# Snapshots of deep books in many markets are large; Kalshi's frames stay well below this.
MAX_FRAME_BYTES = 16 * 1024 * 1024
_BODY_EXCERPT = 300


class HandshakeRejected(ConnectionError):
    """The server refused the WebSocket handshake's credentials (HTTP 401/403)."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(
            f"Kalshi refused the WebSocket handshake with HTTP {status}: {body or '(no body)'}; "
            "check KALSHI_API_KEY_ID, the private key file, and the system clock"
        )


class FeedUnavailable(ConnectionError):
    """The server could not be reached after the allowed number of consecutive attempts."""


class KalshiWebSocketClient:
    """Connections to ``url`` (``wss://.../trade-api/ws/v2``), signed by ``signer``.

    ``signer`` may be None for a server without authentication. ``max_attempts`` bounds the
    consecutive failed connection attempts (None: retry forever). ``random`` and ``sleep`` are
    injectable so tests can pin the jitter and record the waits.
    """

    def __init__(
        self,
        url: str,
        signer: RequestSigner | None,
        *,
        backoff: ExponentialBackoff = DEFAULT_RECONNECT,
        max_attempts: int | None = None,
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        # We close only once we have stopped reading; under a flood the server's close frame then
        # waits behind unread frames our buffer will not take (python-websockets#1555), so a long
        # wait gains nothing and would hold every shutdown and reconnect.
        close_timeout_s: float = 1.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"the WebSocket URL must start with ws:// or wss://, got {url!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None, got {max_attempts}")
        self.url = url
        self._signer = signer
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._open_timeout = open_timeout_s
        self._ping_interval = ping_interval_s
        self._ping_timeout = ping_timeout_s
        self._close_timeout = close_timeout_s
        self._random = random
        self._stopping = asyncio.Event()
        self._current: ClientConnection | None = None
        self._next_id = 0
        self._failures = 0  # consecutive: failed attempts and connections lost before healthy
        # Counters, for status pages and tests.
        self.attempts = 0
        self.connects = 0
        self.failed_attempts = 0
        self.waits: list[float] = []  # the backoff waits, most recent last (bounded)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    # -- connecting ------------------------------------------------------------------------------
    async def connect(self) -> ClientConnection:
        """One attempt: a handshake signed now."""
        headers = self._signer.websocket_headers() if self._signer is not None else None
        self.attempts += 1
        try:
            return await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=self._close_timeout,
                max_size=MAX_FRAME_BYTES,
                compression=None,  # the hot path would pay to inflate every frame
            )
        except InvalidStatus as error:
            status = error.response.status_code
            if status in (401, 403):
                body = error.response.body.decode("utf-8", errors="replace")[:_BODY_EXCERPT]
                raise HandshakeRejected(status, body) from None
            raise

    async def connections(self) -> AsyncIterator[ClientConnection]:
        """Open connections, one after another, until :meth:`stop` (or too many failures).

        The caller uses each until it closes, then asks for the next; the previous one is
        closed before the next attempt.
        """
        first = True
        while not self._stopping.is_set():
            if not first and not await self._wait_before_retry():
                return
            first = False
            try:
                connection = await self.connect()
            except (HandshakeRejected, InvalidURI):
                raise
            except (OSError, TimeoutError, WebSocketException) as error:
                self.failed_attempts += 1
                self._failures += 1
                log.warning("connecting to %s failed (%s: %s)", self.url, type(error).__name__, error)
                if self._max_attempts is not None and self._failures >= self._max_attempts:
                    raise FeedUnavailable(
                        f"{self.url} unreachable after {self._failures} consecutive attempts: {error}"
                    ) from error
                continue
            if self._stopping.is_set():  # stopped while the handshake was under way
                await connection.close()
                return
            self.connects += 1
            self._current = connection
            if self.connects > 1:
                log.info("reconnected to %s (reconnect %d)", self.url, self.reconnects)
            try:
                yield connection
            finally:
                self._current = None
                await connection.close()
            # Counts as a failure until mark_healthy() said otherwise, so a flapping server
            # is retried ever more slowly.
            self._failures += 1

    def mark_healthy(self) -> None:
        """The current connection works: the next reconnect starts from the shortest wait."""
        self._failures = 0

    async def _wait_before_retry(self) -> bool:
        """Sleeps the backoff; False if stopped meanwhile."""
        wait = self._backoff.delay(max(0, self._failures - 1), self._random())
        self.waits.append(wait)
        del self.waits[:-100]
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=wait)
        except TimeoutError:
            return True
        return False

    async def stop(self) -> None:
        """No more connections; closes the current one (its reader sees the end)."""
        self._stopping.set()
        if self._current is not None:
            await self._current.close()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- commands --------------------------------------------------------------------------------
    def command(self, cmd: str, params: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A command frame with the next id: ``(id, frame)``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "cmd": cmd}
        if params is not None:
            message["params"] = params
        return self._next_id, orjson.dumps(message)
