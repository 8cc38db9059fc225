"""``kalshiflow-rl exchange``: run the local Kalshi exchange on 127.0.0.1.

Kalshi's WebSocket API v2 at ``ws://127.0.0.1:PORT/trade-api/ws/v2`` and its REST trade API
at ``http://127.0.0.1:PORT/trade-api/v2``, over SYNTHETIC order flow, for tests and demos. What
it prints on stdout is meant for programs as much as people:

    listening ws://127.0.0.1:PORT/trade-api/ws/v2      (first line, as soon as it accepts clients)
    markets SYN-0-M0 SYN-0-M1 SYN-0-M2
    stopped: max-events reached after 5000 events; 2 connection(s) served
    book SYN-0-M0 {"market_ticker":...,"yes_dollars_fp":[...],"no_dollars_fp":[...]}
    account KEY {"balance_dollars":"...","positions":{"SYN-0-M0":"-3.00"},"fills":N,"orders":N}

The ``book`` lines (the exchange's final books, in the shape of an ``orderbook_snapshot``'s
``msg``) come at the end of a run that ended by itself (``--max-events``, ``--duration``, or
every market resolved), so a client can check the book it rebuilt; an ``account`` line follows
for each API key that placed orders, so a trading client can check its ledger.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from adapters.kalshi import wire
from adapters.kalshi.auth import KeyLoadError, public_key_from_pem
from adapters.local_exchange import ExchangeConfig, FaultSyntaxError, LocalExchange, parse_fault
from adapters.local_exchange.faults import Fault
from adapters.local_exchange.trading.formats import dollars
from adapters.local_exchange.trading.rate_limit import TIERS, RateTier, parse_tier
from adapters.synthetic.market_model import TICK_STRUCTURES, SyntheticMarketConfig
from domain.fees import FeeSchedule
from domain.values import MONEY_DECIMALS, FixedPointError, format_count, parse_fixed
from entrypoints.arguments import non_negative_int, positive_int
from entrypoints.config import Settings
from entrypoints.container import Container

# The synthetic markets resolve after a day of market time (at --speed 1, a day of wall time).
MARKET_DURATION_MS = 24 * 3_600_000

_FAULT_HELP = """\
faults (--fault, repeatable): KIND@N[:SECONDS][#CONNECTION], at the N-th book message
(orderbook_snapshot or orderbook_delta, counted from 1 over all sids) of a connection:
  drop-connection@N   cut the TCP connection (no close frame) where message N would go
  skip-seq@N          message N carries the next seq: a gap of one
  duplicate@N         message N is sent twice
  malformed@N         a torn copy of message N (not JSON) is sent just before it
  stall@N:SECONDS     nothing is sent for SECONDS before message N
  drop-fill@N         cut the connection where its N-th fill message would go (counts fills)
#CONNECTION picks the connection (numbered from 1 in handshake order; * = every one);
the default #1 leaves a reconnecting client a clean connection.
Example: --fault skip-seq@100 --fault stall@500:3 --fault drop-connection@2000#*"""


def add_exchange_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "exchange",
        help="run a local Kalshi exchange (WebSocket API v2) over synthetic markets",
        description=(
            "Serve Kalshi's WebSocket API v2 on 127.0.0.1 (/trade-api/ws/v2): signed handshakes\n"
            "checked against --public-key; subscribe, unsubscribe, update_subscription and\n"
            "list_subscriptions; orderbook_snapshot then orderbook_delta with per-sid seq, trade,\n"
            "ticker and the private fill channel; Kalshi's error codes; pings every --heartbeat\n"
            "seconds. Also the REST trade API (V2) under /trade-api/v2: orders matched against\n"
            "the synthetic books, one account per key with --balance, fees, settlement, rate\n"
            "limits. The order flow is SYNTHETIC (tickers SYN-<seed>-M<i>). Prints\n"
            "'listening <url>' first; Ctrl-C stops it."
        ),
        epilog=_FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--port",
        type=_port,
        metavar="N",
        help="port on 127.0.0.1; 0 picks a free one (default $KALSHI_LOCAL_PORT or 8765)",
    )
    parser.add_argument("--api-key-id", metavar="ID", help="the key id clients sign with (default $KALSHI_API_KEY_ID)")
    parser.add_argument(
        "--public-key", type=Path, required=True, metavar="PEM", help="PEM file of that key's RSA public key"
    )
    parser.add_argument("--markets", type=positive_int, default=3, metavar="N", help="synthetic markets (default 3)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the order flow (default 0)")
    parser.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="market time per wall time: 1 real time, 60 a minute per second, 0 as fast as possible (default 1)",
    )
    parser.add_argument(
        "--era",
        choices=wire.ERAS,
        default="current",
        help="wire format: current (dollar strings, _fp counts) or legacy (integer cents and contracts); "
        "default current",
    )
    parser.add_argument(
        "--tick",
        choices=TICK_STRUCTURES,
        default="linear_cent",
        help="price grid of the markets (legacy needs linear_cent; default linear_cent)",
    )
    parser.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--max-events", type=positive_int, metavar="N", help="stop after publishing N market events")
    parser.add_argument(
        "--fault", type=_fault, action="append", default=[], metavar="SPEC", help="inject a fault; syntax below"
    )
    parser.add_argument(
        "--send-buffer",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="messages a connection may have waiting before its subscription is dropped with error 25 (default 10000)",
    )
    parser.add_argument(
        "--heartbeat", type=_seconds, default=10.0, metavar="SECONDS", help="ping interval (default 10)"
    )
    parser.add_argument(
        "--balance",
        type=_dollars,
        default=1_000 * 10**MONEY_DECIMALS,
        metavar="DOLLARS",
        help="starting cash of the key's account, e.g. 250.00 (default 1000)",
    )
    parser.add_argument(
        "--fees",
        choices=tuple(FEE_SCHEDULES),
        default="standard",
        help="fee schedule: standard (takers 7%%, makers free), maker-fees (makers 1.75%%), zero; "
        "default standard",
    )
    parser.add_argument(
        "--rate-tier",
        type=_rate_tier,
        default=TIERS["basic"],
        metavar="TIER",
        help=f"REST rate limits: {', '.join(TIERS)}, or READ/WRITE tokens per second (default basic: 200/100)",
    )
    parser.set_defaults(run=exchange)


async def exchange(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    # Imported here, not at the top: entrypoints.cli imports this module to list the command.
    from entrypoints.cli import EXIT_FAILED, CommandFailed

    try:
        config = exchange_config(args, settings)
    except (ValueError, KeyLoadError) as error:
        raise CommandFailed(str(error)) from None
    local = LocalExchange(config)
    try:
        await local.start()
    except OSError as error:
        raise CommandFailed(f"cannot listen on 127.0.0.1:{config.port}: {error}", exit_code=EXIT_FAILED) from None
    try:
        print(f"listening {local.ws_url}", flush=True)
        print(f"markets {' '.join(local.tickers)}", flush=True)
        reason = await local.wait_finished()
    finally:
        await local.stop()
    print(f"stopped: {reason} after {local.events_published} events; {local.connections_served} connection(s) served")
    for ticker in local.tickers:
        book = wire.snapshot_message(local.markets.snapshot(ticker), sid=0, seq=0)["msg"]
        print(f"book {ticker} {wire.encode(book).decode()}")
    for key_id, account in local.accounts.items():
        if account.orders:
            ledger = account.ledger
            summary = {
                "balance_dollars": dollars(ledger.cash),
                "positions": {ticker: format_count(p.quantity) for ticker, p in sorted(ledger.positions.items())},
                "fills": len(account.fills),
                "orders": len(account.orders),
            }
            print(f"account {key_id} {wire.encode(summary).decode()}")
    return 0


def exchange_config(args: argparse.Namespace, settings: Settings) -> ExchangeConfig:
    """The exchange the command line asks for; ValueError / KeyLoadError name what is wrong."""
    key_id = args.api_key_id or settings.kalshi_api_key_id
    if not key_id:
        raise ValueError("no API key id: pass --api-key-id (or set KALSHI_API_KEY_ID)")
    try:
        pem = args.public_key.read_bytes()
    except OSError as error:
        reason = error.strerror or error
        raise KeyLoadError(f"--public-key {str(args.public_key)!r}: cannot read it: {reason}") from None
    public_key = public_key_from_pem(pem, source=f"--public-key {args.public_key}")
    # Market time starts now (a whole second, which the legacy wire needs), so at --speed 1 the
    # wire's timestamps are the wall clock's.
    market = SyntheticMarketConfig(
        seed=args.seed,
        markets=args.markets,
        start_ms=_now_ms() // 1000 * 1000,
        duration_ms=MARKET_DURATION_MS,
        tick_structure=args.tick,
        timestamp_granularity_ms=1000 if args.era == "legacy" else 1,
    )
    return ExchangeConfig(
        api_keys={key_id: public_key},
        market=market,
        port=settings.kalshi_local_port if args.port is None else args.port,
        era=args.era,
        speed=args.speed,
        max_events=args.max_events,
        duration_s=args.duration,
        faults=args.fault,
        send_buffer=args.send_buffer,
        heartbeat_s=args.heartbeat,
        starting_balance=args.balance,
        fees=FEE_SCHEDULES[args.fees](),
        rate_tier=args.rate_tier,
    )


FEE_SCHEDULES = {
    "standard": FeeSchedule.kalshi_standard,
    "maker-fees": FeeSchedule.kalshi_with_maker_fees,
    "zero": FeeSchedule.zero,
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------------------------
# Argument types: a bad value is refused by argparse with the reason
# ---------------------------------------------------------------------------------------------
def _fault(text: str) -> Fault:
    try:
        return parse_fault(text)
    except FaultSyntaxError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _dollars(text: str) -> int:
    try:
        micros = parse_fixed(text, MONEY_DECIMALS, what="balance")
    except FixedPointError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if micros < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0 dollars, got {text}")
    return micros


def _rate_tier(text: str) -> RateTier:
    try:
        return parse_tier(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _speed(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = as fast as possible), got {text}")
    return value


def _port(text: str) -> int:
    value = non_negative_int(text)
    if value > 65_535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value
