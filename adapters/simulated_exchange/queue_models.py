"""Where a resting order stands in its price level's queue: small, named, swappable models.

In the manner of hftbacktest's queue models. The replay shows a level's size, never who is in it,
so a model keeps an estimate, :class:`QueuePosition`, of how much of the level is ahead of our
order, and updates it from the two things the market log says about the level:

* **A trade at our price** (its taker hit bids on our side) takes from the front of the queue:
  it eats what is ahead of us first, and only what it has left reaches our order. Both models
  treat trades alike.
* **A change in the level's size.** The replayed level never contains our order, so the queue
  ahead can never be more than the level; beyond that the models differ on *cancellations*:

  - :class:`RiskAverseQueueModel` -- they never help us: the queue ahead only shrinks to stay
    within the level (hftbacktest's ``RiskAdverseQueueModel``).
  - :class:`ProbabilisticQueueModel` -- a decrease that the trades since the last change do not
    explain is one cancellation; it came from ahead of us with a probability that grows with
    the share of the queue ahead (``1 - p_behind(ahead, behind)`` for a :class:`PowerProbability`
    or :class:`LogProbability`, hftbacktest's power and log functions), drawn with the
    exchange's seeded generator. A cancellation is one order, so it is attributed whole.

An order joins at the back: everything at its level when it arrives is ahead of it. Counts are
count units; the probability functions see contracts (floats: they are statistics, not money).
"""

from __future__ import annotations

import math
import random
from typing import Protocol

import attrs

from domain.values import COUNT_SCALE


class QueuePosition:
    """One resting order's place in its level (mutable; plain ints on the hot path)."""

    __slots__ = ("ahead", "level", "traded")

    def __init__(self, ahead: int, level: int) -> None:
        self.ahead = ahead  # count units ahead of our order
        self.level = level  # the replayed level's size when last seen
        self.traded = 0  # traded at our price since the level last changed

    def __repr__(self) -> str:
        return f"QueuePosition(ahead={self.ahead}, level={self.level}, traded={self.traded})"


class QueueModel(Protocol):
    @property
    def name(self) -> str:
        """The name that selects this model (see :func:`queue_model_named`)."""
        ...

    def join(self, level: int, ahead: int) -> QueuePosition:
        """A position for an order that arrives behind ``ahead`` at a level of size ``level``."""
        ...

    def on_trade(self, position: QueuePosition, count: int) -> int:
        """A trade of ``count`` at our price; returns how much of it reaches our order."""
        ...

    def on_level(self, position: QueuePosition, size: int, rng: random.Random) -> None:
        """The replayed level's size is now ``size``."""
        ...


def _join(level: int, ahead: int) -> QueuePosition:
    return QueuePosition(max(ahead, 0), level)


def _trade(position: QueuePosition, count: int) -> int:
    ahead = position.ahead
    position.traded += count
    if count <= ahead:
        position.ahead = ahead - count
        return 0
    position.ahead = 0
    return count - ahead


@attrs.frozen
class RiskAverseQueueModel:
    """Only trades at our price move us forward; cancellations never do."""

    @property
    def name(self) -> str:
        return "risk-averse"

    def join(self, level: int, ahead: int) -> QueuePosition:
        return _join(level, ahead)

    def on_trade(self, position: QueuePosition, count: int) -> int:
        return _trade(position, count)

    def on_level(self, position: QueuePosition, size: int, rng: random.Random) -> None:
        if size < position.ahead:
            position.ahead = size
        position.level = size
        position.traded = 0


@attrs.frozen
class PowerProbability:
    """``p_behind = behind^n / (behind^n + ahead^n)``: larger ``n``, more weight on the bigger side."""

    exponent: float = attrs.field(default=2.0)

    @exponent.validator
    def _check(self, _attribute: object, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"the power of a queue probability must be a positive number, got {value!r}")

    @property
    def name(self) -> str:
        return f"power-{self.exponent:g}"

    def behind(self, ahead: float, behind: float) -> float:
        """The probability that a cancellation at the level came from behind our order."""
        if behind <= 0.0:
            return 0.0
        if ahead <= 0.0:
            return 1.0
        weight = (behind / ahead) ** self.exponent  # the ratio form does not overflow
        return weight / (1.0 + weight)


@attrs.frozen
class LogProbability:
    """``p_behind = log(1 + behind) / (log(1 + behind) + log(1 + ahead))``."""

    @property
    def name(self) -> str:
        return "log"

    def behind(self, ahead: float, behind: float) -> float:
        back, front = math.log1p(max(behind, 0.0)), math.log1p(max(ahead, 0.0))
        if back <= 0.0:
            return 0.0
        return back / (back + front)


@attrs.frozen
class ProbabilisticQueueModel:
    """Cancellations at our level come from ahead of us with probability ``1 - p_behind``."""

    probability: PowerProbability | LogProbability = attrs.field(factory=PowerProbability)

    @property
    def name(self) -> str:
        return f"probabilistic-{self.probability.name}"

    def join(self, level: int, ahead: int) -> QueuePosition:
        return _join(level, ahead)

    def on_trade(self, position: QueuePosition, count: int) -> int:
        return _trade(position, count)

    def on_level(self, position: QueuePosition, size: int, rng: random.Random) -> None:
        ahead = position.ahead
        after_trades = max(position.level - position.traded, 0)
        cancelled = after_trades - size
        if cancelled > 0 and ahead > 0:
            behind = max(after_trades - ahead, 0)
            if rng.random() < self.probability.behind(ahead / COUNT_SCALE, behind / COUNT_SCALE):
                ahead -= max(cancelled - behind, 0)  # from behind; what behind cannot cover, ahead
            else:
                ahead -= min(cancelled, ahead)
        position.ahead = max(min(ahead, size), 0)
        position.level = size
        position.traded = 0


QUEUE_MODEL_NAMES = ("risk-averse", "probabilistic-power-<N>", "probabilistic-log")


def queue_model_named(name: str) -> RiskAverseQueueModel | ProbabilisticQueueModel:
    """The model a name selects: ``risk-averse``, ``probabilistic-log`` or ``probabilistic-power-N``
    (``N`` a positive number, e.g. ``probabilistic-power-2``)."""
    if name == "risk-averse":
        return RiskAverseQueueModel()
    if name == "probabilistic-log":
        return ProbabilisticQueueModel(LogProbability())
    prefix = "probabilistic-power-"
    if name.startswith(prefix):
        try:
            exponent = float(name[len(prefix) :])
        except ValueError:
            exponent = math.nan
        if 0 < exponent < math.inf:
            return ProbabilisticQueueModel(PowerProbability(exponent))
    raise ValueError(f"unknown queue model {name!r}; choose one of {', '.join(QUEUE_MODEL_NAMES)}")
