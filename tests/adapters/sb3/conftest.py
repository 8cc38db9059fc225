"""Small synthetic market tapes for the trainer's tests (two-minute markets, one decision a second)."""

from __future__ import annotations

import pytest

from adapters.synthetic.market_model import SyntheticMarketConfig, generate
from application.replay import ReplayConfig, compile_session


def synthetic_tapes(seed: int, *, markets: int = 2, minutes: int = 2, **config):
    events = generate(SyntheticMarketConfig(seed=seed, markets=markets, duration_ms=minutes * 60_000, **config))
    return compile_session(events, session_id=seed, config=ReplayConfig(step_ms=1_000))


@pytest.fixture(scope="session")
def tapes():
    return synthetic_tapes(0) + synthetic_tapes(1)


@pytest.fixture(scope="session")
def make_tapes():
    return synthetic_tapes
