"""A setpoint written through the Battery capability moves the emulated SoC and the grid meter."""

from __future__ import annotations

import pytest

from drivers.devices import Battery, GridMeter
from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.catalog import resolve_map
from drivers.maps import Role, load_map
from tests.emulators.helpers import client_for, running


def _household_net_w(plant: SitePlant) -> float:
    flows = plant.flows
    return flows.load_w - flows.pv_w


@pytest.mark.parametrize("map_name", ["sma_sunny_boy_storage", "huawei_sun2000", "sungrow_sh"])
async def test_charge_setpoint_integrates_into_soc_and_shows_on_the_meter(map_name, clock, plant: SitePlant):
    inverter = MapBinding(load_map(map_name), 1)
    meter = MapBinding(load_map("eastron_sdm630"), 2)
    async with running([inverter, meter], plant) as server, client_for(server, inverter) as battery_client, \
            client_for(server, meter) as meter_client:
        battery, grid = Battery(battery_client), GridMeter(meter_client)
        await battery_client.poll()
        await meter_client.poll()
        grid_before_w = grid.state().power_w.value
        battery_before_w, net_before_w = plant.flows.battery_charge_w, _household_net_w(plant)
        soc_before_pct = plant.battery.soc_pct
        charge_w, step_s, steps = 2000.0, 50.0, 12
        for _ in range(steps):  # ten simulated minutes, refreshing the setpoint as the daemon would
            await battery.set_charge_power(charge_w)
            clock.advance(step_s)
        await battery_client.poll()
        await meter_client.poll()

        stored_wh = charge_w * plant.battery.charge_efficiency * steps * step_s / 3600
        expected_soc_pct = soc_before_pct + 100 * stored_wh / plant.battery.capacity_wh
        assert plant.battery.soc_pct == pytest.approx(expected_soc_pct, abs=0.05)
        soc_point = battery_client.map.point_for(Role.BATTERY_SOC_PCT)
        register_resolution_pct = abs(soc_point.scale)
        assert battery.state().soc_pct.value == pytest.approx(plant.battery.soc_pct,
                                                              abs=register_resolution_pct / 2 + 1e-6)

        assert plant.flows.battery_charge_w == pytest.approx(charge_w, abs=1)
        grid_after_w = grid.state().power_w.value
        # Everything the meter saw change is the battery's new power plus what load and PV did meanwhile.
        expected_change_w = (charge_w - battery_before_w) + (_household_net_w(plant) - net_before_w)
        assert grid_after_w - grid_before_w == pytest.approx(expected_change_w, abs=1.0)

        await battery.release()
        plant.advance()
        assert not plant.remote_active()


@pytest.mark.parametrize(("map_name", "timeout_s", "device_keeps_s"), [
    ("huawei_sun2000", 90.0, 120.0),  # the register counts whole minutes: rounded up
    ("solaredge_storedge", 45.0, 45.0),
    ("sunspec_hybrid", 30.0, 30.0),
])
async def test_the_configured_dead_man_timeout_reaches_the_device(map_name, timeout_s, device_keeps_s, clock,
                                                                  plant: SitePlant):
    """``set_charge_power(timeout_s=...)`` writes the timeout in the register's unit; the emulated
    device keeps the setpoint exactly that long and then returns to its own control."""
    inverter = MapBinding(resolve_map(map_name), 1)
    async with running([inverter], plant) as server, client_for(server, inverter) as client:
        battery = Battery(client)
        await client.poll()
        await battery.set_charge_power(1000.0, timeout_s=timeout_s)
        clock.advance(device_keeps_s - 1.0)
        plant.advance()
        assert plant.remote_active()
        clock.advance(2.0)
        plant.advance()
        assert not plant.remote_active()
