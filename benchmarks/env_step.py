"""Environment speed: raw ``OrderbookEnv.step`` calls per second, one process, one JSON line.

Synthetic markets are compiled into tapes first (not timed); then a random agent that picks
uniformly among the legal actions -- so orders are placed, filled, rest and settle -- steps
the environment, resetting at each episode's end. The action choices are drawn up front, so
the number measures the environment (exchange, ledger, features, masks), not the agent. The
exchange runs with its default configuration (named in the output): order-entry latency,
queue position, consumed liquidity.

The environment is configured as training runs it: no step details in ``info`` (the Order and
Fill objects evaluation reads; see ``OrderbookEnv``). ``steps_per_s`` is wall-clock;
``steps_per_cpu_s`` divides by the process's CPU time instead, which moves less when other work
shares the machine. ``detailed_steps_per_s`` is the same agent with step details, as evaluation
steps; ``sized_steps_per_s`` the random agent on the 21-action ``sized`` space;
``hold_steps_per_s`` an agent that never trades; ``reference_steps_per_s`` the random agent with
the reference (Python) exchange instead of the compiled one the environment picks for this
configuration. Each figure is the best of a few runs: the machine is shared.
"""

from __future__ import annotations

import json
import time

import numpy as np

from adapters.gym_env import OrderbookEnv
from adapters.synthetic.market_model import SyntheticMarketConfig, generate_recording
from application.replay import ReplayConfig, compile_session
from domain.actions import ActionConfig, ActionSpace
from domain.values import ONE_CONTRACT


def make_tapes(sessions: int = 2, markets: int = 3, minutes: int = 10) -> list:
    tapes = []
    for seed in range(sessions):
        events = generate_recording(SyntheticMarketConfig(seed=seed, markets=markets, duration_ms=minutes * 60_000))
        tapes.extend(compile_session(events, session_id=seed, config=ReplayConfig()))
    return tapes


def bench_steps(env: OrderbookEnv, steps: int, seed: int) -> tuple[float, float, dict[str, int]]:
    """(steps per wall-clock second, steps per CPU second, tally) of a random legal agent."""
    rng = np.random.default_rng(seed)
    # Uniform draws, mapped onto the legal actions of the moment. The agent's own cost is kept
    # small (the legal actions of each mask, listed once) so the figure is the environment's.
    draws = rng.random(steps).tolist()
    legal_by_mask: dict[bytes, list[int]] = {}
    _, info = env.reset(seed=seed)
    tally = {"episodes": 0, "orders": 0}
    start, cpu_start = time.perf_counter(), time.process_time()
    for draw in draws:
        mask = info["action_mask"].tobytes()
        legal = legal_by_mask.get(mask)
        if legal is None:
            legal = legal_by_mask[mask] = [action for action, allowed in enumerate(mask) if allowed]
        _, _, terminated, truncated, info = env.step(legal[int(draw * len(legal))])
        if terminated or truncated:
            tally["episodes"] += 1
            tally["orders"] += info["orders_placed"]
            _, info = env.reset()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return steps / elapsed, steps / cpu, tally


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
    env = OrderbookEnv(tapes, step_details=False)
    bench_steps(env, 1_000, 0)  # the compiled exchange loads (or compiles) its functions: not timed
    exchange = env.exchange_config
    steps = 60_000
    runs = [bench_steps(env, steps, seed) for seed in range(3)]
    rate, cpu_rate, tally = max(runs, key=lambda result: result[0])
    detailed = OrderbookEnv(tapes)
    sized = OrderbookEnv(
        tapes, actions=ActionConfig(space=ActionSpace.SIZED, max_position=100 * ONE_CONTRACT), step_details=False
    )
    reference = OrderbookEnv(tapes, compiled=False, step_details=False)
    result = {
        "benchmark": "env_step",
        "markets": len(tapes),
        "exchange": f"{exchange.queue_model.name}, {exchange.latency_ms} ms latency",
        "steps": steps,
        "steps_per_s": round(rate),
        "steps_per_cpu_s": round(max(run[1] for run in runs)),
        "detailed_steps_per_s": round(max(bench_steps(detailed, steps, seed)[0] for seed in range(3))),
        "sized_steps_per_s": round(max(bench_steps(sized, steps, seed)[0] for seed in range(3))),
        "hold_steps_per_s": round(max(bench_hold(env, steps) for _ in range(3))),
        "reference_steps_per_s": round(max(bench_steps(reference, steps, 0)[0] for _ in range(2))),
        "episodes": tally["episodes"],
        "orders_placed": tally["orders"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
