"""GridMeter: power and energy at the point of connection (import positive)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.devices.capability import Capability
from drivers.maps import Role
from drivers.readings import Reading

_PHASE_POWERS = (Role.GRID_POWER_L1_W, Role.GRID_POWER_L2_W, Role.GRID_POWER_L3_W)


@dataclass(frozen=True, slots=True)
class GridMeterState:
    """What a grid meter reports; ``None`` where the device has no such value."""

    power_w: Reading | None
    import_energy_wh: Reading | None
    export_energy_wh: Reading | None
    frequency_hz: Reading | None
    voltage_l1_v: Reading | None


class GridMeter(Capability):
    """A meter at the grid connection; totals are summed from phases where needed."""

    required_roles = ((Role.GRID_POWER_W, Role.GRID_POWER_L1_W),)

    def state(self) -> GridMeterState:
        """The values of the last poll."""
        power = self.reading(Role.GRID_POWER_W) or self.sum_of(Role.GRID_POWER_W.value, _PHASE_POWERS)
        return GridMeterState(
            power_w=power,
            import_energy_wh=self.reading(Role.GRID_IMPORT_ENERGY_WH),
            export_energy_wh=self.reading(Role.GRID_EXPORT_ENERGY_WH),
            frequency_hz=self.reading(Role.GRID_FREQUENCY_HZ),
            voltage_l1_v=self.reading(Role.GRID_VOLTAGE_L1_V),
        )
