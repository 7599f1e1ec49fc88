"""Build one RegisterMap from SunSpec models placed at addresses.

Discovery (models found on a device) and the emulator images (models laid out
consecutively) both come through :func:`build_map`, so what an emulator serves
is exactly what the daemon decodes.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drivers.maps import PointSpec, RegisterMap, Role
from drivers.maps.schema import (
    ControlSpec,
    DeviceSpec,
    IdentifySpec,
    RegisterMapSpec,
    SunSpecStorageControl,
)
from drivers.registers import RegisterType
from drivers.sunspec.models import UnsupportedModel, model_definition, model_points

ROLES_PATH = Path(__file__).with_name("roles.toml")

#: Models this package decodes (issue 2). Others are listed by discovery but skipped.
SUPPORTED_MODELS = frozenset({
    1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 124, 160, 201, 202, 203, 204, 701, 702, 703, 704, 802,
})
#: "SunS", the marker at the base address.
SUNS_MARKER = (0x5375, 0x6E53)
END_MODEL_ID = 0xFFFF

DeviceKind = Literal["grid_meter", "pv_inverter", "battery", "ev_charger", "heat_pump"]
_KIND_OF_MODEL: dict[int, DeviceKind] = {
    **{model: "pv_inverter" for model in (101, 102, 103, 111, 112, 113, 160, 701, 702, 703, 704)},
    **{model: "grid_meter" for model in (201, 202, 203, 204)},
    124: "battery",
    802: "battery",
}
_PYSUNSPEC2_SOURCE = "SunSpec Information Model, definitions from pysunspec2 1.3.7 (sunspec2/models/json)"


@dataclass(frozen=True)
class ModelPlacement:
    """A model whose ``ID`` register is at ``address`` and whose ``L`` is ``length``."""

    model_id: int
    address: int
    length: int

    @property
    def end_address(self) -> int:
        """The first address after the model (the next model's ``ID``)."""
        return self.address + 2 + self.length


@dataclass(frozen=True)
class RoleBinding:
    """One entry of roles.toml."""

    role: Role
    models: tuple[int, ...]
    point: str
    sign: Literal[1, -1] = 1
    #: The binding applies only if one of these models is present too (empty: always).
    requires_any: tuple[int, ...] = ()


@functools.lru_cache(maxsize=4)
def load_role_bindings(path: Path = ROLES_PATH) -> tuple[RoleBinding, ...]:
    """The role bindings in file order (earlier entries win)."""
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    bindings = []
    for index, entry in enumerate(document.get("binding", [])):
        unknown = set(entry) - {"role", "models", "point", "sign", "requires_any"}
        if unknown:
            raise ValueError(f"{path.name}: binding {index}: unknown keys {sorted(unknown)}")
        sign = int(entry.get("sign", 1))
        if sign not in (1, -1):
            raise ValueError(f"{path.name}: binding {index}: sign must be 1 or -1")
        bindings.append(RoleBinding(Role(entry["role"]), tuple(int(m) for m in entry["models"]), str(entry["point"]),
                                    sign,  # type: ignore[arg-type]
                                    tuple(int(m) for m in entry.get("requires_any", ()))))
    return tuple(bindings)


def model_prefixes(placements: Sequence[ModelPlacement]) -> list[str]:
    """Point-name prefixes: ``m103`` for the first 103, ``m103_2`` for a second one."""
    seen: dict[int, int] = {}
    prefixes = []
    for placement in placements:
        seen[placement.model_id] = seen.get(placement.model_id, 0) + 1
        count = seen[placement.model_id]
        prefixes.append(f"m{placement.model_id}" if count == 1 else f"m{placement.model_id}_{count}")
    return prefixes


def slug(text: str) -> str:
    """Lower-case ``[a-z0-9_]`` form of a name, for map ids."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def build_map(placements: Sequence[ModelPlacement], base_address: int, *, device_id: str = "sunspec_device",
              manufacturer: str = "SunSpec", model_names: Iterable[str] = (), source: str = _PYSUNSPEC2_SOURCE,
              end_marker: bool = True, initial: Mapping[str, float | int | str] | None = None,
              default_unit_id: int = 1, bindings: Sequence[RoleBinding] | None = None) -> RegisterMap:
    """A map with the ``SunS`` marker, the supported models' points and the end marker.

    Unsupported model ids in ``placements`` are skipped (their registers stay a
    gap). ``end_marker`` adds ``end_ID``/``end_L`` after the last model (False for
    a chain that ended without one). ``initial`` overrides points' initial values
    by point name. Roles come from roles.toml (see its header for precedence).
    """
    points: list[PointSpec] = [PointSpec(name="SunS", address=base_address, type=RegisterType.STRING, length=2,
                                         initial="SunS", description="SunSpec marker")]
    present: list[ModelPlacement] = []
    prefix_of: dict[int, str] = {}
    for placement, prefix in zip(placements, model_prefixes(placements)):
        if placement.model_id not in SUPPORTED_MODELS:
            continue
        try:
            points.extend(model_points(placement.model_id, placement.address, placement.length, prefix=prefix))
        except UnsupportedModel:
            continue
        present.append(placement)
        prefix_of.setdefault(placement.model_id, prefix)
    if end_marker:
        end = placements[-1].end_address if placements else base_address + 2
        points.append(PointSpec(name="end_ID", address=end, type=RegisterType.UINT16, initial=END_MODEL_ID,
                                not_implemented=0, description="SunSpec end model id"))
        points.append(PointSpec(name="end_L", address=end + 1, type=RegisterType.UINT16, initial=0,
                                description="SunSpec end model length"))
    points = _assign_roles(points, prefix_of, load_role_bindings() if bindings is None else bindings)
    if initial:
        by_name = {point.name: point for point in points}
        unknown = sorted(set(initial) - set(by_name))
        if unknown:
            raise ValueError(f"initial values for points the map does not have: {', '.join(unknown)}")
        points = [point.model_copy(update={"initial": initial[point.name]}) if point.name in initial else point
                  for point in points]
    model_ids = [placement.model_id for placement in present]
    kinds: list[DeviceKind] = []
    for model_id in model_ids:
        kind = _KIND_OF_MODEL.get(model_id)
        if kind is not None and kind not in kinds:
            kinds.append(kind)
    spec = RegisterMapSpec(
        device=DeviceSpec(
            id=device_id, manufacturer=manufacturer or "SunSpec",
            models=list(model_names) or ["SunSpec models " + ", ".join(str(m) for m in model_ids)],
            kinds=kinds, source=f"{source}, base address {base_address}", default_unit_id=default_unit_id,
            # SunSpec devices serve their model region contiguously, so reads may
            # span skipped pads and unused points.
            max_block_registers=120, max_gap_registers=20, sunspec_sentinels=True,
        ),
        identify=IdentifySpec(point="SunS", equals="SunS"),
        control=ControlSpec(battery=_storage_control(points) if 124 in model_ids else None),
        point=points,
    )
    return RegisterMap(spec, origin=f"sunspec:{device_id}@{base_address}")


def _storage_control(points: Sequence[PointSpec]) -> SunSpecStorageControl | None:
    # The control's default point names are those model_points gives the first
    # 124; a device whose 124 is too short to hold them stays read-only.
    control = SunSpecStorageControl(strategy="sunspec_storage")
    names = {point.name for point in points}
    needed = [value for field_name, value in control if field_name.endswith("_point") and value is not None]
    return control if all(name in names for name in needed) else None


def _assign_roles(points: list[PointSpec], prefix_of: Mapping[int, str],
                  bindings: Sequence[RoleBinding]) -> list[PointSpec]:
    by_name = {point.name: point for point in points}
    taken: set[Role] = set()
    for binding in bindings:
        if binding.role in taken:
            continue  # an earlier binding already gave this role (precedence)
        if binding.requires_any and not any(model_id in prefix_of for model_id in binding.requires_any):
            continue
        for model_id in binding.models:
            prefix = prefix_of.get(model_id)
            point = by_name.get(f"{prefix}_{binding.point}") if prefix else None
            if point is None or point.role is not None:
                continue
            unit = binding.role.unit or point.unit
            by_name[point.name] = point.model_copy(update={"role": binding.role, "sign": binding.sign, "unit": unit})
            taken.add(binding.role)
            break
    return [by_name[point.name] for point in points]


def model_label(model_id: int) -> str:
    """The definition's label ("Inverter (Three Phase)"), or "unknown model"."""
    try:
        return model_definition(model_id).label
    except UnsupportedModel:
        return "unknown model"
