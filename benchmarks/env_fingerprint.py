"""Environment parity check: one hash per exchange configuration over a long random trajectory.

Not a speed figure: the tool for making the environment's hot path faster without changing what
it does. It steps ``OrderbookEnv`` with a seeded random agent (mostly legal actions, some
illegal) across episodes in five configurations -- the default, the 21-action space, zero
latency, the probabilistic queue model, timed liquidity refill -- and hashes everything an
agent or a ledger could see: observations, rewards, termination, masks, fills, orders, buying
power, episode summaries, ledger snapshots and rejections. Run it before and after a rewrite;
the hashes must match (``--compare BEFORE.json`` says which differ and exits 1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np
from env_step import make_tapes  # run as a script (make bench): this directory is on the path

from adapters.gym_env import OrderbookEnv
from adapters.simulated_exchange import ExchangeConfig
from adapters.simulated_exchange.queue_models import ProbabilisticQueueModel
from domain.actions import ActionConfig, ActionSpace
from domain.values import ONE_CONTRACT

CONFIGS = {
    "default": ({}, 40_000),
    "sized": ({"actions": ActionConfig(space=ActionSpace.SIZED, max_position=100 * ONE_CONTRACT)}, 15_000),
    "latency_0": ({"exchange": ExchangeConfig(latency_ms=0)}, 15_000),
    "probabilistic_queue": ({"exchange": ExchangeConfig(queue_model=ProbabilisticQueueModel())}, 15_000),
    "refill_500ms": ({"exchange": ExchangeConfig(liquidity_refill_ms=500, latency_ms=30)}, 15_000),
}


def _fill(fill) -> tuple:
    return (fill.fill_id, fill.order_id, fill.ticker, fill.side.name, fill.price, fill.count, fill.fee,
            fill.is_taker, fill.ts_ms)  # fmt: skip


def _order(order) -> tuple | None:
    if order is None:
        return None
    return (order.order_id, order.client_order_id, order.ticker, order.side.name, order.price, order.count,
            order.created_ms, order.time_in_force.name, order.filled, order.status.name)  # fmt: skip


def fingerprint(env: OrderbookEnv, steps: int) -> str:
    digest = hashlib.sha256()
    rng = np.random.default_rng(7)
    _, info = env.reset(seed=3)
    for _ in range(steps):
        mask = info["action_mask"]
        legal = np.flatnonzero(mask)
        if rng.random() < 0.9:
            action = int(legal[int(rng.random() * len(legal))])
        else:
            action = int(rng.integers(len(mask)))  # illegal ones too: they must do nothing, the same way
        observation, reward, terminated, truncated, info = env.step(action)
        digest.update(observation.tobytes())
        digest.update(info["action_mask"].tobytes())
        seen = (reward, terminated, truncated, info["portfolio_value"], info["position"], info["illegal_action"],
                [_fill(fill) for fill in info["fills"]], _order(info["order"]), _order(env.open_order),
                env.buying_power)  # fmt: skip
        digest.update(repr(seen).encode())
        if terminated or truncated:
            summary = sorted((key, value) for key, value in info.items() if key not in ("action_mask", "fills", "order"))
            digest.update(repr((summary, env.ledger.snapshot())).encode())
            _, info = env.reset()
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", metavar="BEFORE.json", help="a previous run's JSON line to compare with")
    args = parser.parse_args()
    tapes = make_tapes(sessions=2, markets=3, minutes=6)
    hashes = {name: fingerprint(OrderbookEnv(tapes, **kwargs), steps) for name, (kwargs, steps) in CONFIGS.items()}
    print(json.dumps({"benchmark": "env_fingerprint", "steps": sum(s for _, s in CONFIGS.values()), "hashes": hashes}))
    if args.compare:
        with open(args.compare) as before_file:
            before = json.load(before_file)["hashes"]
        changed = sorted(name for name in hashes if before.get(name) != hashes[name])
        if changed:
            print(f"behaviour changed in: {', '.join(changed)}", file=sys.stderr)
            return 1
        print("identical in every configuration", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
