"""SunSpec: model definitions (from pysunspec2), discovery, and emulator images.

``discover`` walks a device's model chain over the shared async connection and
returns a :class:`SunSpecDevice` whose ``register_map`` is an ordinary
:class:`~drivers.maps.RegisterMap`, so SunSpec devices are polled and written
like any vendor map. ``builtin_maps`` gives ready-made SunSpec devices for the
emulators.
"""

from __future__ import annotations

from drivers.maps import RegisterMap
from drivers.sunspec.builder import SUPPORTED_MODELS, ModelPlacement, build_map
from drivers.sunspec.discovery import DEFAULT_BASES, DiscoveredModel, ModelChain, SunSpecDevice, discover
from drivers.sunspec.models import UnsupportedModel, model_definition, model_points
from drivers.sunspec.site_image import (
    hybrid_site_map,
    inverter_site_map,
    meter_site_map,
    site_map,
)

__all__ = [
    "DEFAULT_BASES", "SUPPORTED_MODELS", "DiscoveredModel", "ModelChain", "ModelPlacement", "SunSpecDevice",
    "UnsupportedModel", "build_map", "builtin_maps", "discover", "hybrid_site_map", "inverter_site_map",
    "meter_site_map", "model_definition", "model_points", "site_map",
]


def builtin_maps() -> dict[str, RegisterMap]:
    """Emulatable SunSpec devices by name, all at base address 40000 (built fresh on each call)."""
    return {
        "sunspec_hybrid": hybrid_site_map(with_battery_model=True),
        "sunspec_inverter": inverter_site_map(),
        "sunspec_meter": meter_site_map(),
    }
