"""Fakes of the ports the commands use (in memory, no I/O), and for live ingestion a real local
exchange in the test's process with the settings that point at it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from adapters.kalshi.auth import generate_keypair, public_key_from_pem
from adapters.local_exchange import ExchangeConfig, LocalExchange
from adapters.synthetic.market_model import SyntheticMarketConfig
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, PublicTrade
from domain.ports import MarketInfo, ModelNotFound, ModelRecord, SessionInfo, SessionNotFound
from domain.values import Side
from entrypoints.config import Settings


class FakeOrderbookStore:
    def __init__(self) -> None:
        self.is_open = False
        self.opened = self.closed = 0
        self.sessions: dict[int, dict[str, Any]] = {}

    async def open(self) -> None:
        self.is_open, self.opened = True, self.opened + 1

    async def close(self) -> None:
        self.is_open, self.closed = False, self.closed + 1

    async def start_session(self, tickers: Sequence[str], *, started_ms: int, source: str) -> int:
        assert self.is_open, "the command must open the store first"
        session_id = len(self.sessions) + 1
        self.sessions[session_id] = {
            "tickers": tuple(tickers), "source": source, "started_ms": started_ms, "ended_ms": None, "events": []
        }
        return session_id

    async def end_session(self, session_id: int, *, ended_ms: int) -> None:
        self.sessions[session_id]["ended_ms"] = ended_ms

    async def write_events(self, session_id: int, events: Sequence[MarketEvent]) -> int:
        assert self.is_open
        self.sessions[session_id]["events"].extend(events)
        return len(events)

    async def read_events(self, session_id: int) -> list[MarketEvent]:
        return list(self._session(session_id)["events"])

    async def list_sessions(self) -> list[SessionInfo]:
        return [await self.get_session(session_id) for session_id in self.sessions]

    async def get_session(self, session_id: int) -> SessionInfo:
        assert self.is_open
        session = self._session(session_id)
        kinds = [type(event) for event in session["events"]]
        return SessionInfo(
            session_id=session_id,
            tickers=session["tickers"],
            source=session["source"],
            started_ms=session["started_ms"],
            ended_ms=session["ended_ms"],
            snapshots=kinds.count(BookSnapshot),
            deltas=kinds.count(BookDelta),
            trades=kinds.count(PublicTrade),
            resolutions={e.ticker: e.result for e in session["events"] if isinstance(e, MarketResolved)},
        )

    def _session(self, session_id: int) -> dict[str, Any]:
        if session_id not in self.sessions:
            raise SessionNotFound(session_id)
        return self.sessions[session_id]


class FakeModelRegistry:
    def __init__(self) -> None:
        self.is_open = False
        self.models: dict[int, ModelRecord] = {}
        self._ids = itertools.count(1)

    async def open(self) -> None:
        self.is_open = True

    async def close(self) -> None:
        self.is_open = False

    async def register(
        self,
        name: str,
        *,
        algorithm: str,
        path: str,
        created_ms: int,
        hyperparameters: Mapping[str, Any],
        status: str = "training",
    ) -> ModelRecord:
        version = 1 + sum(1 for m in self.models.values() if m.name == name)
        model = ModelRecord(next(self._ids), name, version, algorithm, status, path, created_ms, dict(hyperparameters))
        self.models[model.model_id] = model
        return model

    async def update(self, model_id: int, *, status: str | None = None, metrics: Mapping[str, Any] | None = None) -> ModelRecord:
        model = await self.get(model_id)
        model = attrs.evolve(model, status=status or model.status, metrics=dict(metrics or model.metrics))
        self.models[model_id] = model
        return model

    async def promote(self, model_id: int) -> ModelRecord:
        assert self.is_open
        chosen = await self.get(model_id)
        for other in list(self.models.values()):
            if other.name == chosen.name and other.status == "active":
                self.models[other.model_id] = attrs.evolve(other, status="retired")
        self.models[model_id] = attrs.evolve(chosen, status="active")
        return self.models[model_id]

    async def get(self, model_id: int) -> ModelRecord:
        assert self.is_open
        if model_id not in self.models:
            raise ModelNotFound(model_id)
        return self.models[model_id]

    async def active(self, name: str) -> ModelRecord | None:
        return next((m for m in self.models.values() if m.name == name and m.status == "active"), None)

    async def list_models(self, name: str | None = None) -> list[ModelRecord]:
        assert self.is_open
        return [m for m in self.models.values() if name is None or m.name == name]


class FakeFeed:
    """A finite synthetic-looking feed: per market one snapshot, deltas, a trade, a resolution."""

    def __init__(self, *, markets: int, events: int, seed: int = 0, tick: str = "linear_cent") -> None:
        self.tickers = tuple(f"FAKE-{seed}-{i}" for i in range(markets))
        self._events = events

    async def events(self) -> AsyncIterator[MarketEvent]:
        ticker = self.tickers[0]
        yield BookSnapshot(ticker, 1, 0, yes=((4000, 500),), no=((5000, 500),))
        for i in range(self._events - 3):
            yield BookDelta(ticker, 2 + i, i, Side.YES, 4000, 100)
        yield PublicTrade(ticker, self._events, "t-1", yes_price=4000, count=100, taker_side=Side.NO)
        yield MarketResolved(ticker, self._events + 1, Side.NO)

    async def market(self, ticker: str) -> MarketInfo:
        """The feed as its own catalog (as the synthetic feed is): the scheduled close collect records."""
        return MarketInfo(ticker, close_ms=self._events + 1)


@pytest.fixture
def fake_store() -> FakeOrderbookStore:
    return FakeOrderbookStore()


@pytest.fixture
def fake_registry() -> FakeModelRegistry:
    return FakeModelRegistry()


@pytest.fixture
def fake_feed_type() -> type[FakeFeed]:
    return FakeFeed


# ---------------------------------------------------------------------------------------------
# Live ingestion: a real local exchange in this process, and the settings that point at it
# ---------------------------------------------------------------------------------------------
LIVE_KEY_ID = "entrypoints-live-key"


@pytest.fixture(scope="session")
def live_key_files(tmp_path_factory) -> tuple[Path, Path]:
    """A fresh RSA keypair as PEM files: (private, public)."""
    private_pem, public_pem = generate_keypair()
    directory = tmp_path_factory.mktemp("live-keys")
    (directory / "private.pem").write_bytes(private_pem)
    (directory / "public.pem").write_bytes(public_pem)
    return directory / "private.pem", directory / "public.pem"


@pytest.fixture
def local_exchange(live_key_files) -> Callable[..., contextlib.AbstractAsyncContextManager[LocalExchange]]:
    """``async with local_exchange(max_events=500) as exchange``: three synthetic markets on
    127.0.0.1, the order flow held until ``exchange.start_flow()`` (so a feed subscribes first)."""
    public_key = public_key_from_pem(live_key_files[1].read_bytes())

    @contextlib.asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[LocalExchange]:
        market = SyntheticMarketConfig(seed=5, markets=3)
        options = {"api_keys": {LIVE_KEY_ID: public_key}, "market": market, "speed": 0}
        exchange = LocalExchange(ExchangeConfig(**(options | overrides)))
        await exchange.start(flow=False)
        try:
            yield exchange
        finally:
            await exchange.stop(drain_timeout_s=2.0)

    return running


@pytest.fixture
def live_settings(live_key_files, tmp_path) -> Callable[..., Settings]:
    """``live_settings(exchange, **overrides)``: settings recording ``exchange`` into SQLite."""

    def settings(exchange: LocalExchange, **overrides: Any) -> Settings:
        options = {
            "data_dir": tmp_path / "data",
            "kalshi_api_key_id": LIVE_KEY_ID,
            "kalshi_private_key_path": live_key_files[0],
            "kalshi_ws_url": exchange.ws_url,
            "market_tickers": exchange.tickers,
            "orderbook_batch_size": 50,
            "orderbook_flush_interval_s": 0.05,
        }
        return Settings(**(options | overrides))

    return settings


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``await wait_until(lambda: ..., timeout_s=10)``."""
    return until
