"""Exponential backoff with full jitter."""

from __future__ import annotations

import pytest

from domain.backoff import ExponentialBackoff


def test_the_ceiling_grows_by_the_multiplier_up_to_the_maximum():
    backoff = ExponentialBackoff(initial_s=0.5, max_s=30.0)
    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.ceiling(10_000) == 30.0  # no overflow however long the outage


def test_the_delay_is_the_jitter_fraction_of_the_ceiling():
    backoff = ExponentialBackoff(initial_s=1.0, max_s=8.0, multiplier=3.0)
    assert backoff.delay(0, 0.0) == 0.0
    assert backoff.delay(1, 0.5) == 1.5
    assert backoff.delay(5, 1.0) == 8.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_s": 0}, "initial_s must be a finite number > 0"),
        ({"max_s": float("inf")}, "max_s must be a finite number > 0"),
        ({"initial_s": 2.0, "max_s": 1.0}, r"max_s \(1.0\) must be >= initial_s \(2.0\)"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExponentialBackoff(**kwargs)


def test_bad_arguments_are_refused():
    backoff = ExponentialBackoff()
    with pytest.raises(ValueError, match="failures must be >= 0"):
        backoff.ceiling(-1)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        backoff.delay(0, 1.5)
