"""Battery: state of charge, power, limits, and the charge/discharge setpoint."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.devices.battery_control import BatteryControlStrategy, strategy_for, timeout_register_value
from drivers.devices.capability import Capability, CapabilityMissing
from drivers.maps import Role
from drivers.readings import Quality, Reading


@dataclass(frozen=True, slots=True)
class BatteryState:
    """What a battery reports (power positive when charging)."""

    soc_pct: Reading | None
    power_w: Reading | None
    capacity_wh: Reading | None
    max_charge_w: Reading | None
    max_discharge_w: Reading | None


class Battery(Capability):
    """A battery controlled through its map's ``[control.battery]`` strategy.

    The setpoint is a signed charge power (W); the strategy turns it into the
    vendor's registers. Every write is range-checked by the map and read back.
    """

    required_roles = ((Role.BATTERY_SOC_PCT,),)

    def __init__(self, client) -> None:
        super().__init__(client)
        control = client.map.spec.control.battery
        self.strategy: BatteryControlStrategy | None = None if control is None else strategy_for(control)

    def state(self) -> BatteryState:
        """The values of the last poll."""
        return BatteryState(
            soc_pct=self.reading(Role.BATTERY_SOC_PCT),
            power_w=self.reading(Role.BATTERY_POWER_W) or self._net_power(),
            capacity_wh=self.reading(Role.BATTERY_CAPACITY_WH),
            max_charge_w=self.reading(Role.BATTERY_MAX_CHARGE_W),
            max_discharge_w=self.reading(Role.BATTERY_MAX_DISCHARGE_W),
        )

    def _net_power(self) -> Reading | None:
        """Charge minus discharge power, for devices that report the two directions apart."""
        charge = self.reading(Role.BATTERY_CHARGE_POWER_W)
        discharge = self.reading(Role.BATTERY_DISCHARGE_POWER_W)
        if charge is None or discharge is None:
            return None
        flawed = [part.quality for part in (charge, discharge) if part.quality is not Quality.GOOD]
        if charge.value is None or discharge.value is None:
            value, quality = None, flawed[0] if flawed else Quality.NOT_IMPLEMENTED
        else:
            value, quality = float(charge.value) - float(discharge.value), flawed[0] if flawed else Quality.GOOD
        return Reading(Role.BATTERY_POWER_W.value, value, "W", min(charge.timestamp_s, discharge.timestamp_s),
                       quality)

    @property
    def controllable(self) -> bool:
        """True when the map says how to command the battery."""
        return self.strategy is not None

    def _require_strategy(self) -> BatteryControlStrategy:
        if self.strategy is None:
            raise CapabilityMissing(f"{self.client.map.id} has no [control.battery]: the battery is read-only")
        return self.strategy

    async def set_charge_power(self, charge_w: float, timeout_s: float | None = None) -> None:
        """Command ``charge_w`` (negative: discharge). Writes in the strategy's order.

        ``timeout_s``: the device's dead-man timeout, where the map has a timeout register
        (None: the map's own value); the device returns to its own control unless the
        setpoint is written again within it.
        """
        strategy = self._require_strategy()
        state = {name: reading.value for name, reading in self.client.last_readings.items() if reading.usable}
        timeout_value = None
        if timeout_s is not None and strategy.timeout_point is not None:
            timeout_value = timeout_register_value(timeout_s, self.client.map.points[strategy.timeout_point].unit)
        for write in strategy.writes_for_setpoint(charge_w, state, timeout_value):
            await self.client.write(write.point, write.value)

    async def release(self) -> None:
        """Return the battery to the device's own (autonomous) control."""
        strategy = self._require_strategy()
        for write in strategy.writes_for_autonomous():
            await self.client.write(write.point, write.value)
