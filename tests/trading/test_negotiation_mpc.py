"""Exchange ADMM with homes that answer through their MPC, against the central optimum of the
same homes' MPC problems solved as one (cvxpy, Clarabel)."""

from __future__ import annotations

from datetime import datetime, timezone

import cvxpy as cp
import numpy as np
import pytest

from hems.community.negotiation.exchange import ExchangeSettings, negotiate_exchange
from hems.mpc.inputs import Negotiation, PlanInputs
from hems.mpc.planner import Planner
from hems.mpc.site import BatteryConfig, GridConfig, MpcSettings, PvConfig, SiteConfig
from hems.trading.negotiation import MpcNegotiator, NegotiationMismatch

START = datetime(2026, 6, 19, 6, tzinfo=timezone.utc)
STEPS, STEP_S, NEGOTIATED = 12, 3600, 4
RETAIL, FEED_IN = 0.32, 0.08


def home_site(capacity_wh: float) -> SiteConfig:
    return SiteConfig(battery=BatteryConfig(capacity_wh=capacity_wh, max_charge_w=capacity_wh / 2,
                                            max_discharge_w=capacity_wh / 2),
                      grid=GridConfig(import_limit_w=20_000, export_limit_w=10_000), pv=PvConfig(curtailable=True),
                      mpc=MpcSettings(market_enabled=True, horizon_steps=STEPS, step_s=STEP_S))


def home_inputs(seed: int) -> PlanInputs:
    rng = np.random.default_rng(seed)
    hours = np.arange(STEPS)
    pv = np.maximum(0.0, rng.uniform(2_000, 8_000) * np.sin((hours + 1) / 14 * np.pi))
    load = rng.uniform(300, 1_500) + rng.uniform(0, 800, STEPS)
    return PlanInputs(start=START, load_w=load, pv_w=pv, import_price=np.full(STEPS, RETAIL),
                      export_price=np.full(STEPS, FEED_IN), soc_initial=float(rng.uniform(0.2, 0.8)))


def community(count: int) -> list[MpcNegotiator]:
    homes = []
    for index in range(count):
        capacity = [0.0, 5_000.0, 10_000.0][index % 3] or 1.0  # a (nearly) battery-less home too
        planner = Planner(home_site(capacity))
        homes.append(MpcNegotiator(f"h{index}", planner, home_inputs(index), 0, NEGOTIATED, STEP_S))
    return homes


def central(homes: list[MpcNegotiator], fixed_wh: dict[str, np.ndarray] | None = None) -> tuple[float, np.ndarray]:
    """All homes' MPC problems as one, the retailer as the party that balances the negotiated slots.
    With ``fixed_wh`` each home's net import there is fixed: the cost of that allocation."""
    objective, constraints = 0, []
    dt = STEP_S / 3600
    net_kwh = []
    for home in homes:
        model = home.planner.model
        neutral = Negotiation(0, (0.0,) * NEGOTIATED, 1.0)  # zeroes the tariff in the negotiated slots
        prepared = home.planner.prepare(PlanInputs(**{**home.inputs.__dict__, "negotiation": neutral}))
        values = model.parameter_values(prepared)
        values["negotiation_scale"] = np.zeros(STEPS)
        model.assign(values)
        objective += model.problem.objective.args[0]
        constraints += model.problem.constraints
        net = (model.variables["import_kw"] - model.variables["export_kw"])[:NEGOTIATED] * dt
        net_kwh.append(net)
        if fixed_wh is not None:
            constraints.append(net == fixed_wh[home.home] / 1000)
    retailer = cp.Variable(NEGOTIATED)
    objective += cp.sum(cp.maximum(-FEED_IN * retailer, -RETAIL * retailer))
    balance = sum(net_kwh) + retailer == 0
    problem = cp.Problem(cp.Minimize(objective), [*constraints, balance])
    problem.solve(solver=cp.CLARABEL)
    assert problem.status == cp.OPTIMAL
    return float(problem.value), np.asarray(balance.dual_value)


@pytest.mark.parametrize("count", [3, 6])
def test_mpc_homes_negotiate_to_the_central_optimum(count):
    homes = community(count)
    result = negotiate_exchange(homes, NEGOTIATED, RETAIL, FEED_IN, ExchangeSettings(max_rounds=300))
    assert result.converged, result.history[-1]
    optimum, price = central(homes)
    allocation_cost, _ = central(homes, fixed_wh=result.positions_wh)
    assert allocation_cost - optimum <= 0.005 * abs(optimum) + 1e-4
    np.testing.assert_allclose(result.price_per_kwh, np.clip(price, FEED_IN, RETAIL), rtol=0.005)
    # The homes do trade: somebody sells and somebody buys in some slot.
    stacked = np.vstack(list(result.positions_wh.values()))
    assert np.any((stacked.max(axis=0) > 100) & (stacked.min(axis=0) < -100))


def test_rounds_are_warm_re_solves_of_one_problem():
    homes = community(3)
    builds = [home.planner.build_ms for home in homes]
    negotiate_exchange(homes, NEGOTIATED, RETAIL, FEED_IN, ExchangeSettings(max_rounds=20))
    assert [home.planner.build_ms for home in homes] == builds  # never rebuilt
    assert all(home.planner.counters.osqp >= 20 and home.planner.counters.rule_based == 0 for home in homes)


def test_a_market_slot_that_is_not_the_planners_step_is_refused():
    planner = Planner(home_site(5_000.0))
    with pytest.raises(NegotiationMismatch, match="differs"):
        MpcNegotiator("h", planner, home_inputs(0), 0, 4, 900)
    with pytest.raises(NegotiationMismatch, match="outside"):
        MpcNegotiator("h", planner, home_inputs(0), 10, 4, STEP_S)
