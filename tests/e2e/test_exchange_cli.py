"""End to end: ``kalshiflow-rl exchange`` in a subprocess, served to a real client signed with a
real key; the run ends by itself and the client's rebuilt books equal the exchange's."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from pathlib import Path

import orjson
import pytest
import websockets

from adapters.kalshi.auth import RequestSigner, generate_keypair, private_key_from_pem
from adapters.kalshi.parsing import parse_frame, parse_message
from domain.events import BookDelta, BookSnapshot, PublicTrade
from domain.orderbook import OrderBook
from entrypoints import cli

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).parent / "kalshiflow-rl"
KEY_ID = "e2e-exchange-key"
URL = re.compile(r"listening (ws://127\.0\.0\.1:(\d+)/trade-api/ws/v2)\n")


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> tuple[RequestSigner, Path]:
    private_pem, public_pem = generate_keypair()
    path = tmp_path_factory.mktemp("keys") / "exchange.pub.pem"
    path.write_bytes(public_pem)
    return RequestSigner(KEY_ID, private_key_from_pem(private_pem)), path


def clean_environment(data_dir: Path) -> dict[str, str]:
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RL_", "KALSHI_")) and name != "DATABASE_URL"
    }
    environ["RL_DATA_DIR"] = str(data_dir)
    return environ


async def start_exchange(key_path: Path, data_dir: Path, *options: str):
    """The exchange subprocess, its URL and its markets, once it says it is listening."""
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "exchange",
        "--port", "0",
        "--api-key-id", KEY_ID,
        "--public-key", str(key_path),
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_environment(data_dir),
    )  # fmt: skip
    first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    listening = URL.fullmatch(first)
    if listening is None:
        process.kill()
        _, stderr = await process.communicate()
        pytest.fail(f"first line {first!r} is not 'listening <url>'; stderr: {stderr.decode()}")
    markets = (await process.stdout.readline()).decode().split()
    assert markets[0] == "markets"
    return process, listening.group(1), markets[1:]


def subscribe(channels: list[str], tickers: list[str]) -> str:
    command = {"id": 1, "cmd": "subscribe", "params": {"channels": channels, "market_tickers": tickers}}
    return orjson.dumps(command).decode()


async def read_until_closed(connection) -> list[str]:
    frames = []
    async with asyncio.timeout(30):
        try:
            while True:
                frames.append(await connection.recv())
        except websockets.ConnectionClosedOK:
            return frames


async def test_the_exchange_serves_a_client_and_exits_by_itself_at_max_events(key, tmp_path):
    signer, key_path = key
    process, url, tickers = await start_exchange(
        key_path, tmp_path, "--markets", "2", "--seed", "4", "--speed", "40", "--max-events", "1500"
    )
    assert tickers == ["SYN-4-M0", "SYN-4-M1"]
    async with websockets.connect(url, additional_headers=signer.websocket_headers(), proxy=None) as connection:
        await connection.send(subscribe(["orderbook_delta", "trade"], tickers))
        frames = await read_until_closed(connection)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()

    lines = stdout.decode().splitlines()
    assert lines[0] == "stopped: max-events reached after 1500 events; 1 connection(s) served"
    final = {}
    for line in lines[1:]:
        word, ticker, body = line.split(" ", 2)
        assert word == "book"
        final[ticker] = parse_message({"type": "orderbook_snapshot", "msg": orjson.loads(body)}, received_ms=0)
    assert list(final) == tickers

    books = {ticker: OrderBook(ticker) for ticker in tickers}
    seqs, trades = [], 0
    for frame in frames:
        message = parse_frame(frame, received_ms=0)
        if isinstance(message, (BookSnapshot, BookDelta)):
            books[message.ticker].apply(message)
            seqs.append(message.seq)
        trades += isinstance(message, PublicTrade)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 100 and trades > 0
    for ticker, snapshot in final.items():
        exchange_book = OrderBook(ticker)
        exchange_book.apply(snapshot)
        assert books[ticker] == exchange_book, ticker


async def test_a_legacy_exchange_exits_by_itself_when_its_duration_is_up(key, tmp_path):
    signer, key_path = key
    process, url, tickers = await start_exchange(
        key_path, tmp_path, "--era", "legacy", "--markets", "1", "--speed", "20", "--duration", "1"
    )
    async with websockets.connect(url, additional_headers=signer.websocket_headers(), proxy=None) as connection:
        await connection.send(subscribe(["orderbook_delta"], tickers))
        frames = await read_until_closed(connection)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().startswith("stopped: duration elapsed after ")
    snapshot = orjson.loads(frames[1])
    assert snapshot["type"] == "orderbook_snapshot" and isinstance(snapshot["msg"]["yes"][0][0], int)
    assert all(isinstance(parse_frame(frame, received_ms=0), (BookSnapshot, BookDelta)) for frame in frames[1:])


# -- refusals, in process: no need to pay for a subprocess to see an error message ---------------
@pytest.fixture
def environment(monkeypatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith(("RL_", "KALSHI_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("RL_DATA_DIR", str(tmp_path))


@pytest.mark.parametrize(
    "options, complaint",
    [
        (["--public-key", "{missing}"], "cannot read it"),
        (["--public-key", "{not_pem}"], "not a readable PEM public key"),
        (["--public-key", "{key}", "--era", "legacy", "--tick", "deci_cent"], "linear_cent"),
    ],
)
def test_a_command_line_it_cannot_serve_is_refused_with_the_reason(
    environment, key, tmp_path, capsys, options, complaint
):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    paths = {"missing": tmp_path / "nope.pem", "not_pem": not_pem, "key": key[1]}
    argv = ["exchange", "--api-key-id", KEY_ID, *[option.format(**paths) for option in options]]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert complaint in error and "Traceback" not in error


def test_a_bad_fault_spec_is_refused_by_the_parser(environment, key, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["exchange", "--api-key-id", KEY_ID, "--public-key", str(key[1]), "--fault", "explode@3"])
    assert exited.value.code == 2
    assert "unknown kind 'explode'" in capsys.readouterr().err


def test_no_key_id_anywhere_is_refused(environment, key, capsys):
    assert cli.main(["exchange", "--public-key", str(key[1])]) == 2
    assert "--api-key-id" in capsys.readouterr().err


def test_a_port_in_use_is_refused(environment, key, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["exchange", "--api-key-id", KEY_ID, "--public-key", str(key[1]), "--port", str(port)])
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
