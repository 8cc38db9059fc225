"""End to end: the installed ``kalshiflow-rl`` console script, in a subprocess, on the embedded
SQLite store in a temporary RL_DATA_DIR, with the synthetic market."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.storage import SqliteOrderbookStore

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).parent / "kalshiflow-rl"


def clean_environment(data_dir: Path) -> dict[str, str]:
    """The caller's environment without any of our variables, plus RL_DATA_DIR."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RL_", "KALSHI_")) and name != "DATABASE_URL"
    }
    environ["RL_DATA_DIR"] = str(data_dir)
    return environ


def kalshiflow(*argv: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *argv], env=clean_environment(data_dir), capture_output=True, text=True, timeout=180
    )


def test_collect_then_list_and_show_sessions(tmp_path):
    data_dir = tmp_path / "data"

    collected = kalshiflow("collect", "--source", "synthetic", "--markets", "2", "--events", "400", "--seed", "5", data_dir=data_dir)

    assert collected.returncode == 0, collected.stderr
    match = re.fullmatch(
        r"Recorded session 1: 2 markets, (\d+) events \((\d+) schedules, (\d+) snapshots, (\d+) deltas, "
        r"(\d+) trades, (\d+) resolutions\) into SQLite (.+)\n",
        collected.stdout,
    )
    assert match, collected.stdout
    events, schedules, snapshots, deltas, trades, resolutions = map(int, match.groups()[:6])
    assert events == schedules + snapshots + deltas + trades + resolutions
    assert schedules == 2  # each market's scheduled close, from the synthetic feed as its catalog
    assert snapshots >= 2 and deltas > 0
    assert Path(match.group(7)) == data_dir / "kalshiflow.db"
    assert (data_dir / "kalshiflow.db").is_file()

    listed = kalshiflow("sessions", "list", data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.startswith("ID  TICKERS")
    cells = row.split()
    assert cells[0] == "1" and "synthetic" in cells
    assert cells[-4:-1] == [str(snapshots), str(deltas), str(trades)]

    shown = kalshiflow("sessions", "show", "1", data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Session 1\n  source       synthetic\n")

    unknown = kalshiflow("sessions", "show", "99", data_dir=data_dir)
    assert unknown.returncode == 2
    assert "no session with id 99" in unknown.stderr and "Traceback" not in unknown.stderr


async def test_the_store_holds_exactly_what_collect_reported(tmp_path):
    data_dir = tmp_path / "data"
    collected = kalshiflow("collect", "--markets", "3", "--events", "300", "--seed", "11", data_dir=data_dir)
    assert collected.returncode == 0, collected.stderr
    reported = int(re.search(r", (\d+) events", collected.stdout).group(1))

    store = SqliteOrderbookStore(data_dir / "kalshiflow.db")
    await store.open()
    try:
        (session,) = await store.list_sessions()
        events = await store.read_events(session.session_id)
    finally:
        await store.close()
    assert len(events) == reported
    assert session.is_closed and len(session.tickers) == 3


def test_invalid_configuration_stops_the_script_with_exit_code_2(tmp_path):
    environ = clean_environment(tmp_path) | {"RL_ORDERBOOK_BATCH_SIZE": "abc", "DATABASE_URL": "mysql://x/y"}
    result = subprocess.run(
        [str(SCRIPT), "sessions", "list"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "RL_ORDERBOOK_BATCH_SIZE='abc': must be a positive integer, e.g. 100" in result.stderr
    assert "DATABASE_URL='mysql://x/y': must be a PostgreSQL URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
async def test_ctrl_c_during_collect_keeps_what_was_recorded_and_ends_the_session(tmp_path):
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [str(SCRIPT), "collect", "--markets", "2", "--events", "50000000", "--seed", "1"],
        env=clean_environment(data_dir) | {"RL_ORDERBOOK_BATCH_SIZE": "50"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        database = data_dir / "kalshiflow.db"
        deadline = time.monotonic() + 60
        while not database.exists() and time.monotonic() < deadline:  # started recording
            time.sleep(0.1)
        time.sleep(2.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    saved = int(re.fullmatch(r"Stopped: session 1 ended with (\d+) events saved\.\n", out).group(1))

    store = SqliteOrderbookStore(database)
    await store.open()
    try:
        (session,) = await store.list_sessions()
        events = await store.read_events(session.session_id)
    finally:
        await store.close()
    assert session.is_closed
    assert len(events) == saved > 0
