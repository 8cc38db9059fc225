"""Kalshi's tick grids and the grid a recording shows."""

import pytest

from domain.ticks import check_structure, coarsest_structure, off_grid, tick_at


def test_tick_sizes_by_structure():
    assert [tick_at("linear_cent", p) for p in (50, 5000, 9950)] == [100, 100, 100]
    assert [tick_at("deci_cent", p) for p in (50, 5000, 9950)] == [10, 10, 10]
    assert [tick_at("tapered_deci_cent", p) for p in (990, 1000, 5000, 9000, 9010)] == [10, 100, 100, 100, 10]


def test_off_grid_names_the_price_and_the_tick():
    assert off_grid("deci_cent", 4450) is None
    assert off_grid("linear_cent", 4450) == (
        "price $0.4450 is off the tick grid: a linear_cent market has ticks of $0.0100 there"
    )
    with pytest.raises(ValueError, match="price_level_structure must be one of"):
        check_structure("cent")


@pytest.mark.parametrize(
    ("prices", "structure"),
    [
        ([], "linear_cent"),
        ([4500, 5300, 100, 9900], "linear_cent"),
        ([4500, 950, 9050], "tapered_deci_cent"),  # sub-cent only where the tapered grid has it
        ([4500, 950, 4450], "deci_cent"),  # a sub-cent price in the cent band
        ([1010], "deci_cent"),
        ([990, 9010], "tapered_deci_cent"),
    ],
)
def test_the_coarsest_grid_holds_every_recorded_price(prices, structure):
    assert coarsest_structure(prices) == structure
    assert all(off_grid(structure, price) is None for price in prices)
