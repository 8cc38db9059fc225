"""``kalshiflow-rl serve``: live ingestion in the background, its HTTP service in front.

The same pipeline as ``collect --source kalshi`` -- spilled sessions recovered first, then the
Kalshi feed recorded into one session -- with :mod:`entrypoints.service` served by uvicorn on
the same event loop. The first line on stdout is ``listening http://HOST:PORT`` (``--port 0``
picks a free port); SIGINT/SIGTERM drain the write queue and end the session, then the server
stops, and the session's summary and counters are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator

import attrs
import uvicorn
from starlette.applications import Starlette

from entrypoints.actor_command import actor_beside, print_account
from entrypoints.config import Settings, parse_market_tickers
from entrypoints.container import Container
from entrypoints.ingestion import configure_logging, stop_on_signals
from entrypoints.service import create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
STARTUP_TIMEOUT_S = 10.0
GRACEFUL_SHUTDOWN_S = 5.0
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="record the live feed and serve health, status, books and a book stream over HTTP",
        description=(
            "Run live ingestion (as `collect --source kalshi`: $RL_MARKET_TICKERS from $KALSHI_WS_URL "
            "into the store) in the background and serve, on --host:--port, GET /rl/health, "
            "GET /rl/status, GET /rl/orderbook/snapshot?ticker=T, the WebSocket /rl/ws/orderbook "
            "and POST /rl/admin/flush. Prints 'listening http://HOST:PORT' first; SIGINT or "
            "SIGTERM writes what was received, ends the session and stops."
        ),
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}; anything else exposes /rl/admin to the network)",
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, metavar="N", help=f"0 picks a free one (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--market-tickers",
        "--markets-tickers",
        type=_tickers,
        default=(),
        metavar="T1,T2",
        help="the markets to record (default $RL_MARKET_TICKERS)",
    )
    parser.set_defaults(run=serve)


async def serve(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    # Imported here: entrypoints.cli imports this module to list the command.
    from entrypoints.cli import EXIT_FAILED, CommandFailed, _opened, live_ingestion, print_live_summary, recorded

    ingestion = live_ingestion(args.market_tickers, settings, container)
    configure_logging()
    if args.host not in _LOOPBACK:
        print(f"warning: serving on {args.host}: /rl/admin/flush is reachable from the network", file=sys.stderr)
    async with _opened(settings, ingestion.store), contextlib.AsyncExitStack() as stack:
        for recovery in await ingestion.recover_spills():
            print(recovery.describe(), file=sys.stderr)
        actor = None
        if settings.actor_enabled:
            try:
                actor = await actor_beside(settings, container, ingestion=ingestion, stack=stack)
            except ValueError as error:  # no model, a contract-size mismatch, no API key
                raise CommandFailed(f"cannot start the actor: {error}") from None
        app = create_app(
            ingestion,
            actor_enabled=settings.actor_enabled,
            actor_status=None if actor is None else actor.status,
            actor_kill=None if actor is None else actor.kill,
            actor_fills=None if actor is None else actor.booked_fills,
        )
        try:
            server = await stack.enter_async_context(serving(app, args.host, args.port))
        except OSError as error:
            raise CommandFailed(f"cannot serve on {args.host}:{args.port}: {error}", exit_code=EXIT_FAILED) from None
        print(f"listening {server.url}", flush=True)
        print(
            f"Recording {', '.join(ingestion.tickers)} from {settings.kalshi_ws_url} into "
            f"{settings.store_description}; SIGINT or SIGTERM stops and saves",
            file=sys.stderr,
            flush=True,
        )
        recording = asyncio.ensure_future(ingestion.run())
        trading = None if actor is None else asyncio.ensure_future(actor.run())
        with stop_on_signals(ingestion, recording):
            await asyncio.wait({recording, server.task}, return_when=asyncio.FIRST_COMPLETED)
            if actor is not None and trading is not None:  # first: it cancels what rests while the feed runs
                actor.stop()
                with contextlib.suppress(Exception):
                    await trading
            if not recording.done():  # the server stopped by itself: stop recording too
                await ingestion.stop()
            summary = await recorded(recording, ingestion)
        if server.task.done() and not server.task.cancelled() and server.task.exception() is not None:
            raise CommandFailed(f"the HTTP server failed: {server.task.exception()}", exit_code=EXIT_FAILED)
    print_live_summary(summary, ingestion, settings)
    if actor is not None:
        print_account(actor)
    return 0


# ---------------------------------------------------------------------------------------------
# uvicorn on our event loop
# ---------------------------------------------------------------------------------------------
class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the command owns SIGINT/SIGTERM (drain first)."""

    @contextlib.contextmanager
    def capture_signals(self):  # noqa: ANN201 - overrides uvicorn's
        yield


@attrs.frozen
class Serving:
    url: str  # http://HOST:PORT
    port: int
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def serving(app: Starlette, host: str = DEFAULT_HOST, port: int = 0) -> AsyncIterator[Serving]:
    """Serves ``app`` on ``host:port`` (0: a free port) until the block ends, then shuts down
    gracefully (WebSocket clients are closed, the app's lifespan ends). Raises OSError if the
    address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    config = uvicorn.Config(
        app,
        ws="websockets-sansio",
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="service")
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it
                    raise RuntimeError("the HTTP server stopped while starting")
                await asyncio.sleep(0.01)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        yield Serving(f"http://{shown}:{bound}", bound, task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()


# ---------------------------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------------------------
def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65_535:
        raise argparse.ArgumentTypeError(f"a port lies in 0..65535, got {port}")
    return port


def _tickers(text: str) -> tuple[str, ...]:
    try:
        return parse_market_tickers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
