"""The setpoint policy: what the devices should do now, before the safety envelope.

- ``PLAN``: follow the plan's grid target for the current slot; the battery absorbs the
  forecast error as it happens (``battery = grid_target - grid_without_battery``). PV is
  curtailed where the plan curtails it (negative export prices).
- ``SELF_CONSUMPTION``: the rule the home falls back to without a usable plan: hold the grid at
  zero with the battery.
- ``AUTONOMOUS``: the daemon commands nothing; the devices run their own control. This is the
  mode for stale readings, lost devices and shutdown.
"""

from __future__ import annotations

import enum

from hems.control.envelope import Setpoints, SiteState
from hems.mpc.plan import PlanStep

#: Planned curtailment below this is solver noise, not a decision to curtail.
CURTAILMENT_THRESHOLD_W = 10.0


class ControlMode(str, enum.Enum):
    """Who decides the setpoints."""

    PLAN = "plan"
    SELF_CONSUMPTION = "self_consumption"
    AUTONOMOUS = "autonomous"


def grid_target_w(step: PlanStep) -> float:
    """The net grid import the plan expects in ``step``."""
    return step.grid_import_w - step.grid_export_w


def desired_setpoints(mode: ControlMode, state: SiteState, step: PlanStep | None = None) -> Setpoints | None:
    """The setpoints ``mode`` asks for; None in autonomous mode (release the devices)."""
    if mode is ControlMode.AUTONOMOUS:
        return None
    if mode is ControlMode.SELF_CONSUMPTION or step is None:
        return Setpoints(battery_charge_w=-state.grid_without_battery_w)
    pv_limit_w = step.pv_used_w if step.pv_curtailed_w > CURTAILMENT_THRESHOLD_W else None
    return Setpoints(battery_charge_w=grid_target_w(step) - state.grid_without_battery_w, pv_limit_w=pv_limit_w)
