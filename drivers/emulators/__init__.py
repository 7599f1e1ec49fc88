"""Device emulators: Modbus servers built from the same register maps, driven by a site plant.

``SitePlant`` (plant.py) is the physics of one site; ``EmulatorServer``
(modbus_server.py) serves maps over Modbus TCP or RTU from it; ``FaultInjector``
(faults.py) breaks the link on demand; ``catalog``/``resolve_map`` (catalog.py) name
what can be emulated. The P1 writer (p1_writer.py) is the serial smart-meter side.

The Modbus server is imported lazily (``pymodbus.server`` costs ~0.2 s), so
``from drivers.emulators import SitePlant`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.emulators.faults import Fault, FaultInjector, FaultKind
from drivers.emulators.image import MapBinding
from drivers.emulators.plant import (
    Battery,
    ElectricVehicle,
    EnergyCounters,
    HeatPump,
    PowerFlows,
    PvArray,
    SitePlant,
)
from drivers.emulators.profiles import ManualClock, ScaledClock

if TYPE_CHECKING:
    from drivers.emulators.catalog import CatalogEntry, catalog, resolve_map
    from drivers.emulators.modbus_server import EmulatorServer

__all__ = [
    "Battery", "CatalogEntry", "ElectricVehicle", "EmulatorServer", "EnergyCounters", "Fault", "FaultInjector",
    "FaultKind", "HeatPump", "ManualClock", "MapBinding", "PowerFlows", "PvArray", "ScaledClock", "SitePlant",
    "catalog", "resolve_map",
]

_LAZY = {
    "EmulatorServer": "drivers.emulators.modbus_server",
    "CatalogEntry": "drivers.emulators.catalog",
    "catalog": "drivers.emulators.catalog",
    "resolve_map": "drivers.emulators.catalog",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'drivers.emulators' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module_name), name)
