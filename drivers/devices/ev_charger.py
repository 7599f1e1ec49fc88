"""EvCharger: charging power, vehicle connected, current limit."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.devices.capability import Capability
from drivers.maps import Role
from drivers.readings import Reading


@dataclass(frozen=True, slots=True)
class EvChargerState:
    """What a charger reports."""

    power_w: Reading | None
    energy_wh: Reading | None
    connected: Reading | None
    current_limit_a: Reading | None


class EvCharger(Capability):
    """A wallbox controlled by a current limit (and an enable switch where it has one)."""

    required_roles = ((Role.EV_POWER_W,),)

    def state(self) -> EvChargerState:
        """The values of the last poll."""
        return EvChargerState(
            power_w=self.reading(Role.EV_POWER_W),
            energy_wh=self.reading(Role.EV_ENERGY_WH),
            connected=self.reading(Role.EV_CONNECTED),
            current_limit_a=self.reading(Role.EV_CURRENT_LIMIT_A),
        )

    async def set_current_limit_a(self, current_a: float) -> None:
        """Charge with at most ``current_a`` per phase; 0 pauses where there is no switch."""
        if self.client.map.point_for(Role.EV_CHARGING_ENABLED) is not None:
            await self.write_role(Role.EV_CHARGING_ENABLED, 1 if current_a > 0 else 0)
            if current_a <= 0:
                return
        await self.write_role(Role.EV_CURRENT_LIMIT_A, current_a)
