"""What the actor trades with: a policy, the decoder of its actions, and where both come from.

A :class:`TradingModel` is everything one decision needs besides the market: the
:class:`~domain.ports.Policy`, the :class:`~domain.actions.ActionDecoder` of the action space it
was trained for, the settings its observations were built with, and the contract size it was
trained at. A :class:`ModelSource` hands the actor its model and says when a new one is there:

* :class:`RegistryModelSource` (strategy ``rl_model``): the registry's active version of a name,
  loaded through the ``load`` function the composition root gives it (the AgentTrainer port),
  reloaded when the registry's change signal (``active_generation``) moves;
* :class:`FixedModelSource` (strategy ``hardcoded``, or a model file named by path): one model
  that never changes.

:class:`ImbalancePolicy` is the ``hardcoded`` strategy: a rule, not a model, reading the same
observation a model reads -- buy YES passively while the bids lean towards YES, otherwise close
what is held. It exists to test the plumbing end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import numpy as np

from domain.actions import Action, ActionDecoder
from domain.features import FEATURE_NAMES
from domain.ports import ModelRecord, ModelRegistry, Policy
from domain.values import MONEY_SCALE


class ModelUnavailable(LookupError):
    """No model to trade with (no active version, a missing file)."""


class ContractSizeMismatch(ValueError):
    """The model was trained at another order size than the actor is configured for."""


@attrs.frozen
class TradingModel:
    policy: Policy = attrs.field(repr=False)
    decoder: ActionDecoder = attrs.field(repr=False)
    model_id: int  # the registry's id: trading records are filed under it
    label: str  # for logs and the status page, e.g. "agent v3 (model 7)"
    contract_size: int  # whole contracts per order, as trained
    max_position: int  # count units: the observation's position scale
    order_size: int  # count units: the observation's order-remaining scale
    step_ms: int  # the time between two training steps: the observation's order-age unit
    # The cash a training episode -- one market -- started with: each market's budget live, so
    # its cash and return features mean what they meant in training, whatever the account holds.
    initial_cash: int = 100 * MONEY_SCALE


def check_contract_size(model: TradingModel, configured: int) -> None:
    """Refuse a model trained at another contract size than ``RL_ACTOR_CONTRACT_SIZE``."""
    if model.contract_size != configured:
        raise ContractSizeMismatch(
            f"{model.label} was trained with orders of {model.contract_size} contracts, but "
            f"RL_ACTOR_CONTRACT_SIZE={configured}: set RL_ACTOR_CONTRACT_SIZE={model.contract_size} "
            "or trade a model trained at that size"
        )


class ModelSource(Protocol):
    async def load(self) -> TradingModel:
        """The model to trade with now; raises :class:`ModelUnavailable` when there is none."""
        ...

    async def generation(self) -> int | None:
        """A number that moves when a new model is available (None: it never changes)."""
        ...


class FixedModelSource:
    def __init__(self, model: TradingModel) -> None:
        self._model = model

    async def load(self) -> TradingModel:
        return self._model

    async def generation(self) -> int | None:
        return None


ModelLoader = Callable[[ModelRecord], TradingModel]


class RegistryModelSource:
    """The active version of ``name`` in the registry. ``load_model`` builds a
    :class:`TradingModel` from a record (slow: a model file is read, off the event loop)."""

    def __init__(self, registry: ModelRegistry, name: str, load_model: ModelLoader) -> None:
        self._registry = registry
        self._name = name
        self._load_model = load_model

    async def load(self) -> TradingModel:
        record = await self._registry.active(self._name)
        if record is None:
            raise ModelUnavailable(
                f"no active version of model {self._name!r} in the registry: evaluate one on held-out "
                "sessions and promote it if it passes: `kalshiflow-rl evaluate MODEL_ID --sessions ID... --promote`"
            )
        return await asyncio.to_thread(self._load_model, record)

    async def generation(self) -> int | None:
        return await self._registry.active_generation(self._name)


_IMBALANCE = FEATURE_NAMES.index("imbalance_top")
_POSITION = FEATURE_NAMES.index("position")


class ImbalancePolicy:
    """Buy YES while the best YES bid outweighs the best NO bid by ``threshold`` (imbalance in
    -1..1); otherwise close the position (sell what is held), else hold. Illegal choices hold."""

    def __init__(self, decoder: ActionDecoder, threshold: float = 0.2) -> None:
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        self.threshold = threshold
        self._buy = self._first(decoder, Action.BUY_YES)
        self._sell_yes = self._first(decoder, Action.SELL_YES)
        self._sell_no = self._first(decoder, Action.SELL_NO)

    @staticmethod
    def _first(decoder: ActionDecoder, direction: Action) -> int:
        """The smallest-size action of ``direction`` in the decoder's space."""
        return next(index for index in range(decoder.action_count) if decoder.direction(index) is direction)

    def act(self, observation: Any, action_mask: Any | None = None) -> int:
        observation = np.asarray(observation)
        position = float(observation[_POSITION])
        if observation[_IMBALANCE] >= self.threshold:
            choice = self._buy
        elif position > 0:
            choice = self._sell_yes
        elif position < 0:
            choice = self._sell_no
        else:
            choice = int(Action.HOLD)
        if action_mask is not None and not action_mask[choice]:
            return int(Action.HOLD)
        return choice

