"""Every register map the demo hands its homes lets the hems runtime run the home.

A demo home is built as ``hems demo`` builds it (hems/demo/home_site.py, the plant of
hems/demo/baselines.py on a virtual clock) and its daemon runs for a simulated midday hour. A
home with a battery must end up with its battery under the daemon's command: the plant's
remote window holds the setpoints the runtime recorded, and the battery power follows them, not
the plant's own self-consumption rule. Homes without a battery must at least be read.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.devices.battery_control import PowerWindow
from drivers.emulators import SitePlant
from hems.clock import VirtualClock
from hems.demo import home_site
from hems.demo.baselines import build_plant
from hems.demo.model import DemoHome
from hems.demo.profiles import build_profiles
from hems.demo.settings import DEFAULT_START_S, RuntimeSettings
from hems.demo.sites import INVERTER_MAPS, PV_INVERTER_MAP, generate_homes
from hems.runtime.actuators import BATTERY_OUTPUT
from hems.runtime.home import HomeRuntime
from hems.runtime.snapshot import Quantity
from hems.store import Store
from hems.store.store import SetpointRecord

#: 11:00 local time on the demo's default day: PV to charge from, a plan with work to do.
MIDDAY_START_S = DEFAULT_START_S + 11 * 3600
RUN_S = 3600
SAMPLE_PERIOD_S = 60.0
#: The setpoint registers' resolution, and the difference that tells the daemon's setpoint
#: apart from what the plant's self-consumption rule would have done.
SETPOINT_TOLERANCE_W = 2.0
DISTINCT_FROM_RULE_W = 100.0


@dataclass
class Sample:
    """The plant at one instant of the run."""

    time_s: float
    remote_window: PowerWindow | None  # None: the battery follows its own rule
    battery_w: float
    rule_w: float  # what the plant's own self-consumption rule would have made of the battery


@dataclass
class HomeRun:
    """What a simulated hour of one home left behind."""

    runtime: HomeRuntime
    plant: SitePlant
    samples: list[Sample] = field(default_factory=list)
    setpoints: list[SetpointRecord] = field(default_factory=list)


def _template(kind: str) -> DemoHome:
    """The first generated home of ``kind`` ("battery", "pv" or "consumer")."""
    for home in generate_homes(4):
        has = {"battery": home.battery is not None, "pv": home.pv is not None and home.battery is None,
               "consumer": home.consumer_only}
        if has[kind]:
            return home
    raise AssertionError(f"no {kind} home among the first generated homes")


def _sample(plant: SitePlant, now_s: float) -> Sample:
    flows = plant.advance(now_s)
    window = plant.remote.window if plant.remote_active() and plant.remote is not None else None
    surplus_w = flows.pv_w - flows.load_w - flows.ev_w - flows.heat_pump_w
    return Sample(now_s, window, flows.battery_charge_w, plant.battery.limit_w(surplus_w, 0.0))


async def _run_home(home: DemoHome, state_directory: Path) -> HomeRun:
    """``home`` as the demo runs it, for :data:`RUN_S` simulated seconds from midday."""
    settings = RuntimeSettings()
    profiles = build_profiles(home, MIDDAY_START_S, RUN_S, history_days=1)
    clock = VirtualClock(MIDDAY_START_S)
    plant = build_plant(home, profiles, clock.now_s(), clock)
    server = await home_site.start_emulator(home, plant)
    try:
        assert server.port is not None
        home_site.seed_history(state_directory, profiles, MIDDAY_START_S, settings.store_bucket_s)
        config = home_site.home_config(home, server.port, state_directory, settings, market=None)
        runtime = HomeRuntime(config, clock, environ={}, start_metrics_exporter=False)
        run = HomeRun(runtime, plant)
        task = asyncio.create_task(runtime.run())
        try:
            while clock.now_s() < MIDDAY_START_S + RUN_S and not task.done():
                await clock.sleep(SAMPLE_PERIOD_S)
                run.samples.append(_sample(plant, clock.now_s()))
        finally:
            runtime.request_stop()
            await asyncio.wait_for(task, 30)
    finally:
        await server.stop()
    with Store.in_directory(state_directory) as store:
        run.setpoints = [record for record in store.setpoints(since_s=0.0) if record.role == BATTERY_OUTPUT]
    return run


def _assert_ran_without_errors(run: HomeRun, device_names: list[str], measured: list[Quantity]) -> None:
    """No loop failed, every device answered every poll, and the site's ``measured`` quantities
    reached the runtime's snapshot (the controller commands nothing without them)."""
    described = run.runtime.describe()
    for loop in ("telemetry", "planning", "control"):
        assert described[loop]["iterations"] > 0, described
        assert described[loop]["errors"] == 0, described
    assert run.runtime.devices is not None
    assert sorted(run.runtime.devices.clients) == sorted(device_names)
    for name in device_names:
        client = run.runtime.devices.clients[name]
        assert client.health.last_good_s is not None, f"{name} never answered"
        assert client.health.failures_total == 0, f"{name}: {client.health.last_error}"
        assert any(reading.usable for reading in client.last_readings.values()), f"{name}: nothing usable"
    assert run.runtime.telemetry is not None
    snapshot = run.runtime.telemetry.snapshot
    missing = [quantity.value for quantity in measured if snapshot.value(quantity) is None]
    assert not missing, f"never measured: {missing}"


def _latest_setpoint_w(setpoints: list[SetpointRecord], time_s: float) -> float | None:
    written = [record for record in setpoints if record.written_at_s <= time_s]
    return written[-1].value if written else None


@pytest.mark.parametrize("inverter_map", INVERTER_MAPS)
async def test_the_runtime_commands_the_battery_of_every_hybrid_map(inverter_map: str, tmp_path: Path) -> None:
    home = dataclasses.replace(_template("battery"), inverter_map=inverter_map)
    run = await _run_home(home, tmp_path)

    _assert_ran_without_errors(run, ["inverter", "meter"], [Quantity.GRID_IMPORT_W, Quantity.PV_POWER_W,
                                                            Quantity.BATTERY_SOC, Quantity.BATTERY_CHARGE_W])
    assert run.setpoints, "the daemon never commanded the battery"
    assert all(record.readback_ok for record in run.setpoints), run.setpoints
    commanded = [sample for sample in run.samples if sample.remote_window is not None]
    assert commanded, f"{inverter_map}: the plant's battery never left its own rule"
    first_setpoint_s = run.setpoints[0].written_at_s
    assert all(sample.remote_window is not None for sample in run.samples if sample.time_s > first_setpoint_s), \
        f"{inverter_map}: the battery fell back to its own rule while the daemon ran"
    for sample in commanded:
        setpoint_w = _latest_setpoint_w(run.setpoints, sample.time_s)
        assert setpoint_w is not None
        window = sample.remote_window
        assert window.min_charge_w == pytest.approx(setpoint_w, abs=SETPOINT_TOLERANCE_W)
        assert window.max_charge_w == pytest.approx(setpoint_w, abs=SETPOINT_TOLERANCE_W)
        assert sample.battery_w == pytest.approx(run.plant.battery.limit_w(setpoint_w, 0.0),
                                                 abs=SETPOINT_TOLERANCE_W)
    # The daemon's plan is not the plant's rule: somewhere the two differ, and the battery
    # does what the daemon said.
    assert any(abs(sample.battery_w - sample.rule_w) > DISTINCT_FROM_RULE_W for sample in commanded), \
        [(sample.battery_w, sample.rule_w) for sample in commanded]


async def test_a_pv_only_home_runs_and_is_read(tmp_path: Path) -> None:
    home = _template("pv")
    assert home.inverter_map == PV_INVERTER_MAP
    run = await _run_home(home, tmp_path)

    _assert_ran_without_errors(run, ["inverter", "meter"], [Quantity.GRID_IMPORT_W, Quantity.PV_POWER_W])
    assert run.setpoints == []  # nothing to command
    assert all(sample.remote_window is None for sample in run.samples)


async def test_a_consumer_only_home_runs_and_is_read(tmp_path: Path) -> None:
    home = _template("consumer")
    assert home.inverter_map is None
    run = await _run_home(home, tmp_path)

    _assert_ran_without_errors(run, ["meter"], [Quantity.GRID_IMPORT_W])
    assert run.setpoints == []
