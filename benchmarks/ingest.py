"""End-to-end ingestion: a local exchange in its own process streams book deltas over a real
WebSocket; this process records them into PostgreSQL. One JSON line on stdout.

The sender is the real CLI (``kalshiflow-rl exchange --speed 0``: as fast as it can, signed
handshake, loopback). The receiver is the production pipeline, nothing stubbed: the Kalshi
client and feed (parse, sequence check, shared books), the write queue, and the PostgreSQL store
(COPY), driven by :func:`application.recording.record_session`, in a throwaway schema of the
``test`` database that is dropped at the end.

Reported:

* ``msgs_per_s`` -- rows committed to PostgreSQL / wall time from the first message received
  (the first snapshot applied) to the commit of the last row;
* ``p50_us`` / ``p99_us`` -- per book message, from the frame handed over by the WebSocket
  library to the book updated (the feed's latency histogram, one bucket ~12 % wide). Time a
  frame waits in the socket or the library's buffer while the loop does other work is not in it;
* ``lost`` -- book messages the exchange numbered on our subscription (its last ``seq``: seq
  counts every snapshot and delta of a sid) minus rows stored. ``books_match`` says the books
  rebuilt from the stored rows equal the exchange's final books (what it prints at the end), so
  nothing went missing after the last seq seen either. Sample rate is 1: every delta is a row.

To name the bottleneck: ``*_cpu_us_per_msg``, the CPU time per stored message of the sender
(the exchange process), the receiver (this process) and the database (our backend) -- the
machine's two cores are shared by all three; ``exchange_send_per_s``, the sender alone to a
client that only counts frames; ``hot_path_per_s``, our per-message work alone (frames handed
straight to the feed and the queue: no socket, no database). And ``replay_*``: the same
receiver and database fed by ``benchmarks/senders/replay.py``, a sender with no per-message work
left (it writes ready-made frames), so they show what the pipeline sustains on its own.

Throughput and CPU are the median of the runs, latency and loss the worst run. Exits 2 with a
message on stderr when PostgreSQL is unreachable, 1 when a message was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import attrs
import websockets
from book import delta_frames, make_deltas  # run as a script (make bench): this directory is on the path

from adapters.kalshi import wire
from adapters.kalshi.auth import RequestSigner, generate_keypair, private_key_from_pem
from adapters.kalshi.market_data import BOOK_CHANNEL, KalshiMarketDataFeed
from adapters.kalshi.parsing import parse_message
from adapters.kalshi.ws_client import KalshiWebSocketClient
from adapters.storage.postgres_store import PostgresOrderbookStore
from application.book_state import SharedBookState
from application.recording import RecordingSummary, record_session
from application.write_queue import OrderbookWriteQueue
from domain.events import BookDelta, BookSnapshot
from domain.orderbook import OrderBook
from domain.sequence import SequenceCheck
from domain.values import Side

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
KEY_ID = "bench-ingest"
EXCHANGE = Path(sys.executable).parent / "kalshiflow-rl"
REPLAY_SENDER = Path(__file__).parent / "senders" / "replay.py"
STARTUP_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 120.0
FLUSH_INTERVAL_MS = 100  # the last partial batch waits at most this long

def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc); None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_STARTED = time.perf_counter()


def progress(text: str) -> None:
    print(f"# ingest {time.perf_counter() - _STARTED:5.1f} s: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The exchange process
# ---------------------------------------------------------------------------------------------
class SenderProcess:
    """A sender in a child process that prints ``listening <url>`` first and ``stopped: ...``
    once it has sent everything and closed its connections: the real exchange CLI, or the
    replay sender. ``books`` are the final books the receiver must have rebuilt."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, tickers: list[str]) -> None:
        self.process = process
        self.url = url
        self.tickers = tickers
        self.stop_line = ""
        self.stopped = asyncio.Event()
        self.books: dict[str, OrderBook] = {}

    @classmethod
    async def start(cls, *command: str, env: dict[str, str] | None = None) -> SenderProcess:
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, env=env)
        assert process.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            first = (await process.stdout.readline()).decode()
        if not first.startswith("listening ws://"):
            process.kill()
            raise RuntimeError(f"{command[0]} did not start: it printed {first!r}")
        return cls(process, first.split()[1], [])

    @classmethod
    async def exchange(cls, key_dir: Path, public_pem: bytes, *options: str) -> SenderProcess:
        """``kalshiflow-rl exchange``, its tickers read from its second line."""
        key_path = key_dir / "exchange.pub.pem"
        key_path.write_bytes(public_pem)
        environ = {name: value for name, value in os.environ.items() if not name.startswith(("RL_", "KALSHI_"))}
        environ["RL_DATA_DIR"] = str(key_dir)
        sender = await cls.start(
            str(EXCHANGE), "exchange", "--port", "0", "--api-key-id", KEY_ID, "--public-key", str(key_path),
            *options, env=environ,
        )  # fmt: skip
        assert sender.process.stdout is not None
        markets = (await sender.process.stdout.readline()).decode().split()
        if markets[:1] != ["markets"]:
            sender.kill()
            raise RuntimeError(f"the exchange's second line is {' '.join(markets)!r}, not its markets")
        sender.tickers = markets[1:]
        return sender

    async def finished(self) -> None:
        """Reads the rest of its output (the exchange's final books among it) until it exits."""
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode().rstrip("\n")
            if line.startswith("stopped:"):
                self.stop_line = line
                self.stopped.set()
            elif line.startswith("book "):
                _, ticker, body = line.split(" ", 2)
                snapshot = parse_message({"type": "orderbook_snapshot", "sid": 0, "seq": 0, "msg": json.loads(body)}, 0)
                assert isinstance(snapshot, BookSnapshot)
                book = self.books[ticker] = OrderBook(ticker)
                book.apply_snapshot(snapshot.yes, snapshot.no)
        if await self.process.wait() != 0:
            raise RuntimeError(f"the sender exited with status {self.process.returncode}")

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


def exchange_options(markets: int, events: int) -> list[str]:
    # A send buffer that never overflows: a slow reader would otherwise lose its subscription
    # (error 25) and what is measured would be resubscribing.
    return ["--speed", "0", "--markets", str(markets), "--max-events", str(events), "--send-buffer", "10000000"]


# ---------------------------------------------------------------------------------------------
# The receiving pipeline
# ---------------------------------------------------------------------------------------------
@attrs.define
class CpuMeter:
    """Wall time from the first message to the last commit, and the CPU seconds spent meanwhile
    by the sender (its process), the receiver (this process) and our PostgreSQL backends.
    Per batch only two clocks are read; /proc at most every ``SAMPLE_S``."""

    SAMPLE_S = 0.1

    sender_pid: int
    backend_pids: list[int]
    first: float = 0.0
    last_commit: float = 0.0
    receiver: tuple[float, float] = (0.0, 0.0)
    sender: tuple[float, float] = (0.0, 0.0)
    database: tuple[float, float] = (0.0, 0.0)
    _sampled: float = 0.0

    def start(self) -> None:
        self.first = self.last_commit = time.perf_counter()
        self.receiver = (time.process_time(),) * 2
        self.sender = (cpu_seconds(self.sender_pid) or 0.0,) * 2
        self.database = (self._database_seconds(),) * 2
        self._sampled = self.first

    def committed(self) -> None:
        self.last_commit = time.perf_counter()
        self.receiver = (self.receiver[0], time.process_time())
        if self.last_commit - self._sampled >= self.SAMPLE_S:
            self.sample_sender()

    def sample_sender(self) -> None:
        """The sender's CPU now; once it has exited, the last reading stands."""
        self._sampled = time.perf_counter()
        self.sender = (self.sender[0], cpu_seconds(self.sender_pid) or self.sender[1])

    def finish(self) -> None:
        self.database = (self.database[0], self._database_seconds())

    def per_message(self, messages: int) -> dict[str, float]:
        """CPU microseconds per message of each process."""
        spent = {"sender": self.sender, "receiver": self.receiver, "database": self.database}
        return {f"{name}_cpu_us_per_msg": round((end - begin) * 1e6 / messages, 2) for name, (begin, end) in spent.items()}

    def _database_seconds(self) -> float:
        return sum(cpu_seconds(pid) or 0.0 for pid in self.backend_pids)


class WallClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


async def check_postgres(dsn: str) -> None:
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
        print(f"benchmarks/ingest.py: PostgreSQL is unreachable at {dsn}: {error}", file=sys.stderr)
        sys.exit(2)
    await connection.close()


async def backend_pids(dsn: str, application_name: str) -> list[int]:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", application_name)
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


async def drop_schema(dsn: str, schema: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


async def end_to_end(
    dsn: str, start_sender: Callable[[Path], Awaitable[SenderProcess]], signer: RequestSigner | None, batch_size: int
) -> dict[str, object]:
    schema = application_name = f"bench_ingest_{os.getpid()}"
    separator = "&" if "?" in dsn else "?"
    # A pool of one connection, named: its backend's CPU is what the database spends on us.
    store = PostgresOrderbookStore(f"{dsn}{separator}application_name={application_name}", schema=schema, max_size=1)
    await store.open()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as work_dir:
            sender = await start_sender(Path(work_dir))
            try:
                meter = CpuMeter(sender.process.pid, await backend_pids(dsn, application_name))
                result = await _record(sender, signer, store, batch_size, meter)
                rebuilt = await stored_books(dsn, schema, result.pop("session_id"))  # type: ignore[arg-type]
                books = sender.books
                result["books_match"] = bool(books) and all(rebuilt.get(ticker) == books[ticker] for ticker in books)
                return result
            finally:
                sender.kill()
    finally:
        await store.close()
        await drop_schema(dsn, schema)


async def _record(
    sender: SenderProcess,
    signer: RequestSigner | None,
    store: PostgresOrderbookStore,
    batch_size: int,
    meter: CpuMeter,
) -> dict[str, object]:
    progress(f"sender at {sender.url}, {len(sender.tickers)} markets; recording")
    client = KalshiWebSocketClient(sender.url, signer, max_attempts=10)
    books = SharedBookState(sender.tickers)
    feed = KalshiMarketDataFeed(client, sender.tickers, books=books, channels=(BOOK_CHANNEL,))
    sequence: list[SequenceCheck] = []
    queues: list[OrderbookWriteQueue] = []

    def first_update(_ticker: str, _book: OrderBook) -> None:
        """The first snapshot is applied: the clock starts. The subscription's sequence check
        is kept to read the last seq received at the end (the feed forgets it on close)."""
        meter.start()
        sequence.extend(sub.check for sub in feed._subs.values() if sub.channel == BOOK_CHANNEL)
        books.unsubscribe(first_update)

    def batch_committed(_summary: RecordingSummary) -> None:
        meter.committed()

    async def stop_when_sender_stops() -> None:
        await sender.stopped.wait()  # printed once every queued message was sent
        meter.sample_sender()
        await feed.stop()

    books.subscribe(first_update)
    reader = asyncio.create_task(sender.finished())
    watcher = asyncio.create_task(stop_when_sender_stops())
    async with asyncio.timeout(RUN_TIMEOUT_S):
        summary = await record_session(
            feed,
            store,
            tickers=sender.tickers,
            source="benchmark",
            batch_size=batch_size,
            clock=WallClock(),
            flush_interval_ms=FLUSH_INTERVAL_MS,
            progress=batch_committed,
            on_queue=queues.append,
        )
    meter.finish()
    await watcher
    await reader
    stats = feed.stats()
    stored = summary.snapshots + summary.deltas
    progress(sender.stop_line)
    progress(f"feed {stats}")
    progress(f"queue {queues[0].stats()}")
    elapsed = meter.last_commit - meter.first
    return {
        "msgs_per_s": round(stored / elapsed),
        "p50_us": stats.latency_p50_us,
        "p99_us": stats.latency_p99_us,
        "lost": (sequence[0].last or 0) - stored,
        "books_match": None,  # filled in by the caller
        "rows": stored,
        "seconds": round(elapsed, 3),
        "dropped": stats.gaps + stats.duplicates + stats.unsynced + stats.stale + stats.malformed,
        "resubscribes": stats.resubscribes + stats.reconnects,
        "queue_high_water": queues[0].stats().memory_high_water,  # events waiting for the store, at most
        **meter.per_message(stored),
        "session_id": summary.session_id,
    }


async def stored_books(dsn: str, schema: str, session_id: int) -> dict[str, OrderBook]:
    """The books the session's stored rows rebuild, in ordinal order. Read with plain SQL: the
    store's read path builds an event object per row, which would double this check's time."""
    connection = await asyncpg.connect(dsn, timeout=5, server_settings={"search_path": schema})
    try:
        snapshots = await connection.fetch(
            "SELECT ordinal, market_ticker, yes_bids, no_bids FROM rl_orderbook_snapshots WHERE session_id = $1",
            session_id,
        )
        deltas = await connection.fetch(
            "SELECT ordinal, market_ticker, side, price, delta FROM rl_orderbook_deltas WHERE session_id = $1",
            session_id,
        )
    finally:
        await connection.close()
    books: dict[str, OrderBook] = {}
    tagged = [(row["ordinal"], True, row) for row in snapshots] + [(row["ordinal"], False, row) for row in deltas]
    tagged.sort(key=lambda entry: entry[0])
    for _, is_snapshot, row in tagged:
        ticker = row["market_ticker"]
        book = books.get(ticker) or books.setdefault(ticker, OrderBook(ticker))
        if is_snapshot:
            book.apply_snapshot(json.loads(row["yes_bids"]), json.loads(row["no_bids"]))
        else:
            book.apply_delta(Side.parse(row["side"]), row["price"], row["delta"])
    return books


# ---------------------------------------------------------------------------------------------
# The parts alone
# ---------------------------------------------------------------------------------------------
async def exchange_send_rate(markets: int, events: int, signer: RequestSigner, public_pem: bytes) -> float:
    """Frames per second the exchange sends to a client that does nothing but count them."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as key_dir:
        exchange = await SenderProcess.exchange(Path(key_dir), public_pem, *exchange_options(markets, events))
        try:
            async with websockets.connect(
                exchange.url, additional_headers=signer.websocket_headers(), max_size=None, compression=None
            ) as connection:
                command = {"channels": [BOOK_CHANNEL], "market_tickers": exchange.tickers}
                await connection.send(json.dumps({"id": 1, "cmd": "subscribe", "params": command}))
                count, first = 0, 0.0
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for _ in connection:
                        count += 1
                        if count == 2:  # after the subscription's acknowledgement
                            first = time.perf_counter()
                last = time.perf_counter()
            await exchange.finished()
        finally:
            exchange.kill()
    return (count - 2) / (last - first)


def frame_text(payload: bytes) -> bytes:
    """One unmasked, final text frame (RFC 6455 section 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def write_replay(path: Path, markets: int, events: int) -> tuple[list[str], dict[str, OrderBook]]:
    """The replay sender's file: the subscription's acknowledgement, an empty snapshot per
    market, then ``events`` deltas dealt round-robin over the markets (each market's own
    realistic mix), all on sid 1 numbered from seq 1. Returns the tickers and the final books."""
    tickers = [f"BENCH-M{number}" for number in range(markets)]
    market_ids = [wire.market_id_for(ticker) for ticker in tickers]
    books = {ticker: OrderBook(ticker) for ticker in tickers}
    messages = [wire.subscribed_message(1, BOOK_CHANNEL, 1)]
    for seq, ticker in enumerate(tickers, start=1):
        messages.append(wire.snapshot_message(BookSnapshot(ticker, None, 0, (), ()), 1, seq))
    streams = [make_deltas(events // markets + 1, seed=number) for number in range(markets)]
    seq = len(tickers)
    for index in range(events):
        ticker = tickers[index % markets]
        side, price, delta = streams[index % markets][index // markets]
        books[ticker].apply_delta(side, price, delta)
        seq += 1
        event = BookDelta(ticker, seq, 1_781_159_489_957 + index, Side(side), price, delta, 1)
        messages.append(wire.delta_message(event, 1, seq, market_id=market_ids[index % markets]))
    path.write_bytes(b"".join(frame_text(wire.encode(message)) for message in messages))
    return tickers, books


async def start_replay(work_dir: Path, markets: int, events: int) -> SenderProcess:
    tickers, books = write_replay(work_dir / "frames.bin", markets, events)
    sender = await SenderProcess.start(sys.executable, str(REPLAY_SENDER), str(work_dir / "frames.bin"))
    sender.tickers, sender.books = tickers, books
    return sender


def hot_path_rate(count: int = 100_000, rounds: int = 3) -> float:
    """Frames per second through the feed's frame handler and the queue's offer, no socket."""
    ticker = "BENCH-1"
    frames = [wire.encode(wire.snapshot_message(BookSnapshot(ticker, 1, 0, (), ()), sid=1, seq=1))]
    frames += delta_frames(make_deltas(count), ticker, first_seq=2)
    best = 0.0
    for _ in range(rounds):
        client = KalshiWebSocketClient("ws://127.0.0.1:9/trade-api/ws/v2", None)
        feed = KalshiMarketDataFeed(client, [ticker], books=SharedBookState([ticker]), channels=(BOOK_CHANNEL,))
        queue = OrderbookWriteQueue(_NeverStore(), 1, max_memory_events=len(frames) + 1)  # type: ignore[arg-type]
        # The subscription as a live connection sets it up.
        feed._connection_opened()
        feed._subscribe([ticker], [BOOK_CHANNEL])
        feed._handle(wire.encode(wire.subscribed_message(1, BOOK_CHANNEL, 1)), time.perf_counter_ns())
        handle, offer, clock = feed._handle, queue.offer, time.perf_counter_ns
        start = time.perf_counter()
        for frame in frames:
            event = handle(frame, clock())
            if event is not None:
                offer(event)
        elapsed = time.perf_counter() - start
        assert feed.stats().deltas == count and feed.stats().gaps == 0
        best = max(best, len(frames) / elapsed)
    return best


class _NeverStore:
    """The queue is never started: offers only buffer."""


# ---------------------------------------------------------------------------------------------
async def main_async(args: argparse.Namespace) -> int:
    await check_postgres(args.dsn)
    private_pem, public_pem = generate_keypair()
    signer = RequestSigner(KEY_ID, private_key_from_pem(private_pem))
    hot = send_rate = None
    if not args.end_to_end_only:
        progress(f"hot path alone ({args.events // 2} frames, no socket)")
        hot = round(hot_path_rate(args.events // 2))
        progress(f"exchange send rate ({args.events} events, {args.markets} markets, a counting client)")
        send_rate = round(await exchange_send_rate(args.markets, args.events, signer, public_pem))

    async def start_exchange(work_dir: Path) -> SenderProcess:
        return await SenderProcess.exchange(work_dir, public_pem, *exchange_options(args.markets, args.events))

    runs = []
    for run in range(args.runs):
        progress(f"end to end, run {run + 1} of {args.runs}")
        runs.append(await end_to_end(args.dsn, start_exchange, signer, args.batch_size))
        progress(f"run {run + 1}: {json.dumps(runs[-1])}")
    # The median run's throughput and CPU, the worst run's latency and loss.
    result: dict[str, object] = {"benchmark": "ingest", "msgs_per_s": round(_median(runs, "msgs_per_s"))}
    result |= {key: max(run[key] for run in runs) for key in ("p50_us", "p99_us", "lost", "dropped", "resubscribes", "queue_high_water")}
    result["books_match"] = all(run["books_match"] for run in runs)
    result |= {key: round(_median(runs, key), 2) for key in runs[0] if key.endswith("_cpu_us_per_msg")}
    result |= {
        "msgs_per_s_runs": [run["msgs_per_s"] for run in runs],
        "rows_per_run": round(_median(runs, "rows")),
        "hot_path_per_s": hot,
        "exchange_send_per_s": send_rate,
    }
    if not args.end_to_end_only:
        progress(f"the pipeline alone: a replay sender with nothing left to do ({args.events} deltas)")
        replay = await end_to_end(
            args.dsn, lambda work_dir: start_replay(work_dir, args.markets, args.events), None, args.batch_size
        )
        progress(f"replay: {json.dumps(replay)}")
        result["lost"] = max(result["lost"], replay["lost"])  # type: ignore[call-overload]
        result["books_match"] = result["books_match"] and replay["books_match"]
        result |= {f"replay_{key}": replay[key] for key in ("msgs_per_s", "p50_us", "p99_us")}
        result |= {f"replay_{key}": value for key, value in replay.items() if key.endswith("_cpu_us_per_msg")}
    result |= {"batch_size": args.batch_size, "markets": args.markets, "exchange_events": args.events}
    print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["books_match"] else 1


def _median(runs: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(run[key]) for run in runs)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help=f"PostgreSQL (default {DEFAULT_DSN})")
    parser.add_argument("--markets", type=int, default=8, help="markets on the exchange (default 8)")
    parser.add_argument("--events", type=int, default=150_000, help="events the exchange publishes (default 150000)")
    parser.add_argument(
        "--batch-size", type=int, default=5000, help="write-queue batch size, RL_ORDERBOOK_BATCH_SIZE (default 5000)"
    )
    parser.add_argument("--runs", type=int, default=2, help="end-to-end runs (default 2)")
    parser.add_argument("--end-to-end-only", action="store_true", help="skip measuring the parts alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="# %(name)s: %(message)s")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
