"""Recording-session rows <-> :class:`SessionInfo`, and the checks both stores make on sessions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from domain.ports import SessionClosed, SessionInfo, SessionNotFound
from domain.values import Side

# rl_sessions columns a SessionInfo is built from, in order.
SESSION_COLUMNS = (
    "id", "tickers", "source", "started_ms", "ended_ms", "snapshot_count", "delta_count", "trade_count"
)


def checked_tickers(tickers: Sequence[str]) -> tuple[str, ...]:
    # A bare string is a Sequence too: "KXBTC" would become five one-letter markets.
    if isinstance(tickers, str | bytes):
        raise TypeError(f"tickers must be a sequence of market tickers, got the string {tickers!r}")
    checked = tuple(tickers)
    if not checked:
        raise ValueError("a session needs at least one market ticker")
    for ticker in checked:
        if not isinstance(ticker, str) or not ticker:
            raise ValueError(f"market tickers must be non-empty strings, got {ticker!r}")
    if len(set(checked)) != len(checked):
        raise ValueError(f"market tickers repeat: {list(checked)}")
    return checked


def checked_ms(value: int, what: str) -> int:
    # asyncpg would store 1.9 as 1 without a word.
    if type(value) is not int:
        raise ValueError(f"{what} must be an int of epoch milliseconds, got {value!r}")
    return value


def checked_source(source: str) -> str:
    if not isinstance(source, str) or not source:
        raise ValueError(f"a session's source must be a non-empty string, got {source!r}")
    return source


def session_not_found(session_id: int) -> SessionNotFound:
    return SessionNotFound(f"no recording session {session_id}")


def check_open(session_id: int, ended_ms: int | None) -> None:
    if ended_ms is not None:
        raise SessionClosed(f"recording session {session_id} already ended at {ended_ms} ms")


def check_end_time(session_id: int, started_ms: int, ended_ms: int) -> None:
    if ended_ms < started_ms:
        raise ValueError(
            f"session {session_id} cannot end at {ended_ms} ms, before it started at {started_ms} ms"
        )


def resolutions_by_session(rows: Iterable[Sequence]) -> dict[int, dict[str, Side]]:
    """Rows of ``(session_id, market_ticker, result)`` in write order; a later resolution wins."""
    resolutions: dict[int, dict[str, Side]] = {}
    for session_id, ticker, result in rows:
        resolutions.setdefault(session_id, {})[ticker] = Side.parse(result)
    return resolutions


def session_info(row: Sequence, tickers: Sequence[str], resolutions: dict[str, Side]) -> SessionInfo:
    """``row`` holds :data:`SESSION_COLUMNS`; ``tickers`` is its decoded ``tickers`` column."""
    session_id, _, source, started_ms, ended_ms, snapshots, deltas, trades = row
    return SessionInfo(
        session_id=session_id,
        tickers=tuple(tickers),
        source=source,
        started_ms=started_ms,
        ended_ms=ended_ms,
        snapshots=snapshots,
        deltas=deltas,
        trades=trades,
        resolutions=resolutions,
    )
