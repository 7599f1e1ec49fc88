"""What can be emulated: every bundled vendor map and the builtin SunSpec devices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drivers.maps import MapError, RegisterMap, available_maps, load_map


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One emulatable device."""

    name: str
    manufacturer: str
    kinds: tuple[str, ...]
    #: "map" for a bundled TOML map, "sunspec" for a builtin SunSpec device.
    origin: str


def sunspec_builtins() -> dict[str, RegisterMap]:
    """The SunSpec devices ``drivers.sunspec`` builds (empty if that package is unavailable)."""
    try:
        from drivers.sunspec import builtin_maps  # noqa: PLC0415 - optional, and heavy-ish
    except ImportError:
        return {}
    return builtin_maps()


def catalog() -> list[CatalogEntry]:
    """Every bundled map and builtin SunSpec device, by name."""
    entries = []
    for name in available_maps():
        try:
            spec = load_map(name).spec.device
        except MapError as error:  # listed, so the installer sees why it cannot be used
            entries.append(CatalogEntry(name, f"(invalid map: {error})", (), "map"))
            continue
        entries.append(CatalogEntry(name, spec.manufacturer, tuple(spec.kinds), "map"))
    for name, register_map in sorted(sunspec_builtins().items()):
        device = register_map.spec.device
        entries.append(CatalogEntry(name, device.manufacturer, tuple(device.kinds), "sunspec"))
    return entries


def resolve_map(name: str) -> RegisterMap:
    """A builtin SunSpec device by name, else a bundled map by name or a map file by path."""
    if not name.endswith(".toml") and "/" not in name:
        builtins = sunspec_builtins()
        if name in builtins:
            return builtins[name]
    return load_map(Path(name) if name.endswith(".toml") else name)
