"""The compiled model: DPP, the raw-OSQP data maps against cvxpy's own, and an LP case against an
independent HiGHS LP."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from hems.mpc.fast_solver import CompiledQp
from hems.mpc.inputs import PlanInputs
from hems.mpc.planner import Planner
from hems.mpc.problem import MpcModel

from .helpers import START, day_inputs, full_site, simple_site


def test_problem_is_dpp_and_built_once(full_planner):
    assert full_planner.model.problem.is_dpp()
    problem_before = full_planner.model.problem
    full_planner.plan(day_inputs(seed=1))
    full_planner.plan(day_inputs(seed=2))
    assert full_planner.model.problem is problem_before


def test_compiled_maps_equal_cvxpy_problem_data():
    site = full_site()
    model = MpcModel(site, 48, 1800)
    planner_inputs = day_inputs(n=48, step_s=1800, seed=3)
    from hems.mpc.inputs import prepare

    values = model.parameter_values(prepare(planner_inputs, site, 48, 1800))
    model.assign(values)
    compiled = CompiledQp(model.problem, model.parameters, model.variables)
    ours = compiled.data(compiled.vector(values))
    data, _, _ = model.problem.get_problem_data(cp.OSQP)
    a_ref = sp.vstack([data["A"], data["F"]]).tocsc()
    u_ref = np.concatenate([data["b"], data["G"]])
    assert abs(ours.a - a_ref).max() == 0
    assert abs(ours.p_upper - sp.triu(data["P"])).max() == 0
    np.testing.assert_array_equal(ours.q, data["q"])
    np.testing.assert_array_equal(ours.u, u_ref)
    np.testing.assert_array_equal(ours.l[: ours.n_eq], data["b"])
    assert np.all(np.isneginf(ours.l[ours.n_eq:]))


def test_fast_osqp_matches_cvxpy_solve(full_planner):
    inputs = day_inputs(seed=4)
    plan = full_planner.plan(inputs)
    assert plan.solver == "osqp" and plan.status == "optimal"
    model = full_planner.model
    model.assign(model.parameter_values(full_planner.prepare(inputs)))
    model.problem.solve(solver=cp.CLARABEL)
    assert abs(plan.objective - model.problem.value) <= 2e-3 * abs(model.problem.value)


def _independent_lp(load, pv, pi, pe, dt, soc0, site, throughput_price):
    """The battery + curtailable PV case written directly as an LP for HiGHS.
    Variables per step: charge, discharge, energy, import, export, pv_used (kW, kWh)."""
    n = load.size
    b = site.battery
    cap = b.capacity_wh / 1000
    nv = 6 * n
    idx = {name: np.arange(k * n, (k + 1) * n) for k, name in enumerate(("c", "d", "e", "imp", "exp", "pvu"))}
    cost = np.zeros(nv)
    cost[idx["imp"]] = dt * pi
    cost[idx["exp"]] = -dt * pe
    cost[idx["c"]] = cost[idx["d"]] = dt * throughput_price
    rows, rhs = [], []
    for t in range(n):
        row = np.zeros(nv)  # e_t - e_{t-1} - dt*(eta_c c - d/eta_d) = 0
        row[idx["e"][t]] = 1
        if t:
            row[idx["e"][t - 1]] = -1
        row[idx["c"][t]] = -dt * b.charge_efficiency
        row[idx["d"][t]] = dt / b.discharge_efficiency
        rows.append(row)
        rhs.append(soc0 * cap if t == 0 else 0.0)
        row = np.zeros(nv)  # imp - exp - c + d + pv_used = load
        row[idx["imp"][t]], row[idx["exp"][t]], row[idx["c"][t]], row[idx["d"][t]], row[idx["pvu"][t]] = 1, -1, -1, 1, 1
        rows.append(row)
        rhs.append(load[t])
    bounds = ([(0, b.max_charge_w / 1000)] * n + [(0, b.max_discharge_w / 1000)] * n
              + [(b.soc_min * cap, b.soc_max * cap)] * n + [(0, site.grid.import_limit_w / 1000)] * n
              + [(0, site.grid.export_limit_w / 1000)] * n + [(0, p) for p in pv])
    return linprog(cost, A_eq=np.array(rows), b_eq=np.array(rhs), bounds=bounds, method="highs")


def test_pure_lp_case_matches_highs_within_0_1_percent():
    site = simple_site(curtailable=True, export_limit_w=4_000)
    n, step_s = 48, 1800
    rng = np.random.default_rng(7)
    hours = np.arange(n) * step_s / 3600
    load = 300 + 900 * rng.random(n)
    pv = np.maximum(0, 7_000 * np.sin((hours % 24 - 5) / 14 * np.pi))
    pi = 0.2 + 0.25 * rng.random(n)
    pe = np.full(n, 0.07)
    planner = Planner(site, n_steps=n, step_s=step_s)
    inputs = PlanInputs(start=START, load_w=load, pv_w=pv, import_price=pi, export_price=pe, soc_initial=0.4)
    plan = planner.plan(inputs, regularisation=0.0, solvers=("clarabel",))
    assert plan.solver == "clarabel"
    throughput = site.battery.degradation_cost_per_kwh + site.mpc.throughput_tie_break_per_kwh
    reference = _independent_lp(load / 1000, pv / 1000, pi, pe, step_s / 3600, 0.4, site, throughput)
    assert reference.status == 0
    assert abs(plan.objective - reference.fun) <= 1e-3 * abs(reference.fun)
    # The realised plan's money terms agree with the LP optimum as well.
    tie = site.mpc.throughput_tie_break_per_kwh * sum(s.battery_charge_w + s.battery_discharge_w for s in plan.steps) * step_s / 3600 / 1000
    assert abs(plan.cost.energy + plan.cost.degradation + tie - reference.fun) <= 1e-3 * abs(reference.fun)
