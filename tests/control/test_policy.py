"""The setpoint policy: plan, self-consumption, autonomous."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hems.control.envelope import Setpoints, SiteState
from hems.control.policy import CURTAILMENT_THRESHOLD_W, ControlMode, desired_setpoints, grid_target_w
from hems.mpc.plan import PlanStep

START = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)


def step(grid_import_w=0.0, grid_export_w=0.0, pv_used_w=4_000.0, pv_curtailed_w=0.0) -> PlanStep:
    return PlanStep(start=START, battery_charge_w=0.0, battery_discharge_w=0.0, soc=0.5,
                    grid_import_w=grid_import_w, grid_export_w=grid_export_w, pv_used_w=pv_used_w,
                    pv_curtailed_w=pv_curtailed_w, load_w=1_000.0)


# grid 2 kW import with the battery discharging 1 kW: without the battery the grid would be 3 kW.
STATE = SiteState(grid_import_w=2_000, battery_charge_w=-1_000, battery_soc=0.5, pv_power_w=1_500)


def test_grid_target_is_import_minus_export():
    assert grid_target_w(step(grid_import_w=700)) == 700
    assert grid_target_w(step(grid_export_w=2_500)) == -2_500


def test_plan_follows_the_grid_target():
    # Target 500 W import; without the battery 3 kW: the battery discharges 2.5 kW.
    assert desired_setpoints(ControlMode.PLAN, STATE, step(grid_import_w=500)) == Setpoints(-2_500, None)
    # Target 1 kW export: the battery discharges 4 kW.
    assert desired_setpoints(ControlMode.PLAN, STATE, step(grid_export_w=1_000)).battery_charge_w == -4_000


@given(st.floats(-20_000, 20_000), st.floats(-5_000, 5_000), st.floats(0, 20_000), st.floats(0, 20_000))
def test_plan_battery_makes_the_predicted_grid_equal_the_target(grid_w, battery_w, imp_w, exp_w):
    """``grid_without_battery + battery == grid_target`` for any state and step."""
    state = SiteState(grid_import_w=grid_w, battery_charge_w=battery_w, battery_soc=0.5)
    planned = step(grid_import_w=imp_w, grid_export_w=exp_w)
    desired = desired_setpoints(ControlMode.PLAN, state, planned)
    assert state.grid_without_battery_w + desired.battery_charge_w == pytest.approx(imp_w - exp_w, abs=1e-6)


def test_plan_curtails_only_above_the_threshold():
    at = desired_setpoints(ControlMode.PLAN, STATE, step(pv_used_w=3_000, pv_curtailed_w=CURTAILMENT_THRESHOLD_W))
    assert at.pv_limit_w is None
    above = desired_setpoints(ControlMode.PLAN, STATE,
                              step(pv_used_w=3_000, pv_curtailed_w=CURTAILMENT_THRESHOLD_W + 0.5))
    assert above.pv_limit_w == 3_000


def test_self_consumption_holds_the_grid_at_zero():
    desired = desired_setpoints(ControlMode.SELF_CONSUMPTION, STATE, step(grid_import_w=5_000, pv_curtailed_w=500))
    assert desired == Setpoints(-3_000, None)  # the plan's step is ignored, curtailment too
    assert STATE.grid_without_battery_w + desired.battery_charge_w == 0


def test_plan_mode_without_a_step_falls_back_to_self_consumption():
    assert desired_setpoints(ControlMode.PLAN, STATE, None) == Setpoints(-3_000, None)


def test_autonomous_commands_nothing():
    assert desired_setpoints(ControlMode.AUTONOMOUS, STATE, step(grid_import_w=1_000)) is None
