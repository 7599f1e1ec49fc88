"""The controller: mode selection and actuation, with real SetpointActuators on fake coroutines."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from hems.control.actuation import SetpointActuator
from hems.control.controller import ControlSettings, Controller
from hems.control.envelope import SafetyLimits
from hems.control.policy import ControlMode
from hems.mpc.plan import PlanStep
from hems.runtime.snapshot import Measurement, Quantity, SiteSnapshot

Q = Quantity
NOW = 1_000.0
LIMITS = SafetyLimits(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=5_000, soc_min=0.05, soc_max=0.95,
                      backup_reserve_soc=0.1, import_limit_w=17_000, export_limit_w=5_000, margin_w=100,
                      pv_peak_w=6_000)


class Device:
    """One fake device: what was written to and released on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.writes: list[float] = []
        self.releases = 0

    async def write(self, value_w: float) -> None:
        self.writes.append(value_w)

    async def release(self) -> None:
        self.releases += 1

    def actuator(self, output: str) -> SetpointActuator:
        return SetpointActuator(self.name, output, self.write, self.release, refresh_interval_s=30.0, deadband_w=0.0)


def snapshot(at_s: float = NOW, grid=500.0, battery=0.0, soc=0.5, pv=2_000.0, age_s: float = 2.0,
             available: dict[str, bool] | None = None, **ages: float) -> SiteSnapshot:
    """A snapshot at ``at_s``; every value measured ``age_s`` earlier unless ``ages`` says otherwise
    (e.g. ``grid_import_w=31``); a value of None leaves the quantity out."""
    values = {}
    for quantity, value in ((Q.GRID_IMPORT_W, grid), (Q.BATTERY_CHARGE_W, battery), (Q.BATTERY_SOC, soc),
                            (Q.PV_POWER_W, pv)):
        if value is not None:
            values[quantity] = Measurement(value, at_s - ages.get(quantity.value, age_s))
    return SiteSnapshot(taken_at_s=at_s, values=values,
                        devices_available={"bat1": True, "pv1": True} if available is None else available)


def step(grid_import_w=0.0, grid_export_w=0.0, pv_used_w=2_000.0, pv_curtailed_w=0.0) -> PlanStep:
    return PlanStep(start=datetime(2024, 6, 1, 12, tzinfo=timezone.utc), battery_charge_w=0.0,
                    battery_discharge_w=0.0, soc=0.5, grid_import_w=grid_import_w, grid_export_w=grid_export_w,
                    pv_used_w=pv_used_w, pv_curtailed_w=pv_curtailed_w, load_w=1_000.0)


def home(fallback=ControlMode.AUTONOMOUS, batteries=("bat1",), curtail_pv=True, ramp_w_per_s=1_000.0):
    devices = {name: Device(name) for name in (*batteries, "pv1")}
    controller = Controller(
        LIMITS, ControlSettings(control_period_s=10.0, max_reading_age_s=30.0, fallback=fallback,
                                battery_ramp_w_per_s=ramp_w_per_s, curtail_pv=curtail_pv),
        battery_actuators=[devices[name].actuator("battery_charge_w") for name in batteries],
        pv_actuators=[devices["pv1"].actuator("pv_limit_w")],
    )
    return controller, devices


async def test_plan_mode_writes_the_battery_setpoint():
    controller, devices = home()
    # Grid 500 W import with the battery idle; the plan wants 1 kW export: discharge 1.5 kW.
    decision = await controller.cycle(snapshot(), step(grid_export_w=1_000), NOW)
    assert decision.mode is ControlMode.PLAN and decision.reason == "plan" and decision.written
    assert decision.setpoints.battery_charge_w == pytest.approx(-1_500)
    assert devices["bat1"].writes == [pytest.approx(-1_500)]
    assert devices["pv1"].writes == [] and devices["pv1"].releases == 1  # no curtailment: released once
    assert controller.last is decision


async def test_plan_mode_ramps_the_battery_from_what_was_written():
    controller, devices = home(ramp_w_per_s=100.0)
    await controller.cycle(snapshot(), step(grid_import_w=500), NOW)  # battery 0 W
    decision = await controller.cycle(snapshot(NOW + 10), step(grid_export_w=4_500), NOW + 10)
    assert decision.setpoints.battery_charge_w == pytest.approx(-1_000)  # 100 W/s for 10 s, not -5 kW
    assert devices["bat1"].writes == [0.0, pytest.approx(-1_000)]


async def test_two_batteries_split_the_setpoint():
    controller, devices = home(batteries=("bat1", "bat2"), fallback=ControlMode.SELF_CONSUMPTION)
    decision = await controller.cycle(snapshot(grid=3_000, available={"bat1": True, "bat2": True, "pv1": True}),
                                      None, NOW)
    assert decision.setpoints.battery_charge_w == pytest.approx(-3_000)
    assert devices["bat1"].writes == [pytest.approx(-1_500)]
    assert devices["bat2"].writes == [pytest.approx(-1_500)]


async def test_no_plan_runs_the_self_consumption_fallback():
    controller, devices = home(fallback=ControlMode.SELF_CONSUMPTION)
    decision = await controller.cycle(snapshot(grid=1_200, battery=-300), None, NOW)
    assert decision.mode is ControlMode.SELF_CONSUMPTION and decision.reason == "no usable plan"
    # Without the battery the grid would be 1.5 kW: the battery discharges that to hold it at 0.
    assert devices["bat1"].writes == [pytest.approx(-1_500)]


async def test_no_plan_with_the_autonomous_fallback_releases_everything():
    controller, devices = home(fallback=ControlMode.AUTONOMOUS)
    await controller.cycle(snapshot(), step(grid_import_w=500), NOW)
    decision = await controller.cycle(snapshot(NOW + 10), None, NOW + 10)
    assert decision.mode is ControlMode.AUTONOMOUS and decision.reason == "no usable plan"
    assert decision.setpoints is None
    assert devices["bat1"].releases == 1 and devices["pv1"].releases == 1
    assert controller.battery_actuators[0].status.commanded_w is None


async def test_unavailable_device_forgets_without_writing_while_the_others_release():
    controller, devices = home()
    await controller.cycle(snapshot(), step(grid_export_w=1_000, pv_used_w=1_500, pv_curtailed_w=500), NOW)
    assert devices["bat1"].writes and devices["pv1"].writes == [pytest.approx(1_500)]
    writes_before = list(devices["bat1"].writes)
    decision = await controller.cycle(snapshot(NOW + 10, available={"bat1": False, "pv1": True}),
                                      step(grid_export_w=1_000), NOW + 10)
    assert decision.mode is ControlMode.AUTONOMOUS and decision.reason == "device unavailable: bat1"
    battery = controller.battery_actuators[0]
    assert devices["bat1"].writes == writes_before and devices["bat1"].releases == 0
    assert battery.status.commanded_w is None and battery.status.needs_reapply
    assert devices["pv1"].releases == 1
    # Once it answers again it is released properly (its state is unknown), then driven.
    await controller.cycle(snapshot(NOW + 20), None, NOW + 20)
    assert devices["bat1"].releases == 1


async def test_unavailable_device_the_controller_does_not_own_still_means_autonomous():
    controller, devices = home()
    decision = await controller.cycle(snapshot(available={"bat1": True, "pv1": True, "p1": False}), step(), NOW)
    assert decision.mode is ControlMode.AUTONOMOUS and "p1" in decision.reason
    assert devices["bat1"].writes == []


@pytest.mark.parametrize("quantity", ["grid_import_w", "battery_soc", "battery_charge_w", "pv_power_w"])
async def test_stale_reading_means_autonomous(quantity):
    controller, devices = home()
    fresh = await controller.cycle(snapshot(**{quantity: 30.0}), step(), NOW)  # exactly the limit: fresh
    assert fresh.mode is ControlMode.PLAN
    decision = await controller.cycle(snapshot(NOW + 10, **{quantity: 31.0}), step(), NOW + 10)
    assert decision.mode is ControlMode.AUTONOMOUS
    assert decision.reason == f"{quantity} stale (31 s)"
    assert devices["bat1"].releases == 1
    assert devices["bat1"].writes == [pytest.approx(-500)]  # only the fresh cycle wrote


async def test_unknown_grid_reading_means_autonomous():
    controller, devices = home()
    decision = await controller.cycle(snapshot(grid=None), step(), NOW)
    assert decision.mode is ControlMode.AUTONOMOUS and decision.reason == "grid_import_w unknown"
    assert devices["bat1"].writes == []


async def test_stale_pv_does_not_matter_without_pv_curtailment():
    controller, devices = home(curtail_pv=False)
    decision = await controller.cycle(snapshot(pv_power_w=300.0), step(grid_import_w=500), NOW)
    assert decision.mode is ControlMode.PLAN
    assert controller.pv_actuators == [] and devices["pv1"].releases == 0 and devices["pv1"].writes == []


async def test_pv_limit_written_while_planned_and_released_when_none():
    controller, devices = home()
    # Export 1 kW at PV 3 kW; the plan curtails to 2 kW.
    first = await controller.cycle(snapshot(grid=-1_000, pv=3_000),
                                   step(grid_export_w=1_000, pv_used_w=2_000, pv_curtailed_w=1_000), NOW)
    assert first.setpoints.pv_limit_w == pytest.approx(2_000)
    assert devices["pv1"].writes == [pytest.approx(2_000)] and devices["pv1"].releases == 0
    # Next slot: no curtailment planned; the held limit is tracked up to the site's export bound
    # (8.4 kW), which is beyond the 6 kW peak, so it is released.
    second = await controller.cycle(snapshot(NOW + 10, grid=1_500, pv=2_000), step(grid_import_w=1_500), NOW + 10)
    assert second.setpoints.pv_limit_w is None
    assert devices["pv1"].releases == 1 and devices["pv1"].writes == [pytest.approx(2_000)]
    assert controller.pv_actuators[0].status.commanded_w is None


async def test_mode_change_is_logged_once(caplog):
    controller, _ = home()
    with caplog.at_level(logging.INFO, logger="hems.control.controller"):
        await controller.cycle(snapshot(), step(), NOW)
        for index in range(1, 4):
            await controller.cycle(snapshot(NOW + 10 * index, grid_import_w=60.0), step(), NOW + 10 * index)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["control mode plan: plan", "control mode autonomous: grid_import_w stale (60 s)"]
    assert caplog.records[1].levelno == logging.WARNING
