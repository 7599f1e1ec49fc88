"""HeatPump: SG-Ready state or an electrical power limit."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.devices.capability import Capability
from drivers.maps import Role
from drivers.readings import Reading


class SgReadyState(enum.IntEnum):
    """The four SG-Ready operating states (German heat-pump label, BWP)."""

    BLOCKED = 1
    NORMAL = 2
    RECOMMENDED_ON = 3
    FORCED_ON = 4


@dataclass(frozen=True, slots=True)
class HeatPumpState:
    """What a heat pump reports."""

    power_w: Reading | None
    sg_ready_state: Reading | None
    flow_temperature_c: Reading | None
    outdoor_temperature_c: Reading | None


class HeatPump(Capability):
    """A heat pump steered by SG-Ready or by a power limit."""

    required_roles = ((Role.HEAT_PUMP_POWER_W, Role.HEAT_PUMP_SG_READY_STATE),)

    def state(self) -> HeatPumpState:
        """The values of the last poll."""
        return HeatPumpState(
            power_w=self.reading(Role.HEAT_PUMP_POWER_W),
            sg_ready_state=self.reading(Role.HEAT_PUMP_SG_READY_STATE),
            flow_temperature_c=self.reading(Role.HEAT_PUMP_FLOW_TEMPERATURE_C),
            outdoor_temperature_c=self.reading(Role.HEAT_PUMP_OUTDOOR_TEMPERATURE_C),
        )

    async def set_sg_ready(self, state: SgReadyState) -> None:
        """Switch the SG-Ready state."""
        await self.write_role(Role.HEAT_PUMP_SG_READY_STATE, int(state))

    async def set_power_limit_w(self, limit_w: float) -> None:
        """Cap the electrical power."""
        await self.write_role(Role.HEAT_PUMP_POWER_LIMIT_W, limit_w)
