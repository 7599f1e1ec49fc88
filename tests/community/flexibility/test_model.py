"""The flexibility model: validation, and reading a home's flexibility off its bid curve."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.flexibility.model import (Direction, FlexibilityRequest, FlexibilitySegment, HomeFlexibility,
                                              direction_of, flexibility_from_curve)
from hems.community.mechanisms.base import Curve

GRID = (100_000, 200_000, 300_000, 400_000, 500_000)
#: Hand-checked: imports 800 Wh at 0.10, 500 at 0.20 and 0.30, 100 at 0.40, exports 300 at 0.50.
CURVE = Curve("anna", GRID, (800, 500, 500, 100, -300))


def test_curve_at_a_grid_point():
    flex = flexibility_from_curve(CURVE, 300_000, slot_start_s=900)
    assert flex.home == "anna" and flex.slot_start_s == 900
    assert flex.baseline_wh == 500
    # Less import: 500 → 100 if paid 0.10 more (behaves as at 0.40), → −300 at 0.20 more (as at 0.50).
    assert flex.down == (FlexibilitySegment(400, 100_000), FlexibilitySegment(400, 200_000))
    # More import: the flat step 0.20 → 0.30 gives nothing; 500 → 800 needs 0.20 (as at 0.10).
    assert flex.up == (FlexibilitySegment(300, 200_000),)
    assert (flex.up_wh, flex.down_wh) == (300, 800)


def test_curve_between_grid_points_reads_the_lower_step():
    flex = flexibility_from_curve(CURVE, 350_000)
    assert flex.baseline_wh == 500  # the value at 0.30, the largest grid price ≤ 0.35
    assert flex.down == (FlexibilitySegment(400, 50_000), FlexibilitySegment(400, 150_000))
    assert flex.up == (FlexibilitySegment(300, 250_000),)


def test_curve_at_the_grid_ends():
    top = flexibility_from_curve(CURVE, 500_000)
    assert top.baseline_wh == -300 and top.down == ()
    assert top.up == (FlexibilitySegment(400, 100_000), FlexibilitySegment(400, 200_000),
                      FlexibilitySegment(300, 400_000))
    bottom = flexibility_from_curve(CURVE, 100_000)
    assert bottom.baseline_wh == 800 and bottom.up == ()
    assert bottom.down_wh == 1100


@pytest.mark.parametrize("reference", [99_999, 500_001])
def test_reference_outside_the_grid_is_refused(reference):
    with pytest.raises(ValueError, match="outside"):
        flexibility_from_curve(CURVE, reference)


def test_invalid_curves_are_refused():
    with pytest.raises(ValueError, match="increase"):
        flexibility_from_curve(Curve("x", GRID, (0, 1, 1, 1, 1)), 300_000)
    with pytest.raises(ValueError, match="ascending"):
        flexibility_from_curve(Curve("x", (1, 1), (0, 0)), 1)


@st.composite
def curves_and_references(draw):
    prices = sorted(draw(st.sets(st.integers(0, 400_000), min_size=1, max_size=8)))
    steps = [draw(st.integers(0, 600)) for _ in prices[1:]]
    start = draw(st.integers(-2000, 2000))
    quantities = [start]
    for step in steps:
        quantities.append(quantities[-1] - step)
    reference = draw(st.integers(prices[0], prices[-1]))
    return Curve("h", tuple(prices), tuple(quantities)), reference


def step_value(curve: Curve, price: int) -> int:
    """The curve read as a step function: the value at the largest grid price ≤ ``price``."""
    index = max(bisect.bisect_right(curve.prices_micro, price) - 1, 0)
    return curve.net_import_wh[index]


@settings(max_examples=100, deadline=None)
@given(curves_and_references())
def test_curve_blocks_reproduce_the_curve(data):
    """Σ blocks at compensation ≤ c is exactly the curve's change between the reference and the
    reference ± c, for every compensation where the curve has a point."""
    curve, reference = data
    flex = flexibility_from_curve(curve, reference)
    assert flex.baseline_wh == step_value(curve, reference)
    assert flex.baseline_wh + flex.up_wh == curve.net_import_wh[0]
    assert flex.baseline_wh - flex.down_wh == curve.net_import_wh[-1]
    for price in curve.prices_micro:
        if price > reference:
            offered = sum(item.energy_wh for item in flex.down if item.price_micro <= price - reference)
            assert offered == flex.baseline_wh - step_value(curve, price)
        elif price < reference:
            offered = sum(item.energy_wh for item in flex.up if item.price_micro <= reference - price)
            assert offered == step_value(curve, price) - flex.baseline_wh


def test_segment_and_flexibility_validation():
    with pytest.raises(ValueError):
        FlexibilitySegment(0, 10)
    with pytest.raises(ValueError):
        FlexibilitySegment(10, -1)
    with pytest.raises(TypeError):
        FlexibilitySegment(10.0, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FlexibilitySegment(True, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ascending"):
        HomeFlexibility("a", 0, 0, up=(FlexibilitySegment(1, 5), FlexibilitySegment(1, 5)))
    with pytest.raises(ValueError, match="ascending"):
        HomeFlexibility("a", 0, 0, down=(FlexibilitySegment(1, 6), FlexibilitySegment(1, 5)))
    with pytest.raises(TypeError):
        HomeFlexibility("a", 0, 0, up=[FlexibilitySegment(1, 5)])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HomeFlexibility("", 0, 0)
    flex = HomeFlexibility("a", 0, 10, up=(FlexibilitySegment(3, 1),), down=(FlexibilitySegment(4, 2),))
    assert flex.segments(Direction.UP) == flex.up and flex.segments(Direction.DOWN) == flex.down
    assert flex.segments("up") == flex.up and flex.segments("down") == flex.down
    with pytest.raises(ValueError):
        flex.segments("sideways")


def test_request_validation():
    request = FlexibilityRequest("r", (0, 900), (100, -50), 200_000, 300_000)
    assert request.delta_for(900) == -50
    with pytest.raises(KeyError):
        request.delta_for(1800)
    with pytest.raises(ValueError):
        FlexibilityRequest("r", (0, 900), (100,), 1, 1)
    with pytest.raises(ValueError):
        FlexibilityRequest("r", (900, 0), (1, 1), 1, 1)
    with pytest.raises(ValueError):
        FlexibilityRequest("r", (), (), 1, 1)
    with pytest.raises(ValueError):
        FlexibilityRequest("r", (0,), (1,), -1, 1)
    with pytest.raises(ValueError):
        FlexibilityRequest("r", (0,), (1,), 1, -1)
    with pytest.raises(ValueError):
        FlexibilityRequest("", (0,), (1,), 1, 1)
    with pytest.raises(TypeError):
        FlexibilityRequest("r", [0], [1], 1, 1)  # type: ignore[arg-type]
    assert [direction_of(value) for value in (5, -5, 0)] == [Direction.UP, Direction.DOWN, None]
