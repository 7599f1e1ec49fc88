"""Helpers for the emulator tests: a test map, a manual clock, servers on 127.0.0.1:0."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from drivers.devices.map_client import MapClient
from drivers.emulators import FaultInjector, ManualClock, MapBinding, SitePlant
from drivers.emulators.modbus_server import EmulatorServer
from drivers.maps import RegisterMap
from drivers.maps.schema import RegisterMapSpec
from drivers.transport import ConnectionPool, RetryPolicy, TcpEndpoint

#: 2025-06-21 12:00:00 UTC: midsummer noon, PV near its peak.
NOON_S = 1_750_507_200.0

#: Short timeouts so that fault tests finish fast.
FAST_POLICY = RetryPolicy(timeout_s=0.2, retries=0, retry_delay_s=0.01, reconnect_delay_s=0.05,
                          reconnect_delay_max_s=0.2, reconnect_after_timeouts=3)


def hybrid_test_map() -> RegisterMap:
    """A small hybrid inverter map exercising every codec feature the emulator must honour.

    Holding and input tables, a scale-factor point, sign -1 (meter positive when
    exporting), strings, a gap (ILLEGAL_ADDRESS), a point at another unit id, and a
    signed-power battery control with enable and timeout registers.
    """
    points = [
        {"name": "model", "address": 0, "type": "string", "length": 4, "initial": "EMU-1"},
        {"name": "rated_power", "address": 4, "type": "uint16", "unit": "W", "role": "pv_rated_power_w",
         "initial": 8000},
        {"name": "power_sf", "address": 5, "type": "sunssf", "initial": 1},
        {"name": "pv_power", "address": 10, "type": "uint16", "scale_factor_point": "power_sf", "unit": "W",
         "role": "pv_power_w", "min": 0, "max": 20000},
        {"name": "grid_export", "address": 11, "type": "int32", "sign": -1, "unit": "W", "role": "grid_power_w",
         "min": -30000, "max": 30000},
        {"name": "soc", "address": 13, "type": "uint16", "scale": 0.1, "unit": "%", "role": "battery_soc_pct",
         "min": 0, "max": 100},
        {"name": "battery_power", "address": 14, "type": "int16", "scale_factor_point": "power_sf", "unit": "W",
         "role": "battery_power_w", "min": -10000, "max": 10000},
        {"name": "import_energy", "address": 20, "type": "uint32", "scale": 10, "unit": "Wh",
         "role": "grid_import_energy_wh", "initial": 5_000_000},
        {"name": "export_energy", "address": 22, "type": "uint32", "scale": 10, "unit": "Wh",
         "role": "grid_export_energy_wh"},
        {"name": "pv_limit", "address": 40, "type": "uint16", "unit": "%", "access": "rw", "min": 0, "max": 100,
         "role": "pv_power_limit_pct", "initial": 100},
        {"name": "battery_enable", "address": 41, "type": "uint16", "access": "rw", "min": 0, "max": 1,
         "initial": 0},
        {"name": "battery_setpoint", "address": 42, "type": "int16", "access": "rw", "unit": "W",
         "min": -5000, "max": 5000},
        {"name": "battery_timeout", "address": 43, "type": "uint16", "access": "rw", "unit": "s", "min": 0,
         "max": 3600, "initial": 30},
        {"name": "voltage", "address": 100, "table": "input", "type": "float32", "unit": "V",
         "role": "grid_voltage_l1_v", "min": 180, "max": 270},
        {"name": "frequency", "address": 102, "table": "input", "type": "uint16", "scale": 0.01, "unit": "Hz",
         "role": "grid_frequency_hz", "min": 45, "max": 55},
        {"name": "battery_temperature", "address": 7, "type": "int16", "scale": 0.1, "unit": "°C",
         "role": "battery_temperature_c", "device_id": 100, "min": -20, "max": 60},
    ]
    spec = RegisterMapSpec.model_validate({
        "device": {"id": "emu_test_hybrid", "manufacturer": "hems tests", "models": ["EMU-1"],
                   "kinds": ["pv_inverter", "battery", "grid_meter"], "source": "hems emulator test map",
                   "max_block_registers": 60},
        "control": {"battery": {"strategy": "signed_power", "power_point": "battery_setpoint",
                                "enable_point": "battery_enable", "enable_value": 1, "disable_value": 0,
                                "timeout_point": "battery_timeout"}},
        "point": points,
    })
    return RegisterMap(spec, origin="tests/emulators/conftest.py")


@pytest.fixture
def clock() -> ManualClock:
    """Simulated time, moved by the test."""
    return ManualClock(NOON_S)


@pytest.fixture
def plant(clock: ManualClock) -> SitePlant:
    """A default site at noon."""
    return SitePlant(clock=clock)


@contextlib.asynccontextmanager
async def running(bindings: list[MapBinding], plant: SitePlant,
                  faults: FaultInjector | None = None) -> AsyncIterator[EmulatorServer]:
    """An emulator on 127.0.0.1 at a free port, stopped afterwards."""
    server = EmulatorServer(bindings, plant, tcp=("127.0.0.1", 0), faults=faults)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def client_for(server: EmulatorServer, binding: MapBinding,
                     policy: RetryPolicy = FAST_POLICY) -> AsyncIterator[MapClient]:
    """A MapClient on its own pool, reading ``binding`` from ``server``."""
    pool = ConnectionPool(policy)
    assert server.port is not None
    client = MapClient(pool.get(TcpEndpoint("127.0.0.1", server.port)), binding.register_map,
                       unit_id=binding.unit_id)
    # The emulator needs no silence between frames (Huawei's 50 ms would make the test take 12 s).
    client.connection.interframe_delay_s = 0.0
    try:
        yield client
    finally:
        pool.close()
