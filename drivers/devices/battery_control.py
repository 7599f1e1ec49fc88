"""How a battery setpoint becomes register writes, per vendor control style.

A map's ``[control.battery]`` table names a strategy and its points; the classes
here translate in both directions: the driver turns "charge at 2000 W" into point
writes, and the emulators turn the device's control registers back into the power
window the battery must stay in, so one description drives both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.maps.schema import (
    BatteryControl,
    CommandAndPowerControl,
    SignedPowerControl,
    SunSpecStorageControl,
)

#: Seconds a device keeps a remote setpoint when the map has a timeout register.
DEFAULT_SETPOINT_TIMEOUT_S = 60
#: Seconds per unit of a timeout register (Huawei counts minutes).
SECONDS_PER_TIMEOUT_UNIT = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}


def timeout_register_value(timeout_s: float, unit: str) -> int:
    """``timeout_s`` in a timeout register's unit, rounded up (at least 1): the device may keep
    a setpoint a little longer than asked, never shorter than the refresh needs."""
    return max(1, math.ceil(timeout_s / SECONDS_PER_TIMEOUT_UNIT.get(unit, 1.0) - 1e-9))


@dataclass(frozen=True, slots=True)
class PointWrite:
    """One value to write to one point."""

    point: str
    value: float | int


@dataclass(frozen=True, slots=True)
class PowerWindow:
    """The battery power the device is told to stay within (W, + charging)."""

    min_charge_w: float
    max_charge_w: float

    def clamp(self, charge_w: float) -> float:
        """``charge_w`` moved into the window."""
        return min(max(charge_w, self.min_charge_w), self.max_charge_w)


class BatteryControlStrategy:
    """Base: translate setpoints to writes and control registers to a power window."""

    def writes_for_setpoint(self, charge_w: float, state: Mapping[str, float | int | None],
                            timeout_value: int | None = None) -> list[PointWrite]:
        """Writes that make the battery charge at ``charge_w`` (negative: discharge).

        ``state`` holds the device's last decoded values by point name (needed when
        the device takes percentages of a nameplate value); ``timeout_value`` is the
        dead-man timeout in the timeout register's unit (None: the map's value).
        """
        raise NotImplementedError

    def writes_for_autonomous(self) -> list[PointWrite]:
        """Writes that hand the battery back to the device's own control."""
        raise NotImplementedError

    def window_from(self, values: Mapping[str, float | int | None]) -> PowerWindow | None:
        """The window the control registers command; None means autonomous mode."""
        raise NotImplementedError

    @property
    def timeout_point(self) -> str | None:
        """The point holding the device's remote-control timeout, if any."""
        return None


class SignedPowerStrategy(BatteryControlStrategy):
    """One signed power register, optionally guarded by an enable register."""

    def __init__(self, spec: SignedPowerControl) -> None:
        self.spec = spec

    def writes_for_setpoint(self, charge_w: float, state: Mapping[str, float | int | None],
                            timeout_value: int | None = None) -> list[PointWrite]:
        writes = _setup_writes(self.spec, timeout_value)
        if self.spec.enable_point is not None and self.spec.enable_value is not None:
            writes.append(PointWrite(self.spec.enable_point, self.spec.enable_value))
        writes.append(PointWrite(self.spec.power_point, round(charge_w * self.spec.sign)))
        return writes

    def writes_for_autonomous(self) -> list[PointWrite]:
        if self.spec.enable_point is not None and self.spec.disable_value is not None:
            return [PointWrite(self.spec.enable_point, self.spec.disable_value)]
        return [PointWrite(self.spec.power_point, 0)]

    def window_from(self, values: Mapping[str, float | int | None]) -> PowerWindow | None:
        if self.spec.enable_point is not None and values.get(self.spec.enable_point) != self.spec.enable_value:
            return None
        power = values.get(self.spec.power_point)
        if power is None:
            return None
        charge_w = float(power) * self.spec.sign
        return PowerWindow(charge_w, charge_w)

    @property
    def timeout_point(self) -> str | None:
        return self.spec.timeout_point


class CommandAndPowerStrategy(BatteryControlStrategy):
    """A charge/discharge/stop command plus a power magnitude, optionally a remote mode."""

    def __init__(self, spec: CommandAndPowerControl) -> None:
        self.spec = spec

    def writes_for_setpoint(self, charge_w: float, state: Mapping[str, float | int | None],
                            timeout_value: int | None = None) -> list[PointWrite]:
        spec = self.spec
        writes = []
        if spec.mode_point is not None and spec.remote_mode_value is not None:
            writes.append(PointWrite(spec.mode_point, spec.remote_mode_value))
        writes += _setup_writes(spec, timeout_value)
        if charge_w > 0:
            writes += [PointWrite(spec.charge_power_point, round(charge_w)),
                       PointWrite(spec.command_point, spec.charge_command)]
        elif charge_w < 0:
            writes += [PointWrite(spec.discharge_power_point, round(-charge_w)),
                       PointWrite(spec.command_point, spec.discharge_command)]
        else:
            writes.append(PointWrite(spec.command_point, spec.stop_command))
        return writes

    def writes_for_autonomous(self) -> list[PointWrite]:
        spec = self.spec
        writes = [PointWrite(spec.command_point, spec.stop_command)]
        if spec.mode_point is not None and spec.autonomous_mode_value is not None:
            writes.append(PointWrite(spec.mode_point, spec.autonomous_mode_value))
        return writes

    def window_from(self, values: Mapping[str, float | int | None]) -> PowerWindow | None:
        spec = self.spec
        if spec.mode_point is not None and spec.remote_mode_value is not None and (
            values.get(spec.mode_point) != spec.remote_mode_value
        ):
            return None
        command = values.get(spec.command_point)
        if command == spec.charge_command:
            power = float(values.get(spec.charge_power_point) or 0.0)
            return PowerWindow(power, power)
        if command == spec.discharge_command:
            power = float(values.get(spec.discharge_power_point) or 0.0)
            return PowerWindow(-power, -power)
        if command == spec.stop_command and spec.mode_point is not None:
            return PowerWindow(0.0, 0.0)
        return None

    @property
    def timeout_point(self) -> str | None:
        return self.spec.timeout_point


class SunSpecStorageStrategy(BatteryControlStrategy):
    """SunSpec model 124 as Fronius documents forced charge and discharge.

    StorCtl_Mod bit 0 enables the charge limit InWRte, bit 1 the discharge limit
    OutWRte, both in percent of WChaMax. A negative limit on one side forces power
    the other way, so "charge at P" is InWRte = p, OutWRte = -p.
    """

    _CHARGE_LIMIT_BIT = 1
    _DISCHARGE_LIMIT_BIT = 2

    def __init__(self, spec: SunSpecStorageControl) -> None:
        self.spec = spec

    def writes_for_setpoint(self, charge_w: float, state: Mapping[str, float | int | None],
                            timeout_value: int | None = None) -> list[PointWrite]:
        max_charge_w = state.get(self.spec.max_charge_point)
        if not max_charge_w or not math.isfinite(float(max_charge_w)) or float(max_charge_w) <= 0:
            raise ValueError(f"{self.spec.max_charge_point} unknown: cannot express {charge_w} W in percent")
        percent = max(-100.0, min(100.0, 100.0 * charge_w / float(max_charge_w)))
        writes = [PointWrite(self.spec.charge_rate_point, percent),
                  PointWrite(self.spec.discharge_rate_point, -percent)]
        if self.spec.timeout_point is not None:
            writes.append(PointWrite(self.spec.timeout_point,
                                     DEFAULT_SETPOINT_TIMEOUT_S if timeout_value is None else timeout_value))
        writes.append(PointWrite(self.spec.mode_point, self._CHARGE_LIMIT_BIT | self._DISCHARGE_LIMIT_BIT))
        return writes

    def writes_for_autonomous(self) -> list[PointWrite]:
        return [PointWrite(self.spec.mode_point, 0), PointWrite(self.spec.charge_rate_point, 100.0),
                PointWrite(self.spec.discharge_rate_point, 100.0)]

    def window_from(self, values: Mapping[str, float | int | None]) -> PowerWindow | None:
        mode = int(values.get(self.spec.mode_point) or 0)
        max_charge_w = float(values.get(self.spec.max_charge_point) or 0.0)
        if mode & 3 == 0 or max_charge_w <= 0:
            return None
        low, high = -math.inf, math.inf
        if mode & self._CHARGE_LIMIT_BIT:
            high = float(values.get(self.spec.charge_rate_point) or 0.0) / 100.0 * max_charge_w
        if mode & self._DISCHARGE_LIMIT_BIT:
            low = -float(values.get(self.spec.discharge_rate_point) or 0.0) / 100.0 * max_charge_w
        if low > high:  # contradictory limits: the device holds still
            return PowerWindow(0.0, 0.0)
        return PowerWindow(low, high)

    @property
    def timeout_point(self) -> str | None:
        return self.spec.timeout_point


def _setup_writes(spec: SignedPowerControl | CommandAndPowerControl,
                  timeout_value: int | None = None) -> list[PointWrite]:
    """The vendor's fixed writes, then the dead-man timeout, before any setpoint."""
    writes = [PointWrite(write.point, write.value) for write in spec.setup_writes]
    value = spec.timeout_value if timeout_value is None else timeout_value
    if spec.timeout_point is not None and value is not None:
        writes.append(PointWrite(spec.timeout_point, value))
    return writes


def strategy_for(spec: BatteryControl) -> BatteryControlStrategy:
    """The strategy object for a map's ``[control.battery]`` table."""
    if isinstance(spec, SignedPowerControl):
        return SignedPowerStrategy(spec)
    if isinstance(spec, CommandAndPowerControl):
        return CommandAndPowerStrategy(spec)
    return SunSpecStorageStrategy(spec)
