"""Training speed: PPO timesteps per second end to end, on the real environment, one JSON line.

Synthetic markets are compiled into tapes first (not timed). Then the project's trainer
(``adapters.sb3``, with its default options unless flags say otherwise: masked PPO, observation
normalisation, in-process vectorisation) learns for ``--timesteps`` steps, ``--repeats`` times;
the JSON line reports the best and the median rate, the settings, and where the time of the
best run went:

* ``env_s``: stepping the environment copies (``VecEnv.step``, simulated exchange included);
* ``rollout_other_s``: the rest of collecting rollouts -- the policy's forward pass, action masks,
  normalisation, the rollout buffer;
* ``gradient_s``: the gradient phase (``model.train``).

The machine is shared, so rates vary from run to run; ``--repeats`` exists for that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from adapters.sb3 import Sb3Trainer, TrainingOptions
from adapters.sb3.settings import VECTORISATIONS
from entrypoints.learning import EnvironmentSettings
from env_step import make_tapes  # run as a script (make bench): this directory is on the path


class PhaseTimer:
    """Wraps a model's rollout, gradient and environment-step methods with stopwatches."""

    def __init__(self) -> None:
        self.seconds = {"rollout": 0.0, "gradient": 0.0, "env": 0.0}

    def wrap(self, owner: Any, method: str, phase: str) -> None:
        inner = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start

        setattr(owner, method, timed)


class TimedTrainer(Sb3Trainer):
    """The trainer, with its model's phases timed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timer = PhaseTimer()

    def _model(self, environments: Any, seed: int) -> Any:
        model = super()._model(environments, seed)
        self.timer.wrap(model, "collect_rollouts", "rollout")
        self.timer.wrap(model, "train", "gradient")
        self.timer.wrap(environments, "step", "env")
        return model


def run_once(tapes: list, options: TrainingOptions, timesteps: int, seed: int) -> tuple[float, dict[str, float]]:
    trainer = TimedTrainer(EnvironmentSettings().make_training_environment, options)
    started = time.perf_counter()
    trainer.train(tapes, total_timesteps=timesteps, seed=seed)
    elapsed = time.perf_counter() - started
    seconds = trainer.timer.seconds
    profile = {
        "total_s": round(elapsed, 2),
        "env_s": round(seconds["env"], 2),
        "rollout_other_s": round(seconds["rollout"] - seconds["env"], 2),
        "gradient_s": round(seconds["gradient"], 2),
    }
    return timesteps / elapsed, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=65_536)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--algorithm", choices=["ppo", "a2c"], default="ppo")
    parser.add_argument("--n-envs", type=int, default=None)
    parser.add_argument("--vectorisation", choices=VECTORISATIONS, default=None)
    parser.add_argument("--no-masks", action="store_true")
    parser.add_argument("--no-normalize", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a hyperparameter")
    args = parser.parse_args()

    overrides: dict[str, Any] = {"algorithm": args.algorithm}
    if args.n_envs is not None:
        overrides["n_envs"] = args.n_envs
    if args.vectorisation is not None:
        overrides["vectorisation"] = args.vectorisation
    if args.torch_threads is not None:
        overrides["torch_threads"] = args.torch_threads
    overrides["action_masks"] = not args.no_masks
    overrides["normalize_observations"] = not args.no_normalize
    overrides["hyperparameters"] = {key: json.loads(value) for key, value in (s.split("=", 1) for s in args.set)}
    options = TrainingOptions(**overrides)

    tapes = make_tapes()
    run_once(tapes, options, 2 * options.n_envs * options.settings["n_steps"], seed=99)  # warm-up, untimed
    runs = [run_once(tapes, options, args.timesteps, seed) for seed in range(args.repeats)]
    rates = [rate for rate, _ in runs]
    best_rate, best_profile = max(runs, key=lambda run: run[0])
    result = {
        "benchmark": "train",
        "algorithm": "maskable-ppo" if options.masked else options.algorithm,
        "timesteps": args.timesteps,
        "repeats": args.repeats,
        "timesteps_per_s": round(best_rate),
        "median_timesteps_per_s": round(statistics.median(rates)),
        "settings": options.as_dict(),
        "markets": len(tapes),
        "profile": best_profile,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
