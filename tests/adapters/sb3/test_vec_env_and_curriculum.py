"""The in-process vectorisation (DummyVecEnv without its deepcopy) and the curriculum."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from adapters.sb3.curriculum import Curriculum, CurriculumEnv, easiest_first, tape_difficulty
from adapters.sb3.vec_env import InProcessVecEnv, ObservationNormalize, vectorised
from entrypoints.learning import EnvironmentSettings


def test_in_process_steps_exactly_as_dummy_vec_env(tapes):
    settings = EnvironmentSettings()
    factories = [lambda: settings.make_environment(tapes)] * 3
    ours, reference = InProcessVecEnv(factories), DummyVecEnv(factories)
    ours.seed(5)
    reference.seed(5)
    np.testing.assert_array_equal(ours.reset(), reference.reset())
    rng = np.random.default_rng(0)
    episodes_ended = 0
    for _ in range(400):  # past the end of the two-minute episodes: resets included
        masks = np.stack(ours.env_method("action_masks"))
        actions = np.array([rng.choice(np.flatnonzero(mask)) for mask in masks])
        ours.step_async(actions)
        reference.step_async(actions)
        observations, rewards, dones, infos = ours.step_wait()
        expected = reference.step_wait()
        np.testing.assert_array_equal(observations, expected[0])
        assert not np.shares_memory(observations, ours.buf_obs[None])  # a copy, as DummyVecEnv hands out
        np.testing.assert_array_equal(rewards, expected[1])
        np.testing.assert_array_equal(dones, expected[2])
        for info, reference_info in zip(infos, expected[3]):
            assert info.keys() == reference_info.keys()
            assert info["portfolio_value"] == reference_info["portfolio_value"]
            if "terminal_observation" in info:
                np.testing.assert_array_equal(info["terminal_observation"], reference_info["terminal_observation"])
        episodes_ended += int(dones.sum())
    assert episodes_ended > 0


@pytest.mark.parametrize("copies", [3, 16])
def test_observation_normalize_is_vec_normalize_bit_for_bit(tapes, copies):
    settings = EnvironmentSettings()
    factories = [lambda: settings.make_environment(tapes)] * copies
    ours = ObservationNormalize(InProcessVecEnv(factories))
    reference = VecNormalize(InProcessVecEnv(factories), norm_obs=True, norm_reward=False)
    ours.seed(7)
    reference.seed(7)
    np.testing.assert_array_equal(ours.reset(), reference.reset())
    rng = np.random.default_rng(1)
    terminal = 0
    for _ in range(300):  # past the two-minute episodes' ends: terminal observations included
        masks = np.stack(ours.env_method("action_masks"))
        actions = np.array([rng.choice(np.flatnonzero(mask)) for mask in masks])
        observations, rewards, dones, infos = ours.step(actions)
        expected = reference.step(actions)
        np.testing.assert_array_equal(observations, expected[0])
        assert not np.shares_memory(observations, ours.buf_obs[None])  # a copy, as DummyVecEnv hands out
        np.testing.assert_array_equal(rewards, expected[1])
        for info, reference_info in zip(infos, expected[3]):
            if "terminal_observation" in info:
                terminal += 1
                np.testing.assert_array_equal(info["terminal_observation"], reference_info["terminal_observation"])
    assert terminal > 0
    np.testing.assert_array_equal(ours.obs_rms.mean, reference.obs_rms.mean)
    np.testing.assert_array_equal(ours.obs_rms.var, reference.obs_rms.var)
    assert ours.obs_rms.count == reference.obs_rms.count
    # Evaluation's copy reads the statistics without moving them.
    frozen = ObservationNormalize(InProcessVecEnv(factories), training=False)
    frozen.obs_rms = ours.obs_rms.copy()
    frozen.seed(7)
    frozen.reset()
    frozen.step(np.zeros(copies, dtype=np.int64))
    np.testing.assert_array_equal(frozen.obs_rms.mean, ours.obs_rms.mean)


def test_an_unknown_vectorisation_is_refused():
    with pytest.raises(ValueError, match="vectorisation must be one of in-process, subprocess, got 'gpu'"):
        vectorised([], "gpu")


def test_calm_tight_markets_are_easier_than_volatile_wide_ones(make_tapes):
    calm = make_tapes(3, markets=1, volatility=0.002, maker_half_spread=100)[0]
    wide = make_tapes(3, markets=1, volatility=0.002, maker_half_spread=400)[0]
    volatile = make_tapes(3, markets=1, volatility=0.3, maker_half_spread=100)[0]

    assert tape_difficulty(calm) < tape_difficulty(wide)
    assert tape_difficulty(calm) < tape_difficulty(volatile)
    assert easiest_first([volatile, wide, calm])[0] is calm


def test_the_pool_grows_from_the_easiest_share_to_every_tape_by_the_end_of_the_ramp():
    curriculum = Curriculum(start_fraction=0.25, ramp_fraction=0.5)

    assert [curriculum.pool_size(8, progress) for progress in (0, 0.125, 0.25, 0.5, 0.9, 1.0)] == [2, 4, 5, 8, 8, 8]
    assert curriculum.pool_size(1, 0.0) == 1
    with pytest.raises(ValueError, match="start_fraction must lie in"):
        Curriculum(start_fraction=0)


def test_the_curriculum_env_draws_only_from_its_pool_reproducibly(tapes):
    def episodes(seed, pool):
        environment = CurriculumEnv(EnvironmentSettings().make_environment(tapes), pool)
        drawn = [environment.reset(seed=seed)[1]["episode"]]
        drawn += [environment.reset()[1]["episode"] for _ in range(40)]
        return drawn

    assert set(episodes(0, 1)) == {0}
    assert set(episodes(0, 3)) == {0, 1, 2}
    assert episodes(4, 3) == episodes(4, 3)
    environment = CurriculumEnv(EnvironmentSettings().make_environment(tapes), 1)
    assert environment.reset(seed=0, options={"episode": 3})[1]["episode"] == 3  # an explicit choice wins
