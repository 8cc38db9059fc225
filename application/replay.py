"""Replay: a recorded session, read from the store once and compiled into market tapes.

Training steps an environment millions of times; none of those steps may touch a store. So a
session is read once, its events are run through the one order book (``domain.orderbook``) and
sampled on a fixed time grid into a :class:`~domain.market_tape.MarketTape` per market:
top-of-book depth, the trades between samples, marks and the market features of every step,
and the market log the simulated exchange fills orders from between samples (every level
change as the level's new size, every trade, in recorded order).
Compiled tapes are cached on disk (one ``.npz`` per session), keyed by the session's id and
a fingerprint of what the store says it holds, so a re-created store with reused ids, or a new
compile format, never reads a stale cache. Sessions still being recorded are never cached.

A market's tape starts at its first book snapshot (deltas before it cannot be applied) and
ends at its resolution, or its last event when it has none. Sampling is causal: a row holds the
book after every event stamped at or before its time, in the order the events were recorded.

Every market of a session sits on one clock: row times are multiples of ``step_ms`` on the Unix
clock (the session's grid, whichever markets it holds), the first at or after the market's
first snapshot; the last row is the market's end, off the grid.

Nothing in a row comes from after its time. The time-left features count down to the market's
scheduled close (:class:`~domain.events.MarketScheduled`, recorded before its first snapshot:
the latest such, when there are several; later ones are ignored), as the live actor counts down
to the exchange's ``close_time`` -- never to the resolution or the last event, which a row
cannot know. A recording without one gets the features' neutral values
(``domain.features.UNKNOWN_TIME_LEFT_*``) and a data-quality finding.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np

from application.data_quality import check_session
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.features import FEATURE_NAMES, market_features
from domain.market_tape import LOG_TRADE_YES_TAKER, NO_LEVEL, MarketTape, mark_prices
from domain.orderbook import OrderBook
from domain.ticks import coarsest_structure
from domain.ports import OrderbookStore, SessionInfo
from domain.values import ONE_DOLLAR, Side

# Bump when the tape layout or the feature definitions change: old cache files are then ignored.
# 2: the market log (level changes and trades between rows, for the simulated exchange).
# 3: time left counted to the scheduled close (not the tape's end); rows on the session's grid.
TAPE_FORMAT_VERSION = 4

log = logging.getLogger(__name__)


def _positive(_instance: object, attribute: attrs.Attribute, value: int) -> None:  # type: ignore[type-arg]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen
class ReplayConfig:
    step_ms: int = attrs.field(default=1_000, validator=_positive)  # time between agent decisions
    depth_levels: int = attrs.field(default=10, validator=_positive)  # bids kept per side per step


def compile_session(events: Sequence[MarketEvent], *, session_id: int, config: ReplayConfig) -> list[MarketTape]:
    """One tape per market of the session that has a snapshot and lasts at least one step.

    Tapes come in the order the markets first appear.
    """
    by_market: dict[str, list[MarketEvent]] = {}
    for event in events:
        by_market.setdefault(event.ticker, []).append(event)
    tapes = []
    for ticker, market_events in by_market.items():
        tape = compile_market(market_events, ticker=ticker, session_id=session_id, config=config)
        if tape is not None:
            tapes.append(tape)
    return tapes


def compile_market(
    events: Sequence[MarketEvent], *, ticker: str, session_id: int, config: ReplayConfig
) -> MarketTape | None:
    """One market's events (recorded order) as a tape; None if it has no snapshot or no step."""
    start = next((i for i, event in enumerate(events) if isinstance(event, BookSnapshot)), None)
    if start is None:
        return None
    schedule = next(
        (event for event in reversed(events[:start]) if isinstance(event, MarketScheduled)), None
    )
    events = [event for event in events[start:] if not isinstance(event, MarketScheduled)]
    end = next((i for i, event in enumerate(events) if isinstance(event, MarketResolved)), None)
    if end is not None:
        resolution = events[end]
        assert isinstance(resolution, MarketResolved)
        events = events[:end]  # the market ends here; data quality counts what came after
        end_ms, result = resolution.ts_ms, resolution.result
    else:
        end_ms, result = max(event.ts_ms for event in events), None
    step = config.step_ms
    first_ms = -(-events[0].ts_ms // step) * step  # the session's grid: at or after the snapshot
    times = list(range(first_ms, end_ms, step))
    times.append(end_ms)
    if len(times) < 2:
        return None
    close_ms = None if schedule is None else schedule.close_ms

    depth = config.depth_levels
    n = len(times)
    bid_prices = np.full((n, 2, depth), NO_LEVEL, dtype=np.int32)
    bid_counts = np.zeros((n, 2, depth), dtype=np.int64)
    trade_offsets = np.zeros(n + 1, dtype=np.int64)
    trade_prices: list[int] = []
    trade_counts: list[int] = []
    trade_takers: list[int] = []
    log = _MarketLog()
    log_offsets = np.zeros(n + 1, dtype=np.int64)

    book = OrderBook(ticker)
    position = 0
    for row, time_ms in enumerate(times):
        if row:
            log.floor_ms = times[row - 1] + 1  # an entry belongs to its interval, whatever its stamp
        while position < len(events) and events[position].ts_ms <= time_ms:
            event = events[position]
            position += 1
            if isinstance(event, BookDelta):
                count = book.apply_delta(event.side, event.price, event.delta)
                log.add(event.ts_ms, int(event.side), event.price, count)
            elif isinstance(event, PublicTrade):
                trade_prices.append(event.yes_price)
                trade_counts.append(event.count)
                trade_takers.append(int(event.taker_side))
                log.add(event.ts_ms, LOG_TRADE_YES_TAKER + int(event.taker_side), event.yes_price, event.count)
            elif isinstance(event, BookSnapshot):
                before = (dict(book.levels(0)), dict(book.levels(1)))
                book.apply_snapshot(event.yes, event.no)
                for side in (0, 1):
                    after = dict(book.levels(side))
                    for price in sorted(before[side].keys() | after.keys()):
                        if before[side].get(price) != after.get(price):
                            log.add(event.ts_ms, side, price, after.get(price, 0))
        for side in (0, 1):
            for level, (price, count) in enumerate(book.depth(side, depth)):
                bid_prices[row, side, level] = price
                bid_counts[row, side, level] = count
        trade_offsets[row + 1] = len(trade_prices)
        log_offsets[row + 1] = len(log.times)

    best_yes = bid_prices[:, 0, 0].astype(np.int64)
    best_no = bid_prices[:, 1, 0].astype(np.int64)
    yes_ask = np.where(best_no >= 0, ONE_DOLLAR - best_no, -1)
    marks = mark_prices(best_yes, yes_ask)
    time_array = np.asarray(times, dtype=np.int64)
    prices = np.asarray(trade_prices, dtype=np.int32)
    counts = np.asarray(trade_counts, dtype=np.int64)
    takers = np.asarray(trade_takers, dtype=np.int8)
    features = market_features(
        times=time_array,
        expiry_ms=close_ms,  # known in advance; the tape's end (end_ms) never reaches a feature
        bid_prices=bid_prices,
        bid_counts=bid_counts,
        marks=marks,
        trade_offsets=trade_offsets,
        trade_counts=counts,
        trade_takers=takers,
    )
    return MarketTape(
        session_id=session_id,
        ticker=ticker,
        step_ms=config.step_ms,
        times=time_array,
        bid_prices=bid_prices,
        bid_counts=bid_counts,
        marks=marks,
        trade_offsets=trade_offsets,
        trade_prices=prices,
        trade_counts=counts,
        trade_takers=takers,
        features=features,
        expiry_ms=end_ms,
        result=result,
        close_ms=close_ms,
        price_levels=coarsest_structure(itertools.chain(log.prices, trade_prices)),
        log_offsets=log_offsets,
        log_times=np.asarray(log.times, dtype=np.int64),
        log_kinds=np.asarray(log.kinds, dtype=np.int8),
        log_prices=np.asarray(log.prices, dtype=np.int32),
        log_counts=np.asarray(log.counts, dtype=np.int64),
    )


class _MarketLog:
    """The market log being compiled. Entry times are made non-decreasing and kept inside their
    interval: a recording's clock may step back, and the recorded order is what counts."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.kinds: list[int] = []
        self.prices: list[int] = []
        self.counts: list[int] = []
        self.floor_ms = -(2**62)

    def add(self, ts_ms: int, kind: int, price: int, count: int) -> None:
        self.floor_ms = max(ts_ms, self.floor_ms)
        self.times.append(self.floor_ms)
        self.kinds.append(kind)
        self.prices.append(price)
        self.counts.append(count)


async def load_session_tapes(
    store: OrderbookStore, session_id: int, *, config: ReplayConfig, cache_dir: Path | None = None
) -> list[MarketTape]:
    """The tapes of one session: from the cache when it holds this exact session, else compiled
    from the store (and cached, once the session has ended).

    Either way the session's data-quality findings (:mod:`application.data_quality`) are logged
    as a warning: replay compiles what was recorded and never fixes it silently.
    """
    info = await store.get_session(session_id)
    path = None if cache_dir is None else Path(cache_dir) / f"replay-s{session_id}-{_fingerprint(info, config)}.npz"
    findings_path = None if path is None else path.with_suffix(".quality.txt")
    if path is not None and findings_path is not None and path.exists() and findings_path.exists():
        _warn_about_quality(session_id, findings_path.read_text().splitlines())
        return _read_tapes(path)
    events = await store.read_events(session_id)
    findings = check_session(events, session_id=session_id).problems()
    _warn_about_quality(session_id, findings)
    tapes = compile_session(events, session_id=session_id, config=config)
    if path is not None and findings_path is not None and info.is_closed:
        _write_tapes(path, tapes)
        findings_path.write_text("".join(f"{line}\n" for line in findings))
    return tapes


def _warn_about_quality(session_id: int, findings: Sequence[str]) -> None:
    if findings:
        log.warning(
            "session %d data quality (`kalshiflow-rl sessions check %d` for the report):\n  %s",
            session_id,
            session_id,
            "\n  ".join(findings),
        )


async def load_tapes(
    store: OrderbookStore, session_ids: Sequence[int], *, config: ReplayConfig, cache_dir: Path | None = None
) -> list[MarketTape]:
    """Every tape of ``session_ids``, session by session."""
    tapes: list[MarketTape] = []
    for session_id in session_ids:
        tapes.extend(await load_session_tapes(store, session_id, config=config, cache_dir=cache_dir))
    return tapes


@functools.cache
def _compiler_digest() -> str:
    """The source of the code that shapes a tape: a change to a feature's window or a rule of
    compilation makes every cached tape stale, whether or not TAPE_FORMAT_VERSION was bumped."""
    digest = hashlib.sha256()
    for name in ("domain.features", "domain.market_tape", "domain.ticks", "domain.orderbook", __name__):
        digest.update(Path(sys.modules[name].__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


def _fingerprint(info: SessionInfo, config: ReplayConfig) -> str:
    described = {
        "format": TAPE_FORMAT_VERSION,
        "compiler": _compiler_digest(),
        "features": FEATURE_NAMES,
        "config": attrs.asdict(config),
        "session": [
            info.session_id,
            list(info.tickers),
            info.source,
            info.started_ms,
            info.ended_ms,
            info.snapshots,
            info.deltas,
            info.trades,
            sorted((ticker, int(side)) for ticker, side in info.resolutions.items()),
        ],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


_ARRAYS = (
    "times",
    "bid_prices",
    "bid_counts",
    "marks",
    "trade_offsets",
    "trade_prices",
    "trade_counts",
    "trade_takers",
    "features",
    "log_offsets",
    "log_times",
    "log_kinds",
    "log_prices",
    "log_counts",
)


def _write_tapes(path: Path, tapes: Sequence[MarketTape]) -> None:
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for index, tape in enumerate(tapes):
        for name in _ARRAYS:
            arrays[f"{index}_{name}"] = getattr(tape, name)
        meta.append(
            {
                "session_id": tape.session_id,
                "ticker": tape.ticker,
                "step_ms": tape.step_ms,
                "expiry_ms": tape.expiry_ms,
                "close_ms": tape.close_ms,
                "price_levels": tape.price_levels,
                "result": None if tape.result is None else int(tape.result),
            }
        )
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as file:  # a file object: np.savez would append ".npz" to a name
        np.savez(file, **arrays)
    os.replace(partial, path)  # readers see the whole file or none of it


def _read_tapes(path: Path) -> list[MarketTape]:
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(archive["meta"].tobytes().decode())
        return [
            MarketTape(
                session_id=item["session_id"],
                ticker=item["ticker"],
                step_ms=item["step_ms"],
                expiry_ms=item["expiry_ms"],
                close_ms=item["close_ms"],
                price_levels=item["price_levels"],
                result=None if item["result"] is None else Side(item["result"]),
                **{name: archive[f"{index}_{name}"] for name in _ARRAYS},
            )
            for index, item in enumerate(meta)
        ]
