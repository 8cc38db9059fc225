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
from domain.market_tape import MarketTape
from domain.orders import Fill, Order, OrderRequest
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
    status: str  # training | active | retired | failed
    path: str
    created_ms: int
    hyperparameters: Mapping[str, Any] = attrs.field(factory=dict)
    metrics: Mapping[str, Any] = attrs.field(factory=dict)


MODEL_STATUSES = ("training", "active", "retired", "failed")


class ModelNotFound(LookupError):
    pass


@runtime_checkable
class ModelRegistry(Protocol):
    """Versions of trained models: metadata in a store, weights as files on disk."""

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
        """Makes this version the active one of its name; the previous active one retires."""
        ...

    async def get(self, model_id: int) -> ModelRecord: ...

    async def active(self, name: str) -> ModelRecord | None: ...

    async def list_models(self, name: str | None = None) -> list[ModelRecord]: ...


# ---------------------------------------------------------------------------------------------
# Trading
# ---------------------------------------------------------------------------------------------
@runtime_checkable
class OrderGateway(Protocol):
    """Where orders go: the simulated exchange, the local exchange, Kalshi's demo exchange."""

    async def create_order(self, request: OrderRequest) -> Order: ...

    async def cancel_order(self, order_id: str) -> Order: ...

    async def open_orders(self, ticker: str | None = None) -> list[Order]: ...

    async def fills(self, since_ms: int = 0) -> list[Fill]: ...

    async def positions(self) -> dict[str, int]:
        """Signed positions in count units: +N YES, -N NO."""
        ...

    async def balance(self) -> int:
        """Cash in micro-dollars."""
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
    which actions are legal now. ``info`` holds ``portfolio_value`` (micro-dollars) and
    ``action_mask`` at reset and every step; the last step adds ``episode_summary``
    (``EpisodeSummary.as_dict()``), ``action_counts`` and ``illegal_actions``.
    """

    @property
    def episode_count(self) -> int: ...

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]: ...

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]: ...

    def action_masks(self) -> Any: ...


@runtime_checkable
class TrainedAgent(Protocol):
    """A trained model: saved as one file, used as a :class:`Policy`."""

    @property
    def algorithm(self) -> str: ...

    @property
    def hyperparameters(self) -> Mapping[str, Any]: ...

    def save(self, path: str) -> None: ...

    def policy(self) -> Policy: ...


@runtime_checkable
class AgentTrainer(Protocol):
    """Trains agents on market tapes (Stable-Baselines3) and loads the ones it saved."""

    @property
    def algorithm(self) -> str: ...

    @property
    def hyperparameters(self) -> Mapping[str, Any]: ...

    def train(
        self, tapes: Sequence[MarketTape], *, total_timesteps: int, seed: int, progress: bool = False
    ) -> TrainedAgent: ...

    def load_policy(self, path: str) -> Policy: ...
