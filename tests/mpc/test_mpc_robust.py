"""Never infeasible, never an exception: impossible goals become reported slack, bad data is
repaired and flagged, and the fallback chain ends in a rule-based plan."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np

from hems.mpc.inputs import EvSession, PlanInputs
from hems.mpc.planner import Planner
from hems.mpc.site import MpcSettings

from .helpers import START, day_inputs, full_site, simple_site


def test_impossible_goals_give_plan_with_reported_slack(full_planner):
    inputs = dataclasses.replace(
        day_inputs(seed=5),
        load_w=np.full(96, 25_000.0),  # far above the 17 kW fuse
        soc_initial=0.05,  # below the 20 % backup reserve
        ev_session=EvSession(START + timedelta(hours=1), START + timedelta(hours=2), 50_000),  # 50 kWh in 1 h
        outdoor_temp_c=np.full(96, -30.0),  # heat pump cannot hold the comfort band
    )
    plan = full_planner.plan(inputs)
    assert plan.status == "optimal"
    assert plan.slack.import_over_limit_wh > 0
    assert plan.slack.ev_shortfall_wh > 30_000
    assert plan.slack.reserve_shortfall_wh > 0
    assert plan.slack.comfort_violation_kh > 0
    assert plan.slack.any and plan.cost.slack_penalty > 0


def test_nan_and_short_forecasts_are_repaired_and_flagged(full_planner):
    inputs = day_inputs(seed=6)
    load = np.array(inputs.load_w, dtype=float)
    load[10:20] = np.nan
    inputs = dataclasses.replace(inputs, load_w=load, pv_w=np.array(inputs.pv_w)[:40],
                                 import_price=[float("nan")] * 96)
    plan = full_planner.plan(inputs)
    assert plan.status == "optimal" and len(plan.steps) == 96
    assert "load_w:nan_repaired:10" in plan.flags
    assert any(flag.startswith("pv_w:short:40<96") for flag in plan.flags)
    assert "import_price:all_nan" in plan.flags
    assert all(np.isfinite(step.load_w) for step in plan.steps)


def test_measured_soc_outside_bounds_is_clamped():
    planner = Planner(simple_site(), n_steps=24, step_s=3600)
    for soc, expected in ((1.3, 0.95), (-0.5, 0.05), (float("nan"), 0.05)):
        inputs = PlanInputs(start=START, load_w=[500.0] * 24, pv_w=[0.0] * 24, import_price=[0.3] * 24,
                            export_price=[0.1] * 24, soc_initial=soc)
        plan = planner.plan(inputs)
        assert plan.status == "optimal"
        assert any(flag.startswith("soc_initial:") for flag in plan.flags)
        first = plan.steps[0]
        b = planner.site.battery
        start_soc = first.soc - (b.charge_efficiency * first.battery_charge_w
                                 - first.battery_discharge_w / b.discharge_efficiency) / b.capacity_wh
        assert abs(start_soc - expected) < 1e-9


def test_fallback_chain_counts_each_outcome():
    site = dataclasses.replace(full_site(), mpc=MpcSettings(market_enabled=True, time_budget_s=1e-6))
    planner = Planner(site, n_steps=96, step_s=900)
    plan = planner.plan(day_inputs(seed=7))
    # Neither solver can finish in a microsecond: the rule-based plan must still be consistent.
    assert plan.status == "fallback" and plan.solver == "rule_based"
    assert [attempt.split(":")[0] for attempt in plan.solver_attempts] == ["osqp", "clarabel"]
    assert planner.counters.rule_based == 1 and planner.counters.osqp_failed == 1
    assert planner.counters.clarabel_failed == 1
    assert all(min(s.battery_charge_w, s.battery_discharge_w) == 0 for s in plan.steps)
    # With a normal budget the same planner recovers and counts an OSQP success.
    plan = planner.solve(planner.prepare(day_inputs(seed=7)), time_budget_s=5.0)
    assert plan.solver == "osqp" and planner.counters.osqp == 1


def test_clarabel_alone_gives_the_same_optimum_as_osqp(full_planner):
    inputs = day_inputs(seed=8)
    osqp_plan = full_planner.plan(inputs)
    clarabel_plan = full_planner.plan(inputs, solvers=("clarabel",))
    assert clarabel_plan.solver == "clarabel"
    assert abs(osqp_plan.objective - clarabel_plan.objective) <= 2e-3 * abs(clarabel_plan.objective)
