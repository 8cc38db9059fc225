"""The implementations the contract suites run on: storage backends (one database per test,
either a SQLite file in tmp_path or a PostgreSQL schema of its own) and order gateways."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.kalshi.auth import RequestSigner, generate_keypair, private_key_from_pem, public_key_from_pem
from adapters.kalshi.rest_gateway import KalshiOrderGateway
from adapters.local_exchange import ExchangeConfig as LocalExchangeConfig
from adapters.local_exchange import LocalExchange
from adapters.simulated_exchange import ExchangeConfig, ReplayedMarket, SimulatedExchange, SimulatedOrderGateway
from adapters.storage import (
    PostgresModelRegistry,
    PostgresOrderbookStore,
    PostgresTradingRecords,
    SqliteModelRegistry,
    SqliteOrderbookStore,
    SqliteTradingRecords,
)
from adapters.synthetic.market_model import SyntheticMarketConfig
from application.replay import ReplayConfig, compile_market
from domain.backoff import ExponentialBackoff
from domain.events import BookSnapshot, MarketResolved
from domain.fees import FeeSchedule
from domain.ledger import Ledger
from domain.values import LADDER_SIZE, MONEY_SCALE, ONE_CONTRACT, Side


class StorageBackend:
    """Builds any number of adapters over the test's one database, and closes them at the end."""

    def __init__(self, name: str, *, sqlite_path: Path | None = None, dsn: str = "", schema: str = "") -> None:
        self.name = name
        self._sqlite_path = sqlite_path
        self._dsn = dsn
        self._schema = schema
        self._made: list[Any] = []

    def new_store(self) -> SqliteOrderbookStore | PostgresOrderbookStore:
        """A store not yet opened."""
        if self.name == "sqlite":
            return self._track(SqliteOrderbookStore(self._sqlite_path))
        return self._track(PostgresOrderbookStore(self._dsn, schema=self._schema))

    def new_registry(self) -> SqliteModelRegistry | PostgresModelRegistry:
        if self.name == "sqlite":
            return self._track(SqliteModelRegistry(self._sqlite_path))
        return self._track(PostgresModelRegistry(self._dsn, schema=self._schema))

    def new_trading_records(self) -> SqliteTradingRecords | PostgresTradingRecords:
        if self.name == "sqlite":
            return self._track(SqliteTradingRecords(self._sqlite_path))
        return self._track(PostgresTradingRecords(self._dsn, schema=self._schema))

    async def open_trading_records(self) -> SqliteTradingRecords | PostgresTradingRecords:
        records = self.new_trading_records()
        await records.open()
        return records

    async def open_store(self) -> SqliteOrderbookStore | PostgresOrderbookStore:
        store = self.new_store()
        await store.open()
        return store

    async def open_registry(self) -> SqliteModelRegistry | PostgresModelRegistry:
        registry = self.new_registry()
        await registry.open()
        return registry

    async def close_all(self) -> None:
        for adapter in reversed(self._made):
            await adapter.close()

    def _track(self, adapter: Any) -> Any:
        self._made.append(adapter)
        return adapter


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_database(request: pytest.FixtureRequest, tmp_path: Path) -> StorageBackend:
    if request.param == "sqlite":
        return StorageBackend("sqlite", sqlite_path=tmp_path / "kalshiflow.db")
    # Looked up only for this parameter, so SQLite runs without a PostgreSQL server.
    return StorageBackend(
        "postgres", dsn=request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("postgres_schema")
    )


@pytest.fixture
async def storage(storage_database: StorageBackend) -> AsyncIterator[StorageBackend]:
    yield storage_database
    await storage_database.close_all()


# ---------------------------------------------------------------------------------------------
# Order gateways: every implementation of the OrderGateway port, behind one fixture
# ---------------------------------------------------------------------------------------------
class GatewayVenue:
    """One implementation of the order-gateway port and the market it trades, for the contract
    suite. Its book holds still during a test (no order flow), so expectations can be computed
    from it exactly. Subclass per implementation; add it to ``GATEWAY_VENUES``."""

    name = "?"
    ticker = "?"
    fees = FeeSchedule.kalshi_standard()
    gateway: Any

    async def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(YES bids, NO bids) as they stand, best first, as (price, count) in domain units."""
        raise NotImplementedError

    def now_ms(self) -> int:
        """A time at or before anything the next request does, on the venue's clock."""
        raise NotImplementedError

    async def close(self) -> None:
        await self.gateway.close()


class SimulatedVenue(GatewayVenue):
    """The simulated exchange over a replayed market whose book never changes: YES bids 0.45 x 20
    and 0.44 x 10, NO bids 0.53 x 5 and 0.52 x 10 (YES asks 0.47 x 5, 0.48 x 10), for 60 s."""

    name = "simulated"
    ticker = "GATEWAY-SIM"

    def __init__(self) -> None:
        yes = ((4400, 10 * ONE_CONTRACT), (4500, 20 * ONE_CONTRACT))
        no = ((5200, 10 * ONE_CONTRACT), (5300, 5 * ONE_CONTRACT))
        events = [BookSnapshot(self.ticker, 1, 0, yes=yes, no=no), MarketResolved(self.ticker, 60_000, Side.YES)]
        tape = compile_market(events, ticker=self.ticker, session_id=1, config=ReplayConfig(step_ms=1000, depth_levels=5))
        assert tape is not None
        self.market = ReplayedMarket(tape)
        exchange = SimulatedExchange(Ledger(1_000 * MONEY_SCALE), self.fees, config=ExchangeConfig(latency_ms=0))
        self.gateway = SimulatedOrderGateway(exchange, [self.market])

    async def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        yes, no = self.market.bids[self.gateway.row(self.ticker)]
        return list(yes), list(no)

    def now_ms(self) -> int:
        return self.gateway.now_ms(self.ticker)


GATEWAY_VENUES: dict[str, Callable[[pytest.FixtureRequest], Awaitable[GatewayVenue]]] = {}


async def _simulated(_request: pytest.FixtureRequest) -> GatewayVenue:
    return SimulatedVenue()


GATEWAY_VENUES["simulated"] = _simulated


class LocalExchangeVenue(GatewayVenue):
    """The local exchange on 127.0.0.1 over HTTP and WebSocket, through the Kalshi REST gateway
    (signed requests, the ``fill`` channel), its order flow held so the opening book stands."""

    name = "local_exchange"
    key_id = "contract-gateway-key"

    def __init__(self, exchange: LocalExchange, signer: RequestSigner) -> None:
        self.exchange = exchange
        self.fees = exchange.config.fees
        self.ticker = exchange.tickers[0]
        self.gateway = KalshiOrderGateway.connect(
            exchange.rest_url,
            signer,
            ws_url=exchange.ws_url,
            fees=self.fees,
            ws_options={"backoff": ExponentialBackoff(initial_s=0.05, max_s=0.5)},
        )

    @classmethod
    async def start(cls) -> LocalExchangeVenue:
        private_pem, public_pem = generate_keypair()
        config = LocalExchangeConfig(
            api_keys={cls.key_id: public_key_from_pem(public_pem)},
            market=SyntheticMarketConfig(seed=7, markets=1),
            speed=0,
        )
        exchange = LocalExchange(config)
        await exchange.start(flow=False)
        return cls(exchange, RequestSigner(cls.key_id, private_key_from_pem(private_pem)))

    async def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        book = self.exchange.book(self.ticker)
        return book.depth(0, LADDER_SIZE), book.depth(1, LADDER_SIZE)

    def now_ms(self) -> int:
        return self.exchange.engine.now_ms(self.ticker)  # market time: what its fills are stamped with

    async def close(self) -> None:
        try:
            await self.gateway.close()
        finally:
            await self.exchange.stop(drain_timeout_s=2.0)


async def _local_exchange(_request: pytest.FixtureRequest) -> GatewayVenue:
    return await LocalExchangeVenue.start()


GATEWAY_VENUES["local_exchange"] = _local_exchange


@pytest.fixture(params=list(GATEWAY_VENUES))
async def gateway_venue(request: pytest.FixtureRequest) -> AsyncIterator[GatewayVenue]:
    """Each order-gateway implementation in turn, trading a market whose book holds still."""
    made = await GATEWAY_VENUES[request.param](request)
    try:
        yield made
    finally:
        await made.close()
