"""End to end: the real ``kalshiflow-rl exchange`` and the real ``kalshiflow-rl collect --source
kalshi``, two processes on loopback, the collector recording into a PostgreSQL database made for
the test. For a clean run and for each fault the exchange can inject: the collector is stopped
with a signal once the exchange has ended, and then

* every event the collector accepted is a row in the store (its printed counters say how many),
  and the session is ended (the signal drained the queue);
* the books replayed from the stored session equal the exchange's final books (its ``book``
  lines), to the hundredth of a contract.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import attrs
import orjson
import pytest

from adapters.kalshi.parsing import parse_message
from adapters.storage import PostgresOrderbookStore
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketScheduled
from domain.orderbook import OrderBook

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

KEY_ID = "e2e-ingestion-key"
LISTENING = re.compile(r"^listening (ws://127\.0\.0\.1:(\d+)/trade-api/ws/v2)\n")
MARKETS = re.compile(r"^markets (.+)\n")
# The collector's feed found the exchange gone: every frame of its last connection is processed.
RECONNECT_FAILED = re.compile(r"connecting to ws://127\.0\.0\.1:\d+/trade-api/ws/v2 failed")
# About 4.5 s of order flow (three markets) at this speed: the collector, which needs about two
# seconds to start, records the second half of it.
EXCHANGE_OPTIONS = ("--markets", "3", "--seed", "3", "--speed", "40", "--max-events", "5000")


@pytest.fixture
async def database_url(postgres_dsn: str) -> AsyncIterator[str]:
    """A database of its own for the test (the collector migrates it), dropped afterwards."""
    name = f"kfrl_e2e_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_dsn, timeout=5)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield urlunsplit(urlsplit(postgres_dsn)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@attrs.frozen
class Recorded:
    session_id: int
    events: int  # market data and the markets' schedules
    schedules: int
    feed: dict[str, int]
    store: dict[str, int]


def parse_collector_output(stdout: str) -> Recorded:
    session = re.search(r"^Recorded session (\d+): 3 markets, (\d+) events \((\d+) schedules", stdout, re.M)
    feed = re.search(r"^Feed: (.*)$", stdout, re.M)
    store = re.search(r"^Store: (.*)$", stdout, re.M)
    assert session and feed and store, stdout
    counts = re.findall(r"(\d+) ([a-z]+(?: written)?)", store.group(1))
    return Recorded(
        session_id=int(session.group(1)),
        events=int(session.group(2)),
        schedules=int(session.group(3)),
        feed={name: int(count) for count, name in re.findall(r"(\d+) ([a-z]+)", feed.group(1))},
        store={name.replace(" ", "_"): int(count) for count, name in counts},
    )


def exchange_books(stdout: str) -> dict[str, OrderBook]:
    books = {}
    for line in stdout.splitlines():
        if line.startswith("book "):
            _, ticker, body = line.split(" ", 2)
            snapshot = parse_message({"type": "orderbook_snapshot", "msg": orjson.loads(body)}, received_ms=0)
            books[ticker] = OrderBook(ticker)
            books[ticker].apply(snapshot)
    return books


def replayed_books(events: list[MarketEvent]) -> dict[str, OrderBook]:
    books: dict[str, OrderBook] = {}
    for event in events:
        if isinstance(event, (BookSnapshot, BookDelta)):
            books.setdefault(event.ticker, OrderBook(event.ticker)).apply(event)
    return books


# Each fault hits connection #1 at its 150th book message; the collector's counters must show it.
SCENARIOS = {
    "clean": ((), {"gaps": 0, "duplicates": 0, "malformed": 0, "reconnects": 0, "snapshots": 3}),
    "drop-connection": (("drop-connection@150",), {"reconnects": 1, "gaps": 0, "snapshots": 6}),
    "skip-seq": (("skip-seq@150",), {"gaps": 1, "reconnects": 0}),
    "duplicate": (("duplicate@150",), {"duplicates": 1, "gaps": 0, "reconnects": 0}),
    "malformed": (("malformed@150",), {"malformed": 1, "gaps": 0, "reconnects": 0}),
    # A short silence is not a dead connection: nothing is resynchronised, nothing reconnected.
    "stall": (("stall@150:1.5",), {"gaps": 0, "resyncs": 0, "reconnects": 0, "snapshots": 3}),
}
STOP_SIGNAL = {"clean": signal.SIGTERM, "stall": signal.SIGTERM}  # the others: SIGINT


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_collector_stores_every_event_it_accepted_and_the_exchange_books(
    scenario, kalshi_key_files, database_url, kalshiflow_process, subprocess_environment, tmp_path
):
    faults, expected = SCENARIOS[scenario]
    private_key, public_key = kalshi_key_files
    fault_options = [option for fault in faults for option in ("--fault", fault)]
    exchange = await kalshiflow_process(
        "exchange", "--port", "0", "--api-key-id", KEY_ID, "--public-key", str(public_key),
        *EXCHANGE_OPTIONS, *fault_options,
        env=subprocess_environment(RL_DATA_DIR=str(tmp_path / "exchange")),
    )  # fmt: skip
    url = (await exchange.line_matching(LISTENING)).group(1)
    tickers = (await exchange.line_matching(MARKETS)).group(1).split()
    collector = await kalshiflow_process(
        "collect", "--source", "kalshi",
        env=subprocess_environment(
            RL_DATA_DIR=str(tmp_path / "collector"),
            DATABASE_URL=database_url,
            KALSHI_ENV="local",
            KALSHI_WS_URL=url,
            KALSHI_REST_URL=url.replace("ws://", "http://").replace("/ws/v2", "/v2"),  # its REST API: the markets' schedules
            KALSHI_API_KEY_ID=KEY_ID,
            KALSHI_PRIVATE_KEY_PATH=str(private_key),
            RL_MARKET_TICKERS=",".join(tickers),
            RL_ORDERBOOK_BATCH_SIZE="200",
            RL_ORDERBOOK_FLUSH_INTERVAL="0.2",
        ),
    )  # fmt: skip

    assert await exchange.finished() == 0, exchange.output
    final = exchange_books("".join(exchange.stdout))
    assert list(final) == tickers, exchange.output
    await collector.line_matching(RECONNECT_FAILED, stream="stderr")
    stop = STOP_SIGNAL.get(scenario, signal.SIGINT)
    collector.process.send_signal(stop)
    assert await collector.finished() == 0, collector.output

    stderr = "".join(collector.stderr)
    assert f"{stop.name}: stopping" in stderr and "Traceback" not in stderr, collector.output
    recorded = parse_collector_output("".join(collector.stdout))
    for counter, value in expected.items():
        assert recorded.feed[counter] == value, (counter, collector.output)
    if scenario == "skip-seq":
        assert recorded.feed["resyncs"] >= 1 and recorded.feed["snapshots"] >= 6, collector.output
    store_counts = recorded.store
    # Each market's scheduled close comes from the exchange's REST API, written before the feed starts.
    assert recorded.schedules == len(tickers), collector.output
    assert store_counts["accepted"] == store_counts["rows_written"] == recorded.events - recorded.schedules, collector.output
    assert store_counts["pending"] == 0 and store_counts["rejected"] == 0
    assert recorded.feed["deltas"] > 500, "the collector connected late: too little of the run was recorded"

    store = PostgresOrderbookStore(database_url)
    await store.open()
    try:
        session = await store.get_session(recorded.session_id)
        events = await store.read_events(recorded.session_id)
    finally:
        await store.close()
    assert session.is_closed and session.source == "kalshi" and session.tickers == tuple(tickers)
    data = [event for event in events if not isinstance(event, MarketScheduled)]
    assert len(data) == session.snapshots + session.deltas + session.trades == store_counts["accepted"]
    assert {event.ticker for event in events if isinstance(event, MarketScheduled)} == set(tickers)
    assert (session.snapshots, session.deltas, session.trades) == (
        recorded.feed["snapshots"],
        recorded.feed["deltas"],
        recorded.feed["trades"],
    )
    assert replayed_books(events) == final
