"""Declarative register maps: one TOML file per device family, each citing its source.

``load_map("eastron_sdm630")`` loads a bundled map by name; ``load_map(path)`` loads
any file, so an installer can add a device without touching Python.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from pydantic import ValidationError

from drivers.maps.register_map import PointWriteError, RegisterImage, RegisterMap
from drivers.maps.roles import Role
from drivers.maps.schema import PointSpec, RegisterMapSpec, Table

MAPS_DIRECTORY = Path(__file__).parent

__all__ = [
    "MAPS_DIRECTORY", "MapError", "PointSpec", "PointWriteError", "RegisterImage", "RegisterMap", "Role",
    "Table", "available_maps", "load_map",
]


class MapError(ValueError):
    """A map file that cannot be used; the message names the file and the key."""


def available_maps() -> list[str]:
    """Names of the bundled maps."""
    return sorted(path.stem for path in MAPS_DIRECTORY.glob("*.toml"))


def load_map(name_or_path: str | Path) -> RegisterMap:
    """Load and validate a map by bundled name or by file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = MAPS_DIRECTORY / f"{name_or_path}.toml"
    return _load_path(path.resolve())


@functools.lru_cache(maxsize=64)
def _load_path(path: Path) -> RegisterMap:
    # Maps are immutable once loaded, so caching per path is safe and saves the
    # TOML parse for every device of the same family.
    if not path.is_file():
        raise MapError(f"no register map {path.stem!r} (known: {', '.join(available_maps())})")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise MapError(f"{path.name}: not valid TOML: {error}") from error
    try:
        spec = RegisterMapSpec.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        raise MapError(f"{path.name}: {problems}") from error
    if spec.device.id != path.stem:
        raise MapError(f"{path.name}: device.id {spec.device.id!r} must equal the file name {path.stem!r}")
    try:
        return RegisterMap(spec, origin=str(path))
    except ValueError as error:
        raise MapError(f"{path.name}: {error}") from error


def _describe(problem: dict) -> str:
    location = ".".join(str(part) for part in problem["loc"])
    return f"{location}: {problem['msg']}" if location else problem["msg"]
