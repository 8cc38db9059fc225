"""Live ingestion wired by the container: ``collect --source kalshi`` against a real local exchange
in this process (SQLite store), the refusals that name what to set, and spill recovery."""

from __future__ import annotations

import asyncio

import attrs
import pytest
from dependency_injector import providers

from adapters.kalshi.auth import RequestSigner
from adapters.kalshi.market_data import FeedStats, KalshiMarketDataFeed
from adapters.spill import FileSpillBuffer
from adapters.storage import SqliteOrderbookStore
from application.book_state import SharedBookState
from domain.events import BookDelta, BookSnapshot, MarketEvent, PublicTrade
from domain.orderbook import OrderBook
from domain.values import Side
from entrypoints import cli
from entrypoints.config import Settings
from entrypoints.container import build_container, container_config
from entrypoints.ingestion import IngestionState, IngestionUnavailable, LiveIngestion, build_live_ingestion


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def replayed(events: list[MarketEvent]) -> dict[str, OrderBook]:
    books: dict[str, OrderBook] = {}
    for event in events:
        if isinstance(event, (BookSnapshot, BookDelta)):
            books.setdefault(event.ticker, OrderBook(event.ticker)).apply(event)
    return books


def book_events(ticker: str, deltas: int) -> list[MarketEvent]:
    events: list[MarketEvent] = [BookSnapshot(ticker, 1, 0, yes=((4500, 1000),), no=((5000, 200),))]
    events += [BookDelta(ticker, 2 + i, i, Side.YES, 4400 + (i % 5) * 100, 100) for i in range(deltas)]
    return events


# ---------------------------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------------------------
def test_the_container_wires_one_feed_one_book_state_and_the_store_into_live_ingestion(tmp_path, live_key_files):
    settings = Settings(
        data_dir=tmp_path,
        market_tickers=("KXA-1", "KXB-2"),
        kalshi_api_key_id="key-1",
        kalshi_private_key_path=live_key_files[0],
    )
    container = build_container(settings)
    ingestion = container.live_ingestion()

    assert ingestion is container.live_ingestion()
    assert isinstance(ingestion.feed, KalshiMarketDataFeed) and ingestion.feed is container.kalshi_feed()
    assert isinstance(ingestion.books, SharedBookState) and ingestion.books is container.live_books()
    assert ingestion.books.tickers == ingestion.tickers == ("KXA-1", "KXB-2")
    assert ingestion.store is container.store()
    assert ingestion.spill_root == tmp_path / "spill"
    signer = container.market_data.kalshi_signer()
    assert isinstance(signer, RequestSigner) and signer.key_id == "key-1"
    assert container.market_data.kalshi_client().url == settings.kalshi_ws_url


def test_without_a_key_id_there_is_no_signer(tmp_path):
    container = build_container(Settings(data_dir=tmp_path))
    assert container.market_data.kalshi_signer() is None


def test_the_recording_settings_reach_the_configuration(tmp_path):
    tree = container_config(Settings(data_dir=tmp_path, orderbook_sample_rate=5))
    assert tree["recording"]["sample_every"] == 5
    assert tree["recording"]["drain_timeout_s"] == 30.0
    assert tree["paths"]["spill_dir"] == str(tmp_path / "spill")


class ScriptedFeed:
    """A finite live feed: applies its events to the books and yields them, like the real one."""

    def __init__(self, events: list[MarketEvent], books: SharedBookState) -> None:
        self._events = events
        self._books = books
        self.stopped = False

    async def events(self):
        for event in self._events:
            if isinstance(event, (BookSnapshot, BookDelta)):
                self._books.apply(event)
            yield event

    async def stop(self) -> None:
        self.stopped = True

    def stats(self) -> FeedStats:
        zeros = {field.name: 0 for field in attrs.fields(FeedStats)}
        return FeedStats(**(zeros | {"messages": len(self._events), "latency_p50_us": None, "latency_p99_us": None}))


async def test_live_recording_samples_the_deltas_as_rl_orderbook_sample_rate_says(tmp_path, fake_store):
    container = build_container(Settings(data_dir=tmp_path, market_tickers=("KXA-1",), orderbook_sample_rate=10))
    events = book_events("KXA-1", 50)
    container.store.override(providers.Object(fake_store))
    container.kalshi_feed.override(providers.Object(ScriptedFeed(events, container.live_books())))
    ingestion = container.live_ingestion()

    await fake_store.open()
    summary = await ingestion.run()

    stored = fake_store.sessions[summary.session_id]["events"]
    assert [type(event) for event in stored] == [BookSnapshot] * 6  # the first, then one per 10 deltas
    assert replayed(stored) == replayed(events)
    assert ingestion.state is IngestionState.STOPPED
    counters = ingestion.counters()
    assert (counters.queue.accepted, counters.queue.folded, counters.queue.written) == (51, 50, 6)


async def test_public_trades_reach_the_trade_listeners_and_are_recorded_as_well(tmp_path, fake_store):
    container = build_container(Settings(data_dir=tmp_path, market_tickers=("KXA-1",)))
    trade = PublicTrade("KXA-1", 5, "t-1", 4500, 300, Side.NO)
    events = [*book_events("KXA-1", 3), trade]
    container.store.override(providers.Object(fake_store))
    container.kalshi_feed.override(providers.Object(ScriptedFeed(events, container.live_books())))
    ingestion = container.live_ingestion()
    heard: list[PublicTrade] = []
    ingestion.add_trade_listener(lambda _trade: 1 / 0)  # a broken listener stops nothing
    ingestion.add_trade_listener(heard.append)

    await fake_store.open()
    summary = await ingestion.run()

    assert heard == [trade]
    assert fake_store.sessions[summary.session_id]["events"] == events
    with pytest.raises(RuntimeError, match="before the recording starts"):
        ingestion.add_trade_listener(heard.append)


# ---------------------------------------------------------------------------------------------
# What collect --source kalshi refuses, naming what to set
# ---------------------------------------------------------------------------------------------
def test_collect_kalshi_without_markets_names_rl_market_tickers(tmp_path, live_key_files, capsys):
    settings = Settings(data_dir=tmp_path, kalshi_api_key_id="k", kalshi_private_key_path=live_key_files[0])
    code = cli.run(parse("collect", "--source", "kalshi"), settings, build_container(settings))
    assert code == 2
    error = capsys.readouterr().err
    assert "RL_MARKET_TICKERS" in error and "--market-tickers" in error and "Traceback" not in error


def test_collect_kalshi_without_credentials_names_both_variables(tmp_path, capsys):
    settings = Settings(data_dir=tmp_path, market_tickers=("KXA-1",))
    code = cli.run(parse("collect", "--source", "kalshi"), settings, build_container(settings))
    assert code == 2
    error = capsys.readouterr().err
    assert "KALSHI_API_KEY_ID" in error and "KALSHI_PRIVATE_KEY_PATH" in error


def test_a_private_key_file_that_is_not_a_key_is_named(tmp_path, capsys):
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    settings = Settings(
        data_dir=tmp_path, market_tickers=("KXA-1",), kalshi_api_key_id="k", kalshi_private_key_path=not_a_key
    )
    code = cli.run(parse("collect", "--source", "kalshi"), settings, build_container(settings))
    assert code == 2
    assert "KALSHI_PRIVATE_KEY_PATH" in capsys.readouterr().err


def test_market_tickers_on_the_command_line_replace_the_variable(tmp_path, live_key_files):
    settings = Settings(
        data_dir=tmp_path, market_tickers=("KXA-1",), kalshi_api_key_id="k", kalshi_private_key_path=live_key_files[0]
    )
    container = build_container(settings)
    args = parse("collect", "--source", "kalshi", "--market-tickers", "KXB-2,KXC-3")
    ingestion = build_live_ingestion(container, settings, args.market_tickers)
    assert ingestion.tickers == ingestion.books.tickers == ingestion.feed.tickers == ("KXB-2", "KXC-3")


def test_a_bad_ticker_on_the_command_line_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exited:
        parse("collect", "--source", "kalshi", "--market-tickers", "KXA-1,no spaces")
    assert exited.value.code == 2
    assert "'no spaces' is not a market ticker" in capsys.readouterr().err


def test_live_ingestion_needs_a_market():
    with pytest.raises(IngestionUnavailable, match="RL_MARKET_TICKERS"):
        LiveIngestion(
            feed=None, books=SharedBookState(), store=None, record=None, spill_root=".", tickers=()  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------------------------------------
# collect --source kalshi against the local exchange
# ---------------------------------------------------------------------------------------------
async def test_collect_kalshi_recovers_the_spill_then_records_the_exchange_until_stopped(
    local_exchange, live_settings, wait_until, capsys
):
    async with local_exchange(max_events=1500) as exchange:
        settings = live_settings(exchange)
        container = build_container(settings)
        # A session an earlier process left open, with 3 of its events only in the spill.
        earlier = book_events(exchange.tickers[0], 5)
        store = SqliteOrderbookStore(settings.sqlite_path)
        settings.data_dir.mkdir(parents=True)
        await store.open()
        earlier_id = await store.start_session(exchange.tickers, started_ms=1, source="kalshi")
        await store.write_events(earlier_id, earlier[:3])
        await store.close()
        spill = FileSpillBuffer.for_session(settings.data_dir / "spill", earlier_id)
        await spill.append(3, earlier[3:])
        await spill.close()

        command = asyncio.create_task(cli.collect(parse("collect", "--source", "kalshi"), settings, container))
        ingestion = container.live_ingestion()
        await wait_until(lambda: all(ingestion.books.is_in_sync(ticker) for ticker in exchange.tickers))
        exchange.start_flow()
        await exchange.wait_finished()
        await exchange.stop()  # every connection gets what it had queued, then is closed
        await wait_until(lambda: container.market_data.kalshi_client().failed_attempts > 0)
        final = {ticker: exchange.book(ticker) for ticker in exchange.tickers}
        await ingestion.stop()
        assert await command == 0

    out, err = capsys.readouterr()
    assert f"Recovered session {earlier_id}: 3 spilled events written, session ended" in err
    assert out.startswith(f"Recorded session {earlier_id + 1}: 3 markets, ")
    counters = ingestion.counters()
    assert f"Store: {counters.queue.accepted} accepted, {counters.queue.accepted} rows written" in out
    assert counters.feed.gaps == counters.feed.reconnects == 0 and counters.queue.pending == 0

    store = SqliteOrderbookStore(settings.sqlite_path)
    await store.open()
    try:
        recovered = await store.get_session(earlier_id)
        assert recovered.is_closed and await store.read_events(earlier_id) == earlier
        session = await store.get_session(earlier_id + 1)
        events = await store.read_events(session.session_id)
    finally:
        await store.close()
    assert session.is_closed and session.source == "kalshi"
    feed = counters.feed
    assert len(events) == counters.queue.accepted == feed.snapshots + feed.deltas + feed.trades
    assert replayed(events) == final
    assert not (settings.data_dir / "spill" / f"session-{earlier_id}").exists()


async def test_collect_kalshi_with_a_key_the_exchange_does_not_know_fails_with_the_reason(local_exchange, live_settings):
    async with local_exchange() as exchange:
        settings = attrs.evolve(live_settings(exchange), kalshi_api_key_id="someone-else")
        with pytest.raises(cli.CommandFailed) as failed:
            await cli.collect(parse("collect", "--source", "kalshi"), settings, build_container(settings))
    assert failed.value.exit_code == 1
    assert "refused the WebSocket handshake with HTTP 401" in str(failed.value)


async def test_a_spill_another_process_holds_or_this_store_does_not_know_is_left_alone(tmp_path, fake_store):
    container = build_container(Settings(data_dir=tmp_path, market_tickers=("KXA-1",)))
    container.store.override(providers.Object(fake_store))
    ingestion = container.live_ingestion()
    await fake_store.open()
    held = FileSpillBuffer.for_session(tmp_path / "spill", 4)
    await held.append(0, book_events("KXA-1", 1))
    unknown = FileSpillBuffer.for_session(tmp_path / "spill", 9)
    await unknown.append(0, book_events("KXA-1", 1))
    await unknown.close()
    try:
        recoveries = await ingestion.recover_spills()
    finally:
        await held.close()

    assert [(r.session_id, r.events) for r in recoveries] == [(4, 0), (9, 0)]
    assert "another process" in recoveries[0].problem
    assert "no session 9" in recoveries[1].problem and "DATABASE_URL" in recoveries[1].problem
    left = FileSpillBuffer.for_session(tmp_path / "spill", 9)
    assert left.pending == 2  # still there, untouched
    await left.close()
