"""Bid curves: non-increasing, and consistent with the plan at the prices the plan used."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hems.mpc.bid_curve import bid_curves, price_grid

from .helpers import day_inputs

SLOTS = (0, 30, 50, 70)


def test_bid_curves_non_increasing_and_bracket_the_plan(full_planner):
    inputs = day_inputs(seed=9)
    curves = bid_curves(full_planner, inputs, slots=SLOTS, points=11)
    plan = full_planner.plan(inputs)
    hours = full_planner.step_s / 3600
    for slot, curve in zip(SLOTS, curves):
        assert curve.slot_start == plan.steps[slot].start
        assert list(curve.prices) == sorted(curve.prices)
        assert curve.prices[0] == pytest.approx(plan.steps[slot].export_price)
        assert curve.prices[-1] == pytest.approx(plan.steps[slot].import_price)
        assert all(isinstance(q, int) for q in curve.net_import_wh)
        assert all(a >= b for a, b in zip(curve.net_import_wh, curve.net_import_wh[1:]))
        planned = (plan.steps[slot].grid_import_w - plan.steps[slot].grid_export_w) * hours
        # Buying is cheaper at the feed-in price and selling dearer at the retail price, so the
        # plan's net import lies between the curve's ends (10 Wh: solver tolerance + rounding).
        assert curve.net_import_wh[-1] - 10 <= planned <= curve.net_import_wh[0] + 10
    # The curves respond to price: somewhere the home buys less when it is dearer.
    assert any(c.net_import_wh[0] - c.net_import_wh[-1] > 100 for c in curves)


def test_bid_curve_equals_plan_when_slot_has_one_price(full_planner):
    inputs = day_inputs(seed=10)
    prices = np.array(inputs.import_price)
    exports = np.array(inputs.export_price)
    exports[SLOTS[1]] = prices[SLOTS[1]] = 0.2
    inputs = dataclasses.replace(inputs, import_price=prices, export_price=exports)
    curve = bid_curves(full_planner, inputs, slots=(SLOTS[1],))[0]
    plan = full_planner.plan(inputs)
    step = plan.steps[SLOTS[1]]
    assert curve.prices == (0.2,)
    assert curve.net_import_wh[0] == pytest.approx((step.grid_import_w - step.grid_export_w) * 0.25, abs=5)
    assert curve.quantity_at(0.5) == curve.net_import_wh[0]


def test_price_grid_respects_community_band():
    grid = price_grid(0.08, 0.32, 5, band=(0.1, 0.25))
    assert grid[0] == pytest.approx(0.1) and grid[-1] == pytest.approx(0.25) and len(grid) == 5
    assert list(price_grid(0.1, 0.1, 5)) == [0.1]
