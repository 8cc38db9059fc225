"""The ports: every interface the core needs from the outside world.

All ports are ``typing.Protocol`` classes (structural: an adapter need not import them). Ports
that do I/O are declared ``async``; that needs no event loop here, only in the adapters.
Each port lists its adapters in ``architecture.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from domain.events import BookDelta, BookSnapshot, MarketEvent
from domain.gateway_errors import OrderRejected
from domain.market_tape import MarketTape
from domain.orders import FeeCorrection, Fill, Order, OrderRequest, OrderSide
from domain.values import Side


# ---------------------------------------------------------------------------------------------
# Market data
# ---------------------------------------------------------------------------------------------
@runtime_checkable
class MarketDataFeed(Protocol):
    """A source of market events for a set of markets (live exchange, local exchange, synthetic)."""

    def events(self) -> AsyncIterator[MarketEvent]:
        """Events in the order the source emitted them; ends when the source does."""
        ...


@runtime_checkable
class LiveBooks(Protocol):
    """The in-memory books a live feed keeps current (the application's shared book state).

    A feed calls these on its event loop, in the order it received the messages, and only with
    book events it has checked to be in sequence.
    """

    def apply(self, event: BookSnapshot | BookDelta) -> bool:
        """Apply a snapshot, or a delta to a book in sync; returns whether it was applied."""
        ...

    def await_snapshot(self, ticker: str) -> None:
        """The book of ``ticker`` can no longer be trusted (a gap, a lost connection): hold it as
        invalid, refusing deltas, until a snapshot arrives."""
        ...


# ---------------------------------------------------------------------------------------------
# Recordings
# ---------------------------------------------------------------------------------------------
@attrs.frozen
class SessionInfo:
    """One recording session: the markets it covered and what it holds."""

    session_id: int
    tickers: tuple[str, ...]
    source: str
    started_ms: int
    ended_ms: int | None
    snapshots: int
    deltas: int
    trades: int
    resolutions: Mapping[str, Side] = attrs.field(factory=dict)

    @property
    def is_closed(self) -> bool:
        return self.ended_ms is not None


class SessionNotFound(LookupError):
    pass


class SessionClosed(RuntimeError):
    """Writing to, or ending, a session that has already ended."""


@runtime_checkable
class OrderbookStore(Protocol):
    """Durable storage of recording sessions: snapshots, deltas, public trades, resolutions.

    Events are stored in the order written and read back in that order, so replaying a session
    rebuilds exactly the books the recorder had. One writer per session at a time.
    """

    async def open(self) -> None:
        """Connect and apply pending migrations (idempotent)."""
        ...

    async def close(self) -> None: ...

    async def start_session(self, tickers: Sequence[str], *, started_ms: int, source: str) -> int: ...

    async def end_session(self, session_id: int, *, ended_ms: int) -> None: ...

    async def write_events(self, session_id: int, events: Sequence[MarketEvent]) -> int:
        """Append events atomically (all or none); returns how many rows were written."""
        ...

    async def read_events(self, session_id: int) -> list[MarketEvent]:
        """Every event of the session, in the order it was written."""
        ...

    async def list_sessions(self) -> list[SessionInfo]: ...

    async def get_session(self, session_id: int) -> SessionInfo:
        """Raises :class:`SessionNotFound` for an unknown id."""
        ...


@runtime_checkable
class SpillBuffer(Protocol):
    """Disk overflow of one session's write queue: events accepted but not yet in the
    :class:`OrderbookStore`, oldest first, durable across a crash.

    Every event is numbered by its ordinal, its position in the session's stream; an append
    continues the numbering of what the buffer holds, without a hole. A new process opening the
    same buffer finds what a crashed one left, and the ordinals tell it which events the store
    already holds.
    """

    @property
    def pending(self) -> int:
        """How many events the buffer holds."""
        ...

    @property
    def end_ordinal(self) -> int | None:
        """The ordinal after the last event held, or None when empty."""
        ...

    async def append(self, first_ordinal: int, events: Sequence[MarketEvent]) -> None:
        """Add ``events``, numbered from ``first_ordinal``; durable once this returns."""
        ...

    async def oldest(self, limit: int) -> tuple[int, list[MarketEvent]]:
        """Up to ``limit`` events from the head, without removing them, and the ordinal of the
        first (``(end, [])`` when empty)."""
        ...

    async def acknowledge(self, count: int) -> None:
        """The ``count`` oldest events are stored: forget them."""
        ...

    async def close(self) -> None:
        """Releases the buffer (what it holds stays for the next opener)."""
        ...


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
@attrs.frozen
class ModelRecord:
    model_id: int
    name: str
    version: int
    algorithm: str
    status: str  # training | trained | active | retired | failed (MODEL_STATUSES)
    path: str
    created_ms: int
    hyperparameters: Mapping[str, Any] = attrs.field(factory=dict)
    metrics: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def checkpoint_dir(self) -> str:
        """Where training keeps this version's periodic checkpoints (see :func:`checkpoint_dir_for`)."""
        return checkpoint_dir_for(self.path)

    @property
    def training_chart(self) -> str:
        """Where training drew this version's training curve (see :func:`training_chart_for`)."""
        return training_chart_for(self.path)


# A version's life: "training" while its run goes on (a run whose process died stays so: its
# age tells); "failed" if the run raised; "trained" once it finished and was saved; "retired" once
# judged -- it failed its held-out evaluation, or another version took its place as "active".
MODEL_STATUSES = ("training", "trained", "active", "retired", "failed")
# What retention may delete: finished versions no one uses. A version still "training" may be a
# run in progress, so only its owner (marking it trained or failed) can make it prunable.
PRUNABLE_STATUSES = ("trained", "retired", "failed")


def checkpoint_dir_for(model_path: str) -> str:
    """A version's files are its model file, this directory beside it (checkpoints written
    during training) and its training curve (:func:`training_chart_for`), so the registry can
    delete them all when it prunes the version."""
    return model_path.removesuffix(".zip") + ".checkpoints"


def training_chart_for(model_path: str) -> str:
    """The PNG of a version's training curve, beside its model file."""
    return model_path.removesuffix(".zip") + "-training.png"


class ModelNotFound(LookupError):
    pass


@attrs.frozen
class PruneResult:
    """What retention did: the versions it deleted (rows and files), and the ones it would have
    deleted but kept because they have paper-trading records (``rl_trading_episodes`` in mode
    ``paper``: history a deletion would cascade away). Each sorted by name, then version."""

    deleted: tuple[ModelRecord, ...] = ()
    paper_traded: tuple[ModelRecord, ...] = ()


@runtime_checkable
class ModelRegistry(Protocol):
    """Versions of trained models: metadata in a store, weights as files on disk.

    A version's life: registered ``training`` -> ``failed`` if the run raises, ``trained`` when
    it finishes; made ``active`` by a promotion (at most one active version per name: the
    previous one becomes ``retired``), or ``retired`` by a held-out evaluation it failed; pruned
    (deleted with its files) once enough newer ``trained``/``retired``/``failed`` versions exist,
    unless it has paper-trading records.
    The registry records any of these; the rule that only a version that passed its held-out
    evaluation may become active is the application's (``application.evaluation``
    ``promote_evaluated``), which every promotion goes through.
    """

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
        """Adds the next version of ``name``."""
        ...

    async def update(
        self, model_id: int, *, status: str | None = None, metrics: Mapping[str, Any] | None = None
    ) -> ModelRecord: ...

    async def promote(self, model_id: int) -> ModelRecord:
        """Makes this version the active one of its name; the previous active one retires.
        Refuses only a ``failed`` version: callers promote through
        ``application.evaluation.promote_evaluated``, which checks the held-out evaluation."""
        ...

    async def get(self, model_id: int) -> ModelRecord: ...

    async def active(self, name: str) -> ModelRecord | None: ...

    async def list_models(self, name: str | None = None) -> list[ModelRecord]: ...

    async def active_generation(self, name: str) -> int:
        """How many times the active version of ``name`` has changed (a promotion, an active
        registration, or the active version leaving that status); 0 if it never had one. It
        only grows: an actor polls it cheaply and reloads its model when it moves."""
        ...

    async def prune(self, *, keep: int, name: str | None = None) -> PruneResult:
        """Retention: of each name's (or only ``name``'s) versions in :data:`PRUNABLE_STATUSES`,
        keeps the ``keep`` newest and deletes the others, rows and files (the model file, its
        checkpoint directory and its training curve) -- except a version with paper-trading
        records, which is kept and reported in ``paper_traded``. Its training and evaluation
        records go with a deleted version. Never touches an active version or one still
        training."""
        ...


# ---------------------------------------------------------------------------------------------
# Trading
# ---------------------------------------------------------------------------------------------
@runtime_checkable
class OrderGateway(Protocol):
    """Where orders go: the simulated exchange, the local exchange, Kalshi's demo exchange.

    Prices are YES prices in price units, counts in count units, money in micro-dollars (see
    ``domain.values``). Refusals raise :class:`~domain.gateway_errors.OrderRejected` subclasses
    carrying the venue's message; an exchange that does not answer raises
    :class:`~domain.gateway_errors.ExchangeUnavailable`. ``client_order_id`` is the caller's
    idempotency key: a venue never creates two orders for one id, and refuses a reused id with
    :class:`~domain.gateway_errors.DuplicateClientOrderId`.
    """

    async def create_order(self, request: OrderRequest) -> Order:
        """Place one order; returns it as the exchange acknowledged it: what crossed has
        filled (those fills are also in :meth:`fills` and the stream), the rest rests, or
        for immediate-or-cancel is cancelled."""
        ...

    async def cancel_order(self, order_id: str) -> Order:
        """Cancel what is left of an open order; returns it cancelled. An unknown or closed
        order raises :class:`~domain.gateway_errors.OrderNotFound`."""
        ...

    async def amend_order(self, order_id: str, *, price: int, count: int, client_order_id: str) -> Order:
        """Cancel-and-replace an open order: new YES ``price``, ``count`` the new *total*
        (filled + resting, as on Kalshi), ``client_order_id`` the replacement's own id.
        Returns the replacement -- use its ``order_id`` from then on. Kalshi keeps an order's
        queue priority only when the amendment just decreases its size at the same price, and
        the simulated exchange does the same: such an amendment keeps its place in the queue,
        any other joins the back of its price level."""
        ...

    async def create_orders(self, requests: Sequence[OrderRequest]) -> list[Order | OrderRejected]:
        """Place several orders (batched where the venue can): per request, in order, the
        order or why it was refused. Transport failures still raise."""
        ...

    async def cancel_orders(self, order_ids: Sequence[str]) -> list[Order | OrderRejected]:
        """Cancel several orders: per id, in order, the cancelled order or why not."""
        ...

    async def get_order(self, order_id: str) -> Order:
        """One order in any state; :class:`~domain.gateway_errors.OrderNotFound` if unknown."""
        ...

    async def open_orders(self, ticker: str | None = None) -> list[Order]:
        """Resting orders (of ``ticker``, or of every market)."""
        ...

    async def fills(self, since_ms: int = 0) -> list[Fill]:
        """Every fill at or after ``since_ms``, oldest first, with the fee the exchange charged."""
        ...

    def stream_fills(self, since_ms: int | None = None) -> AsyncIterator[Fill]:
        """Fills as they happen, each exactly once, from ``since_ms`` (None: from now) until
        :meth:`close`. A fill missed while a connection was down is delivered when it is back."""
        ...

    def fee_corrections(self) -> list[FeeCorrection]:
        """Fees the exchange charged differently from what a streamed fill first said, found
        since the last call (drained). Venues that stream the charged fee return none."""
        ...

    async def positions(self) -> dict[str, int]:
        """Markets with a non-zero position: signed count units, +N YES, -N NO."""
        ...

    async def balance(self) -> int:
        """Cash in micro-dollars."""
        ...

    async def close(self) -> None:
        """Ends fill streams and releases connections."""
        ...


@attrs.frozen
class MarketInfo:
    """A market as its exchange describes it: when trading closes and, once it has settled, how
    it resolved. Times in Unix milliseconds; ``status`` is the exchange's word (Kalshi: ``active``,
    ``closed``, ``determined``, ``finalized``, ...)."""

    ticker: str
    close_ms: int
    expiration_ms: int | None = None
    status: str = "active"
    result: Side | None = None  # set once the market has resolved


@runtime_checkable
class MarketCatalog(Protocol):
    """What an exchange says about its markets (Kalshi: ``GET /markets/{ticker}``)."""

    async def market(self, ticker: str) -> MarketInfo:
        """Raises :class:`~domain.gateway_errors.MarketNotFound` for a market it does not list."""
        ...


@runtime_checkable
class Clock(Protocol):
    def now_ms(self) -> int: ...


@runtime_checkable
class Policy(Protocol):
    """Maps an observation (and the mask of legal actions) to an action index."""

    def act(self, observation: Any, action_mask: Any | None = None) -> int: ...


# ---------------------------------------------------------------------------------------------
# Learning
# ---------------------------------------------------------------------------------------------
@runtime_checkable
class TradingEnvironment(Protocol):
    """Episodes over replayed markets, with the Gymnasium API (the Gymnasium env adapter).

    ``reset(options={"episode": k})`` replays episode ``k`` of ``episode_count``; ``step``
    returns ``(observation, reward, terminated, truncated, info)``; ``action_masks()`` says
    which actions are legal now, and ``decode(action)`` the order an action would place now
    (None: HOLD, or nothing possible) -- the one ``step`` sends, unless the market's working order
    already is that order. ``info`` holds ``portfolio_value`` (micro-dollars) and
    ``action_mask`` at reset and every step; the last step adds ``episode_summary``
    (``EpisodeSummary.as_dict()``), ``action_counts`` and ``illegal_actions``.
    """

    @property
    def episode_count(self) -> int: ...

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]: ...

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]: ...

    def action_masks(self) -> Any: ...

    def decode(self, action: int) -> OrderRequest | None: ...


@runtime_checkable
class TrainedAgent(Protocol):
    """A trained model: saved as one file (everything acting needs, observation normalisation
    included), used as a :class:`Policy`; ``metrics`` say how training went."""

    @property
    def algorithm(self) -> str: ...

    @property
    def hyperparameters(self) -> Mapping[str, Any]: ...

    @property
    def metrics(self) -> Mapping[str, Any]: ...

    def save(self, path: str) -> None: ...

    def policy(self) -> Policy: ...


@runtime_checkable
class StopRequest(Protocol):
    """Set by the caller to ask a running training to stop (a ``threading.Event`` is one): the
    trainer checks it at every step and returns early once it is set."""

    def is_set(self) -> bool: ...


@runtime_checkable
class AgentTrainer(Protocol):
    """Trains agents on market tapes (Stable-Baselines3) and loads the ones it saved."""

    @property
    def algorithm(self) -> str: ...

    @property
    def hyperparameters(self) -> Mapping[str, Any]: ...

    @property
    def rollout_timesteps(self) -> int:
        """Timesteps between two updates. A run trains whole rollouts: ``total_timesteps``
        rounded up to a multiple of this (``metrics['timesteps']`` says how many), and refuses
        fewer than one."""
        ...

    def train(
        self,
        tapes: Sequence[MarketTape],
        *,
        total_timesteps: int,
        seed: int,
        progress: bool = False,
        eval_tapes: Sequence[MarketTape] | None = None,
        checkpoint_dir: str | None = None,
        run_name: str | None = None,
        stop: StopRequest | None = None,
    ) -> TrainedAgent:
        """Same tapes, seed and settings: the same model. ``eval_tapes`` (held-out markets) are
        what periodic evaluation plays, when the trainer evaluates; ``checkpoint_dir`` receives
        periodic checkpoints; ``run_name`` labels the run's logs. Once ``stop`` is set (from
        another thread) training ends at its next step and returns what it trained so far, with
        ``metrics['stopped']`` true."""
        ...

    def load_policy(self, path: str) -> Policy: ...


# ---------------------------------------------------------------------------------------------
# Fill validation
# ---------------------------------------------------------------------------------------------
@attrs.frozen
class ProbeFill:
    """How one probing order filled within its horizon. Counts in count units, times in ms
    from when the order was sent."""

    count: int  # what was ordered
    filled: int  # what filled within the horizon
    taker_filled: int  # of which on arrival, crossing the book
    first_fill_ms: int | None  # until the first fill; None when nothing filled
    full_fill_ms: int | None  # until filled in full; None when it never was
    rejected: bool = False  # refused by the exchange (it then never filled)


@runtime_checkable
class FillProbe(Protocol):
    """Sends one order into a replayed market, alone, and reports how it filled (the simulated
    exchange, with one fill model): how fill rates are measured rather than assumed."""

    @property
    def name(self) -> str:
        """Which fill model this is, for reports (e.g. its queue model)."""
        ...

    def probe(self, tape: MarketTape, request: OrderRequest, *, row: int, horizon_ms: int) -> ProbeFill:
        """Send ``request`` at row ``row``'s time and follow it for ``horizon_ms``."""
        ...


# ---------------------------------------------------------------------------------------------
# Trading records
# ---------------------------------------------------------------------------------------------
TRADING_MODES = ("training", "evaluation", "paper")


@attrs.frozen
class EpisodeResult:
    """How an episode ended. Money in micro-dollars; returns, Sharpe ratio and drawdown are
    statistics (fractions of the starting value), hence floats. ``total_pnl`` is what the episode
    made net of fees: the change in value (cash plus positions at their mark) from its start to
    its end, in replay and in paper trading alike."""

    ended_ms: int
    step_count: int
    trade_count: int
    total_pnl: int
    fees_paid: int
    total_return: float | None = None
    sharpe_ratio: float | None = None
    max_drawdown: float | None = None


@attrs.frozen
class TradingEpisode:
    """One episode of a model on one market: replayed (training, evaluation) or live (paper).

    ``episode_number`` counts the model's episodes, 1, 2, 3, ... across every run and mode; the
    store assigns it. ``result`` is None until the episode is finished.
    """

    episode_id: int
    model_id: int
    episode_number: int
    market_ticker: str
    mode: str  # one of TRADING_MODES
    started_ms: int
    session_id: int | None = None  # the recording replayed; None when trading live
    result: EpisodeResult | None = None

    @property
    def is_finished(self) -> bool:
        return self.result is not None


@attrs.frozen
class TradingAction:
    """One decision of an episode and the order it placed, if any.

    Positions are signed count units (+YES, -NO), before the decision and after the step it
    started. ``price`` (YES price units), ``quantity`` (count units) and ``order_side`` describe the
    order the action decoded to; HOLD, an illegal action or a decision that placed nothing leaves
    them empty. ``order_id`` and ``client_order_id`` name the order at the venue when one was
    sent (the paper actor knows them; a replay may not). ``observation_digest`` identifies the
    exact observation the policy saw, so a live decision can be compared with its replay.
    """

    step_number: int
    timestamp_ms: int
    action_type: str  # the action's name in the model's action space, e.g. HOLD, BUY_YES, BUY_YES_20
    position_before: int
    position_after: int
    action_index: int | None = None  # the policy's raw choice
    order_side: OrderSide | None = None
    price: int | None = None
    quantity: int = 0
    order_id: str | None = None
    client_order_id: str | None = None
    observation_digest: str | None = None


class TradingEpisodeNotFound(LookupError):
    pass


class TradingEpisodeFinished(RuntimeError):
    """Recording into, or finishing, an episode that is already finished."""


@runtime_checkable
class TradingRecords(Protocol):
    """Every episode a model trades and every action in it (``rl_trading_episodes``,
    ``rl_trading_actions``): evaluations record here, and so does the paper-trading actor.

    An episode is started, receives its actions in one or more batches, and is finished once.
    Step numbers are unique within an episode; a batch is written all or nothing.
    """

    async def open(self) -> None:
        """Connect and apply pending migrations (idempotent)."""
        ...

    async def close(self) -> None: ...

    async def start_episode(
        self, model_id: int, *, market_ticker: str, mode: str, started_ms: int, session_id: int | None = None
    ) -> TradingEpisode:
        """A new episode, numbered after the model's last one."""
        ...

    async def record_actions(self, episode_id: int, actions: Sequence[TradingAction]) -> int:
        """Append actions to an unfinished episode, atomically; returns how many were written.
        Raises :class:`TradingEpisodeFinished` for a finished episode and ``ValueError`` for a
        step number the episode already has."""
        ...

    async def finish_episode(self, episode_id: int, result: EpisodeResult) -> TradingEpisode: ...

    async def get_episode(self, episode_id: int) -> TradingEpisode:
        """Raises :class:`TradingEpisodeNotFound` for an unknown id."""
        ...

    async def list_episodes(self, model_id: int | None = None, *, mode: str | None = None) -> list[TradingEpisode]:
        """Episodes by model and episode number."""
        ...

    async def read_actions(self, episode_id: int) -> list[TradingAction]:
        """The episode's actions by step number."""
        ...
