"""A home whose grid meter is a P1 port: the daemon reads the meter's telegrams from a
pseudo-terminal and controls the battery of a hybrid inverter over Modbus TCP, in real time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty

from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.modbus_server import EmulatorServer
from drivers.emulators.p1_writer import P1Writer
from drivers.emulators.plant import Battery, PvArray
from drivers.sunspec.site_image import hybrid_site_map
from hems.clock import SystemClock
from hems.control.policy import ControlMode
from hems.runtime.home import HomeRuntime
from hems.runtime.snapshot import Quantity
from tests.conftest import wait_for
from tests.hil.site import PlantForecast, home_config


async def test_the_p1_meter_is_the_grid_meter_of_the_running_daemon(tmp_path):
    """The snapshot's grid power is the P1 meter's (the inverter's own meter is not configured),
    the meter counts as a device, and the daemon follows its plan on it."""
    plant = SitePlant(pv=PvArray(peak_w=5000.0), battery=Battery(capacity_wh=10_000.0, soc_pct=50.0))
    server = EmulatorServer([MapBinding(hybrid_site_map(with_battery_model=True), 1)], plant,
                            tcp=("127.0.0.1", 0))
    master, slave = os.openpty()
    tty.setraw(slave)
    writer = P1Writer.for_plant(master, plant, interval_s=1.0)  # DSMR 5 sends every second
    await server.start()
    writer_task = asyncio.create_task(writer.run())
    config = home_config(tmp_path, server.port, capabilities=["pv_inverter", "battery"],
                         telemetry_period_s=0.5, control_period_s=1, stale_after_s=2, setpoint_timeout_s=10,
                         extra_toml=f'\n[p1]\nport = "{os.ttyname(slave)}"\n')
    runtime = HomeRuntime(config, SystemClock(), forecast=PlantForecast(plant), start_metrics_exporter=False)
    run = asyncio.create_task(runtime.run())
    try:
        await wait_for(lambda: runtime.controller is not None and runtime.controller.last is not None
                       and runtime.controller.last.mode is ControlMode.PLAN, timeout_s=60)
        snapshot = runtime.telemetry.snapshot
        assert snapshot.devices_available.get("p1") is True
        assert snapshot.value(Quantity.GRID_IMPORT_ENERGY_WH) is not None
        # The meter's telegram trails the plant by up to a second; once the plant holds still, they agree.
        await wait_for(lambda: abs(runtime.telemetry.snapshot.value(Quantity.GRID_IMPORT_W)
                                   - plant.advance().grid_w) < 20, timeout_s=10)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(run, 20)
        writer.stop()
        await asyncio.wait({writer_task}, timeout=2)
        await server.stop()
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)
