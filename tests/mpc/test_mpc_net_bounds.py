"""Bounds on net import (import - export) per slot: the cap and the floor a confirmed flexibility
commitment sets (hems/trading/power_plant.py). Real solvers; a hypothesis property on feasible
bounds built around a trajectory the site can run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems.mpc.inputs import PlanInputs, prepare
from hems.mpc.planner import Planner

from .helpers import START, day_inputs, simple_site

N, STEP_S = 48, 1800
DT = STEP_S / 3600
#: OSQP's tolerance: eps 1e-3, absolute and relative to rows of up to ~20 kW (measured: at most 32 W
#: over 150 random days of the property below); Clarabel's interior point is exact to well below 1 W.
TOLERANCE_W = 50.0
CLARABEL_TOLERANCE_W = 0.01


def net_import_w(plan) -> np.ndarray:
    return np.array([step.grid_import_w - step.grid_export_w for step in plan.steps])


@pytest.fixture(scope="module")
def planner():
    return Planner(simple_site(curtailable=True, export_limit_w=4_000), N, STEP_S)


def noon_inputs(**overrides) -> PlanInputs:
    """A day of 30-min slots: PV at midday (export), load in the evening (import)."""
    hours = np.arange(N) * DT
    pv = np.maximum(0.0, 5_000 * np.sin((hours - 6) / 12 * np.pi))
    load = 400 + 1_600 * ((hours >= 17) & (hours < 22))
    prices = 0.25 + 0.15 * ((hours >= 17) & (hours < 22))
    values = dict(start=START, load_w=load, pv_w=pv, import_price=prices, export_price=np.full(N, 0.08),
                  soc_initial=0.3)
    values.update(overrides)
    return PlanInputs(**values)


def test_a_floor_makes_the_plan_import_at_least_that_much(planner):
    base = net_import_w(planner.plan(noon_inputs()))
    slots = np.arange(22, 26)  # 11:00-13:00, exporting PV
    assert np.all(base[slots] < -500)
    floor = np.full(N, -np.inf)
    floor[slots] = base[slots] + 2_000  # 2 kW less export: the battery or curtailment takes it
    plan = planner.plan(noon_inputs(net_demand_floor_w=floor))
    assert plan.status == "optimal"
    net = net_import_w(plan)
    assert np.all(net[slots] >= floor[slots] - TOLERANCE_W), (net[slots], floor[slots])
    assert plan.slack.net_demand_under_floor_wh < 10.0 and plan.slack.net_demand_over_cap_wh == 0.0


def test_a_cap_makes_the_plan_import_at_most_that_much(planner):
    base = net_import_w(planner.plan(noon_inputs(soc_initial=0.05)))
    slots = np.arange(8, 12)  # 04:00-06:00: the battery is empty and the night's load is imported
    assert np.all(base[slots] > 300)
    cap = np.full(N, np.inf)
    cap[slots] = -1_000.0  # export 1 kW instead: only a battery charged from the grid before can
    plan = planner.plan(noon_inputs(soc_initial=0.05, net_demand_cap_w=cap))
    assert plan.status == "optimal"
    net = net_import_w(plan)
    assert np.all(net[slots] <= cap[slots] + TOLERANCE_W), net[slots]
    assert net[:8].max() > 1_000  # it charged from the grid to deliver
    assert plan.slack.net_demand_over_cap_wh < 10.0


def test_an_unreachable_floor_is_reported_as_slack_and_the_fuse_holds(planner):
    floor = np.full(N, -np.inf)
    floor[2] = 16_000.0  # 16 kW at night: load 400 W + battery 5 kW is all the site can draw
    plan = planner.plan(noon_inputs(net_demand_floor_w=floor))
    net = net_import_w(plan)
    assert plan.status == "optimal" and net[2] == pytest.approx(5_400, abs=TOLERANCE_W)
    assert plan.slack.net_demand_under_floor_wh == pytest.approx((16_000 - net[2]) * DT, abs=1.0)
    assert plan.slack.any and plan.cost.slack_penalty > 0
    above_fuse = np.full(N, -np.inf)
    above_fuse[2] = 30_000.0
    prepared = planner.prepare(noon_inputs(net_demand_floor_w=above_fuse))
    assert prepared.net_demand_floor_w[2] == planner.site.grid.import_limit_w
    assert "net_demand_floor_w:above_cap:1" in prepared.flags


def test_no_bound_is_finite_out_of_reach_and_changes_nothing(planner):
    inputs = noon_inputs()
    prepared = planner.prepare(inputs)
    lowest_w = -(prepared.pv_w + planner.site.battery.max_discharge_w)
    assert np.all(np.isfinite(prepared.net_demand_floor_w)) and np.all(prepared.net_demand_floor_w < lowest_w)
    assert np.all(prepared.net_demand_cap_w == planner.site.grid.import_limit_w)
    unbounded = prepare(dataclasses.replace(inputs, net_demand_cap_w=[np.inf] * N,
                                            net_demand_floor_w=[-np.inf] * N), planner.site, N, STEP_S)
    np.testing.assert_array_equal(unbounded.net_demand_floor_w, prepared.net_demand_floor_w)
    np.testing.assert_array_equal(unbounded.net_demand_cap_w, prepared.net_demand_cap_w)
    assert unbounded.flags == []
    # A cap looser than the fuse is the fuse; a short series bounds only the slots it names.
    short = prepare(dataclasses.replace(inputs, net_demand_cap_w=[50_000.0, 1_000.0]), planner.site, N, STEP_S)
    assert short.net_demand_cap_w[0] == planner.site.grid.import_limit_w and short.net_demand_cap_w[1] == 1_000.0
    assert np.all(short.net_demand_cap_w[2:] == planner.site.grid.import_limit_w)
    assert f"net_demand_cap_w:short:2<{N}" in short.flags


def test_the_bounds_are_parameters_of_the_compiled_problem(full_planner):
    """A new cap or floor changes only the constraint bounds: no rebuild, no refactorisation."""
    problem, compiled = full_planner.model.problem, full_planner.compiled
    inputs = day_inputs(seed=5)
    floor = np.full(96, -np.inf)
    floor[40:44] = 3_000.0
    cap = np.full(96, np.inf)
    cap[70:74] = -500.0
    plain = full_planner.model.parameter_values(full_planner.prepare(inputs))
    bounded = full_planner.model.parameter_values(full_planner.prepare(
        dataclasses.replace(inputs, net_demand_floor_w=floor, net_demand_cap_w=cap)))
    first, second = compiled.data(compiled.vector(plain)), compiled.data(compiled.vector(bounded))
    np.testing.assert_array_equal(first.a.data, second.a.data)
    np.testing.assert_array_equal(first.p_upper.data, second.p_upper.data)
    np.testing.assert_array_equal(first.q, second.q)
    assert not np.array_equal(first.u, second.u)
    plan = full_planner.plan(dataclasses.replace(inputs, net_demand_floor_w=floor, net_demand_cap_w=cap))
    assert full_planner.model.problem is problem and full_planner.compiled is compiled and problem.is_dpp()
    net = net_import_w(plan)
    assert plan.status == "optimal"
    assert np.all(net[40:44] >= 3_000 - TOLERANCE_W) and np.all(net[70:74] <= -500 + TOLERANCE_W)


# -- property: bounds the site can meet are met ------------------------------------------------

def _feasible_net_w(site, load, pv, moves, soc0) -> np.ndarray:
    """The net import of a trajectory the site can run: battery powers ``moves`` (fractions of the
    maximum, + charge) kept within the SoC bounds, PV curtailed down to the export limit."""
    battery, grid = site.battery, site.grid
    level = soc0 * battery.capacity_wh
    low, high = battery.soc_min * battery.capacity_wh, battery.soc_max * battery.capacity_wh
    net = np.empty(N)
    for t in range(N):
        charge = max(moves[t], 0.0) * battery.max_charge_w
        discharge = max(-moves[t], 0.0) * battery.max_discharge_w
        charge = min(charge, (high - level) / DT / battery.charge_efficiency)
        discharge = min(discharge, (level - low) / DT * battery.discharge_efficiency,
                        load[t] + charge + grid.export_limit_w)  # never discharging past the export limit
        level += DT * (battery.charge_efficiency * charge - discharge / battery.discharge_efficiency)
        pv_used = min(pv[t], load[t] + charge - discharge + grid.export_limit_w)
        net[t] = load[t] + charge - discharge - max(pv_used, 0.0)
    return net


def series(low: float, high: float):
    return st.lists(st.floats(low, high, allow_nan=False), min_size=N, max_size=N).map(np.array)


bounded_days = st.fixed_dictionaries({
    "load": series(0, 3_000),
    "pv": series(0, 7_000),
    "import_price": series(0.05, 0.5),
    "moves": series(-1, 1),
    "soc": st.floats(0.05, 0.95),
    "kind": st.lists(st.sampled_from(["none", "cap", "floor", "both"]), min_size=N, max_size=N),
    "margin_w": series(0, 1_500),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bounded_days)
def test_feasible_caps_and_floors_are_honoured(planner, day):
    """Caps above and floors below a trajectory the site can run (so within its limits): the plan
    keeps every one of them, and reports no slack for them."""
    site = planner.site
    reachable = _feasible_net_w(site, day["load"], day["pv"], day["moves"], day["soc"])
    kind = np.array(day["kind"])
    cap = np.where(np.isin(kind, ["cap", "both"]), np.minimum(reachable + day["margin_w"],
                                                               site.grid.import_limit_w), np.inf)
    floor = np.where(np.isin(kind, ["floor", "both"]), reachable - day["margin_w"][::-1], -np.inf)
    inputs = PlanInputs(start=START, load_w=day["load"], pv_w=day["pv"], import_price=day["import_price"],
                        export_price=day["import_price"] * 0.4, soc_initial=day["soc"],
                        net_demand_cap_w=cap, net_demand_floor_w=floor)
    for solvers in (("osqp", "clarabel"), ("clarabel",)):
        plan = planner.plan(inputs, solvers=solvers)
        # OSQP may run out of its share of the time budget on a busy machine; Clarabel then plans.
        assert plan.status == "optimal"
        tolerance_w = TOLERANCE_W if plan.solver == "osqp" else CLARABEL_TOLERANCE_W
        net = net_import_w(plan)
        assert np.all(net <= cap + tolerance_w), (plan.solver, (net - cap).max())
        assert np.all(net >= floor - tolerance_w), (plan.solver, (floor - net).max())
        assert np.all(net <= site.grid.import_limit_w + tolerance_w)
        assert np.all(net >= -site.grid.export_limit_w - tolerance_w)
        assert plan.slack.net_demand_over_cap_wh + plan.slack.net_demand_under_floor_wh <= tolerance_w * DT * N
