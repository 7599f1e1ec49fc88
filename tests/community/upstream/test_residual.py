"""The community's residual curve on the upstream grid: the sum of its homes' curves, whole Wh,
non-increasing; summed or split across slot lengths; as a curve or as step orders."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from hems.community.mechanisms.base import Curve
from hems.community.mechanisms.bid_curve import curve_value_wh
from hems.community.upstream.residual import (PriceBand, residual_bid, residual_curve, residual_wh,
                                              upstream_quantities)
from hems.community.upstream.slots import SlotMapping
from hems.protocol.messages import MAX_ORDERS_PER_SLOT, BidFormat, Side
from hems.protocol.units import round_half_even

T = 1_795_046_400
BAND = PriceBand(feed_in_price_micro=80_000, retail_price_micro=300_000)


@st.composite
def grids(draw, low=0, high=600_000, max_points=12):
    return sorted(draw(st.sets(st.integers(low, high), min_size=2, max_size=max_points)))


@st.composite
def curves(draw, home="h"):
    prices = draw(grids(max_points=8))
    steps = draw(st.lists(st.integers(0, 3_000), min_size=len(prices) - 1, max_size=len(prices) - 1))
    first = draw(st.integers(-5_000, 5_000))
    quantities = [first]
    for step in steps:
        quantities.append(quantities[-1] - step)
    return Curve(home, tuple(prices), tuple(quantities))


@st.composite
def bands(draw):
    low, high = sorted(draw(st.sets(st.integers(0, 500_000), min_size=2, max_size=2)))
    return PriceBand(low, high)


@given(st.lists(curves(), min_size=0, max_size=6), grids(), bands())
def test_the_residual_is_the_sum_of_the_curves_clipped_by_our_band_and_non_increasing(homes, grid, band):
    residual = residual_curve(homes, grid, band)
    assert all(later <= earlier for earlier, later in zip(residual, residual[1:]))
    for price, value in zip(grid, residual):
        exact = sum((Fraction(curve_value_wh(curve, price)) for curve in homes), Fraction(0))
        if band.feed_in_price_micro <= price <= band.retail_price_micro:
            assert abs(value - exact) <= Fraction(1, 2)
            assert value == round_half_even(exact)
        elif price > band.retail_price_micro:  # dearer than our retailer: never buy up there
            assert value == min(round_half_even(exact), 0)
        else:  # cheaper than our feed-in: never sell up there
            assert value == max(round_half_even(exact), 0)


def test_an_example_on_another_grid():
    homes = [Curve("a", (80_000, 300_000), (1_000, -100)), Curve("b", (80_000, 190_000, 300_000), (0, -50, -500))]
    # At 135 000: a = 1000 − 1100·55/220 = 725; b = −25: 700. Above our retail: min(D, 0); below
    # feed-in: max(D, 0).
    assert residual_curve(homes, [70_000, 135_000, 300_000, 320_000], BAND) == (1_000, 700, -600, -600)
    assert residual_wh([Curve("c", (80_000,), (400,))], 320_000, BAND) == 0


def test_a_fifteen_minute_residual_is_split_evenly_over_three_five_minute_upstream_slots():
    homes = [Curve("a", (80_000, 300_000), (1_000, -101)), Curve("b", (80_000, 300_000), (3, -8))]
    grid = [80_000, 190_000, 300_000]
    whole = residual_curve(homes, grid, BAND)
    assert whole == (1_003, 447, -109)
    mapping = SlotMapping(our_slot_s=900, upstream_slot_s=300)
    parts = [upstream_quantities(mapping, T + offset, lambda slot_s: homes if slot_s == T else [], grid, BAND)
             for offset in (0, 300, 600)]
    assert [sum(points) for points in zip(*parts)] == list(whole)
    assert parts[0] == (335, 149, -37) and parts[2] == (334, 149, -36)  # the remainder to the first
    assert all(all(b <= a for a, b in zip(points, points[1:])) for points in parts)


def test_five_minute_residuals_are_summed_into_one_fifteen_minute_upstream_slot():
    by_slot = {T + index * 300: [Curve("a", (80_000, 300_000), (100 * (index + 1), -10))] for index in range(3)}
    mapping = SlotMapping(our_slot_s=300, upstream_slot_s=900)
    quantities = upstream_quantities(mapping, T, lambda slot_s: by_slot[slot_s], [80_000, 300_000], BAND)
    assert quantities == (600, -30)


def test_the_bid_as_a_curve_or_as_step_orders():
    grid = [80_000, 190_000, 300_000]
    bid = residual_bid(T, 900, grid, (500, 100, -300), BidFormat.CURVE)
    assert bid.curve.prices_micro == grid and bid.curve.net_import_wh == [500, 100, -300]
    orders = residual_bid(T, 900, grid, (500, 100, -300), BidFormat.ORDERS).orders
    assert sorted((order.side, order.energy_wh, order.limit_price_micro) for order in orders) == [
        (Side.BUY, 100, 190_000), (Side.BUY, 400, 80_000), (Side.SELL, 300, 300_000)]


def test_a_fine_grid_is_thinned_to_the_orders_a_slot_may_carry():
    grid = list(range(80_000, 300_001, 2_200))  # 101 prices
    quantities = tuple(2_000 - 40 * index for index in range(len(grid)))  # a new order at every price
    orders = residual_bid(T, 900, grid, quantities, BidFormat.ORDERS).orders
    assert len(orders) <= MAX_ORDERS_PER_SLOT
    assert sum(order.energy_wh for order in orders if order.side is Side.BUY) == quantities[0]
    assert sum(order.energy_wh for order in orders if order.side is Side.SELL) == -quantities[-1]
