"""The numpy rollout forward pass computes what Stable-Baselines3's torch pass computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from adapters.sb3.rollout_policy import FastActorCriticPolicy, FastMaskablePolicy

ACTIONS = 5
OBSERVATION = spaces.Box(-10.0, 10.0, (12,), np.float32)


def _policy(cls, **kwargs):
    torch.manual_seed(0)
    policy = cls(OBSERVATION, spaces.Discrete(ACTIONS), lambda _: 3e-4, net_arch=[16, 16], **kwargs)
    with torch.no_grad():  # weights away from the orthogonal init, so the logits differ a lot
        for parameter in policy.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    return policy


def _batch(rows=64, seed=1):
    rng = np.random.default_rng(seed)
    observations = torch.from_numpy(rng.normal(size=(rows, 12)).astype(np.float32))
    masks = rng.random((rows, ACTIONS)) < 0.6
    masks[:, 0] = True  # HOLD is always legal
    return observations, masks


def _torch_pass(policy, observations, masks):
    with torch.no_grad():
        if isinstance(policy, FastMaskablePolicy):
            distribution = policy.get_distribution(observations, action_masks=masks)
        else:
            distribution = policy.get_distribution(observations)
        return distribution, policy.predict_values(observations)


def _rollout_pass(cls, *, deterministic=False):
    """A policy of ``cls``, a batch, the masks it takes (None: unmasked) and its rollout forward pass."""
    policy = _policy(cls)
    observations, masks = _batch()
    use_masks = masks if cls is FastMaskablePolicy else None
    kwargs = {"action_masks": use_masks} if use_masks is not None else {}
    with torch.no_grad():
        return policy, observations, use_masks, policy(observations, deterministic=deterministic, **kwargs)


@pytest.mark.parametrize("cls", [FastActorCriticPolicy, FastMaskablePolicy])
def test_values_and_log_probabilities_match_torch(cls):
    policy, observations, use_masks, (actions, values, log_probs) = _rollout_pass(cls)
    distribution, expected_values = _torch_pass(policy, observations, use_masks)
    np.testing.assert_allclose(values.numpy(), expected_values.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_probs.numpy(), distribution.log_prob(actions).numpy(), rtol=1e-4, atol=1e-4)
    assert values.shape == (64, 1) and log_probs.shape == (64,) and actions.dtype == torch.int64


@pytest.mark.parametrize("cls", [FastActorCriticPolicy, FastMaskablePolicy])
def test_deterministic_actions_are_torchs_most_likely_legal_action(cls):
    policy, observations, use_masks, (actions, _, _) = _rollout_pass(cls, deterministic=True)
    distribution, _ = _torch_pass(policy, observations, use_masks)
    np.testing.assert_array_equal(actions.numpy(), distribution.mode().numpy())


def test_samples_follow_the_masked_distribution_and_never_pick_a_masked_action():
    policy = _policy(FastMaskablePolicy)
    observations, masks = _batch(rows=4)
    rows = observations.repeat(5000, 1)
    row_masks = np.tile(masks, (5000, 1))
    with torch.no_grad():
        actions, _, _ = policy(rows, action_masks=row_masks)
    distribution, _ = _torch_pass(policy, observations, masks)
    expected = distribution.distribution.probs.numpy()
    actions = actions.numpy().reshape(5000, 4)
    for row in range(4):
        counts = np.bincount(actions[:, row], minlength=ACTIONS)
        assert not counts[~masks[row]].any()
        # Within 5 standard errors of the torch probabilities (seeded: a fixed outcome).
        frequency = counts / 5000
        error = np.sqrt(expected[row] * (1 - expected[row]) / 5000)
        assert np.all(np.abs(frequency - expected[row]) <= 5 * error + 1e-3), (frequency, expected[row])


def test_the_forward_pass_follows_the_optimiser_and_reloaded_weights():
    policy = _policy(FastActorCriticPolicy)
    observations, _ = _batch()
    with torch.no_grad():
        policy(observations)  # builds the numpy views
        for parameter in policy.parameters():
            parameter.mul_(1.5)  # in place, as the optimiser steps
        _, values, _ = policy(observations)
        np.testing.assert_allclose(values.numpy(), policy.predict_values(observations).numpy(), rtol=1e-5, atol=1e-5)
        policy.load_state_dict({name: value * 0.5 for name, value in policy.state_dict().items()}, assign=True)
        _, values, _ = policy(observations)  # new storage: the views are rebuilt
        np.testing.assert_allclose(values.numpy(), policy.predict_values(observations).numpy(), rtol=1e-5, atol=1e-5)


def test_the_same_seed_draws_the_same_actions():
    observations, _ = _batch()
    draws = []
    for _ in range(2):
        policy = _policy(FastActorCriticPolicy)
        with torch.no_grad():
            draws.append(policy(observations)[0].numpy())
    np.testing.assert_array_equal(draws[0], draws[1])


def test_with_gradients_on_the_torch_pass_runs():
    policy = _policy(FastActorCriticPolicy)
    observations, _ = _batch()
    _, values, log_probs = policy(observations)
    assert values.requires_grad and log_probs.requires_grad


def test_a_network_it_does_not_mirror_keeps_the_torch_pass():
    policy = _policy(FastActorCriticPolicy, activation_fn=torch.nn.ELU)
    assert not policy._numpy_network.supported
    observations, _ = _batch()
    with torch.no_grad():
        _, values, _ = policy(observations)
        np.testing.assert_allclose(values.numpy(), policy.predict_values(observations).numpy(), rtol=1e-6)
