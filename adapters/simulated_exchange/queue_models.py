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

**A trade and the decrease it causes count once, in either order.** Kalshi's ``trade`` and
``orderbook_delta`` channels have no ordering guarantee, so a recording can show a trade at our
price before or after the level's decrease that the trade caused. Both models pair them, per
resting order (:class:`QueuePosition`): ``traded`` is volume traded at our price not yet seen as
a decrease, ``unexplained`` a decrease not yet explained by a trade, and ``removed`` what the
unexplained decrease took off the queue ahead (as a cancellation, the model's way).

* Trade first: the trade eats the queue ahead and adds to ``traded``; the decrease that follows
  is explained by it, up to ``traded``, and only what is left of it is a cancellation.
* Decrease first: it is a cancellation for now (the risk-averse clamp, the probabilistic draw),
  remembered in ``unexplained`` / ``removed``; the trade that follows pairs with it: what the
  decrease removed is put back, the trade eats the queue ahead as if it had come first, and what
  of the decrease the trade does not explain is a cancellation again (decided afresh). The answer
  is the one the trade-first order gives: e.g. 20 ahead, a 15-lot trade at our price, the level
  20 -> 5: nothing reaches us either way.

A trade and a decrease pair only within :data:`PAIRING_MS` (100 ms: the two messages of one
match arrive milliseconds apart) of the last one left unpaired, and not across a growth of the
level: either clears what is left to pair, so a decrease further from any trade stays a
cancellation of its own.

An order joins at the back: everything at its level when it arrives is ahead of it. Counts are
count units; the probability functions see contracts (floats: they are statistics, not money).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Protocol

import attrs

from domain.values import COUNT_SCALE

PAIRING_MS = 100  # a trade and its level's decrease arrive this close together, in either order


class QueuePosition:
    """One resting order's place in its level (mutable; plain ints on the hot path)."""

    __slots__ = ("ahead", "level", "traded", "unexplained", "removed", "since")

    def __init__(self, ahead: int, level: int) -> None:
        self.ahead = ahead  # count units ahead of our order
        self.level = level  # the replayed level's size when last seen
        self.traded = 0  # traded at our price, not yet seen as a decrease of the level
        self.unexplained = 0  # the level's decrease not yet explained by a trade
        self.removed = 0  # what that unexplained decrease took off ``ahead``
        self.since = 0  # when ``traded`` or ``unexplained`` last grew (ms)

    def __repr__(self) -> str:
        return (
            f"QueuePosition(ahead={self.ahead}, level={self.level}, traded={self.traded}, "
            f"unexplained={self.unexplained}, removed={self.removed})"
        )


class QueueModel(Protocol):
    @property
    def name(self) -> str:
        """The name that selects this model (see :func:`queue_model_named`)."""
        ...

    def join(self, level: int, ahead: int) -> QueuePosition:
        """A position for an order that arrives behind ``ahead`` at a level of size ``level``."""
        ...

    def on_trade(self, position: QueuePosition, count: int, rng: random.Random, ts_ms: int = 0) -> int:
        """A trade of ``count`` at our price at ``ts_ms``; returns how much of it reaches our order."""
        ...

    def on_level(self, position: QueuePosition, size: int, rng: random.Random, ts_ms: int = 0) -> None:
        """The replayed level's size is ``size`` at ``ts_ms``."""
        ...


# A model's cancellation rule: (ahead, the level before, the level after, cancelled, rng) -> ahead.
_Cancel = Callable[[int, int, int, int, random.Random], int]


def _join(level: int, ahead: int) -> QueuePosition:
    return QueuePosition(max(ahead, 0), level)


def _unpaired(position: QueuePosition, ts_ms: int) -> None:
    """Forget what is left to pair once it is too old to pair."""
    if ts_ms - position.since > PAIRING_MS:
        position.traded = position.unexplained = position.removed = 0


def _trade(position: QueuePosition, count: int, rng: random.Random, ts_ms: int, cancel: _Cancel) -> int:
    if position.traded or position.unexplained:
        _unpaired(position, ts_ms)
    ahead = position.ahead
    unexplained = position.unexplained
    paired = count if count < unexplained else unexplained  # of the decrease already seen
    if paired:
        ahead += position.removed  # the decrease was this trade: undo it as a cancellation
        position.removed = 0
        unexplained -= paired
        position.unexplained = unexplained
    if count > paired:
        position.traded += count - paired
        position.since = ts_ms
    if count <= ahead:
        ahead -= count
        reached = 0
    else:
        reached = count - ahead
        ahead = 0
    if paired:
        level = position.level  # already shows the decrease
        if unexplained:  # what the trade does not explain is a cancellation, decided again
            before = ahead
            ahead = max(min(cancel(ahead, level + unexplained, level, unexplained, rng), level), 0)
            position.removed = before - ahead
        elif ahead > level:
            ahead = level
    position.ahead = ahead
    return reached


def _level(position: QueuePosition, size: int, rng: random.Random, ts_ms: int, cancel: _Cancel) -> None:
    if position.traded or position.unexplained:
        _unpaired(position, ts_ms)
    drop = position.level - size
    ahead = before = position.ahead
    if drop < 0:  # the level grew: nothing pairs across that
        position.traded = position.unexplained = position.removed = 0
    elif drop:
        traded = position.traded
        if traded:  # the trades' own decrease, up to what they traded
            explained = drop if drop < traded else traded
            position.traded = traded - explained
            drop -= explained
        if drop:
            ahead = cancel(ahead, size + drop, size, drop, rng)
    if ahead > size:
        ahead = size
    if ahead < 0:
        ahead = 0
    if drop > 0:
        position.unexplained += drop
        position.removed += before - ahead
        position.since = ts_ms
    position.ahead = ahead
    position.level = size


def _never_ahead(ahead: int, _before: int, _after: int, _cancelled: int, _rng: random.Random) -> int:
    return ahead  # the level's clamp is all a cancellation does


@attrs.frozen
class RiskAverseQueueModel:
    """Only trades at our price move us forward; cancellations never do."""

    @property
    def name(self) -> str:
        return "risk-averse"

    def join(self, level: int, ahead: int) -> QueuePosition:
        return _join(level, ahead)

    def on_trade(self, position: QueuePosition, count: int, rng: random.Random, ts_ms: int = 0) -> int:
        return _trade(position, count, rng, ts_ms, _never_ahead)

    def on_level(self, position: QueuePosition, size: int, rng: random.Random, ts_ms: int = 0) -> None:
        _level(position, size, rng, ts_ms, _never_ahead)


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

    def on_trade(self, position: QueuePosition, count: int, rng: random.Random, ts_ms: int = 0) -> int:
        return _trade(position, count, rng, ts_ms, self._cancel)

    def on_level(self, position: QueuePosition, size: int, rng: random.Random, ts_ms: int = 0) -> None:
        _level(position, size, rng, ts_ms, self._cancel)

    def _cancel(self, ahead: int, before: int, _after: int, cancelled: int, rng: random.Random) -> int:
        """One cancellation of ``cancelled`` from a level of ``before``: from behind us or ahead, drawn."""
        if ahead > 0:
            behind = max(before - ahead, 0)
            if rng.random() < self.probability.behind(ahead / COUNT_SCALE, behind / COUNT_SCALE):
                ahead -= max(cancelled - behind, 0)  # from behind; what behind cannot cover, ahead
            else:
                ahead -= min(cancelled, ahead)
        return ahead


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
