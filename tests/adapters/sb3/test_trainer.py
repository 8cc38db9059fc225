"""The SB3 trainer on the real environment, kept tiny: reproducibility, normalisation, masks,
checkpoints, evaluation, the curriculum, and the model file."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from adapters.sb3 import ModelFileError, Sb3Trainer, TrainingOptions
from adapters.sb3.curriculum import CurriculumEnv, tape_difficulty
from adapters.sb3.model_file import ModelMetadata
from adapters.sb3.policy import Sb3Policy
from adapters.sb3.settings import Curriculum
from domain.ports import AgentTrainer, Policy, TrainedAgent
from entrypoints.learning import EnvironmentSettings

TINY = {"n_steps": 32, "batch_size": 64, "n_epochs": 2, "net_arch": [16, 16]}


def trainer(**options) -> Sb3Trainer:
    options = {"n_envs": 2, "hyperparameters": TINY, **options}
    if options.get("algorithm") == "a2c":
        options["hyperparameters"] = {"n_steps": 8, "net_arch": [16, 16]}
    return Sb3Trainer(EnvironmentSettings().make_environment, TrainingOptions(**options))


def test_the_trainer_and_its_agent_satisfy_the_ports(tapes):
    agent = trainer().train(tapes, total_timesteps=64, seed=0)
    assert isinstance(trainer(), AgentTrainer)
    assert isinstance(agent, TrainedAgent) and isinstance(agent.policy(), Policy)
    assert agent.hyperparameters["total_timesteps"] == 64 and agent.hyperparameters["action_masks"] is True
    assert agent.metrics["timesteps"] >= 64 and agent.metrics["timesteps_per_s"] > 0


def test_a_run_trains_whole_rollouts_and_says_how_many_timesteps(tapes):
    assert trainer().rollout_timesteps == 64 and trainer(n_envs=3).rollout_timesteps == 96  # 32 steps x copies
    agent = trainer().train(tapes, total_timesteps=100, seed=0)
    assert agent.metrics["timesteps"] == 128  # two rollouts of 64
    assert agent.hyperparameters["total_timesteps"] == 100


@pytest.mark.parametrize("algorithm", ["ppo", "a2c"])
def test_the_same_seed_trains_the_same_weights_and_another_seed_does_not(tapes, algorithm):
    first = trainer(algorithm=algorithm).train(tapes, total_timesteps=256, seed=7).weights()
    again = trainer(algorithm=algorithm).train(tapes, total_timesteps=256, seed=7).weights()
    other = trainer(algorithm=algorithm).train(tapes, total_timesteps=256, seed=8).weights()

    assert first.keys() == again.keys()
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not all(np.array_equal(first[name], other[name]) for name in first)


def test_the_loaded_policy_normalises_observations_as_training_did(tapes, tmp_path):
    agent = trainer().train(tapes, total_timesteps=256, seed=1)
    training_environment = agent.model.get_env()  # the VecNormalize the model learned behind
    path = tmp_path / "model.zip"
    agent.save(str(path))
    policy = trainer().load_policy(str(path))

    environment = EnvironmentSettings().make_environment(tapes)
    observation, _ = environment.reset(seed=3)
    for _ in range(5):
        observation, *_ = environment.step(0)
    normalised = training_environment.normalize_obs(observation.copy())
    with torch.no_grad():
        tensor, _ = agent.model.policy.obs_to_tensor(normalised.astype(np.float32))
        expected = agent.model.policy.get_distribution(tensor).distribution.probs.numpy()[0]
        raw_tensor, _ = agent.model.policy.obs_to_tensor(observation)
        unnormalised = agent.model.policy.get_distribution(raw_tensor).distribution.probs.numpy()[0]

    np.testing.assert_allclose(policy.action_probabilities(observation), expected, rtol=1e-6)
    assert not np.allclose(unnormalised, expected)  # the normalisation matters to this model
    assert policy.metadata.normalizer is not None and np.any(policy.metadata.normalizer.mean != 0)


def test_without_normalisation_the_policy_sees_raw_observations(tapes, tmp_path):
    agent = trainer(normalize_observations=False).train(tapes, total_timesteps=64, seed=1)
    agent.save(str(tmp_path / "raw.zip"))
    policy = trainer().load_policy(str(tmp_path / "raw.zip"))
    observation = np.linspace(-1, 1, agent.model.observation_space.shape[0]).astype(np.float32)

    assert policy.metadata.normalizer is None
    np.testing.assert_array_equal(policy.prepare(observation), observation)


class IllegalActionCounter(gym.Wrapper):
    counts: list[int] = []

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        IllegalActionCounter.counts.append(int(info["illegal_action"]))
        return observation, reward, terminated, truncated, info


def counting_trainer(masks: bool) -> Sb3Trainer:
    settings = EnvironmentSettings()
    return Sb3Trainer(
        lambda tapes: IllegalActionCounter(settings.make_environment(tapes)),
        TrainingOptions(n_envs=2, hyperparameters=TINY, action_masks=masks),
    )


@pytest.mark.parametrize("masks", [True, False])
def test_with_masks_training_never_takes_an_illegal_action(tapes, masks):
    IllegalActionCounter.counts = []
    counting_trainer(masks).train(tapes, total_timesteps=512, seed=2)

    assert len(IllegalActionCounter.counts) >= 512
    # An untrained policy without masks tries to sell what it does not hold, often.
    assert (sum(IllegalActionCounter.counts) == 0) is masks


class FixedPolicy(Sb3Policy):
    """The real act() over a known distribution: BUY_YES most likely, then SELL_YES."""

    def network_probabilities(self, observation):
        return np.array([0.1, 0.5, 0.2, 0.1, 0.1], dtype=np.float32)


@pytest.mark.parametrize(("masked", "expected"), [(True, 2), (False, 0)])
def test_a_masked_policy_picks_its_best_legal_action_an_unmasked_one_holds(masked, expected):
    policy = FixedPolicy(model=None, metadata=ModelMetadata(algorithm="ppo", masked=masked))
    buy_yes_illegal = np.array([True, False, True, True, True])

    assert policy.act(np.zeros(3)) == 1
    assert policy.act(np.zeros(3), buy_yes_illegal) == expected


def test_a_masked_policy_acts_from_the_distribution_over_its_legal_actions():
    buy_yes_illegal = np.array([True, False, True, True, True])
    masked = FixedPolicy(model=None, metadata=ModelMetadata(algorithm="maskable-ppo", masked=True))
    unmasked = FixedPolicy(model=None, metadata=ModelMetadata(algorithm="ppo", masked=False))

    # BUY_YES's 0.5 is gone; the other 0.5 is spread in proportion: 0.1/0.5, 0.2/0.5, ...
    np.testing.assert_allclose(masked.action_probabilities(np.zeros(3), buy_yes_illegal), [0.2, 0, 0.4, 0.2, 0.2])
    np.testing.assert_allclose(masked.action_probabilities(np.zeros(3)), [0.1, 0.5, 0.2, 0.1, 0.1])
    # Trained without masks, it acts from the network's own distribution (an illegal pick holds).
    np.testing.assert_allclose(unmasked.action_probabilities(np.zeros(3), buy_yes_illegal), [0.1, 0.5, 0.2, 0.1, 0.1])


def test_checkpoints_and_evaluations_happen_periodically(tapes, make_tapes, tmp_path):
    held_out = make_tapes(9, markets=1)
    agent = trainer(checkpoint_every=128, eval_every=128, eval_episodes=1).train(
        tapes, total_timesteps=256, seed=4, eval_tapes=held_out, checkpoint_dir=str(tmp_path / "checkpoints")
    )

    saved = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert saved == ["step-128.zip", "step-256.zip"]
    assert agent.metrics["checkpoints"] == [str(tmp_path / "checkpoints" / name) for name in saved]
    assert isinstance(trainer().load_policy(str(tmp_path / "checkpoints" / "step-128.zip")), Sb3Policy)
    assert [evaluation["timesteps"] for evaluation in agent.metrics["evaluations"]] == [128, 256]
    assert all(np.isfinite(evaluation["mean_reward"]) for evaluation in agent.metrics["evaluations"])


def test_every_periodic_evaluation_plays_the_same_episodes(tapes, make_tapes, monkeypatch):
    from adapters.gym_env import OrderbookEnv

    held_out = make_tapes(9, markets=3)
    episodes: list[tuple[str, int]] = []
    reset = OrderbookEnv.reset

    def recording_reset(self, *, seed=None, options=None):
        if self.tapes == tuple(held_out):  # the evaluation environment's copy
            episodes.append(options["episode"])
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(OrderbookEnv, "reset", recording_reset)
    trainer(eval_every=128, eval_episodes=4).train(tapes, total_timesteps=256, seed=4, eval_tapes=held_out)
    # Two evaluations of 4 episodes over 3 markets, each from the first: 0 1 2 0, then again.
    # (After each evaluation's last episode the vectorised environment resets once more: 1.)
    assert episodes == [0, 1, 2, 0, 1, 0, 1, 2, 0, 1]


def test_the_episode_cycle_plays_episodes_in_order_and_restarts(tapes):
    from adapters.sb3.trainer import EpisodeCycle

    cycle = EpisodeCycle(EnvironmentSettings().make_environment(tapes))
    assert [cycle.reset()[1]["episode"] for _ in range(len(tapes) + 1)] == [*range(len(tapes)), 0]
    cycle.restart()
    assert cycle.reset()[1]["episode"] == 0 and cycle.action_masks()[0]


class StopAfter:
    """A stop request that becomes set once it has been asked ``checks`` times."""

    def __init__(self, checks: int) -> None:
        self.checks = checks
        self.asked = 0

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked > self.checks


def test_a_stop_request_ends_training_at_the_next_step(tapes):
    stop = StopAfter(checks=40)  # 40 steps of 2 copies: 80 timesteps, in the second 64-step rollout
    agent = trainer().train(tapes, total_timesteps=1_000_000, seed=0, stop=stop)

    assert stop.asked == 41 and agent.model.num_timesteps == 82  # the step that saw it set still ran
    assert agent.metrics["timesteps"] == 82 and agent.metrics["stopped"] is True
    assert "stopped" not in trainer().train(tapes, total_timesteps=64, seed=0, stop=StopAfter(10**9)).metrics


def _weights(policy: Sb3Policy) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in policy.model.policy.state_dict().items()}


def _same_weights(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> bool:
    return first.keys() == second.keys() and all(np.array_equal(first[name], second[name]) for name in first)


def test_a_checkpoint_holds_the_update_of_every_timestep_it_is_named_after(tapes, tmp_path):
    # 2 copies x 32 steps = 64 timesteps a rollout: checkpoints after the update of the rollout
    # ending at 128, and at the end (192).
    agent = trainer(checkpoint_every=128).train(tapes, total_timesteps=192, seed=5, checkpoint_dir=str(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["step-128.zip", "step-192.zip"]
    first, last = (trainer().load_policy(str(tmp_path / name)) for name in ("step-128.zip", "step-192.zip"))

    # The last checkpoint is the final model, weights and normalisation statistics alike.
    assert _same_weights(_weights(last), agent.weights())
    final = agent.policy().metadata.normalizer
    np.testing.assert_array_equal(last.metadata.normalizer.mean, final.mean)
    np.testing.assert_array_equal(last.metadata.normalizer.var, final.var)
    # The first is what a run of 128 timesteps (two updates) trains, not the initial weights.
    shorter = trainer().train(tapes, total_timesteps=128, seed=5)
    assert _same_weights(_weights(first), shorter.weights())
    np.testing.assert_array_equal(first.metadata.normalizer.mean, shorter.policy().metadata.normalizer.mean)
    untrained = trainer()._model(trainer()._environments(tapes, 2, seed=5, start_pool=0), 5).policy.state_dict()
    assert not _same_weights(_weights(first), {name: tensor.numpy() for name, tensor in untrained.items()})


def test_a_stopped_run_checkpoints_no_rollout_it_did_not_learn_from(tapes, tmp_path):
    trainer(checkpoint_every=64).train(tapes, total_timesteps=1_000, seed=0, checkpoint_dir=str(tmp_path), stop=StopAfter(100))

    # 100 steps of 2 copies: stopped in the fourth rollout; the third's update is the last learnt.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["step-128.zip", "step-192.zip", "step-64.zip"]


def test_the_training_curve_has_a_point_per_rollout_that_ended_episodes(tapes):
    agent = trainer().train(tapes, total_timesteps=512, seed=2)  # 2 copies x 32 steps a rollout

    curve = agent.metrics["training_curve"]
    assert curve, "two-minute markets end episodes within 512 timesteps"
    timesteps = [point["timesteps"] for point in curve]
    assert timesteps == sorted(set(timesteps)) and all(t % 64 == 0 and t <= 512 for t in timesteps)
    assert all(point["episodes"] >= 1 and np.isfinite(point["mean_episode_reward"]) for point in curve)
    # Every episode that ended is in exactly one point (the monitor's buffer keeps the last 100).
    assert sum(point["episodes"] for point in curve) == len(agent.model.ep_info_buffer)


def test_tensorboard_logs_are_written_under_the_run_name(tapes, tmp_path):
    trainer(tensorboard_dir=str(tmp_path / "tb")).train(tapes, total_timesteps=128, seed=0, run_name="book-v3")

    (run,) = (tmp_path / "tb").iterdir()
    assert run.name.startswith("book-v3") and any(path.name.startswith("events.out.tfevents") for path in run.iterdir())


def test_options_are_checked_before_anything_runs(tapes):
    with pytest.raises(ValueError, match=r"unknown a2c hyperparameters \['batch_size'\]"):
        TrainingOptions(algorithm="a2c", hyperparameters={"batch_size": 64})
    with pytest.raises(ValueError, match="n_envs must be an integer >= 1, got 0"):
        TrainingOptions(n_envs=0)
    with pytest.raises(ValueError, match="vectorisation"):
        TrainingOptions(vectorisation="threads")
    with pytest.raises(ValueError, match="checkpoint_every is set but no checkpoint_dir"):
        trainer(checkpoint_every=64).train(tapes, total_timesteps=64, seed=0)
    with pytest.raises(ValueError, match="total_timesteps must be an integer >= 1"):
        trainer().train(tapes, total_timesteps=0, seed=0)
    with pytest.raises(ValueError, match=r"total_timesteps 63 is less than one rollout \(32 steps x 2 environments = "
                                         r"64 timesteps\), the least a run trains"):
        trainer().train(tapes, total_timesteps=63, seed=0)
    with pytest.raises(ValueError, match="at least one market tape"):
        trainer().train([], total_timesteps=64, seed=0)


def test_a_file_that_is_not_a_model_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        trainer().load_policy(str(tmp_path / "missing.zip"))
    (tmp_path / "notes.zip").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="is not a kalshiflow-rl model file"):
        trainer().load_policy(str(tmp_path / "notes.zip"))


def test_a_model_trained_on_other_observation_features_is_refused(tapes, tmp_path):
    import json
    import zipfile

    path = tmp_path / "model.zip"
    trainer().train(tapes, total_timesteps=64, seed=0).save(str(path))
    assert trainer().load_policy(str(path)) is not None

    def rewrite(edit) -> None:
        with zipfile.ZipFile(path) as archive:
            entries = {name: archive.read(name) for name in archive.namelist()}
        entry = json.loads(entries["kalshiflow.json"])
        edit(entry)
        entries["kalshiflow.json"] = json.dumps(entry).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in entries.items():
                archive.writestr(name, data)

    rewrite(lambda entry: entry["observation_features"].__setitem__(19, "time_left_fraction"))
    with pytest.raises(ModelFileError, match="other observation features.*time_left_fraction, time_left_hour"):
        trainer().load_policy(str(path))
    rewrite(lambda entry: entry.update(format=1))
    with pytest.raises(ModelFileError, match="format 1, this code reads 2: retrain"):
        trainer().load_policy(str(path))


def test_periodic_evaluation_never_falls_back_to_the_training_tapes(tapes, make_tapes):
    with pytest.raises(ValueError, match="no held-out eval_tapes"):
        trainer(eval_every=128).train(tapes, total_timesteps=256, seed=0)
    with pytest.raises(ValueError, match="eval_every is not set"):
        trainer().train(tapes, total_timesteps=256, seed=0, eval_tapes=make_tapes(9, markets=1))


# ---------------------------------------------------------------------------------------------
# Curriculum: easier markets first, every market by mid-run
# ---------------------------------------------------------------------------------------------
def test_a_curriculum_run_starts_on_the_easiest_markets_and_widens_to_all_by_mid_run(make_tapes, monkeypatch):
    tapes = [tape for seed in range(4) for tape in make_tapes(seed)]  # 8 two-minute markets
    given: list[list[float]] = []
    draws: list[tuple[int, int]] = []  # (pool when the episode was drawn, episode drawn)
    reset = CurriculumEnv.reset

    def recording_reset(self, *, seed=None, options=None):
        observation, info = reset(self, seed=seed, options=options)
        draws.append((self.pool, info["episode"]))
        return observation, info

    def make_environment(environment_tapes):
        given.append([tape_difficulty(tape) for tape in environment_tapes])
        return EnvironmentSettings().make_environment(environment_tapes)

    monkeypatch.setattr(CurriculumEnv, "reset", recording_reset)
    options = TrainingOptions(n_envs=2, hyperparameters=TINY, curriculum=Curriculum())
    agent = Sb3Trainer(make_environment, options).train(tapes, total_timesteps=1024, seed=0)

    # Every copy of the environment holds the markets easiest first, as the record says.
    record = agent.metrics["curriculum"]
    assert given[0] == sorted(tape_difficulty(tape) for tape in tapes) and len(given) == 2
    assert record["difficulty_cents"] == [round(difficulty, 3) for difficulty in given[0]]
    # The pool before each rollout (2 copies x 32 steps): the easiest quarter (2 of 8) at first,
    # growing with the timesteps done, all 8 by mid-run.
    pools = record["pool_per_rollout"]
    assert pools == [Curriculum().pool_size(8, 64 * rollout / 1024) for rollout in range(1024 // 64)]
    assert pools[0] == 2 and pools == sorted(pools) and pools[len(pools) // 2] == 8 and len(set(pools)) > 2
    # Episodes come from the pool of their time only: the first ones from the easiest two, later
    # ones from the widened pool too.
    assert draws[:2] == [(2, draws[0][1]), (2, draws[1][1])] and all(episode < 2 for _, episode in draws[:2])
    assert all(0 <= episode < pool for pool, episode in draws)
    assert max(episode for _, episode in draws) >= 2
    assert agent.hyperparameters["curriculum"] == {"start_fraction": 0.25, "ramp_fraction": 0.5}


def test_without_a_curriculum_no_episode_is_chosen_for_the_environment(tapes, monkeypatch):
    chosen = []
    monkeypatch.setattr(CurriculumEnv, "reset", lambda self, **kwargs: chosen.append(kwargs))
    agent = trainer().train(tapes, total_timesteps=128, seed=0)
    assert chosen == [] and "curriculum" not in agent.metrics and agent.hyperparameters["curriculum"] is None


def test_a_curriculum_run_is_as_reproducible_as_any_other(tapes):
    first = trainer(curriculum=Curriculum()).train(tapes, total_timesteps=256, seed=5)
    again = trainer(curriculum=Curriculum()).train(tapes, total_timesteps=256, seed=5)
    assert first.metrics["curriculum"] == again.metrics["curriculum"]
    assert all(np.array_equal(first.weights()[name], again.weights()[name]) for name in first.weights())


def test_evaluation_reports_the_entropy_of_what_a_masked_model_samples_from(tapes):
    from application.evaluation import evaluate_policy

    policy = trainer().train(tapes, total_timesteps=64, seed=0).policy()  # barely trained: near uniform
    environment = EnvironmentSettings().make_environment(tapes[:1])
    entropy = evaluate_policy(policy, environment, name="ppo", tapes=tapes[:1]).policy_entropy

    # Flat, SELL_YES and SELL_NO are illegal (nothing to sell): at most log2(3) bits at such steps,
    # where the network's own five-way distribution is close to log2(5).
    assert entropy < math.log2(5) - 0.3
    observation, info = EnvironmentSettings().make_environment(tapes[:1]).reset(seed=0, options={"episode": 0})
    mask = info["action_mask"]
    assert not mask.all()
    masked = policy.action_probabilities(observation, mask)
    assert masked[~mask].sum() == 0 and masked.sum() == pytest.approx(1.0)
    assert policy.network_probabilities(observation)[~mask].sum() > 0.2  # what H(pol) used to count
