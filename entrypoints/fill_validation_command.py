"""``kalshiflow-rl validate-fills``: measure how passive, mid and aggressive orders fill on replays.

Fill rates are reported by the simulated exchange, not assumed: this replays recorded sessions,
sends probing orders with each pricing strategy through each queue model, and prints the fill
rates and times to fill (:mod:`application.fill_validation`).
"""

from __future__ import annotations

import argparse

import attrs

from application.fill_validation import ProbeSettings, format_fill_report, validate_fills
from application.replay import ReplayConfig
from domain.actions import PricingStrategy
from domain.ports import SessionNotFound
from domain.values import ONE_CONTRACT
from entrypoints.arguments import non_negative_int, positive_int
from entrypoints.config import Settings
from entrypoints.container import Container

DEFAULT_QUEUE_MODELS = ("risk-averse", "probabilistic-power-2")


def add_fill_validation_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "validate-fills",
        help="measure fill rates of passive, mid and aggressive orders on recorded sessions",
        description=(
            "Replay recorded sessions through the simulated exchange with probing orders (buys of YES "
            "and of NO, priced passive, mid and aggressive) and print, per queue model and pricing, the "
            "share of orders and contracts filled, the taker share and the time to fill. Each probe "
            "trades alone in a fresh account."
        ),
    )
    parser.add_argument("--sessions", type=int, nargs="+", required=True, metavar="ID", help="session ids to replay")
    parser.add_argument(
        "--queue-models",
        nargs="+",
        default=list(DEFAULT_QUEUE_MODELS),
        metavar="MODEL",
        help=(
            "queue models to compare: risk-averse, probabilistic-log, probabilistic-power-N "
            f"(default {' '.join(DEFAULT_QUEUE_MODELS)})"
        ),
    )
    parser.add_argument(
        "--pricing",
        nargs="+",
        choices=[strategy.value for strategy in PricingStrategy],
        default=["passive", "mid", "aggressive"],
        help="pricing strategies to probe (default all three)",
    )
    for flag, kind, default, metavar, text in (
        ("--latency-ms", non_negative_int, None, "MS", "order-entry latency (default: the environment's, 100)"),
        ("--refill-ms", positive_int, None, "MS", "consumed liquidity returns after MS (default: as the replay drains it)"),
        ("--size", positive_int, 10, "N", "contracts per probe (default 10)"),
        ("--every-s", positive_int, 30, "S", "seconds of market time between probes (default 30)"),
        ("--horizon-s", positive_int, 60, "S", "how long each probe is followed (default 60)"),
        ("--step-ms", positive_int, 1_000, "MS", "the replay's grid (default 1000)"),
        ("--seed", int, 0, "S", "seed of the probabilistic queue model (default 0)"),
    ):
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)
    parser.add_argument("--maker-fees", action="store_true", help="the series charges makers 1.75%% (default: none)")
    parser.set_defaults(run=validate_fills_command)


async def validate_fills_command(args: argparse.Namespace, settings: Settings, container: Container) -> int:
    from entrypoints.cli import CommandFailed, _opened  # the CLI imports this module: import it late

    environment = container.environment_settings()
    changes = {"maker_fees": args.maker_fees or environment.maker_fees}
    if args.latency_ms is not None:
        changes["latency_ms"] = args.latency_ms
    if args.refill_ms is not None:
        changes["liquidity_refill_ms"] = args.refill_ms
    try:
        environment = attrs.evolve(environment, **changes)
        probes = environment.fill_probes(args.queue_models, seed=args.seed)
        probe_settings = ProbeSettings(
            order_size=args.size * ONE_CONTRACT,
            every_ms=args.every_s * 1000,
            horizon_ms=args.horizon_s * 1000,
            strategies=args.pricing,
        )
    except ValueError as error:
        raise CommandFailed(str(error)) from None
    store = container.store()
    async with _opened(settings, store):
        try:
            report = await validate_fills(
                store,
                args.sessions,
                probes=probes,
                settings=probe_settings,
                fees=environment.fees,
                replay=ReplayConfig(step_ms=args.step_ms),
                cache_dir=settings.cache_dir,
            )
        except SessionNotFound as error:
            where = settings.store_description
            raise CommandFailed(f"cannot validate fills: unknown session ({error}) in {where}") from None
        except ValueError as error:
            raise CommandFailed(f"cannot validate fills: {error}") from None
    print(format_fill_report(report))
    return 0
