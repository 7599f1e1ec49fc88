"""One site behind several emulators: battery commands show on the grid meter, and lapse."""

from __future__ import annotations

import pytest

from drivers.devices.battery_control import strategy_for
from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.catalog import sunspec_builtins
from drivers.maps import load_map
from drivers.registers import RegisterType, encode_raw
from drivers.transport import ModbusExceptionResponse
from tests.emulators.helpers import client_for, hybrid_test_map, running


async def _apply(client, charge_w: float) -> None:
    strategy = strategy_for(client.map.spec.control.battery)
    state = {name: reading.value for name, reading in (await client.poll()).items()}
    for write in strategy.writes_for_setpoint(charge_w, state):
        await client.write(write.point, write.value)


async def test_battery_command_shows_on_the_meter_and_expires(clock, plant: SitePlant) -> None:
    hybrid, meter = MapBinding(hybrid_test_map(), 1), MapBinding(load_map("eastron_sdm630"), 2)
    grid_point = meter.register_map.point_for("grid_power_w").name
    async with running([hybrid, meter], plant) as server, client_for(server, hybrid) as inverter, \
            client_for(server, meter) as grid_meter:
        before = (await grid_meter.poll())[grid_point].value
        await _apply(inverter, -3000)  # discharge 3 kW at noon: exports 3 kW more than self-consumption
        assert plant.remote_active() and plant.flows.battery_charge_w == -3000
        clock.advance(10)
        readings = await inverter.poll()
        assert readings["battery_power"].value == pytest.approx(-3000, abs=10)
        after = (await grid_meter.poll())[grid_point].value
        assert after == pytest.approx(plant.flows.grid_w, abs=0.01)
        assert after < before - 3000
        clock.advance(25)  # the map's timeout register holds 30 s
        await inverter.poll()
        assert not plant.remote_active()
        assert plant.flows.battery_charge_w != -3000


@pytest.mark.parametrize("name", ["sunspec_hybrid", "huawei_sun2000"])
async def test_vendor_battery_strategies_reach_the_plant(name: str, clock, plant: SitePlant) -> None:
    register_map = sunspec_builtins()[name] if name.startswith("sunspec") else load_map(name)
    binding = MapBinding(register_map, register_map.spec.device.default_unit_id)
    async with running([binding], plant) as server, client_for(server, binding) as client:
        await _apply(client, -1500)
        assert plant.remote_active()
        assert plant.flows.battery_charge_w == pytest.approx(-1500, abs=60)
        clock.advance(50)
        assert plant.advance().battery_charge_w == pytest.approx(-1500, abs=60)


async def test_out_of_range_write_is_illegal_value_and_read_only_is_illegal_address(plant: SitePlant) -> None:
    binding = MapBinding(hybrid_test_map(), 1)
    async with running([binding], plant) as server, client_for(server, binding) as client:
        connection = client.connection
        with pytest.raises(ModbusExceptionResponse) as refused:
            await connection.write(42, encode_raw(9000, RegisterType.INT16), 1)  # setpoint range is +-5000
        assert refused.value.code == 3
        with pytest.raises(ModbusExceptionResponse) as refused:
            await connection.write(10, [1], 1)  # pv_power is read-only
        assert refused.value.code == 2
        with pytest.raises(ModbusExceptionResponse) as refused:
            await connection.read(binding.register_map.points["pv_power"].table, 30, 2, 1)  # a gap
        assert refused.value.code == 2
        assert (await client.poll())["battery_setpoint"].value == 0  # nothing landed
        assert not plant.remote_active()


async def test_pv_limit_write_curtails(clock, plant: SitePlant) -> None:
    binding = MapBinding(hybrid_test_map(), 1)
    async with running([binding], plant) as server, client_for(server, binding) as client:
        assert plant.pv.peak_w == 8000  # nameplate taken from the map's initial value
        await client.write("pv_limit", 20)
        readings = await client.poll()
        assert readings["pv_power"].value == pytest.approx(1600, abs=10)


@pytest.mark.parametrize("name", ["sunspec_hybrid", "fronius_gen24"])
async def test_pv_inverter_capability_curtails_in_watts_and_releases(name: str, clock, plant: SitePlant) -> None:
    from drivers.devices import PvInverter

    register_map = sunspec_builtins()[name] if name.startswith("sunspec") else load_map(name)
    binding = MapBinding(register_map, register_map.spec.device.default_unit_id)
    async with running([binding], plant) as server, client_for(server, binding) as client:
        inverter = PvInverter(client)
        await inverter.refresh()
        assert inverter.can_limit_power
        unlimited_w = inverter.state().power_w.value
        assert unlimited_w > 1500  # midsummer noon
        await inverter.set_power_limit_w(1000)
        clock.advance(5)
        await inverter.refresh()
        assert inverter.state().power_w.value == pytest.approx(1000, abs=plant.pv.peak_w * 0.01)
        await inverter.release_power_limit()
        clock.advance(5)
        await inverter.refresh()
        assert inverter.state().power_w.value > 1500
