"""The plan in force, when to re-plan, a planning run (real planner, fake forecast), and the small
runtime helpers status_line and SlotAverage."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from hems.control.controller import ControlDecision
from hems.control.policy import ControlMode
from hems.mpc.plan import CostBreakdown, Plan, PlanStep, SlackReport
from hems.runtime.forecasting import SiteForecast
from hems.runtime.planning import PlanInForce, PlanningService
from hems.runtime.snapshot import Measurement, Quantity, SiteSnapshot
from hems.runtime.status import status_line
from hems.runtime.telemetry import SlotAverage, SlotAverager
from tests.mpc.helpers import simple_site

STEP_S = 900
SLOT0_S = 1_717_243_200.0  # 2024-06-01 12:00 UTC, a slot boundary
COST = CostBreakdown(energy=0.0, trades=0.0, degradation=0.0, demand_charge=0.0, terminal_value=0.0,
                     discomfort_penalty=0.0, slack_penalty=0.0)


def make_plan(socs: list[float], status: str = "optimal") -> Plan:
    start = datetime.fromtimestamp(SLOT0_S, tz=timezone.utc)
    steps = tuple(PlanStep(start=start + timedelta(seconds=STEP_S * i), battery_charge_w=0.0, battery_discharge_w=0.0,
                           soc=soc, grid_import_w=0.0, grid_export_w=0.0, pv_used_w=0.0, pv_curtailed_w=0.0,
                           load_w=0.0) for i, soc in enumerate(socs))
    return Plan(status=status, solver="osqp", steps=steps, cost=COST, slack=SlackReport(), solve_ms=1.0,
                build_ms=1.0, step_s=STEP_S)


def soc_snapshot(at_s: float, soc: float | None) -> SiteSnapshot:
    values = {} if soc is None else {Quantity.BATTERY_SOC: Measurement(soc, at_s)}
    return SiteSnapshot(taken_at_s=at_s, values=values)


# -- PlanInForce -----------------------------------------------------------------------------------

# Made 300 s into the first slot at SoC 0.40; planned SoC at the slot ends: 0.46, 0.50, 0.44.
IN_FORCE = PlanInForce(make_plan([0.46, 0.50, 0.44]), made_at_s=SLOT0_S + 300, start_s=SLOT0_S, initial_soc=0.40)


def test_step_at_boundaries():
    steps = IN_FORCE.plan.steps
    assert IN_FORCE.step_at(SLOT0_S - 0.001) is None
    assert IN_FORCE.step_at(SLOT0_S) is steps[0]
    assert IN_FORCE.step_at(SLOT0_S + STEP_S - 0.001) is steps[0]
    assert IN_FORCE.step_at(SLOT0_S + STEP_S) is steps[1]
    assert IN_FORCE.step_at(SLOT0_S + 3 * STEP_S - 0.001) is steps[2]
    assert IN_FORCE.step_at(SLOT0_S + 3 * STEP_S) is None


def test_soc_at_step_zero_runs_from_the_measured_soc_at_the_step_rate():
    # From made_at the battery runs at step 0's rate: (0.46 - 0.40) per full slot.
    assert IN_FORCE.soc_at(SLOT0_S + 300) == pytest.approx(0.40)
    assert IN_FORCE.soc_at(SLOT0_S + 300 + 450) == pytest.approx(0.43)
    assert IN_FORCE.soc_at(SLOT0_S + STEP_S - 0.001) == pytest.approx(0.40 + 0.06 * 600 / 900, abs=1e-6)


def test_soc_at_later_steps_interpolates_between_planned_socs():
    assert IN_FORCE.soc_at(SLOT0_S + STEP_S) == pytest.approx(0.46)
    assert IN_FORCE.soc_at(SLOT0_S + 1.5 * STEP_S) == pytest.approx(0.48)
    assert IN_FORCE.soc_at(SLOT0_S + 2.25 * STEP_S) == pytest.approx(0.485)
    assert IN_FORCE.soc_at(SLOT0_S + 3 * STEP_S) is None
    assert IN_FORCE.soc_at(SLOT0_S - 1) is None


# -- reason_to_plan --------------------------------------------------------------------------------

def service(planner=None, forecast=None, prices=None, **kwargs) -> PlanningService:
    return PlanningService(planner or SimpleNamespace(step_s=STEP_S), forecast, prices, "Europe/Berlin", **kwargs)


def test_no_plan_is_a_reason():
    assert service().reason_to_plan(soc_snapshot(SLOT0_S, 0.5), SLOT0_S) == "no plan"


def test_slot_boundary_is_a_reason_even_right_after_a_plan():
    planning = service(replan_min_interval_s=60.0)
    planning.current = PlanInForce(make_plan([0.5, 0.5]), made_at_s=SLOT0_S + 880, start_s=SLOT0_S, initial_soc=0.5)
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 899, 0.5), SLOT0_S + 899) is None
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 900, 0.5), SLOT0_S + 900) == "slot boundary"


def test_soc_deviation_only_after_the_minimum_interval():
    planning = service(replan_soc_deviation=0.05, replan_min_interval_s=60.0)
    planning.current = PlanInForce(make_plan([0.5, 0.5]), made_at_s=SLOT0_S + 100, start_s=SLOT0_S, initial_soc=0.5)
    # Planned 0.5 all along; measured 0.6.
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 159, 0.6), SLOT0_S + 159) is None
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 160, 0.6), SLOT0_S + 160) == "soc deviation +0.100"
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 160, 0.42), SLOT0_S + 160) == "soc deviation -0.080"
    # Within the threshold, or unknown: no reason.
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 160, 0.54), SLOT0_S + 160) is None
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 160, None), SLOT0_S + 160) is None


def test_soc_deviation_is_measured_against_the_interpolated_plan():
    planning = service(replan_soc_deviation=0.05, replan_min_interval_s=60.0)
    # Made at the slot start at 0.30, planned 0.60 at the slot end: 0.45 at mid-slot.
    planning.current = PlanInForce(make_plan([0.6, 0.6]), made_at_s=SLOT0_S, start_s=SLOT0_S, initial_soc=0.3)
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 450, 0.45), SLOT0_S + 450) is None
    assert planning.reason_to_plan(soc_snapshot(SLOT0_S + 450, 0.60), SLOT0_S + 450) == "soc deviation +0.150"


# -- a planning run: real planner on a small site, fake forecast and prices -------------------------

class FakeForecast:
    """Records observe() and forecast() calls in order (and the thread they ran in)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.threads: set[str] = set()

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> SiteForecast:
        self.calls.append(("forecast", start, steps, step_s, now))
        self.threads.add(threading.current_thread().name)
        return SiteForecast(load_w=np.full(steps, 800.0), pv_w=np.linspace(0.0, 3_000.0, steps))

    def observe(self, slot_start: datetime, load_w: float, pv_w: float) -> None:
        self.calls.append(("observe", slot_start, load_w, pv_w))


class FakePrices:
    def __init__(self) -> None:
        self.calls: list[tuple[list[datetime], str]] = []

    def __call__(self, instants, timezone_name):
        self.calls.append((list(instants), timezone_name))
        return [0.30] * len(instants), [0.08] * len(instants)


@pytest.fixture(scope="module")
def planner():
    from hems.mpc.planner import Planner

    return Planner(simple_site(), n_steps=8, step_s=STEP_S)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


async def test_plan_uses_the_measured_soc_and_sets_current(planner):
    forecast, prices = FakeForecast(), FakePrices()
    planning = PlanningService(planner, forecast, prices, "Europe/Berlin")
    now = SLOT0_S + 2 * STEP_S + 123.0
    in_force = await planning.plan(soc_snapshot(now, 0.73), now)
    assert planning.current is in_force and planning.plans_made == 1
    assert in_force.initial_soc == 0.73 and in_force.made_at_s == now
    assert in_force.start_s == SLOT0_S + 2 * STEP_S
    first = in_force.plan.steps[0]
    assert first.start == utc(SLOT0_S + 2 * STEP_S)
    # The first step's SoC follows from 0.73 and the step's powers (10 kWh, efficiencies 0.95).
    battery = planner.site.battery
    delta_wh = (first.battery_charge_w * battery.charge_efficiency
                - first.battery_discharge_w / battery.discharge_efficiency) * STEP_S / 3600.0
    assert first.soc == pytest.approx(0.73 + delta_wh / battery.capacity_wh, abs=1e-3)
    assert [step.load_w for step in in_force.plan.steps] == pytest.approx([800.0] * 8)
    # Prices were asked for the plan's instants in the home's time zone.
    instants, zone = prices.calls[0]
    assert instants == [utc(SLOT0_S + (2 + i) * STEP_S) for i in range(8)] and zone == "Europe/Berlin"
    assert forecast.calls == [("forecast", utc(SLOT0_S + 2 * STEP_S), 8, STEP_S, utc(now))]
    assert forecast.threads and threading.main_thread().name not in forecast.threads  # solved off the loop


async def test_plan_without_a_soc_reading_starts_from_the_configured_soc(planner):
    planning = PlanningService(planner, FakeForecast(), FakePrices(), "Europe/Berlin")
    in_force = await planning.plan(soc_snapshot(SLOT0_S, None), SLOT0_S)
    assert in_force.initial_soc == planner.site.battery.soc_initial == 0.5


async def test_queued_observations_reach_the_forecast_before_it_forecasts_and_only_once(planner):
    forecast = FakeForecast()
    planning = PlanningService(planner, forecast, FakePrices(), "Europe/Berlin")
    planning.observe_slot(SLOT0_S, 650.0, 1_200.0)
    planning.observe_slot(SLOT0_S + STEP_S, 700.0, 1_500.0)
    assert forecast.calls == []  # learned in the planning run, not on the event loop
    now = SLOT0_S + 2 * STEP_S
    await planning.plan(soc_snapshot(now, 0.5), now)
    assert forecast.calls == [
        ("observe", utc(SLOT0_S), 650.0, 1_200.0),
        ("observe", utc(SLOT0_S + STEP_S), 700.0, 1_500.0),
        ("forecast", utc(now), 8, STEP_S, utc(now)),
    ]
    await planning.plan(soc_snapshot(now + 60, 0.5), now + 60)
    assert [call[0] for call in forecast.calls[3:]] == ["forecast"]
    assert planning.plans_made == 2


# -- status_line -----------------------------------------------------------------------------------

def full_snapshot() -> SiteSnapshot:
    return SiteSnapshot(taken_at_s=100.0, values={
        Quantity.BATTERY_SOC: Measurement(0.54, 99.0), Quantity.GRID_IMPORT_W: Measurement(-1_234.0, 99.0),
        Quantity.PV_POWER_W: Measurement(3_390.0, 99.0)})


def test_status_line_in_plan_mode():
    decision = ControlDecision(100.0, ControlMode.PLAN, "plan")
    assert status_line(full_snapshot(), IN_FORCE, decision) == "plan ok, soc 54%, grid -1.2 kW, pv 3.4 kW, mode plan"


def test_status_line_names_the_reason_outside_plan_mode_and_a_fallback_plan():
    in_force = PlanInForce(make_plan([0.5], status="fallback"), SLOT0_S, SLOT0_S, 0.5)
    decision = ControlDecision(100.0, ControlMode.AUTONOMOUS, "grid_import_w stale (40 s)")
    assert status_line(full_snapshot(), in_force, decision) == (
        "plan fallback, soc 54%, grid -1.2 kW, pv 3.4 kW, mode autonomous, grid_import_w stale (40 s)")


def test_status_line_with_nothing_known():
    assert status_line(SiteSnapshot(taken_at_s=0.0), None, None) == "no plan"


# -- SlotAverage -----------------------------------------------------------------------------------

def test_slot_average_is_time_weighted():
    slot = SlotAverage(SLOT0_S)
    slot.add(1_000.0, 500.0, 600.0)
    slot.add(4_000.0, 0.0, 300.0)
    assert slot.covered_s == 900.0
    assert slot.load_wh == pytest.approx(1_000 / 6 + 4_000 / 12)
    assert slot.averages_w() == pytest.approx((2_000.0, 1_000 / 3))


@pytest.mark.parametrize("poll_s", [5.0, 60.0, 300.0])
def test_slots_are_covered_to_their_end_whatever_the_poll_period(poll_s: float) -> None:
    averager = SlotAverager(900)
    finished = []
    for index in range(int(3 * 900 / poll_s) + 1):
        at_s = SLOT0_S + index * poll_s
        after_first_third = (at_s - SLOT0_S) % 900 >= 300
        slot = averager.add(at_s, 2_000.0 if after_first_third else 1_000.0, 100.0)
        if slot is not None:
            finished.append(slot)
    assert [slot.slot_start_s for slot in finished] == [SLOT0_S, SLOT0_S + 900, SLOT0_S + 1800]
    for slot in finished:
        assert slot.covered_s == pytest.approx(900.0)
        assert slot.averages_w()[0] == pytest.approx((300 * 1_000 + 600 * 2_000) / 900)  # held until the next poll


def test_an_outage_is_not_bridged_and_a_mostly_unmeasured_slot_is_not_learned_from() -> None:
    averager = SlotAverager(900)
    assert averager.add(SLOT0_S, 1_000.0, 0.0) is None
    assert averager.add(SLOT0_S + 300, None, 0.0) is None  # the house load cannot be estimated
    assert averager.add(SLOT0_S + 600, 1_000.0, 0.0) is None
    assert averager.add(SLOT0_S + 900, 1_000.0, 0.0) is None  # 600 of 900 s: not learned from
    assert averager.add(SLOT0_S + 1800, 1_000.0, 0.0).covered_s == 900.0
