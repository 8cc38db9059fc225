"""Data quality of a recorded session, checked when it is replayed: a report, never a fix.

Replay compiles whatever was recorded; this says what in it a trainer should know about, per
market:

* book events and trades before the market's first snapshot (replay skips them);
* no scheduled close (:class:`~domain.events.MarketScheduled`) recorded before the first
  snapshot: replay then gives the time-left features a neutral constant instead of counting
  down (older recordings); and events stamped after the scheduled close;
* deltas that drive a level below zero: the book drops the level (Kalshi: gone at <= 0), but a
  level can only go negative when a delta that added to it was lost;
* events after the market's resolution (replay ends the market there and drops them), and events
  recorded before it but stamped after its time (replay cannot place them: it drops them too);
* sequence gaps and repeats per subscription (``sid``), and how many later snapshots
  resynchronised the book. A recording made with ``RL_ORDERBOOK_SAMPLE_RATE`` > 1 folds deltas
  into snapshots, so its sequence numbers jump by design: count those jumps, not losses;
* time the book spent crossed (YES bid above YES ask) or locked, which a matching engine never
  leaves standing: a sign of a lost delta or a bad snapshot;
* time with one side of the book empty (a minor line under 10% of the span), and silences:
  gaps between a market's events longer than ``silence_ms`` (a stalled feed, or a quiet market);
* clock steps back (an event stamped before the one recorded ahead of it) and a market with
  no resolution (its episodes end without settlement).

Durations are measured on the events' own clock, up to the market's last event. A schedule is
the recorder's note of what the exchange announced, not market data: it is counted, but stands
outside the clock, silence and ordering checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, MarketScheduled, PublicTrade
from domain.orderbook import OrderBook

DEFAULT_SILENCE_MS = 60_000


@attrs.frozen
class MarketQuality:
    ticker: str
    events: int  # market data: snapshots, deltas, trades, resolutions (not schedules)
    snapshots: int
    deltas: int
    trades: int
    resolved: bool
    span_ms: int  # first event to last
    before_first_snapshot: int
    sequence_gaps: int
    sequence_repeats: int
    resyncs: int  # snapshots after the first
    crossed_ms: int
    locked_ms: int
    one_sided_ms: int  # at least one side of the book empty
    silences: int
    longest_silence_ms: int
    clock_steps_back: int
    scheduled: bool = True  # a scheduled close was recorded before the first snapshot
    after_close: int = 0  # book and trade events stamped after the scheduled close
    below_zero: int = 0  # deltas that drove a level below zero (the level is dropped)
    after_resolution: int = 0  # events recorded after the first resolution (replay drops them)
    stamped_after_resolution: int = 0  # recorded before the resolution, stamped after its time (dropped)

    def problems(self, silence_ms: int) -> list[str]:
        """One line per finding, empty for a clean market."""
        found = []
        if not self.snapshots:
            found.append("no book snapshot: the market cannot be replayed")
        if self.before_first_snapshot:
            found.append(f"{self.before_first_snapshot} book events and trades before the first snapshot (skipped)")
        if self.snapshots and not self.scheduled:
            found.append(
                "no scheduled close recorded before the first snapshot: the time-left features are "
                "neutral (time_left_hour 0.5, time_left_log 0 on every row), not counted down"
            )
        if self.after_close:
            found.append(f"{self.after_close} events after the scheduled close (time left reads 0)")
        if self.below_zero:
            found.append(
                f"{self.below_zero} deltas drove a level below zero (the level is dropped): a sign of a lost delta"
            )
        if self.after_resolution:
            found.append(f"{self.after_resolution} events after the resolution (dropped: the market ends there)")
        if self.stamped_after_resolution:
            found.append(
                f"{self.stamped_after_resolution} events recorded before the resolution but stamped after its "
                "time (dropped: the market ends at the resolution's time)"
            )
        if self.sequence_gaps or self.sequence_repeats:
            found.append(
                f"{self.sequence_gaps} sequence gaps and {self.sequence_repeats} repeats "
                f"({self.resyncs} resynchronising snapshots; a sampled recording jumps by design)"
            )
        if self.crossed_ms:
            found.append(f"book crossed for {_seconds(self.crossed_ms)}")
        if self.locked_ms:
            found.append(f"book locked for {_seconds(self.locked_ms)}")
        if self.one_sided_ms:
            minor = " (minor: under 10%)" if self.one_sided_ms * 10 < self.span_ms else ""
            found.append(
                f"a side of the book empty for {_seconds(self.one_sided_ms)} of {_seconds(self.span_ms)}{minor}"
            )
        if self.silences:
            found.append(
                f"{self.silences} silences over {_seconds(silence_ms)} (longest {_seconds(self.longest_silence_ms)})"
            )
        if self.clock_steps_back:
            found.append(f"{self.clock_steps_back} events stamped before the event recorded ahead of them")
        if not self.resolved:
            found.append("no resolution: its episodes end without settlement")
        return found


@attrs.frozen
class SessionQuality:
    session_id: int
    silence_ms: int
    markets: tuple[MarketQuality, ...]

    @property
    def is_clean(self) -> bool:
        return not any(market.problems(self.silence_ms) for market in self.markets)

    def problems(self) -> list[str]:
        """``"TICKER: finding"`` lines for every market with findings."""
        return [
            f"{market.ticker}: {finding}" for market in self.markets for finding in market.problems(self.silence_ms)
        ]

    def format(self) -> str:
        lines = [f"session {self.session_id}: {len(self.markets)} markets"]
        for market in self.markets:
            lines.append(
                f"  {market.ticker}: {market.events} events ({market.snapshots} snapshots, {market.deltas} deltas, "
                f"{market.trades} trades) over {_seconds(market.span_ms)}"
            )
            lines.extend(f"    - {finding}" for finding in market.problems(self.silence_ms) or ["clean"])
        return "\n".join(lines)


def check_session(
    events: Sequence[MarketEvent], *, session_id: int, silence_ms: int = DEFAULT_SILENCE_MS
) -> SessionQuality:
    """The report of one session's events, in recorded order."""
    if silence_ms <= 0:
        raise ValueError(f"silence_ms must be > 0, got {silence_ms}")
    resolutions: dict[str, int] = {}  # each market's first resolution time: replay ends it there
    for event in events:
        if isinstance(event, MarketResolved):
            resolutions.setdefault(event.ticker, event.ts_ms)
    markets: dict[str, _MarketCheck] = {}
    last_seq: dict[int | None, int] = {}
    for event in events:
        market = markets.get(event.ticker)
        if market is None:
            market = markets[event.ticker] = _MarketCheck(event.ticker, silence_ms, resolutions.get(event.ticker))
        if isinstance(event, (BookSnapshot, BookDelta)) and event.seq is not None:
            previous = last_seq.get(event.sid)
            last_seq[event.sid] = event.seq if previous is None else max(previous, event.seq)
            if previous is not None and isinstance(event, BookDelta):
                if event.seq > previous + 1:
                    market.sequence_gaps += 1
                elif event.seq <= previous:
                    market.sequence_repeats += 1
        market.add(event)
    return SessionQuality(session_id, silence_ms, tuple(market.report() for market in markets.values()))


class _MarketCheck:
    """One market's running tallies, fed its events in recorded order."""

    def __init__(self, ticker: str, silence_ms: int, resolution_ms: int | None) -> None:
        self.ticker = ticker
        self.silence_ms = silence_ms
        self.resolution_ms = resolution_ms
        self.stamped_after_resolution = 0
        self.book = OrderBook(ticker)
        self.events = self.snapshots = self.deltas = self.trades = 0
        self.resolved = False
        self.before_first_snapshot = 0
        self.sequence_gaps = self.sequence_repeats = 0
        self.crossed_ms = self.locked_ms = self.one_sided_ms = 0
        self.silences = self.longest_silence_ms = self.clock_steps_back = 0
        self.scheduled = False
        self.close_ms: int | None = None
        self.after_close = self.below_zero = self.after_resolution = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.state_since_ms = 0  # when the book took its current state
        self.state = (False, False, False)  # crossed, locked, one-sided

    def add(self, event: MarketEvent) -> None:
        ts = event.ts_ms
        if isinstance(event, MarketScheduled):  # the recorder's note, not market data
            if not self.snapshots:
                self.scheduled, self.close_ms = True, event.close_ms
            return
        self.events += 1
        if self.resolved:
            self.after_resolution += 1
        elif self.resolution_ms is not None and ts > self.resolution_ms and not isinstance(event, MarketResolved):
            self.stamped_after_resolution += 1
        elif self.close_ms is not None and ts > self.close_ms and not isinstance(event, MarketResolved):
            self.after_close += 1
        if self.last_ms is None:
            self.first_ms = ts
        else:
            if ts < self.last_ms:
                self.clock_steps_back += 1
            gap = ts - self.last_ms
            if gap > self.silence_ms:
                self.silences += 1
            self.longest_silence_ms = max(self.longest_silence_ms, gap)
        self.last_ms = ts if self.last_ms is None else max(ts, self.last_ms)
        if isinstance(event, BookSnapshot):
            self.snapshots += 1
            self.book.apply_snapshot(event.yes, event.no)
            self._book_changed(ts)
        elif isinstance(event, BookDelta):
            self.deltas += 1
            if not self.snapshots:
                self.before_first_snapshot += 1
                return
            if self.book.quantity_at(event.side, event.price) + event.delta < 0:
                self.below_zero += 1
            self.book.apply_delta(event.side, event.price, event.delta)
            self._book_changed(ts)
        elif isinstance(event, PublicTrade):
            self.trades += 1
            if not self.snapshots:
                self.before_first_snapshot += 1
        elif isinstance(event, MarketResolved):
            self.resolved = True

    def _book_changed(self, ts: int) -> None:
        self._account(ts)
        book = self.book
        self.state = (book.is_crossed(), book.is_locked(), book.yes_bid < 0 or book.no_bid < 0)

    def _account(self, ts: int) -> None:
        """Adds the time since the last book change to the states the book was in."""
        elapsed = max(0, ts - self.state_since_ms)
        crossed, locked, one_sided = self.state
        self.crossed_ms += elapsed if crossed else 0
        self.locked_ms += elapsed if locked else 0
        self.one_sided_ms += elapsed if one_sided else 0
        self.state_since_ms = max(ts, self.state_since_ms)

    def report(self) -> MarketQuality:
        if self.last_ms is not None and self.snapshots:
            self._account(self.last_ms)
        return MarketQuality(
            ticker=self.ticker,
            events=self.events,
            snapshots=self.snapshots,
            deltas=self.deltas,
            trades=self.trades,
            resolved=self.resolved,
            span_ms=0 if self.first_ms is None or self.last_ms is None else self.last_ms - self.first_ms,
            before_first_snapshot=self.before_first_snapshot,
            sequence_gaps=self.sequence_gaps,
            sequence_repeats=self.sequence_repeats,
            resyncs=max(0, self.snapshots - 1),
            crossed_ms=self.crossed_ms,
            locked_ms=self.locked_ms,
            one_sided_ms=self.one_sided_ms,
            silences=self.silences,
            longest_silence_ms=self.longest_silence_ms,
            clock_steps_back=self.clock_steps_back,
            scheduled=self.scheduled,
            after_close=self.after_close,
            below_zero=self.below_zero,
            after_resolution=self.after_resolution,
            stamped_after_resolution=self.stamped_after_resolution,
        )


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.1f} s"
