"""PvInverter: generation, yield, and the active-power limit that curtails PV."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.devices.capability import Capability
from drivers.maps import PointWriteError, Role
from drivers.readings import Reading


@dataclass(frozen=True, slots=True)
class PvInverterState:
    """What a PV inverter reports."""

    power_w: Reading | None
    energy_wh: Reading | None
    rated_power_w: Reading | None
    power_limit_pct: Reading | None


class PvInverter(Capability):
    """A PV inverter with an optional active-power limit."""

    required_roles = ((Role.PV_POWER_W, Role.PV_DC_POWER_W),)

    def state(self) -> PvInverterState:
        """The values of the last poll."""
        return PvInverterState(
            power_w=self.reading(Role.PV_POWER_W) or self.reading(Role.PV_DC_POWER_W),
            energy_wh=self.reading(Role.PV_ENERGY_WH),
            rated_power_w=self.reading(Role.PV_RATED_POWER_W),
            power_limit_pct=self.reading(Role.PV_POWER_LIMIT_PCT),
        )

    @property
    def can_limit_power(self) -> bool:
        """True when the map has a writable power limit."""
        return any(
            (point := self.client.map.point_for(role)) is not None and point.writable
            for role in (Role.PV_POWER_LIMIT_W, Role.PV_POWER_LIMIT_PCT)
        )

    async def set_power_limit_w(self, limit_w: float, rated_power_w: float | None = None) -> None:
        """Limit AC output to ``limit_w`` (in W, or in percent of ``rated_power_w``)."""
        if self.client.map.point_for(Role.PV_POWER_LIMIT_W) is not None:
            await self.write_role(Role.PV_POWER_LIMIT_W, limit_w)
        else:
            rated = rated_power_w or _value(self.reading(Role.PV_RATED_POWER_W))
            if not rated:
                raise PointWriteError(f"{self.name}: rated power unknown, cannot limit in percent")
            await self.write_role(Role.PV_POWER_LIMIT_PCT, min(100.0, max(0.0, 100.0 * limit_w / rated)))
        if self.client.map.point_for(Role.PV_POWER_LIMIT_ENABLED) is not None:
            await self.write_role(Role.PV_POWER_LIMIT_ENABLED, 1)

    async def release_power_limit(self) -> None:
        """Remove the limit: the inverter produces what it can."""
        if self.client.map.point_for(Role.PV_POWER_LIMIT_ENABLED) is not None:
            await self.write_role(Role.PV_POWER_LIMIT_ENABLED, 0)
        elif self.client.map.point_for(Role.PV_POWER_LIMIT_PCT) is not None:
            await self.write_role(Role.PV_POWER_LIMIT_PCT, 100.0)


def _value(reading: Reading | None) -> float | None:
    return float(reading.value) if reading is not None and reading.usable else None
