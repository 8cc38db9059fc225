"""Paper trading: a trained agent (or a rule) trading live books through an order gateway.

:class:`PaperTradingActor` is the use case behind ``kalshiflow-rl actor`` and the actor inside
``serve``. It runs beside the live feed and never holds it up: its book listener only notes which
market changed (one set store).

**The grid.** Training's rows are a fixed clock: one every ``step_ms`` of the model's replay
settings, at the multiples of it on the Unix clock, whether or not the book changed. The actor
keeps the same clock: its sampler wakes at every grid time and takes a row of every market
from the live book as it is then (:class:`MarketRows`; a burst of deltas in between is one row,
a quiet market still gets its row), and never waits for anything else; its decision task then
decides on each market's newest row -- at most once per row, so a slow exchange makes it skip
rows, never decide on a row twice or between rows. So every feature counted in rows (price
moves, volatility, trade flow, the order's age) spans the same time as in training. A model
trained at another ``step_ms`` than the rows' grid is refused (:func:`check_cadence`), at start
and at a reload.

**One decision**, for one market at one grid time, with the same code as training:

1. the market's row at that time (:class:`MarketRows` samples the live book into the market's
   :class:`~application.observation.LiveMarketObservation` if the sampler has not yet), and off
   that one object -- the only live path, the one ``tests/application/test_observation_parity.py``
   drives against the environment -- the observation (:class:`domain.features.ObservationBuilder`;
   the order's age in rows),
2. the legal actions (:meth:`domain.actions.ActionDecoder.legal_actions`, with the cash not
   promised to the other markets' resting orders) and the policy's choice (an illegal choice
   holds, as in the environment);
3. the order it decodes to (:meth:`~domain.actions.ActionDecoder.decode`), carried out by the
   :class:`~application.actor_orders.OrderDesk`. At most one order rests per market: HOLD or
   the same order (side, price, remaining size) leaves the resting one alone; a different one
   replaces it (cancel, then create). A new order first passes :func:`domain.risk.check_order`;
4. the decision, and the order it sent, are recorded (``rl_trading_actions``), numbered within
   the market's episode (:mod:`application.actor_episodes`), through a bounded queue
   (:mod:`application.actor_records`): the decision path never waits for the database.

**The account.** Fills come from the gateway's fill stream and are booked once each into the
actor's :class:`~application.actor_account.TradingAccount`. Positions, cash and open orders are
read from the exchange at start (orders left by an earlier run are cancelled first) and
reconciled with it every ``reconcile_interval_s`` (:mod:`application.actor_reconciliation`); a
difference seen twice in a row (once could be a fill still on its way) is logged and the
exchange's number adopted. Fills the exchange lists at start are the
opening balance's; the stream is reconciled from a day back, so neither a skewed clock nor the
local exchange's market time can hide a fill from it.

**Markets.** Each market's close time and result come from the :class:`MarketCatalog` (Kalshi's
``GET /markets/{ticker}``) at start: the observations' time left counts down to the close, and no
decision is made after it. A market we hold that the exchange no longer holds because it
resolved is booked by the reconciliation as a settlement (``result``: $1 per winning contract),
logged -- never adopted as a difference. Public trades reach the observations through
:meth:`PaperTradingActor.record_trade` (the ingestion's trade listener).

**Stopping trading.** After every fill, decision and reconciliation the account is checked
against the risk limits (:func:`domain.risk.check_account`); a breach cancels every open order
and halts trading -- as does :meth:`PaperTradingActor.kill` (the kill switch). A halted actor
keeps booking fills and reconciling, so its account stays true; it sends no more orders.

**Hot reload.** Every ``reload_interval_s`` the actor asks its :class:`ModelSource` whether a new
model is there (the registry's change signal); a new one that loads, matches the configured
contract size and was trained at the rows' step replaces the old between two decisions -- books, resting orders and the account
are untouched; each market's episode of the old model is finished and a new one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import numpy as np

from application.actor_account import Mismatch, TradingAccount
from application.actor_config import ActorConfig, ActorCounters, ActorState, MarketRows
from application.actor_episodes import MarketEpisodes
from application.actor_orders import OrderDesk
from application.actor_policies import ModelSource, TradingModel, check_contract_size
from application.actor_reconciliation import Reconciliation
from application.actor_records import EpisodeKey, RecordQueue, TradingRecord
from application.book_state import SharedBookState
from domain.actions import cash_required
from domain.features import ObservationBuilder
from domain.events import PublicTrade
from domain.gateway_errors import GatewayError
from domain.orderbook import OrderBook
from domain.orders import Fill, Order
from domain.ports import Clock, MarketCatalog, MarketInfo, OrderGateway, TradingAction
from domain.risk import DailyLoss, check_account
from domain.values import format_count, format_money, format_price

log = logging.getLogger(__name__)

OPENING_LOOKBACK_MS = 86_400_000  # fills of the last day before start belong to the opening balance


class CadenceMismatch(ValueError):
    """The model was trained deciding at another interval than the actor's rows are sampled at."""


def check_cadence(model: TradingModel, step_ms: int) -> None:
    """Refuse a model whose training step is not ``step_ms``, the actor's row grid: its features
    counted in rows (price moves, volatility, trade flow) and its order age would span other times."""
    if model.step_ms != step_ms:
        raise CadenceMismatch(
            f"{model.label} was trained deciding every {model.step_ms} ms, but the actor's rows are "
            f"{step_ms} ms apart: a model is traded on the grid it was trained on"
        )


async def sleep_until(clock: Clock, ms: int) -> None:
    """Wait until ``clock`` reads ``ms`` (Unix ms) or later."""
    while (left := ms - clock.now_ms()) > 0:
        await asyncio.sleep(left / 1000)


class PaperTradingActor:
    def __init__(
        self,
        *,
        books: SharedBookState,
        market_rows: MarketRows,
        gateway: OrderGateway,
        markets: MarketCatalog,
        models: ModelSource,
        records: RecordQueue[TradingRecord],
        clock: Clock,
        config: ActorConfig,
        strategy: str = "rl_model",
        wait_until: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        """``wait_until(ms)`` returns once ``clock`` reads ``ms`` or later (default: sleeps on
        the event loop); the sampler waits for each grid time with it."""
        self._books = books
        self._rows = market_rows
        self._gateway = gateway
        self._markets = markets
        self._models = models
        self._records = records
        self._clock = clock
        self._wait_until = wait_until or (lambda ms: sleep_until(clock, ms))
        self.config = config
        self.strategy = strategy
        self.counters = ActorCounters()
        self.state = ActorState.STARTING
        self.halt_reason: str | None = None
        self.failure: str | None = None
        self.account: TradingAccount | None = None
        self.last_mismatches: list[Mismatch] = []
        self.market_info: dict[str, MarketInfo] = {}  # as read from the exchange at start
        self._closed: set[str] = set()  # markets past their close time: no more decisions
        self._model: TradingModel | None = None
        self._builder: ObservationBuilder | None = None
        self._generation = 0  # the actor's model generation (episode keys)
        self._episodes = MarketEpisodes(records)
        self._daily = DailyLoss()
        self._daily_loss = 0
        self._tickers = frozenset(config.tickers)
        self._live: dict[str, OrderBook] = {}
        self._changed: set[str] = set()  # markets whose book changed since their last row
        self._grid_ms: int | None = None  # the latest grid time the markets were sampled at
        self._sampled = asyncio.Event()  # set at each new grid time
        # A model is swapped between two decisions, never during one (a decision awaits the
        # exchange): its action is recorded in the episode of the model that chose it.
        self._deciding = asyncio.Lock()
        self._reconcile_now = asyncio.Event()
        self._stop = asyncio.Event()
        self._orders = OrderDesk(
            gateway=gateway, limits=config.limits, tickers=self._tickers, counters=self.counters,
            halted=lambda: self.halt_reason is not None, on_unanswered=self._reconcile_now.set,
        )  # fmt: skip
        self._reconciliation = Reconciliation(
            gateway=gateway, markets=markets, orders=self._orders, counters=self.counters,
            on_settled=self._closed.add,
        )  # fmt: skip
        self._marks: dict[str, int] = {}
        self._client_ids: Callable[[], str] = lambda: ""
        self._started_ms = 0
        self._fills_since = 0
        self._background: set[asyncio.Task[Any]] = set()

    # -- the model -------------------------------------------------------------------------------
    @property
    def model(self) -> TradingModel | None:
        return self._model

    def _check_model(self, model: TradingModel) -> None:
        check_contract_size(model, self.config.contract_size)
        check_cadence(model, self._rows.step_ms)

    def _use_model(self, model: TradingModel) -> None:
        self._check_model(model)
        assert self.account is not None
        self._model = model
        self._builder = ObservationBuilder(
            initial_cash=model.initial_cash,  # each market's budget, as a training episode's cash
            max_position=model.max_position,
            order_size=model.order_size,
        )
        self._generation += 1

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the model, clear what an earlier run left resting, read the account, listen."""
        model = await self._models.load()
        self._check_model(model)
        await self._orders.cancel_leftovers()
        self._started_ms = self._clock.now_ms()
        # Fills are streamed from a day back, on the exchange's clock as much as ours (a skewed
        # clock, or the local exchange's market time, must not hide a fill from the REST
        # reconciliation); the ones listed now are in the opening balance and are not booked.
        self._fills_since = max(0, self._started_ms - OPENING_LOOKBACK_MS)
        opening_fills = await self._gateway.fills(self._fills_since)
        positions = await self._gateway.positions()
        balance = await self._gateway.balance()
        self._gateway.fee_corrections()  # what an earlier run's stream reported is in the balance now
        self.account = TradingAccount(balance, positions, opening_fill_ids=[fill.fill_id for fill in opening_fills])
        await self._read_markets()
        self._use_model(model)
        counter = itertools.count(1)
        run_id = format(self._started_ms, "x")
        self._client_ids = lambda: f"{self.config.client_order_prefix}-{run_id}-{next(counter)}"
        self._books.subscribe(self._on_book, self.config.tickers)
        self.state = ActorState.RUNNING
        log.info(
            "actor: trading %s with %s; cash $%s, positions %s",
            ", ".join(self.config.tickers), model.label, format_money(balance), positions or "none",
        )  # fmt: skip

    async def _read_markets(self) -> None:
        """Each market's close time (for the observations) and whether it has resolved already."""
        assert self.account is not None
        for ticker in self.config.tickers:
            info = self.market_info[ticker] = await self._markets.market(ticker)
            self._rows.set_close(ticker, info.close_ms)
            if info.result is not None:
                self._closed.add(ticker)
                self.account.settled[ticker] = info.result  # before we came: nothing of ours to book
                log.warning("actor: %s has already resolved %s: it is not traded", ticker, info.result.name)

    async def run(self) -> None:
        """Start, then trade until :meth:`stop`; on the way out cancel what rests (if configured),
        finish the episodes and write the records."""
        try:
            await self.start()
        except Exception as error:
            self.state = ActorState.FAILED
            self.failure = f"{type(error).__name__}: {error}"
            raise
        tasks = [
            asyncio.create_task(self._sample_loop(), name="actor-rows"),
            asyncio.create_task(self._decide_loop(), name="actor-decisions"),
            asyncio.create_task(self._fill_loop(), name="actor-fills"),
            asyncio.create_task(self._reconcile_loop(), name="actor-reconcile"),
            asyncio.create_task(self._reload_loop(), name="actor-reload"),
            asyncio.create_task(self._records.run(), name="actor-records"),
        ]
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            failed = next((task for task in done if task is not stopper and not task.cancelled()), None)
            if failed is not None:
                error = failed.exception()
                self.failure = f"{failed.get_name()} ended: {type(error).__name__ if error else 'no error'}: {error}"
                log.error("actor: %s; halting", self.failure)
                await self.halt(self.failure)
                self.state = ActorState.FAILED
        finally:
            with contextlib.suppress(ValueError):
                self._books.unsubscribe(self._on_book)
            for task in (*tasks[:-1], stopper, *self._background):
                task.cancel()
            for task in (*tasks[:-1], stopper, *self._background):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.config.cancel_on_stop and self.state is not ActorState.FAILED:
                with contextlib.suppress(Exception):
                    await self._orders.cancel_all()
            await self._finish_episodes()
            await self._records.drain(timeout_s=10.0)
            tasks[-1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks[-1]
            if self.state is not ActorState.FAILED:
                self.state = ActorState.STOPPED

    def stop(self) -> None:
        """Ask :meth:`run` to finish (SIGINT/SIGTERM, the service shutting down)."""
        self._stop.set()

    async def kill(self, reason: str = "kill switch") -> dict[str, Any]:
        """The kill switch: cancel every open order and stop trading. Returns what it did."""
        cancelled = await self.halt(reason)
        return {"halted": True, "reason": self.halt_reason, "orders_cancelled": cancelled}

    async def halt(self, reason: str) -> int:
        """Stop sending orders and cancel every open order; returns how many were cancelled.
        The first reason stays; halting again only cancels again."""
        if self.halt_reason is None:
            self.halt_reason = reason
            log.error("actor: halting trading: %s", reason)
        if self.state in (ActorState.RUNNING, ActorState.STARTING):
            self.state = ActorState.HALTED
        return await self._orders.cancel_all()

    # -- the feed side: never blocks ---------------------------------------------------------
    def record_trade(self, trade: PublicTrade) -> None:
        """A public trade from the feed (the ingestion's trade listener): to the observations."""
        if trade.ticker in self._tickers:
            self.counters.public_trades += 1
            self._rows.record_trade(trade)

    def _on_book(self, ticker: str, book: OrderBook) -> None:
        self.counters.book_updates += 1
        self._live[ticker] = book
        if ticker in self._changed:
            self.counters.coalesced += 1
        else:
            self._changed.add(ticker)

    # -- decisions -------------------------------------------------------------------------------
    def _close_market(self, ticker: str) -> None:
        """Trading in ``ticker`` has closed: no more decisions there. The exchange takes its
        resting order off; a reconciliation now looks for the settlement."""
        if ticker in self._closed:
            return
        self._closed.add(ticker)
        self.counters.markets_closed += 1
        log.info("actor: trading in %s has closed; no more decisions there", ticker)
        self._reconcile_now.set()

    async def _sample_loop(self) -> None:
        """At every grid time (multiples of the rows' ``step_ms`` on the Unix clock, as replay's
        rows), a row of every open market from its live book, changed or not; then the decision
        task is told. Never awaits anything but the clock, so a slow exchange delays no row."""
        step = self._rows.step_ms
        grid = self._started_ms // step * step  # the first row: the first grid time after the start
        while True:
            await self._wait_until(grid + step)
            now = self._clock.now_ms() // step * step
            self.counters.late_rows += (now - grid) // step - 1  # woke too late for some
            grid = now
            for ticker in self.config.tickers:
                info = self.market_info.get(ticker)
                if info is not None and grid >= info.close_ms:
                    self._close_market(ticker)
                if ticker in self._closed or ticker not in self._live:
                    continue
                self._changed.discard(ticker)
                self._rows.sample(ticker, grid)
            self.counters.rows += 1
            self._grid_ms = grid
            self._sampled.set()

    async def _decide_loop(self) -> None:
        """A decision on every open market at every grid time, on its newest row -- once per
        row: when deciding took past the next grid time, the rows in between are not decided on."""
        decided: dict[str, int] = {}  # the grid time of each market's latest decision
        while True:
            await self._sampled.wait()
            self._sampled.clear()
            for ticker in self.config.tickers:
                grid = self._grid_ms  # the newest row: an earlier market's decision may have awaited
                if grid is None or decided.get(ticker, -1) >= grid:
                    continue
                if self.halt_reason is not None or ticker in self._closed or ticker not in self._live:
                    continue
                decided[ticker] = grid
                try:
                    async with self._deciding:
                        await self.decide(ticker, grid)
                except Exception:  # a bug or a surprise on one decision must not end trading
                    self.counters.errors += 1
                    log.exception("actor: the decision on %s failed", ticker)

    async def decide(self, ticker: str, now: int | None = None) -> TradingAction | None:
        """One decision on ``ticker`` at the grid time ``now`` (default: the latest at the
        clock's time; see the module docstring), on the market's row at that time; returns what
        was recorded, or None when no decision could be made."""
        model, builder, account, generation = self._model, self._builder, self.account, self._generation
        assert model is not None and builder is not None and account is not None
        book = self._live.get(ticker)
        if now is None:
            now = self._clock.now_ms() // self._rows.step_ms * self._rows.step_ms
        info = self.market_info.get(ticker)
        if info is not None and now >= info.close_ms:
            self._close_market(ticker)
            return None
        market = self._rows.sample(ticker, now) if book is not None else None
        if book is None or market is None or not self._books.is_in_sync(ticker):
            self.counters.skipped += 1
            return None
        # One live path: the observation, the mask and the order all come off the sampled row
        # (application.observation), the code the parity test holds to the environment's.
        mark = self._marks[ticker] = market.mark
        position = account.quantity(ticker)
        working = self._orders.by_market.get(ticker)
        # The market's own cash, from its training budget: what the model saw in an episode.
        cash = account.market_cash(ticker, model.initial_cash)
        observation = market.observe(
            builder, quantity=position, cost_basis=account.cost_basis(ticker),
            market_value=account.market_value(ticker, mark), cash=cash,
            order=None if working is None else (
                working.order.side, working.order.price, working.remaining, working.placed_ms
            ),
        )  # fmt: skip
        terms = None if working is None else (working.order.side, working.order.price, working.remaining)
        buying_power = min(cash, self._buying_power(ticker, model))  # its budget, if the account has it
        mask = market.legal_actions(model.decoder, position=position, buying_power=buying_power, working=terms)
        chosen = int(model.policy.act(observation, np.asarray(mask, dtype=bool)))
        legal = 0 <= chosen < len(mask) and mask[chosen]
        if not legal:
            self.counters.illegal_choices += 1
        request = None
        if legal:
            request = market.order_for(
                model.decoder, chosen, position=position, client_order_id=self._client_ids(), working=terms
            )
        self.counters.decisions += 1
        sent = await self._orders.execute(ticker, request, position, now)
        sent_id = None if sent is None else sent.client_order_id
        if sent is None and request is not None and self._orders.was_unanswered(request.client_order_id):
            sent_id = request.client_order_id  # placed or not, nobody knows: its decision names it
        action = TradingAction(
            step_number=0,  # numbered within its episode when recorded
            timestamp_ms=now,
            action_type=model.decoder.action_names[chosen] if 0 <= chosen < len(mask) else f"INVALID_{chosen}",
            position_before=position,
            position_after=account.quantity(ticker),
            action_index=chosen,
            order_side=None if request is None else request.side,
            price=None if request is None else request.price,
            quantity=0 if request is None else request.count,
            order_id=None if sent is None else sent.order_id,
            client_order_id=sent_id,
            observation_digest=hashlib.blake2b(observation.tobytes(), digest_size=16).hexdigest(),
        )
        key = EpisodeKey(model.model_id, ticker, generation)
        recorded = await self._episodes.record(key, action, account, self._marks)
        self._check_risk()
        return recorded

    def _buying_power(self, ticker: str, model: TradingModel) -> int:
        """Cash, less what the other markets' resting orders could take if they filled."""
        assert self.account is not None
        promised = 0
        for other, entry in self._orders.by_market.items():
            if other != ticker and entry.remaining > 0:
                order = entry.order
                promised += cash_required(
                    order.side, order.price, entry.remaining, self.account.quantity(other), model.decoder.fees
                )
        return self.account.cash - promised

    # -- episodes --------------------------------------------------------------------------------
    async def _finish_episodes(self) -> None:
        """End every market's episode now (the actor stops, or a new model takes over)."""
        assert self.account is not None
        await self._episodes.finish_all(self._clock.now_ms(), self.account, self._marks)

    # -- fills -----------------------------------------------------------------------------------
    async def _fill_loop(self) -> None:
        async for fill in self._gateway.stream_fills(since_ms=self._fills_since):
            self.book_fill(fill)

    def book_fill(self, fill: Fill) -> bool:
        """Book one fill from the exchange; False when it was booked already."""
        assert self.account is not None
        if self.account.is_opening_fill(fill.fill_id):
            return False  # before we started: in the opening balance already
        if not self.account.apply_fill(fill):
            self.counters.duplicate_fills += 1
            return False
        self.counters.fills += 1
        self._episodes.count_trade(fill.ticker)
        self._orders.book_fill(fill)
        self._check_risk()
        return True

    # -- risk ------------------------------------------------------------------------------------
    def _check_risk(self) -> None:
        if self.halt_reason is not None or self.account is None:
            return
        value = self.account.value(self._marks)
        if value is not None:
            self._daily_loss = self._daily.update(self._clock.now_ms(), value)
        breach = check_account(
            self.config.limits,
            positions=self.account.positions(),
            open_orders=len(self._orders.by_market),
            daily_loss=self._daily_loss,
        )
        if breach is not None:
            self._spawn(self.halt(f"risk limit {breach.limit}: {breach.reason}"))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- hot reload ------------------------------------------------------------------------------
    async def _reload_loop(self) -> None:
        seen = await self._models.generation()
        if seen is None:  # a fixed model: nothing to watch, until the actor stops
            await asyncio.Future()
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            try:
                generation = await self._models.generation()
            except Exception as error:  # the registry is away: ask again later
                log.warning("actor: cannot ask the registry for a new model: %s", error)
                continue
            if generation == seen:
                continue
            seen = generation
            await self.reload()

    async def reload(self) -> bool:
        """Load the model the source offers now and trade with it from the next decision;
        False (the current model stays) when it cannot be loaded or does not fit."""
        try:
            model = await self._models.load()
            self._check_model(model)
        except Exception as error:
            self.counters.reload_failures += 1
            log.error("actor: keeping %s; the new model cannot be used: %s", self._model and self._model.label, error)
            return False
        previous = self._model
        async with self._deciding:
            await self._finish_episodes()
            self._use_model(model)
        self.counters.reloads += 1
        log.info("actor: now trading with %s (was %s)", model.label, previous and previous.label)
        return True

    # -- reconciliation --------------------------------------------------------------------------
    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.reconcile_interval_s):
                    await self._reconcile_now.wait()
            self._reconcile_now.clear()
            try:
                await self.reconcile()
            except GatewayError as error:
                self.counters.errors += 1
                log.warning("actor: reconciliation failed, trying again later: %s", error)

    async def reconcile(self, *, adopt_at_once: bool = False) -> list[Mismatch]:
        """Compare the account and the open orders with the exchange's
        (:mod:`application.actor_reconciliation`); adopt the exchange's numbers where they differ
        twice in a row (at once with ``adopt_at_once``). Returns the mismatches adopted."""
        assert self.account is not None
        adopted = await self._reconciliation.reconcile(self.account, adopt_at_once=adopt_at_once)
        if adopted:
            self.last_mismatches = adopted
        self._check_risk()
        return adopted

    # -- reads -----------------------------------------------------------------------------------
    def booked_fills(self) -> list[dict[str, Any]]:
        """Every fill the account booked, for ``/rl/actor/fills`` (prices and counts as the wire
        spells them, the fee in micro-dollars)."""
        if self.account is None:
            return []
        return [
            {
                "fill_id": fill.fill_id,
                "order_id": fill.order_id,
                "ticker": fill.ticker,
                "side": fill.side.value,
                "yes_price_dollars": format_price(fill.price),
                "count_fp": format_count(fill.count),
                "fee_micro_dollars": fill.fee,
                "is_taker": fill.is_taker,
                "ts_ms": fill.ts_ms,
            }
            for fill in self.account.fills
        ]

    def open_orders(self) -> dict[str, Order]:
        """The order resting in each market, as the actor knows it."""
        return self._orders.open_orders()

    def status(self) -> dict[str, Any]:
        """For ``/rl/health`` and ``/rl/status``: plain JSON values."""
        health = {
            ActorState.RUNNING: "ok",
            ActorState.STARTING: "starting",
            ActorState.HALTED: "halted",
            ActorState.STOPPED: "stopped",
            ActorState.FAILED: "failed",
        }[self.state]
        account = self.account
        body: dict[str, Any] = {
            "status": health,
            "state": self.state.value,
            "strategy": self.strategy,
            "model": None if self._model is None else self._model.label,
            "model_id": None if self._model is None else self._model.model_id,
            "markets": list(self.config.tickers),
            "close_ms": {ticker: info.close_ms for ticker, info in self.market_info.items()},
            "closed": sorted(self._closed),
            "halt_reason": self.halt_reason,
            "failure": self.failure,
            "counters": attrs.asdict(self.counters),
            "open_orders": {
                ticker: {"side": entry.order.side.value, "price": entry.order.price, "remaining": entry.remaining}
                for ticker, entry in self._orders.by_market.items()
            },
            "daily_loss_dollars": format_money(self._daily_loss),
            "records": attrs.asdict(self._records.stats()),
            "last_mismatches": [item.describe() for item in self.last_mismatches],
        }
        if account is not None:
            body["cash_dollars"] = format_money(account.cash)
            body["cash_micro_dollars"] = account.cash  # exact: the dollars above are rounded to the cent
            body["positions_contracts"] = {
                ticker: format_count(quantity) for ticker, quantity in account.positions().items()
            }
            body["settlements"] = {ticker: result.name.lower() for ticker, result in account.settled.items()}
            body["adjustments"] = {
                "cash_micro_dollars": account.cash_adjustment,
                "positions": dict(account.position_adjustments),
            }
        return body
