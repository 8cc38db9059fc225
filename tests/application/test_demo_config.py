import pytest

from application.demo import DemoConfig


def test_the_planted_edge_preset_is_the_learning_tests_market_and_flags_override_it():
    config = DemoConfig.planted_edge(total_timesteps=5_000, seed=3)
    assert (config.edge_strength, config.volatility, config.edge_lead_steps) == (0.9, 0.1, 100)
    assert (config.sessions, config.held_out_sessions, config.markets_per_session) == (30, 10, 2)
    assert config.total_timesteps == 5_000 and config.seed == 3
    plain = DemoConfig()
    assert plain.volatility is None and plain.edge_lead_steps is None  # the generator's own


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"volatility": -0.1}, "volatility must be >= 0"),
        ({"edge_lead_steps": 0}, "edge_lead_steps must be an integer >= 1"),
        ({"edge_lead_steps": 2.5}, "edge_lead_steps must be an integer >= 1"),
        ({"edge_strength": 1.0}, "edge_strength must lie in"),
        ({"sessions": 2, "held_out_sessions": 2}, "must leave at least one"),
    ],
)
def test_a_bad_demo_setting_is_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        DemoConfig(**changes)
