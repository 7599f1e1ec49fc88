"""Capability classes over register maps: GridMeter, PvInverter, Battery, EvCharger, HeatPump."""

from drivers.devices.battery import Battery, BatteryState
from drivers.devices.capability import Capability, CapabilityMissing
from drivers.devices.ev_charger import EvCharger, EvChargerState
from drivers.devices.grid_meter import GridMeter, GridMeterState
from drivers.devices.heat_pump import HeatPump, HeatPumpState, SgReadyState
from drivers.devices.map_client import MapClient, ReadBackMismatch
from drivers.devices.pv_inverter import PvInverter, PvInverterState

CAPABILITIES: dict[str, type[Capability]] = {
    "grid_meter": GridMeter,
    "pv_inverter": PvInverter,
    "battery": Battery,
    "ev_charger": EvCharger,
    "heat_pump": HeatPump,
}

__all__ = [
    "CAPABILITIES", "Battery", "BatteryState", "Capability", "CapabilityMissing", "EvCharger", "EvChargerState",
    "GridMeter", "GridMeterState", "HeatPump", "HeatPumpState", "MapClient", "PvInverter", "PvInverterState",
    "ReadBackMismatch", "SgReadyState",
]
