"""The baselines a model has to beat: do nothing, random, and a spread-capturing market maker.

Every baseline chooses among the environment's own actions, so its choices are decoded into
orders by the same :class:`~domain.actions.ActionDecoder` as the agent's and meet the same
simulated exchange: the same fees, latency and queue.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from domain.actions import ACTION_COUNT, DIRECTIONS, Action, ActionDecoder, PricingStrategy
from domain.orders import OrderSide


class DoNothingPolicy:
    """Never trades: the zero to beat."""

    def act(self, observation: Any, action_mask: Any | None = None) -> int:
        return int(Action.HOLD)

    def action_probabilities(self, observation: Any, action_mask: Any | None = None) -> np.ndarray:
        return np.array([1.0])  # all of it on HOLD, whatever the space's size


class RandomPolicy:
    """Picks uniformly among the legal actions (all of them when no mask is given), seeded."""

    def __init__(self, seed: int = 0, *, action_count: int = ACTION_COUNT) -> None:
        self._rng = np.random.default_rng(seed)
        self._action_count = action_count

    def act(self, observation: Any, action_mask: Any | None = None) -> int:
        if action_mask is None:
            return int(self._rng.integers(self._action_count))
        return int(self._rng.choice(np.flatnonzero(action_mask)))


@runtime_checkable
class PositionAwarePolicy(Protocol):
    """A policy that decides from the account's position (signed count units: +YES, -NO) rather
    than from the observation; it keeps state within an episode."""

    def begin_episode(self) -> None: ...

    def act_at_position(self, observation: Any, action_mask: Any, *, position: int) -> int: ...


class SpreadCapturingMarketMaker:
    """Quotes one side of the book at a time at the touch, and the other side once it fills.

    The environment keeps one order per market, so the two sides are quoted in turn: a bid at
    the best bid (BUY_YES) until a fill raises the position, then an ask at the best ask
    (BUY_NO: a YES ask) until a fill lowers it, and so on -- each round trip earns the spread.
    Repeating the same action keeps the resting quote's place in the queue. Past
    ``inventory_limit`` contracts either way it only offers to reduce (SELL_YES / SELL_NO,
    reduce-only, at the touch) until the position is back inside the limit. A quote that is not
    possible now (an empty side, no cash) gives way to the other side's, else HOLD.

    It needs the decoder of an environment whose pricing is ``passive`` (buys at the best bid,
    sells at the best ask), and uses each direction's smallest order size.
    """

    def __init__(self, decoder: ActionDecoder, *, inventory_limit: int | None = None) -> None:
        if decoder.config.pricing is not PricingStrategy.PASSIVE:
            raise ValueError(
                "the market maker quotes at the touch: give it the decoder of an environment priced "
                f"'passive', not {decoder.config.pricing.value!r}"
            )
        smallest = decoder.config.order_sizes[0]
        limit = 2 * smallest if inventory_limit is None else inventory_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= decoder.config.max_position:
            raise ValueError(
                f"inventory_limit must be a positive count of at most max_position "
                f"({decoder.config.max_position}), got {inventory_limit!r}"
            )
        self.inventory_limit = limit
        # Each direction's first action index is its smallest size (sizes ascend).
        first: dict[Action, int] = {}
        for index in range(decoder.action_count):
            first.setdefault(decoder.direction(index), index)
        missing = [direction.name for direction in DIRECTIONS if direction not in first]
        if missing:
            raise ValueError(f"the decoder has no action for {', '.join(missing)}")
        self._bid, self._ask = first[Action.BUY_YES], first[Action.BUY_NO]
        self._reduce_long, self._reduce_short = first[Action.SELL_YES], first[Action.SELL_NO]
        self.begin_episode()

    def begin_episode(self) -> None:
        self._last_position = 0
        self._quoting = OrderSide.BID

    def act(self, observation: Any, action_mask: Any | None = None) -> int:
        raise TypeError("the market maker decides from the position: call act_at_position")

    def act_at_position(self, observation: Any, action_mask: Any, *, position: int) -> int:
        if position != self._last_position:  # a fill since the last decision: quote the other side
            self._quoting = OrderSide.ASK if position > self._last_position else OrderSide.BID
            self._last_position = position
        if position >= self.inventory_limit:
            choices = (self._reduce_long,)
        elif position <= -self.inventory_limit:
            choices = (self._reduce_short,)
        elif self._quoting is OrderSide.BID:
            choices = (self._bid, self._ask)
        else:
            choices = (self._ask, self._bid)
        for action in choices:
            if action_mask[action]:
                return action
        return int(Action.HOLD)
