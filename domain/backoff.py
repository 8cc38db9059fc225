"""Exponential backoff with full jitter, for anything that retries: reconnects, store writes.

The ceiling doubles (by ``multiplier``) with each consecutive failure up to ``max_s``, and the
delay is drawn uniformly below it ("full jitter"): many clients that failed together do not
retry together. The random fraction is passed in, so the policy is pure and tests choose it.
"""

from __future__ import annotations

import math

import attrs


def _positive(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


@attrs.frozen
class ExponentialBackoff:
    initial_s: float = attrs.field(default=0.5, validator=_positive)
    max_s: float = attrs.field(default=30.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= initial_s ({self.initial_s})")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")

    def ceiling(self, failures: int) -> float:
        """The longest wait after ``failures`` consecutive failures (0 for the first retry)."""
        if failures < 0:
            raise ValueError(f"failures must be >= 0, got {failures}")
        # Compared in logs, so a huge failure count cannot overflow the float power.
        if failures * math.log(self.multiplier) >= math.log(self.max_s / self.initial_s):
            return self.max_s
        return min(self.max_s, self.initial_s * self.multiplier**failures)

    def delay(self, failures: int, fraction: float) -> float:
        """The wait before the next try: ``fraction`` (uniform in [0, 1)) of the ceiling."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
        return fraction * self.ceiling(failures)
