"""SunSpec discovery over TCP against real pymodbus servers serving our own images."""

from __future__ import annotations

import asyncio
import math

import pytest

from drivers.devices.map_client import MapClient
from drivers.maps import Role
from drivers.readings import Quality
from drivers.sunspec import discover, hybrid_site_map
from drivers.sunspec.builder import ModelPlacement, build_map
from drivers.sunspec.discovery import MAX_MODELS, find_sunspec_base
from drivers.sunspec.site_image import consecutive_layout
from drivers.transport import ModbusConnection, RetryPolicy, TcpEndpoint
from tests.sunspec.servers import modbus_server, patched, runs_of, silent_server

HYBRID_MODELS = [1, 103, 120, 123, 124, 203]


@pytest.mark.parametrize("base", [40000, 0, 50000])
async def test_discovery_finds_the_emulated_models_at_each_base(base, connect):
    async with modbus_server(runs_of(hybrid_site_map(base))) as port:
        device = await discover(connect(port), unit_id=1)
    assert device is not None
    assert device.base_address == base
    assert device.model_ids == HYBRID_MODELS
    assert device.chain.complete and device.unknown_models == []
    assert [model.address for model in device.chain.models][0] == base + 2
    assert device.common["Mn"] == "hems" and device.common["Md"] == "emulated hybrid"
    spec = device.register_map.spec
    assert spec.device.id == "sunspec_hems_emulated_hybrid"
    assert set(spec.device.kinds) == {"pv_inverter", "battery", "grid_meter"}
    assert spec.device.sunspec_sentinels
    assert spec.control.battery is not None and spec.control.battery.strategy == "sunspec_storage"
    assert device.register_map.point_for(Role.PV_POWER_W).name == "m103_W"
    assert device.register_map.point_for(Role.BATTERY_SOC_PCT).name == "m124_ChaState"
    assert device.register_map.point_for(Role.GRID_POWER_W).name == "m203_W"


async def test_values_decode_with_their_scale_factors(connect):
    site = hybrid_site_map(initial={"m103_W_SF": -1, "m103_W": 345.6, "m103_Hz_SF": -2, "m103_Hz": 50.01,
                                    "m124_ChaState_SF": 0, "m124_ChaState": 73, "m203_W_SF": 1, "m203_W": -1230})
    async with modbus_server(runs_of(site)) as port:
        connection = connect(port)
        device = await discover(connection, unit_id=1)
        assert device is not None
        client = MapClient(connection, device.register_map, unit_id=1)
        readings = await client.poll()
    assert client.health.failures_total == 0
    assert readings["m103_W"].value == pytest.approx(345.6)
    assert readings["m103_Hz"].value == pytest.approx(50.01)
    assert client.reading(Role.BATTERY_SOC_PCT).value == pytest.approx(73)
    assert client.reading(Role.GRID_POWER_W).value == pytest.approx(-1230)
    # Points the emulator leaves unset carry SunSpec's "not implemented" patterns.
    assert readings["m103_VA"].quality is Quality.NOT_IMPLEMENTED
    assert readings["m1_Mn"].value == "hems"


async def test_chain_without_end_marker_keeps_the_models(connect):
    placements = consecutive_layout([1, 103], 40000)
    site = build_map(placements, 40000, end_marker=False, initial={"m1_Mn": "hems"})
    async with modbus_server(runs_of(site)) as port:
        device = await discover(connect(port), unit_id=1)
    assert device is not None
    assert device.model_ids == [1, 103]
    assert not device.chain.complete and "no model header" in device.chain.problem
    assert "end_ID" not in device.register_map.points


async def test_length_running_past_the_image_ends_the_chain_cleanly(connect):
    placements = consecutive_layout([1, 103], 40000)
    site = build_map(placements, 40000, initial={"m103_L": 500})  # L far beyond the served registers
    async with modbus_server(runs_of(site)) as port:
        device = await discover(connect(port), unit_id=1)
    assert device is not None
    assert device.model_ids == [1]
    assert not device.chain.complete and "runs past" in device.chain.problem


async def test_endless_chain_is_bounded(connect):
    # An unknown model id with L = 0, repeated: a chain that never ends.
    runs = [(40000, [0x5375, 0x6E53] + [64999, 0] * (MAX_MODELS + 10))]
    async with modbus_server(runs) as port:
        device = await discover(connect(port), unit_id=1)
    assert device is not None
    assert len(device.model_ids) == MAX_MODELS
    assert device.unknown_models == [64999] * MAX_MODELS
    assert not device.chain.complete and "more than" in device.chain.problem
    assert [point.name for point in device.register_map.spec.point] == ["SunS"]


async def test_unknown_models_are_listed_but_skipped(connect):
    placements = consecutive_layout([1, 103], 40000)
    unknown = ModelPlacement(64999, placements[-1].end_address, 4)
    placements.append(unknown)
    site = build_map(placements, 40000)
    # Serve the unknown model's header and body (build_map leaves it out of the map).
    runs = patched(runs_of(site), unknown.address, [64999, 4, 1, 2, 3, 4])
    async with modbus_server(runs) as port:
        device = await discover(connect(port), unit_id=1)
    assert device is not None and device.chain.complete
    assert device.model_ids == [1, 103, 64999] and device.unknown_models == [64999]
    assert not any(name.startswith("m64999") for name in device.register_map.points)


async def test_nothing_at_any_base_gives_none(connect):
    # The device answers, but holds no marker: 40000 has zeros, 0 and 50000 are illegal addresses.
    async with modbus_server([(40000, [0] * 10)]) as port:
        connection = connect(port)
        assert await discover(connection, unit_id=1) is None
        search = await find_sunspec_base(connection, 1)
    assert search.base_address is None and search.answered


async def test_silent_device_gives_none_quickly():
    policy = RetryPolicy(timeout_s=0.1, retries=0, reconnect_after_timeouts=1000)
    async with silent_server() as port:
        connection = ModbusConnection(TcpEndpoint("127.0.0.1", port), policy)
        try:
            started = asyncio.get_running_loop().time()
            search = await find_sunspec_base(connection, 1)
            assert not search.answered and search.base_address is None
            assert len(search.errors) == 3  # every base was tried despite the timeouts
            assert await discover(connection, unit_id=1) is None
            assert asyncio.get_running_loop().time() - started < 2.0
        finally:
            connection.close()


async def test_timeout_at_one_base_does_not_stop_the_scan(connect):
    # The device never answers at 40000 (as a gateway that times out) but is SunSpec at 50000.
    async def stall_40000(function_code, start_address, address, count, registers, set_values):
        if address == 40000:
            await asyncio.sleep(1.0)
        return None

    runs = runs_of(hybrid_site_map(50000)) + [(40000, [0, 0])]
    async with modbus_server(runs, action=stall_40000) as port:
        device = await discover(connect(port), unit_id=1)
    assert device is not None and device.base_address == 50000
    assert device.model_ids == HYBRID_MODELS


async def test_discovered_battery_model_802_is_decoded(connect):
    site = hybrid_site_map(with_battery_model=True, initial={"m802_W": -1500.0, "m802_SoC": 42.5})
    async with modbus_server(runs_of(site)) as port:
        connection = connect(port)
        device = await discover(connection, unit_id=1)
        assert device is not None and device.model_ids == HYBRID_MODELS + [802]
        client = MapClient(connection, device.register_map, unit_id=1)
        readings = await client.poll()
    # 802 W counts discharge positive (SunSpec DER convention); the role counts charging positive.
    assert client.reading(Role.BATTERY_POWER_W).value == pytest.approx(-1500.0)
    assert readings["m802_SoC"].value == pytest.approx(42.5)
    # 124 ChaState is listed before 802 SoC in roles.toml, so it carries the SoC role.
    assert device.register_map.point_for(Role.BATTERY_SOC_PCT).name == "m124_ChaState"
    assert not math.isnan(readings["m124_ChaState"].value)
