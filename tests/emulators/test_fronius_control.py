"""Fronius GEN24 through the drivers: model 124 commands move the plant's battery, and model
160's battery modules (3: charging, 4: discharging) report what it does as one signed power."""

from __future__ import annotations

import pytest

from drivers.devices import Battery
from drivers.emulators import ManualClock, MapBinding, SitePlant
from drivers.maps import load_map
from tests.emulators.helpers import client_for, running

#: The register resolution of InWRte/OutWRte (0.01 % of WChaMax 10 kW) and of DCW (1 W).
TOLERANCE_W = 2.0


@pytest.mark.parametrize("charge_w", [-1500.0, 2000.0])
async def test_battery_setpoints_reach_the_plant_and_read_back(charge_w: float, clock: ManualClock,
                                                               plant: SitePlant) -> None:
    register_map = load_map("fronius_gen24")
    binding = MapBinding(register_map, register_map.spec.device.default_unit_id)
    async with running([binding], plant) as server, client_for(server, binding) as client:
        battery = Battery(client)
        await client.poll()
        own_rule_w = plant.flows.battery_charge_w
        assert abs(own_rule_w - charge_w) > 500  # the command is not what the plant does anyway

        await battery.set_charge_power(charge_w, timeout_s=120)
        assert plant.remote_active()
        assert plant.flows.battery_charge_w == pytest.approx(charge_w, abs=TOLERANCE_W)
        clock.advance(60)
        readings = await client.poll()
        assert battery.state().power_w.value == pytest.approx(charge_w, abs=TOLERANCE_W)
        assert readings["m160_module3_DCW"].value == pytest.approx(max(charge_w, 0.0), abs=TOLERANCE_W)
        assert readings["m160_module4_DCW"].value == pytest.approx(max(-charge_w, 0.0), abs=TOLERANCE_W)

        clock.advance(61)  # past InOutWRte_RvrtTms: the inverter drops the limits
        await client.poll()
        assert not plant.remote_active()
        assert battery.state().power_w.value == pytest.approx(plant.flows.battery_charge_w, abs=TOLERANCE_W)
        assert abs(plant.flows.battery_charge_w - charge_w) > 500


async def test_release_returns_the_battery_to_its_own_rule(clock: ManualClock, plant: SitePlant) -> None:
    register_map = load_map("fronius_gen24")
    binding = MapBinding(register_map, register_map.spec.device.default_unit_id)
    async with running([binding], plant) as server, client_for(server, binding) as client:
        battery = Battery(client)
        await client.poll()
        await battery.set_charge_power(-1000, timeout_s=900)
        assert plant.remote_active()
        await battery.release()
        assert not plant.remote_active()
        readings = await client.poll()
        assert readings["m124_StorCtl_Mod"].value == 0
