"""A whole home in the loop: the daemon's runtime against an emulated SunSpec hybrid inverter on a
real TCP socket, both on one virtual clock, so a simulated day takes seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from drivers.emulators import FaultInjector, MapBinding, SitePlant
from drivers.emulators.modbus_server import EmulatorServer
from drivers.emulators.plant import Battery, PvArray
from drivers.sunspec.site_image import hybrid_site_map
from hems.clock import VirtualClock
from hems.config import HomeConfig
from hems.runtime.forecasting import SiteForecast
from hems.runtime.home import HomeRuntime

#: 2025-06-21 00:00 UTC: a long summer day.
DAY_START_S = 1_750_464_000.0

CONFIG = """
[home]
id = "hil-home"
state_directory = "{state_directory}"
timezone = "UTC"

[[device]]
name = "hybrid"
map = "sunspec"
tcp = "127.0.0.1:{port}"
unit_id = 1
timeout_s = {device_timeout_s}
{capabilities}

[battery]
capacity_wh = 10000
max_charge_w = 5000
max_discharge_w = 5000
charge_efficiency = 0.95
discharge_efficiency = 0.95
soc_min = 0.05
soc_max = 0.95
backup_reserve_soc = {backup_reserve_soc}
soc_initial = 0.5

[grid]
import_limit_w = {import_limit_w}
export_limit_w = {export_limit_w}

[pv]
curtailable = true
[[pv.arrays]]
peak_power_w = 5000

[tariff]
import_price_per_kwh = 0.30
export_price_per_kwh = 0.08
[[tariff.period]]
start = "17:00"
end = "21:00"
import_price_per_kwh = 0.45

[loops]
{loops}
[control]
{control}
[metrics]
{metrics}
"""

#: What tests/hil runs with unless a test says otherwise (30-s loops make a simulated day fast).
HIL_LOOPS = {"telemetry_period_s": 30, "control_period_s": 30}
HIL_CONTROL = {"fallback": "self_consumption", "stale_after_s": 60, "setpoint_timeout_s": 60}


def config_text(state_directory: Path, port: int, *, loops: dict | None = None, control: dict | None = None,
                metrics: dict | None = None, extra_toml: str = "", backup_reserve_soc: float = 0.2,
                export_limit_w: float = 4000, import_limit_w: float = 15000, device_timeout_s: float = 0.3,
                capabilities: list[str] | None = None) -> str:
    """The site's configuration file: its ``[loops]``, ``[control]`` and ``[metrics]`` hold
    exactly the keys given (the daemon's defaults for the others), ``extra_toml`` is appended."""

    def table(values: dict | None) -> str:
        return "".join(f"{key} = {json.dumps(value)}\n" for key, value in (values or {}).items())

    return CONFIG.format(state_directory=state_directory, port=port, device_timeout_s=device_timeout_s,
                         capabilities="" if capabilities is None else f"capabilities = {json.dumps(capabilities)}",
                         backup_reserve_soc=backup_reserve_soc, export_limit_w=export_limit_w,
                         import_limit_w=import_limit_w, loops=table(loops), control=table(control),
                         metrics=table(metrics)) + extra_toml


def home_config(state_directory: Path, port: int, extra_toml: str = "", **overrides: float) -> HomeConfig:
    """The test home's configuration: HIL_LOOPS, HIL_CONTROL and no metrics exporter, with
    ``overrides`` of any of their keys or of :func:`config_text`'s site values."""
    loops = {key: overrides.pop(key, value) for key, value in HIL_LOOPS.items()}
    control = {key: overrides.pop(key, value) for key, value in HIL_CONTROL.items()}
    text = config_text(state_directory, port, loops=loops, control=control, metrics={"enabled": False},
                       extra_toml=extra_toml, **overrides)
    return HomeConfig.model_validate(tomllib.loads(text))


class PlantForecast:
    """The plant's own load and PV, averaged per slot: a perfect forecast, so that what the test
    measures is the control, not the forecast error."""

    def __init__(self, plant: SitePlant, resolution_s: float = 60.0) -> None:
        self.plant = plant
        self.resolution_s = resolution_s

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> SiteForecast:
        """Slot means of the plant's profiles."""
        first = start.timestamp()
        offsets = np.arange(0.0, step_s, self.resolution_s) + self.resolution_s / 2
        load = np.empty(steps)
        pv = np.empty(steps)
        for index in range(steps):
            instants = first + index * step_s + offsets
            load[index] = np.mean([self.plant.load_w(t) for t in instants])
            pv[index] = np.mean([self.plant.pv.available_w(t, self.plant.utc_offset_s) for t in instants])
        return SiteForecast(load, pv)

    def observe(self, slot_start: datetime, load_w: float, pv_w: float) -> None:
        """A perfect forecast learns nothing."""


@dataclass
class Samples:
    """The plant as a watcher saw it every ``period_s`` of simulated time."""

    times_s: list[float] = field(default_factory=list)
    grid_w: list[float] = field(default_factory=list)
    soc: list[float] = field(default_factory=list)
    battery_w: list[float] = field(default_factory=list)
    remote_active: list[bool] = field(default_factory=list)
    pv_curtailed_w: list[float] = field(default_factory=list)


@dataclass
class HilSite:
    """The emulated site, its server, and the clock they share."""

    clock: VirtualClock
    plant: SitePlant
    server: EmulatorServer
    faults: FaultInjector

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


@contextlib.asynccontextmanager
async def hil_site(start_s: float = DAY_START_S, soc_pct: float = 50.0) -> AsyncIterator[HilSite]:
    """A 5 kWp / 10 kWh hybrid site on 127.0.0.1 at a free port, on a virtual clock."""
    clock = VirtualClock(start_s)
    plant = SitePlant(pv=PvArray(peak_w=5000.0), battery=Battery(capacity_wh=10_000.0, soc_pct=soc_pct),
                      clock=clock)
    faults = FaultInjector()
    server = EmulatorServer([MapBinding(hybrid_site_map(with_battery_model=True), 1)], plant, tcp=("127.0.0.1", 0), faults=faults)
    await server.start()
    try:
        yield HilSite(clock, plant, server, faults)
    finally:
        await server.stop()


async def run_until(runtime: HomeRuntime, clock: VirtualClock, until_s: float, samples: Samples | None = None,
                    plant: SitePlant | None = None, sample_period_s: float = 10.0,
                    during: Callable[[float], None] | None = None) -> None:
    """Run ``runtime`` until simulated ``until_s``, sampling the plant on the way."""
    task = asyncio.create_task(runtime.run())
    try:
        while clock.now_s() < until_s and not task.done():
            await clock.sleep(sample_period_s)
            if during is not None:
                during(clock.now_s())
            if samples is not None and plant is not None:
                flows = plant.advance(clock.now_s())
                samples.times_s.append(clock.now_s())
                samples.grid_w.append(flows.grid_w)
                samples.soc.append(plant.battery.soc_pct / 100.0)
                samples.battery_w.append(flows.battery_charge_w)
                samples.remote_active.append(plant.remote_active())
                samples.pv_curtailed_w.append(flows.pv_available_w - flows.pv_w)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 30)
