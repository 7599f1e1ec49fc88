"""The real-time controller: one decision per control period, from the snapshot and the plan.

Order of a cycle: choose the mode (stale readings or a lost device: autonomous; no usable plan:
the configured fallback; else the plan), ask the policy for setpoints, ramp the battery
setpoint, clamp everything in the safety envelope, and hand the result to the actuators.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from hems.control.actuation import SetpointActuator
from hems.control.envelope import RampLimiter, SafetyLimits, Setpoints, SiteState, apply_envelope
from hems.control.policy import ControlMode, desired_setpoints
from hems.mpc.plan import PlanStep
from hems.runtime.snapshot import Quantity, SiteSnapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlSettings:
    """How the controller behaves (from the ``[control]`` and ``[loops]`` config sections)."""

    control_period_s: float = 10.0
    max_reading_age_s: float = 30.0
    fallback: ControlMode = ControlMode.AUTONOMOUS
    battery_ramp_w_per_s: float = 1000.0
    curtail_pv: bool = True


@dataclass(frozen=True)
class ControlDecision:
    """What one control cycle decided, for the log, the status line and the tests."""

    at_s: float
    mode: ControlMode
    reason: str
    setpoints: Setpoints | None = None
    clamped_by: tuple[str, ...] = ()
    written: bool = True


class Controller:
    """Decides and actuates; owns the battery and PV actuators of one home."""

    def __init__(self, limits: SafetyLimits, settings: ControlSettings,
                 battery_actuators: list[SetpointActuator], pv_actuators: list[SetpointActuator]) -> None:
        self.limits = limits
        self.settings = settings
        self.battery_actuators = battery_actuators
        self.pv_actuators = pv_actuators if settings.curtail_pv else []
        self.ramp = RampLimiter(settings.battery_ramp_w_per_s)
        self.last: ControlDecision | None = None

    def choose_mode(self, snapshot: SiteSnapshot, step: PlanStep | None,
                    now_s: float | None = None) -> tuple[ControlMode, str]:
        """The mode for this cycle and why; readings are aged at ``now_s`` (default: when the
        snapshot was taken), since a snapshot of a failed poll can itself be a period old."""
        unavailable = sorted(name for name, up in snapshot.devices_available.items() if not up)
        if unavailable:
            return ControlMode.AUTONOMOUS, f"device unavailable: {', '.join(unavailable)}"
        for quantity in self._required_quantities():
            if snapshot.value(quantity, self.settings.max_reading_age_s, now_s) is None:
                age = snapshot.age_s(quantity, now_s)
                return ControlMode.AUTONOMOUS, (f"{quantity.value} unknown" if age is None
                                                else f"{quantity.value} stale ({age:.0f} s)")
        if step is None:
            return self.settings.fallback, "no usable plan"
        return ControlMode.PLAN, "plan"

    def _required_quantities(self) -> list[Quantity]:
        required = [Quantity.GRID_IMPORT_W]
        if self.battery_actuators:
            required += [Quantity.BATTERY_SOC, Quantity.BATTERY_CHARGE_W]
        if self.pv_actuators:
            required.append(Quantity.PV_POWER_W)
        return required

    async def cycle(self, snapshot: SiteSnapshot, step: PlanStep | None, now_s: float) -> ControlDecision:
        """One control period: decide, clamp, write."""
        mode, reason = self.choose_mode(snapshot, step, now_s)
        if mode is ControlMode.AUTONOMOUS:
            # A device that does not answer is not written to: its own dead-man timeout returns
            # it to autonomous mode; it is released properly once it answers again.
            lost = {name for name, up in snapshot.devices_available.items() if not up}
            written = await self.release_all(now_s, skip_devices=lost)
            decision = ControlDecision(now_s, mode, reason, written=written)
        else:
            decision = await self._actuate(mode, reason, snapshot, step, now_s)
        self._log_change(decision)
        self.last = decision
        return decision

    async def _actuate(self, mode: ControlMode, reason: str, snapshot: SiteSnapshot, step: PlanStep | None,
                       now_s: float) -> ControlDecision:
        state = SiteState(
            grid_import_w=snapshot.value(Quantity.GRID_IMPORT_W) or 0.0,
            battery_charge_w=snapshot.value(Quantity.BATTERY_CHARGE_W) or 0.0,
            battery_soc=_or(snapshot.value(Quantity.BATTERY_SOC), self.limits.soc_floor),
            pv_power_w=snapshot.value(Quantity.PV_POWER_W) or 0.0,
            pv_limit_w=self._pv_limit_held_w(),
        )
        desired = desired_setpoints(mode, state, step)
        assert desired is not None  # only autonomous mode asks for nothing
        ramped = Setpoints(self.ramp.step(desired.battery_charge_w, now_s), desired.pv_limit_w)
        result = apply_envelope(ramped, state, self.limits, self.settings.control_period_s)
        setpoints = result.setpoints
        written = True
        if self.battery_actuators:
            share_w = setpoints.battery_charge_w / len(self.battery_actuators)
            for actuator in self.battery_actuators:
                written &= await actuator.command(share_w, now_s)
            self.ramp.commit(setpoints.battery_charge_w, now_s)
        for actuator in self.pv_actuators:
            if setpoints.pv_limit_w is None:
                written &= await actuator.release(now_s)
            else:
                written &= await actuator.command(setpoints.pv_limit_w / len(self.pv_actuators), now_s)
        return ControlDecision(now_s, mode, reason, setpoints, result.clamped_by, written)

    def _pv_limit_held_w(self) -> float | None:
        held = [actuator.status.commanded_w for actuator in self.pv_actuators]
        return None if not held or any(value is None for value in held) else sum(held)

    async def release_all(self, now_s: float, force: bool = False, skip_devices: Collection[str] = ()) -> bool:
        """Hand every device back to its own control (``skip_devices``: lost, only forgotten)."""
        self.ramp.reset()
        released = True
        for actuator in self.battery_actuators + self.pv_actuators:
            if actuator.device in skip_devices:
                actuator.forget()
                continue
            released &= await actuator.release(now_s, force=force)
        return released

    def _log_change(self, decision: ControlDecision) -> None:
        previous = self.last
        if previous is None or previous.mode is not decision.mode or (
                decision.mode is ControlMode.AUTONOMOUS and previous.reason != decision.reason):
            log = logger.warning if decision.mode is not ControlMode.PLAN and previous is not None else logger.info
            log("control mode %s: %s", decision.mode.value, decision.reason)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
