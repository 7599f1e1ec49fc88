"""Invariants of every plan on random scenarios, negative prices included (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems.mpc.inputs import PlanInputs
from hems.mpc.planner import Planner
from hems.mpc.realise import NETTING_THRESHOLD_W

from .helpers import START, simple_site

N, STEP_S = 48, 1800
DT = STEP_S / 3600


@pytest.fixture(scope="module")
def planners():
    """One planner per PV kind (built once: the tests re-solve with new parameters)."""
    return {
        True: Planner(simple_site(curtailable=True, export_limit_w=3_000, backup_reserve_soc=0.2), N, STEP_S),
        False: Planner(simple_site(curtailable=False, export_limit_w=3_000, backup_reserve_soc=0.2), N, STEP_S),
    }


def series(low: float, high: float):
    return st.lists(st.floats(low, high, allow_nan=False), min_size=N, max_size=N).map(np.array)


scenarios = st.fixed_dictionaries({
    "load": series(0, 8_000),
    "pv": series(0, 12_000),
    "import_price": series(-0.3, 0.6),
    "margin": series(0, 0.4),
    "soc": st.floats(-0.2, 1.2),
    "curtailable": st.booleans(),
})


def check_invariants(plan, inputs, site):
    b = site.battery
    charge = np.array([s.battery_charge_w for s in plan.steps])
    discharge = np.array([s.battery_discharge_w for s in plan.steps])
    soc = np.array([s.soc for s in plan.steps])
    imp = np.array([s.grid_import_w for s in plan.steps])
    exp = np.array([s.grid_export_w for s in plan.steps])
    pv_used = np.array([s.pv_used_w for s in plan.steps])
    load, pv = np.asarray(inputs.load_w), np.asarray(inputs.pv_w)
    assert np.all(soc >= b.soc_min - 1e-9) and np.all(soc <= b.soc_max + 1e-9)
    assert np.all((charge >= 0) & (charge <= b.max_charge_w + 1e-6))
    assert np.all((discharge >= 0) & (discharge <= b.max_discharge_w + 1e-6))
    assert np.all(np.minimum(charge, discharge) == 0), "charge and discharge at once"
    assert np.all(np.minimum(imp, exp) == 0)
    np.testing.assert_allclose(imp - exp, load + charge - discharge - pv_used, atol=1e-6)
    soc_before = np.concatenate([[min(max(inputs.soc_initial, b.soc_min), b.soc_max)], soc[:-1]])
    np.testing.assert_allclose((soc - soc_before) * b.capacity_wh,
                               DT * (b.charge_efficiency * charge - discharge / b.discharge_efficiency), atol=1e-6)
    assert np.all((pv_used >= -1e-9) & (pv_used <= pv + 1e-6))
    over = np.sum(np.maximum(exp - site.grid.export_limit_w, 0)) * DT
    assert over == pytest.approx(plan.slack.export_over_limit_wh, abs=1e-6)
    if site.pv.curtailable:
        assert np.all(exp <= site.grid.export_limit_w + 1e-6)
        assert plan.slack.export_over_limit_wh <= 1e-6
    else:
        np.testing.assert_array_equal(pv_used, pv)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios)
def test_invariants_on_random_scenarios(planners, scenario):
    planner = planners[scenario["curtailable"]]
    inputs = PlanInputs(start=START, load_w=scenario["load"], pv_w=scenario["pv"],
                        import_price=scenario["import_price"],
                        export_price=scenario["import_price"] - scenario["margin"], soc_initial=scenario["soc"])
    plan = planner.plan(inputs)
    assert plan.status in ("optimal", "fallback")
    check_invariants(plan, inputs, planner.site)
    if not planner.site.pv.curtailable:
        return
    # With curtailment available and no limit violated, burning energy never pays, so even
    # the raw solver output has no overlap that needed netting (see docs/mpc.md).
    assert not any(flag.startswith("charge_discharge_overlap_netted") for flag in plan.flags), plan.flags


@pytest.mark.parametrize("export_price", [-0.5, -0.05, 0.0])
def test_negative_prices_full_battery_no_overlap(planners, export_price):
    """Battery full, PV surplus, negative prices: curtail, never charge and discharge at once."""
    planner = planners[True]
    inputs = PlanInputs(start=START, load_w=np.full(N, 300.0), pv_w=np.full(N, 8_000.0),
                        import_price=np.full(N, export_price + 0.01), export_price=np.full(N, export_price),
                        soc_initial=0.95)
    plan = planner.plan(inputs)
    check_invariants(plan, inputs, planner.site)
    assert plan.flags == ()
    if export_price < 0:
        assert sum(s.grid_export_w for s in plan.steps) == pytest.approx(0.0, abs=N * 1.0)
        assert all(s.pv_curtailed_w > 0 for s in plan.steps)


def test_non_curtailable_pv_at_export_limit_reports_slack_not_burning(planners):
    """PV cannot be curtailed, the export limit cannot hold and export prices are negative: burning
    the surplus in charge/discharge losses would pay, but a real battery cannot do both at once,
    so the plan must export above the limit and report it as slack."""
    planner = planners[False]
    inputs = PlanInputs(start=START, load_w=np.full(N, 300.0), pv_w=np.full(N, 9_000.0),
                        import_price=np.full(N, -0.2), export_price=np.full(N, -0.3), soc_initial=0.9)
    plan = planner.plan(inputs)
    check_invariants(plan, inputs, planner.site)
    assert plan.slack.export_over_limit_wh > 0
    assert plan.slack.any
    exports = np.array([s.grid_export_w for s in plan.steps])
    assert np.all(exports > planner.site.grid.export_limit_w)


def test_netting_keeps_energy_and_removes_overlap():
    from hems.mpc.realise import _net_overlap

    charge, discharge = np.array([3000.0, 500.0, 5.0]), np.array([1000.0, 2000.0, 5.0])
    new_c, new_d, netted = _net_overlap(charge, discharge, 0.95, 0.9)
    assert np.all(np.minimum(new_c, new_d) == 0)
    np.testing.assert_allclose(0.95 * new_c - new_d / 0.9, 0.95 * charge - discharge / 0.9)
    assert netted == 2  # the 5 W overlap is below NETTING_THRESHOLD_W: netted but not counted
    assert 5.0 < NETTING_THRESHOLD_W < 500.0
