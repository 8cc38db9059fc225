"""Environment speed: raw ``OrderbookEnv.step`` calls per second, one process, one JSON line.

Synthetic markets are compiled into tapes first (not timed); then a random agent that picks
uniformly among the legal actions -- so orders are placed, filled, rest and settle -- steps
the environment, resetting at each episode's end. The action choices are drawn up front, so
the number measures the environment (exchange, ledger, features, masks), not the agent.
"""

from __future__ import annotations

import json
import time

import numpy as np

from adapters.gym_env import OrderbookEnv
from adapters.synthetic.market_model import SyntheticMarketConfig, generate
from application.replay import ReplayConfig, compile_session
from domain.actions import ACTION_COUNT


def make_tapes(sessions: int = 2, markets: int = 3, minutes: int = 10) -> list:
    tapes = []
    for seed in range(sessions):
        events = generate(SyntheticMarketConfig(seed=seed, markets=markets, duration_ms=minutes * 60_000))
        tapes.extend(compile_session(events, session_id=seed, config=ReplayConfig()))
    return tapes


def bench_steps(env: OrderbookEnv, steps: int, seed: int) -> tuple[float, dict[str, int]]:
    rng = np.random.default_rng(seed)
    # Uniform draws, mapped onto the legal actions of the moment (cheap: no numpy per step).
    draws = rng.random(steps).tolist()
    _, info = env.reset(seed=seed)
    mask = info["action_mask"].tolist()
    tally = {"episodes": 0, "orders": 0}
    start = time.perf_counter()
    for draw in draws:
        legal = [action for action in range(ACTION_COUNT) if mask[action]]
        _, _, terminated, truncated, info = env.step(legal[int(draw * len(legal))])
        if terminated or truncated:
            tally["episodes"] += 1
            tally["orders"] += info["orders_placed"]
            _, info = env.reset()
        mask = info["action_mask"].tolist()
    elapsed = time.perf_counter() - start
    return steps / elapsed, tally


def bench_hold(env: OrderbookEnv, steps: int) -> float:
    """Steps of an agent that never trades: the floor cost of replay, features and valuation."""
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    tapes = make_tapes()
    env = OrderbookEnv(tapes)
    steps = 60_000
    rate, tally = max((bench_steps(env, steps, seed) for seed in range(3)), key=lambda result: result[0])
    result = {
        "benchmark": "env_step",
        "markets": len(tapes),
        "steps": steps,
        "steps_per_s": round(rate),
        "hold_steps_per_s": round(max(bench_hold(env, steps) for _ in range(3))),
        "episodes": tally["episodes"],
        "orders_placed": tally["orders"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
