"""Which outputs the daemon controls: one actuator per controllable battery and per PV
inverter with a power limit, each re-applied when its connection comes back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from drivers.devices import Battery, PvInverter
from hems.control.actuation import SetpointActuator, WriteRecorder
from hems.runtime.site_devices import SiteDevices

BATTERY_OUTPUT = "battery_charge_w"
PV_LIMIT_OUTPUT = "pv_limit_w"


class ActuationSettings(Protocol):
    """The ``[control]`` keys actuation needs."""

    deadband_w: float
    setpoint_timeout_s: float


def build_actuators(devices: SiteDevices, settings: ActuationSettings, recorder: WriteRecorder | None = None
                    ) -> tuple[list[SetpointActuator], list[SetpointActuator]]:
    """Battery and PV-limit actuators for every device that can take a setpoint.

    A setpoint is refreshed three times per dead-man timeout, so one lost write never lets the
    device fall back while the daemon is healthy.
    """
    refresh_s = settings.setpoint_timeout_s / 3.0
    batteries: list[SetpointActuator] = []
    pv_inverters: list[SetpointActuator] = []
    for name, capabilities in devices.capabilities.items():
        connection = devices.clients[name].connection
        for capability in capabilities:
            if isinstance(capability, Battery) and capability.controllable:
                actuator = SetpointActuator(name, BATTERY_OUTPUT, _with_timeout(capability, settings.setpoint_timeout_s),
                                            capability.release, refresh_s, settings.deadband_w, recorder)
                batteries.append(actuator)
            elif isinstance(capability, PvInverter) and capability.can_limit_power:
                actuator = SetpointActuator(name, PV_LIMIT_OUTPUT, capability.set_power_limit_w,
                                            capability.release_power_limit, refresh_s, settings.deadband_w,
                                            recorder)
                pv_inverters.append(actuator)
            else:
                continue
            connection.on_connection_change.append(actuator.device_reconnected)
    return batteries, pv_inverters


def _with_timeout(battery: Battery, timeout_s: float) -> Callable[[float], Awaitable[None]]:
    """The battery's setpoint write with the configured dead-man timeout."""

    async def write(charge_w: float) -> None:
        await battery.set_charge_power(charge_w, timeout_s=timeout_s)

    return write
