"""Live ingestion, wired: Kalshi's WebSocket feed -> the shared books -> a recorded session.

What ``collect --source kalshi`` and ``serve`` both run. :class:`LiveIngestion` holds what the
container built -- the feed (which keeps the :class:`SharedBookState` current), the store and
the recording use case with its settings -- and adds the steps of a process around them:

* :meth:`LiveIngestion.recover_spills`, at start-up: writes what earlier processes left in the
  spill directory (``$RL_DATA_DIR/spill``) and ends their sessions; a spill that another live
  process holds is skipped;
* :meth:`LiveIngestion.run` records one session until :meth:`LiveIngestion.stop` (SIGINT or
  SIGTERM, see :func:`stop_on_signals`): the feed ends after the frame in hand, the write queue
  drains into the store, the session is ended. Each market's scheduled close is read first from
  the exchange's :class:`~domain.ports.MarketCatalog` (``GET /markets/{ticker}``) and recorded
  with it, so replay counts time down to it (a read-only client, so production market data can
  be recorded with them); without a catalog (it cannot be built, e.g. no API key) the session is
  recorded without them,
  said in the log and in replay's data-quality report;
* :meth:`LiveIngestion.counters` reads the feed's and the queue's counters (no I/O), for the
  status page and the summary a command prints at the end;
* :meth:`LiveIngestion.add_trade_listener`: the feed's public trades, handed to a listener (the
  actor's observations) as the recording receives them -- a call per trade on the feed's path,
  so a listener must only take note (an append), never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from adapters.kalshi.auth import KeyLoadError
from adapters.kalshi.market_data import FeedStats, KalshiMarketDataFeed
from adapters.spill import FileSpillBuffer, SpillCorrupted, SpillLocked, spilled_sessions
from application.book_state import SharedBookState
from application.recording import RecordingSummary, recover_spilled_session
from application.write_queue import DrainIncomplete, OrderbookWriteQueue, WriteQueueFailed, WriteQueueStats
from domain.events import MarketEvent, PublicTrade
from domain.ports import MarketCatalog, MarketDataFeed, OrderbookStore, SessionNotFound

if TYPE_CHECKING:  # the container builds this module's objects: no import at run time
    from entrypoints.config import Settings
    from entrypoints.container import Container

log = logging.getLogger(__name__)

SOURCE = "kalshi"
RECOVERY_DRAIN_TIMEOUT_S = 30.0


class IngestionUnavailable(ValueError):
    """Live ingestion cannot start with this configuration; the message names the variable."""


class IngestionState(enum.Enum):
    IDLE = "idle"  # built, not recording yet
    RECORDING = "recording"
    DRAINING = "draining"  # stopping: the queue is writing what it accepted
    STOPPED = "stopped"  # the session is ended
    FAILED = "failed"


@attrs.frozen
class SpillRecovery:
    """What start-up did with one session found in the spill directory."""

    session_id: int
    events: int = 0  # written now
    problem: str | None = None  # why it was left where it is

    def describe(self) -> str:
        if self.problem is None:
            return f"Recovered session {self.session_id}: {self.events} spilled events written, session ended"
        return f"Left session {self.session_id} in the spill: {self.problem}"


@attrs.frozen
class IngestionCounters:
    state: IngestionState
    session_id: int | None
    feed: FeedStats
    queue: WriteQueueStats | None
    listener_errors: int  # book listeners (e.g. the service's stream) that raised

    @property
    def errors(self) -> dict[str, int]:
        """Every count of something that went wrong, by kind."""
        queue = self.queue
        return {
            "malformed": self.feed.malformed,
            "unknown": self.feed.unknown,
            "error_replies": self.feed.error_replies,
            "store_errors": queue.errors if queue else 0,
            "rejected": queue.rejected if queue else 0,
            "missing": queue.missing if queue else 0,
            "spill_errors": queue.spill_errors if queue else 0,
            "listener_errors": self.listener_errors,
        }

    def summary_lines(self) -> list[str]:
        """Two lines for a person (and a test) to read at the end of a run."""
        feed, queue = self.feed, self.queue
        latency = (
            f"book latency p50 {feed.latency_p50_us:.1f} us, p99 {feed.latency_p99_us:.1f} us"
            if feed.latency_p50_us is not None and feed.latency_p99_us is not None
            else "book latency n/a"
        )
        lines = [
            f"Feed: {feed.messages} messages, {feed.snapshots} snapshots, {feed.deltas} deltas, {feed.trades} trades; "
            f"{feed.gaps} gaps, {feed.duplicates} duplicates, {feed.malformed} malformed, {feed.resyncs} resyncs, "
            f"{feed.resubscribes} resubscribes, {feed.reconnects} reconnects; {latency}"
        ]
        if queue is not None:
            lines.append(
                f"Store: {queue.accepted} accepted, {queue.written} rows written, {queue.folded} folded, "
                f"{queue.rejected} rejected, {queue.spilled} spilled, {queue.pending} pending, {queue.errors} errors"
            )
        return lines


TradeListener = Callable[[PublicTrade], None]


class _TradeTap:
    """The feed as the recording reads it, each public trade also handed to the trade listeners
    on its way through (only when there are listeners: the recording's hot path stays as it is)."""

    def __init__(self, feed: MarketDataFeed, listeners: Sequence[TradeListener]) -> None:
        self._feed = feed
        self._listeners = tuple(listeners)

    async def events(self) -> AsyncIterator[MarketEvent]:
        async for event in self._feed.events():
            if event.__class__ is PublicTrade:
                for listener in self._listeners:
                    try:
                        listener(event)  # type: ignore[arg-type]
                    except Exception:  # a listener's bug must not stop the recording
                        log.exception("trade listener %r failed", listener)
            yield event


class LiveIngestion:
    """One live recording. Built by the container (``container.live_ingestion()``)."""

    def __init__(
        self,
        *,
        feed: KalshiMarketDataFeed,
        books: SharedBookState,
        store: OrderbookStore,
        record: Callable[..., Awaitable[RecordingSummary]],
        spill_root: str | Path,
        tickers: Sequence[str],
        catalog: Callable[[], MarketCatalog] | None = None,
    ) -> None:
        if not tickers:
            raise IngestionUnavailable(
                "no markets to record: set RL_MARKET_TICKERS (e.g. RL_MARKET_TICKERS=KXBTC-25DEC31,INXD-25JAN03)"
            )
        self.feed = feed
        self.books = books
        self.store = store
        self.tickers = tuple(tickers)
        self.spill_root = Path(spill_root)
        self._record = record
        self._catalog = catalog  # built when the recording starts: it may need the network
        self.state = IngestionState.IDLE
        self.queue: OrderbookWriteQueue | None = None  # once the session has started
        self.failure: str | None = None
        self._trade_listeners: list[TradeListener] = []

    def add_trade_listener(self, listener: TradeListener) -> None:
        """Hand every public trade the feed delivers to ``listener`` (before :meth:`run`)."""
        if self.state is not IngestionState.IDLE:
            raise RuntimeError("trade listeners are added before the recording starts")
        self._trade_listeners.append(listener)

    # -- start-up ------------------------------------------------------------------------------
    async def recover_spills(self) -> list[SpillRecovery]:
        """Writes every spilled session this process can own into the (open) store."""
        recoveries = []
        for session_id in spilled_sessions(self.spill_root):
            try:
                spill = FileSpillBuffer.for_session(self.spill_root, session_id)
            except SpillLocked:
                recoveries.append(SpillRecovery(session_id, problem="another process is writing it"))
                continue
            except SpillCorrupted as error:
                recoveries.append(SpillRecovery(session_id, problem=str(error)))
                continue
            try:
                summary = await recover_spilled_session(
                    self.store, session_id, spill, drain_timeout_s=RECOVERY_DRAIN_TIMEOUT_S
                )
            except SessionNotFound:
                problem = f"the store has no session {session_id}; is DATABASE_URL the database it was recorded into?"
                recoveries.append(SpillRecovery(session_id, problem=problem))
            except (DrainIncomplete, WriteQueueFailed, SpillCorrupted) as error:
                recoveries.append(SpillRecovery(session_id, problem=str(error)))
            else:
                recoveries.append(SpillRecovery(session_id, events=summary.events))
            finally:
                await spill.close()
        return recoveries

    # -- recording -----------------------------------------------------------------------------
    async def run(self, progress: Callable[[RecordingSummary], None] | None = None) -> RecordingSummary:
        """Records one session until :meth:`stop`; returns its totals. Raises what stopped it
        otherwise (bad credentials, a drain that left events in the spill) after the drain."""
        if self.state is not IngestionState.IDLE:
            raise RuntimeError(f"a LiveIngestion records one session; this one is {self.state.value}")
        self.state = IngestionState.RECORDING
        try:
            feed = _TradeTap(self.feed, self._trade_listeners) if self._trade_listeners else self.feed
            catalog = self._market_catalog()
            extra = {} if catalog is None else {"catalog": catalog}
            summary = await self._record(
                feed, tickers=self.tickers, source=SOURCE, progress=progress, on_queue=self._adopt, **extra
            )
        except asyncio.CancelledError:
            self.state, self.failure = IngestionState.FAILED, "cancelled before the queue was drained"
            raise
        except BaseException as error:
            self.state, self.failure = IngestionState.FAILED, f"{type(error).__name__}: {error}"
            raise
        self.state = IngestionState.STOPPED
        return summary

    async def stop(self) -> None:
        """Ends the recording: no more frames are read, what was accepted is written."""
        if self.state is IngestionState.RECORDING:
            self.state = IngestionState.DRAINING
        await self.feed.stop()

    def _market_catalog(self) -> MarketCatalog | None:
        if self._catalog is None:
            return None
        try:
            return self._catalog()
        except Exception as error:
            log.warning(
                "no market catalog (%s: %s): recording without the markets' scheduled close; replay's "
                "time-left features will be neutral",
                type(error).__name__,
                error,
            )
            return None

    def _adopt(self, queue: OrderbookWriteQueue) -> None:
        self.queue = queue

    # -- reading -------------------------------------------------------------------------------
    @property
    def session_id(self) -> int | None:
        return self.queue.session_id if self.queue is not None else None

    def counters(self) -> IngestionCounters:
        return IngestionCounters(
            state=self.state,
            session_id=self.session_id,
            feed=self.feed.stats(),
            queue=self.queue.stats() if self.queue is not None else None,
            listener_errors=self.books.listener_errors,
        )


def check_credentials(api_key_id: str | None, private_key_path: Path | None) -> None:
    """Kalshi (and the local exchange) sign every handshake: both settings are needed."""
    if not api_key_id or private_key_path is None:
        raise IngestionUnavailable(
            "live ingestion needs a Kalshi API key: set KALSHI_API_KEY_ID (the key id) and "
            "KALSHI_PRIVATE_KEY_PATH (its PEM private key file)"
        )


@contextlib.contextmanager
def stop_on_signals(ingestion: LiveIngestion, recording: asyncio.Task[object]) -> Iterator[None]:
    """SIGINT/SIGTERM stop the recording gracefully (drain, end the session); a second one
    cancels it (the queue still moves what it holds to the spill)."""
    loop = asyncio.get_running_loop()
    received: list[int] = []
    pending: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            print(f"{name}: stopping; writing what was received (again to abandon the wait)", file=sys.stderr)
            task = loop.create_task(ingestion.stop())
            pending.add(task)
            task.add_done_callback(pending.discard)
        else:
            print(f"{name} again: abandoning the wait; what is not written stays in the spill", file=sys.stderr)
            recording.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def configure_logging() -> None:
    """Warnings of the feed and the queue (gaps, reconnects, store outages) to stderr, with
    times; leaves alone a logging set up by someone else (tests, an embedding process)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )


def build_live_ingestion(container: Container, settings: Settings, tickers: Sequence[str] = ()) -> LiveIngestion:
    """The container's live ingestion for ``tickers`` (default RL_MARKET_TICKERS), after
    checking what it needs; raises :class:`IngestionUnavailable` naming what is missing."""
    tickers = tuple(tickers) or settings.market_tickers
    if not tickers:
        raise IngestionUnavailable(
            "no markets to record: set RL_MARKET_TICKERS (comma-separated, e.g. "
            "RL_MARKET_TICKERS=KXBTC-25DEC31,INXD-25JAN03) or pass --market-tickers"
        )
    check_credentials(settings.kalshi_api_key_id, settings.kalshi_private_key_path)
    container.config.market_data.tickers.from_value(list(tickers))
    try:
        return container.live_ingestion()
    except KeyLoadError as error:
        raise IngestionUnavailable(f"KALSHI_PRIVATE_KEY_PATH: {error}") from None
