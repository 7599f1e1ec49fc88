"""Hardware in the loop: the whole daemon runtime against an emulated hybrid inverter over real
Modbus TCP, in accelerated (virtual) time. The plant is sampled every 10 simulated seconds by a
watcher that the daemon does not know about."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from hems.control.policy import ControlMode
from hems.mpc.plan import CostBreakdown, Plan, PlanStep, SlackReport
from hems.runtime.home import HomeRuntime
from hems.runtime.planning import PlanningService
from hems.store import Store
from tests.hil.site import DAY_START_S, PlantForecast, Samples, hil_site, home_config, run_until

HOUR_S = 3600.0


async def test_the_battery_follows_the_plan_over_a_simulated_day(tmp_path):
    """With a perfect forecast, the emulated SoC at the end of every 15-minute slot is within
    1 % of capacity of what the plan made at the start of that slot predicted, for 24 hours;
    the export limit and the SoC reserve hold all day."""
    async with hil_site() as site:
        config = home_config(tmp_path, site.port)
        runtime = HomeRuntime(config, site.clock, forecast=PlantForecast(site.plant),
                              start_metrics_exporter=False)
        samples = Samples()
        await run_until(runtime, site.clock, DAY_START_S + 24 * HOUR_S, samples, site.plant)

    with Store.in_directory(tmp_path) as store:
        plans = store.plans(since_s=0)
        setpoints = store.setpoints()
    assert len(plans) >= 96  # one per slot at least
    times, soc = np.array(samples.times_s), np.array(samples.soc)
    deviations = []
    for record in plans:
        horizon = record.horizon
        slot_end_s = horizon["start_s"] + horizon["step_s"]
        index = int(np.searchsorted(times, slot_end_s))
        if index < len(times) and times[index] == slot_end_s:
            deviations.append(soc[index] - horizon["soc"][0])
    assert len(deviations) >= 95
    assert np.max(np.abs(deviations)) < 0.01, f"worst SoC deviation {np.max(np.abs(deviations)):.4f}"
    # The battery did real work: it charged at noon and discharged in the evening.
    assert soc.max() - soc.min() > 0.3
    assert min(samples.grid_w) >= -config.grid.export_limit_w
    assert soc.min() >= config.battery.backup_reserve_soc - 0.002
    modes = Counter(decision.mode for decision in runtime.decisions)
    assert modes[ControlMode.PLAN] == len(runtime.decisions)  # the last 100 cycles all followed the plan
    assert all(record.readback_ok for record in setpoints)
    assert runtime.describe()["control"]["overruns"] == 0


def _absurd_plan(direction: str):
    """A plan as wrong as a plan can be: 20 kW of export (or import) from (or into) the battery
    in every slot, to show that the envelope, not the plan, has the last word."""

    def plan_blocking(self: PlanningService, start_s: float, now_s: float, soc_initial: float, observations) -> Plan:
        start = datetime.fromtimestamp(start_s, tz=timezone.utc)
        sign = 1.0 if direction == "import" else -1.0
        steps = tuple(PlanStep(
            start=start + timedelta(seconds=self.step_s * index),
            battery_charge_w=20_000.0 if sign > 0 else 0.0, battery_discharge_w=20_000.0 if sign < 0 else 0.0,
            soc=soc_initial, grid_import_w=20_000.0 if sign > 0 else 0.0,
            grid_export_w=20_000.0 if sign < 0 else 0.0, pv_used_w=0.0, pv_curtailed_w=0.0, load_w=0.0)
            for index in range(self.planner.n_steps))
        zero = CostBreakdown(0, 0, 0, 0, 0, 0, 0)
        return Plan("optimal", "injected", steps, zero, SlackReport(), 1.0, 0.0, self.step_s)

    return plan_blocking


@pytest.mark.parametrize("direction", ["export", "import"])
async def test_limits_hold_whatever_the_plan_says(tmp_path, monkeypatch, direction):
    """A plan that demands 20 kW of export (or import) in every slot from 04:00 to 20:00: the
    plant never exports more than the export limit, never imports more than the fuse limit,
    and its SoC never leaves [backup reserve, soc_max]. Export beyond the limit from PV at noon
    with a full battery is curtailed."""
    monkeypatch.setattr(PlanningService, "_plan_blocking", _absurd_plan(direction))
    start_s = DAY_START_S + 4 * HOUR_S
    async with hil_site(start_s=start_s, soc_pct=60.0) as site:
        config = home_config(tmp_path, site.port, export_limit_w=2000, import_limit_w=3000)
        runtime = HomeRuntime(config, site.clock, forecast=PlantForecast(site.plant),
                              start_metrics_exporter=False)
        samples = Samples()
        await run_until(runtime, site.clock, start_s + 16 * HOUR_S, samples, site.plant)

    grid, soc = np.array(samples.grid_w), np.array(samples.soc)
    assert grid.min() >= -config.grid.export_limit_w, f"exported {-grid.min():.0f} W"
    assert grid.max() <= config.grid.import_limit_w, f"imported {grid.max():.0f} W"
    assert soc.min() >= config.battery.backup_reserve_soc - 0.002
    assert soc.max() <= config.battery.soc_max + 0.002
    # The limits were actually reached: the test would catch a daemon that did nothing.
    if direction == "export":
        assert grid.min() < -0.8 * config.grid.export_limit_w
        assert soc.min() < config.battery.backup_reserve_soc + 0.02
        assert max(samples.pv_curtailed_w) > 1000  # at noon, with the battery full
    else:
        assert grid.max() > 0.8 * config.grid.import_limit_w
        assert soc.max() > config.battery.soc_max - 0.02


async def test_a_device_timeout_falls_back_within_one_control_period_and_recovers(tmp_path):
    """The inverter stops answering at 11:00:02.5 for 5 minutes. The daemon is in autonomous mode
    from the first control cycle after one control period (10 s, plus the 1 s control phase),
    the device's own dead-man timeout returns it to autonomous control, and after the device
    answers again the daemon follows the plan and commands the battery again."""
    start_s = DAY_START_S + 10 * HOUR_S
    fault_at_s = start_s + HOUR_S + 2.5
    clear_at_s = fault_at_s + 5 * 60
    async with hil_site(start_s=start_s) as site:
        config = home_config(tmp_path, site.port, telemetry_period_s=5, control_period_s=10, stale_after_s=10,
                             setpoint_timeout_s=60, device_timeout_s=0.1)
        runtime = HomeRuntime(config, site.clock, forecast=PlantForecast(site.plant),
                              start_metrics_exporter=False)
        remote_while_faulty: list[tuple[float, bool]] = []
        remote_after_recovery: list[bool] = []

        def inject(now_s: float) -> None:
            if fault_at_s <= now_s < clear_at_s:
                site.faults.no_response()
                site.plant.advance(now_s)  # nobody reads the plant while it does not answer
                remote_while_faulty.append((now_s, site.plant.remote_active()))
            elif now_s >= clear_at_s:
                site.faults.clear()
                if now_s >= clear_at_s + 3 * config.loops.control_period_s:
                    remote_after_recovery.append(site.plant.remote_active())

        decisions = []
        original_cycle = runtime._control_cycle

        async def recording_cycle() -> None:
            await original_cycle()
            decisions.append(runtime.decisions[-1])

        runtime._control_cycle = recording_cycle
        # Every poll of the silent device costs its timeouts in real time: keep the outage short.
        await run_until(runtime, site.clock, clear_at_s + 5 * 60, sample_period_s=2.5, during=inject)

    before = [d for d in decisions if d.at_s < fault_at_s]
    assert before and all(d.mode is ControlMode.PLAN for d in before[-10:])
    deadline_s = fault_at_s + config.loops.control_period_s + 1.0
    during = [d for d in decisions if deadline_s <= d.at_s < clear_at_s]
    assert during and all(d.mode is ControlMode.AUTONOMOUS for d in during)
    first_fallback = next(d for d in decisions if d.at_s >= fault_at_s and d.mode is ControlMode.AUTONOMOUS)
    assert first_fallback.at_s <= deadline_s
    # The inverter's own timeout (60 s as written by the daemon) ended the remote command.
    lapsed = [t for t, active in remote_while_faulty if not active]
    assert lapsed and lapsed[0] <= fault_at_s + 60 + config.loops.control_period_s
    after = [d for d in decisions if d.at_s >= clear_at_s + 3 * config.loops.control_period_s]
    assert after and all(d.mode is ControlMode.PLAN and d.written for d in after), [d for d in after if not (d.mode is ControlMode.PLAN and d.written)][:3]
    assert remote_after_recovery and all(remote_after_recovery)  # the battery is commanded again


async def test_the_first_cycles_run_at_the_start_whoever_else_waits_on_the_clock(tmp_path):
    """A bystander sleeping ten simulated minutes on the clock must not make time jump while the
    daemon starts: the first plan is made within the first second."""
    start_s = DAY_START_S + 12 * HOUR_S
    async with hil_site(start_s=start_s) as site:
        config = home_config(tmp_path, site.port)
        runtime = HomeRuntime(config, site.clock, forecast=PlantForecast(site.plant), start_metrics_exporter=False)
        await run_until(runtime, site.clock, start_s + 1200, sample_period_s=600)
    with Store.in_directory(tmp_path) as store:
        first = store.plans(since_s=0)[0]
    assert first.horizon["made_at_s"] - start_s <= 1.0
