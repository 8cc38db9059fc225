"""Actor-critic policies whose rollout forward pass runs in numpy: the same network, sampled
the same way, at a fifth of the cost.

Collecting a rollout calls the policy once per vectorised step on a handful of observations
(16 x ~60 numbers). There torch's per-operation cost dominates: on this machine a ``tanh`` of a
16 x 64 tensor takes ~7 us, a ``logsumexp`` ~19 us, and the masked forward pass (MLP, value,
``Categorical`` built twice, sample, log-probability) ~460 us per call -- a quarter of a training
run (``benchmarks/train.py``). The same arithmetic in numpy, over views of the very parameters
the optimiser updates in place, costs ~90 us with the module call around it.

:class:`FastActorCriticPolicy` (PPO, A2C) and :class:`FastMaskablePolicy` (masked PPO) change
only ``forward`` outside autograd, which is what ``collect_rollouts`` calls; the gradient phase
(``evaluate_actions``), ``predict`` and ``predict_values`` are Stable-Baselines3's own. The
forward pass they replace:

* features: the observation, flattened (``FlattenExtractor``, shared by actor and critic);
* ``latent = act(W2 act(W1 x + b1) + b2)`` for the actor and the critic, their own layers;
* ``logits = Wa latent_pi + ba`` (masked actions' logits set to ``-1e8``, as sb3-contrib's
  ``MaskableCategorical`` does), ``value = Wv latent_vf + bv``;
* the action: sampled from ``softmax(logits)`` with the Gumbel-max trick (the argmax of
  ``logits - log E``, ``E`` standard exponential, is an exact draw from the categorical), or
  the argmax when deterministic; its log-probability, ``logits - logsumexp(logits)`` there.

Draws come from the policy's own numpy generator, seeded from torch's generator when the policy
is built, so a seeded run stays reproducible. A network this module does not recognise (another
features extractor, a non-discrete action space, an activation without a numpy twin) keeps
Stable-Baselines3's forward pass. Float32 throughout; the results agree with torch's to float32
rounding (tested), which PPO's ratio of new to old log-probabilities absorbs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor

MASKED_LOGIT = np.float32(-1e8)  # what sb3-contrib gives a masked action's logit

# Activations with a numpy twin, applied in place.
_ACTIVATIONS: dict[type, Any] = {
    torch.nn.Tanh: lambda x: np.tanh(x, out=x),
    torch.nn.ReLU: lambda x: np.maximum(x, 0, out=x),
}


class _NumpyNetwork:
    """Numpy views of one actor-critic's layers. A view follows the optimiser's in-place updates
    by itself; the views are rebuilt when a layer's parameters are replaced (loading weights)."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        self.policy = policy
        self.supported = self._supported(policy)
        extractor = policy.mlp_extractor
        linear = [*extractor.policy_net, *extractor.value_net, policy.action_net, policy.value_net]
        self._parameter_dicts = [layer._parameters for layer in linear if isinstance(layer, torch.nn.Linear)]
        self._pointers: list[int] = []
        self.actor: list[tuple[np.ndarray, np.ndarray, Any]] = []
        self.critic: list[tuple[np.ndarray, np.ndarray, Any]] = []
        self.action: tuple[np.ndarray, np.ndarray] | None = None
        self.value: tuple[np.ndarray, np.ndarray] | None = None

    @staticmethod
    def _supported(policy: ActorCriticPolicy) -> bool:
        extractor = policy.mlp_extractor
        layers = [*extractor.policy_net, *extractor.value_net]
        linear = [layer for layer in [*layers, policy.action_net, policy.value_net] if type(layer) is torch.nn.Linear]
        parameters = list(policy.parameters())
        return (
            isinstance(policy.action_space, spaces.Discrete)
            and policy.share_features_extractor
            and type(policy.features_extractor) is FlattenExtractor
            and all(type(layer) is torch.nn.Linear or type(layer) in _ACTIVATIONS for layer in layers)
            and all(layer.bias is not None for layer in linear)
            and all(parameter.dtype == torch.float32 and parameter.device.type == "cpu" for parameter in parameters)
        )

    def views(self) -> _NumpyNetwork:
        # Our views keep the storage they were built on alive, so no new parameter can sit at
        # an old one's address: a changed address is a replaced parameter.
        pointers = [tensor.data_ptr() for weights in self._parameter_dicts for tensor in weights.values()]
        if pointers != self._pointers:
            extractor = self.policy.mlp_extractor
            self.actor = _layers(extractor.policy_net)
            self.critic = _layers(extractor.value_net)
            self.action = _linear(self.policy.action_net)
            self.value = _linear(self.policy.value_net)
            self._pointers = pointers
        return self


def _linear(layer: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    assert isinstance(layer, torch.nn.Linear)
    return layer.weight.detach().numpy().T, layer.bias.detach().numpy()


def _layers(sequence: torch.nn.Sequential) -> list[tuple[np.ndarray, np.ndarray, Any]]:
    """(weight transposed, bias, activation or None) per linear layer of ``sequence``."""
    layers: list[tuple[np.ndarray, np.ndarray, Any]] = []
    for module in sequence:
        if isinstance(module, torch.nn.Linear):
            layers.append((*_linear(module), None))
        else:
            weight, bias, _ = layers[-1]
            layers[-1] = (weight, bias, _ACTIVATIONS[type(module)])
    return layers


def _latent(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray, Any]]) -> np.ndarray:
    for weight, bias, activation in layers:
        x = x @ weight
        x += bias
        if activation is not None:
            activation(x)
    return x


def numpy_forward(
    network: _NumpyNetwork,
    observations: np.ndarray,
    rng: np.random.Generator,
    *,
    deterministic: bool,
    masks: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(actions, values (n, 1), log-probabilities) of the actor-critic on ``observations`` (n, d)."""
    network.views()
    assert network.action is not None and network.value is not None
    x = observations.reshape(len(observations), -1)
    logits = _latent(x, network.actor) @ network.action[0]
    logits += network.action[1]
    values = _latent(x, network.critic) @ network.value[0]
    values += network.value[1]
    if masks is not None:
        masks = np.asarray(masks, dtype=bool)
        np.copyto(logits, MASKED_LOGIT, where=~masks.reshape(logits.shape))
    if deterministic:
        actions = logits.argmax(axis=1)
    else:
        # Gumbel-max in its exponential form: argmax(logits - log E), E ~ Exp(1).
        noise = rng.standard_exponential(logits.shape, dtype=np.float32)
        np.maximum(noise, _TINY, out=noise)  # log(0) is not a draw
        np.log(noise, out=noise)
        actions = (logits - noise).argmax(axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits[np.arange(len(actions)), actions] - np.log(np.exp(logits).sum(axis=1))
    return actions, values, log_probs


_TINY = np.finfo(np.float32).tiny


class _NumpyRollouts:
    """What both policies add: the numpy network and its generator, and the forward pass."""

    def _setup_numpy_forward(self) -> None:
        self._numpy_network = _NumpyNetwork(self)  # type: ignore[arg-type]
        seed = int(torch.randint(0, 2**62, (1,)).item())  # from torch's seeded generator
        self._numpy_rng = np.random.default_rng(seed)

    def _numpy_forward(
        self, obs: torch.Tensor, deterministic: bool, masks: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        network = self._numpy_network
        if not network.supported or torch.is_grad_enabled():
            return None
        if obs.dtype != torch.float32 or obs.device.type != "cpu":
            return None
        actions, values, log_probs = numpy_forward(
            network, obs.numpy(), self._numpy_rng, deterministic=deterministic, masks=masks
        )
        return torch.from_numpy(actions), torch.from_numpy(values), torch.from_numpy(log_probs)


class FastActorCriticPolicy(_NumpyRollouts, ActorCriticPolicy):
    """``MlpPolicy`` for PPO and A2C, with the numpy rollout forward pass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_numpy_forward()

    def forward(  # type: ignore[override]
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, ...]:
        result = self._numpy_forward(obs, deterministic, None)
        return super().forward(obs, deterministic) if result is None else result


class FastMaskablePolicy(_NumpyRollouts, MaskableActorCriticPolicy):
    """sb3-contrib's maskable ``MlpPolicy``, with the numpy rollout forward pass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_numpy_forward()

    def forward(  # type: ignore[override]
        self, obs: torch.Tensor, deterministic: bool = False, action_masks: np.ndarray | None = None
    ) -> tuple[torch.Tensor, ...]:
        result = self._numpy_forward(obs, deterministic, action_masks)
        return super().forward(obs, deterministic, action_masks) if result is None else result
