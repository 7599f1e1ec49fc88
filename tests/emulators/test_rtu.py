"""RTU over a pseudo-terminal pair: two devices on one bus, polled concurrently through one connection."""

from __future__ import annotations

import asyncio

import pytest

from drivers.devices.map_client import MapClient
from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.modbus_server import EmulatorServer
from drivers.emulators.pty_bridge import PtyBridge
from drivers.maps import load_map
from drivers.readings import Quality
from drivers.transport import ConnectionPool, RtuEndpoint
from tests.emulators.helpers import FAST_POLICY, hybrid_test_map


async def test_two_devices_on_one_bus(clock, plant: SitePlant) -> None:
    hybrid, meter = MapBinding(hybrid_test_map(), 1), MapBinding(load_map("eastron_sdm630"), 2)
    with PtyBridge() as bridge:
        server = EmulatorServer([hybrid, meter], plant, rtu_port=bridge.server_port, baudrate=115200)
        await server.start()
        pool = ConnectionPool(FAST_POLICY)
        try:
            connection = pool.get(RtuEndpoint(bridge.client_port, baudrate=115200))
            hybrid_client = MapClient(connection, hybrid.register_map, unit_id=1)
            meter_client = MapClient(connection, meter.register_map, unit_id=2)
            assert hybrid_client.connection is meter_client.connection  # one bus, one lock
            for _ in range(5):
                clock.advance(30)
                hybrid_readings, meter_readings = await asyncio.gather(hybrid_client.poll(), meter_client.poll())
                assert hybrid_client.health.failures_total == 0, hybrid_client.health.last_error
                assert meter_client.health.failures_total == 0, meter_client.health.last_error
                assert hybrid_readings["model"].value == "EMU-1"
                grid_meter = meter_readings[meter.register_map.point_for("grid_power_w").name]
                assert grid_meter.quality is Quality.GOOD
                # Both devices see the same plant: the hybrid's meter (sign -1) and the Eastron agree.
                assert grid_meter.value == pytest.approx(plant.flows.grid_w, abs=0.01)
                assert hybrid_readings["grid_export"].value == pytest.approx(plant.flows.grid_w, abs=1)
            # A unit nobody serves is silent on RTU, as on a real bus: a timeout, not an exception.
            ghost = MapClient(connection, meter.register_map, unit_id=7)
            await ghost.poll()
            assert ghost.health.failures_by_kind == {"timeout": 1}
            await hybrid_client.poll()
            assert hybrid_client.health.available
        finally:
            pool.close()
            await server.stop()
