"""Fixtures for end-to-end tests that run ``kalshiflow-rl`` commands as subprocesses."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from adapters.kalshi.auth import generate_keypair

SCRIPT = Path(sys.executable).parent / "kalshiflow-rl"
TIMEOUT_S = 30


class Process:
    """A ``kalshiflow-rl`` subprocess whose stdout and stderr are collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            asyncio.create_task(self._read(process.stdout, self.stdout)),
            asyncio.create_task(self._read(process.stderr, self.stderr)),
        ]

    @staticmethod
    async def _read(stream: asyncio.StreamReader, lines: list[str]) -> None:
        while line := await stream.readline():
            lines.append(line.decode())

    async def line_matching(self, pattern: re.Pattern[str], stream: str = "stdout") -> re.Match[str]:
        """The first line of ``stream`` that matches, waiting for it (bounded)."""
        lines = self.stdout if stream == "stdout" else self.stderr
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                for line in lines:
                    if match := pattern.search(line):
                        return match
                if self.process.returncode is not None and all(reader.done() for reader in self._readers):
                    code = self.process.returncode
                    pytest.fail(f"exited ({code}) without printing {pattern.pattern!r}:\n{self.output}")
                await asyncio.sleep(0.02)

    async def finished(self) -> int:
        """The exit code, once it has exited and its output is read (bounded)."""
        async with asyncio.timeout(TIMEOUT_S):
            code = await self.process.wait()
            await asyncio.gather(*self._readers)
        return code

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "--- stderr ---\n" + "".join(self.stderr)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in self._readers:
            reader.cancel()


@pytest.fixture
async def kalshiflow_process() -> AsyncIterator[Callable[..., object]]:
    """``await kalshiflow_process("collect", ..., env=...)`` starts the console script; every process
    started is killed when the test ends, however it ends."""
    started: list[Process] = []

    async def start(*argv: str, env: dict[str, str]) -> Process:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT), *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        started.append(Process(process))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            await process.kill()


@pytest.fixture
def subprocess_environment() -> Callable[..., dict[str, str]]:
    """``subprocess_environment(RL_DATA_DIR=...)``: the caller's environment without any of our variables,
    plus the ones given."""

    def build(**variables: str) -> dict[str, str]:
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("RL_", "KALSHI_")) and name != "DATABASE_URL"
        }
        return inherited | variables

    return build


@pytest.fixture(scope="session")
def kalshi_key_files(tmp_path_factory) -> tuple[Path, Path]:
    """A fresh RSA keypair as PEM files: (private, public)."""
    private_pem, public_pem = generate_keypair()
    directory = tmp_path_factory.mktemp("kalshi-keys")
    (directory / "private.pem").write_bytes(private_pem)
    (directory / "public.pem").write_bytes(public_pem)
    return directory / "private.pem", directory / "public.pem"
