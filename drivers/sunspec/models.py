"""SunSpec model definitions (pysunspec2's JSON) turned into points of our map schema.

pysunspec2 ships every SunSpec model definition as JSON; we read them through
``sunspec2.device.get_model_def`` instead of retyping register tables. A model
definition becomes a :class:`ModelDefinition` of point *templates* at offsets
from the model's ``ID`` register; :func:`model_points` places them at an address
as :class:`~drivers.maps.PointSpec` named ``<prefix>_<Point>`` (``m103_W``,
``m103_W_SF``), so several models live side by side in one map.

Repeating groups: the fixed part of a model is always included, and groups with
a fixed count (model 704's ``PFWInj``) are expanded inline (``m704_PFWInj_PF``).
One top-level repeating group (count 0 or a count point, as in 160's MPPT
``module`` or the 80x cell/string models) is included as many times as the
model length ``L`` allows, capped at ``max_repetitions`` (names
``m160_module1_DCW``). Nested repeating groups whose size depends on a point
value (the curves of 705+) cannot be laid out without reading the device first,
so such a model keeps only the part before them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Literal

from drivers.maps.schema import PointSpec
from drivers.registers import RegisterType

#: SunSpec type -> our register type. Accumulators are unsigned counters that
#: wrap; ``count`` is a plain uint16 giving a repeating group's size.
_TYPES: dict[str, RegisterType] = {
    "int16": RegisterType.INT16,
    "uint16": RegisterType.UINT16,
    "count": RegisterType.UINT16,
    "acc16": RegisterType.UINT16,
    "int32": RegisterType.INT32,
    "uint32": RegisterType.UINT32,
    "acc32": RegisterType.UINT32,
    "int64": RegisterType.INT64,
    "uint64": RegisterType.UINT64,
    "acc64": RegisterType.UINT64,
    "float32": RegisterType.FLOAT32,
    "string": RegisterType.STRING,
    "enum16": RegisterType.ENUM16,
    "enum32": RegisterType.ENUM32,
    "bitfield16": RegisterType.BITFIELD16,
    "bitfield32": RegisterType.BITFIELD32,
    "sunssf": RegisterType.SUNSSF,
    # An IPv4 address is a 32-bit number on the wire; served raw.
    "ipaddr": RegisterType.UINT32,
}
#: Types that occupy registers but carry nothing a home controller uses: they
#: are skipped (the registers stay inside the model, so offsets do not move).
_SKIPPED_TYPES = {"pad": 1, "eui48": 4, "ipv6addr": 8, "float64": 4}
#: SunSpec's accumulators say "not implemented" with 0, not with all ones.
_ACCUMULATORS = {"acc16", "acc32", "acc64"}
#: Upper bound on repetitions of a repeating group, whatever L claims.
DEFAULT_MAX_REPETITIONS = 8


class UnsupportedModel(ValueError):
    """No usable SunSpec definition for this model id."""


@dataclass(frozen=True)
class PointTemplate:
    """One point of a model at ``offset`` registers from the model's ``ID`` register."""

    name: str
    offset: int
    sunspec_type: str
    type: RegisterType
    length: int | None
    #: Name (same naming as ``name``) of the scale-factor point, if any.
    scale_factor: str | None
    scale: float
    unit: str
    access: Literal["r", "rw", "w"]
    min: float | None
    max: float | None
    not_implemented: int | None
    enum: dict[str, str] | None
    bits: dict[str, str] | None
    label: str
    #: The constant value a definition fixes (``ID``).
    value: int | None

    @property
    def size(self) -> int:
        """Registers the point occupies."""
        return self.length if self.type is RegisterType.STRING else self.type.register_count  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelDefinition:
    """A SunSpec model, flattened: fixed points plus at most one repeating group."""

    model_id: int
    name: str
    label: str
    #: Points of the fixed part, headers ``ID`` and ``L`` included.
    fixed: tuple[PointTemplate, ...]
    #: Registers after ``L`` in the fixed part (the ``L`` of a model without repetitions).
    fixed_length: int
    #: One repetition of the repeating group, offsets from the group's start.
    repeating: tuple[PointTemplate, ...] = ()
    repeating_name: str = ""
    repeating_length: int = 0
    #: The count point fixing the number of repetitions, if the definition names one.
    repeating_count_point: str | None = None
    #: Parts of the definition left out (nested variable groups), for documentation.
    omitted: tuple[str, ...] = ()

    def length_for(self, repetitions: int) -> int:
        """The ``L`` of this model with ``repetitions`` of its repeating group."""
        return self.fixed_length + repetitions * self.repeating_length


@functools.lru_cache(maxsize=256)
def model_definition(model_id: int) -> ModelDefinition:
    """The flattened definition of SunSpec model ``model_id`` (cached: definitions never change)."""
    import sunspec2.device  # noqa: PLC0415 - deferred: only needed when building maps
    import sunspec2.mdef  # noqa: PLC0415

    try:
        document = sunspec2.device.get_model_def(model_id)
    except (sunspec2.mdef.ModelDefinitionError, OSError, ValueError) as error:
        raise UnsupportedModel(f"SunSpec model {model_id}: {error}") from error
    group = document["group"]
    builder = _Flattener(model_id)
    offset = builder.add_points(group, prefix="", offset=0, parents=[group])
    fixed = tuple(builder.points)
    repeating: tuple[PointTemplate, ...] = ()
    repeating_name, repeating_length, count_point = "", 0, None
    for subgroup in group.get("groups", []):
        count = subgroup.get("count")
        if count is None or (isinstance(count, int) and count >= 1):
            # Fixed count: expand inline, in definition order.
            for index in range(1, (count or 1) + 1):
                prefix = subgroup["name"] if not count or count == 1 else f"{subgroup['name']}{index}"
                offset = builder.add_points(subgroup, prefix=prefix, offset=offset, parents=[group, subgroup])
            fixed = tuple(builder.points)
            continue
        # Variable count: only a trailing, flat group can be laid out from L alone.
        if repeating or subgroup.get("groups") or subgroup is not group["groups"][-1]:
            builder.omitted.append(subgroup["name"])
            break
        inner = _Flattener(model_id)
        repeating_length = inner.add_points(subgroup, prefix="", offset=0, parents=[group, subgroup])
        repeating, repeating_name = tuple(inner.points), subgroup["name"]
        count_point = count if isinstance(count, str) else None
    return ModelDefinition(
        model_id=model_id, name=group.get("name", ""), label=group.get("label", group.get("name", "")),
        fixed=fixed, fixed_length=offset - 2, repeating=repeating, repeating_name=repeating_name,
        repeating_length=repeating_length, repeating_count_point=count_point, omitted=tuple(builder.omitted),
    )


class _Flattener:
    """Collects point templates from (nested) definition groups."""

    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        self.points: list[PointTemplate] = []
        self.omitted: list[str] = []

    def add_points(self, group: dict[str, Any], prefix: str, offset: int, parents: list[dict[str, Any]]) -> int:
        for definition in group.get("points", []):
            sunspec_type = definition["type"]
            size = int(definition.get("size", 1))
            if sunspec_type in _SKIPPED_TYPES or sunspec_type not in _TYPES:
                offset += size
                continue
            self.points.append(_template(definition, prefix, offset, parents))
            offset += size
        return offset


def _template(definition: dict[str, Any], prefix: str, offset: int, parents: list[dict[str, Any]]) -> PointTemplate:
    sunspec_type = definition["type"]
    register_type = _TYPES[sunspec_type]
    name = f"{prefix}_{definition['name']}" if prefix else definition["name"]
    scale, scale_factor = 1.0, None
    sf = definition.get("sf")
    if isinstance(sf, int) or (isinstance(sf, str) and sf.lstrip("-").isdigit()):
        scale = 10.0 ** int(sf)
    elif isinstance(sf, str):
        scale_factor = _resolve_scale_factor(sf, prefix, parents)
    symbols = {str(symbol["value"]): symbol["name"] for symbol in definition.get("symbols", [])} or None
    is_bits = register_type in (RegisterType.BITFIELD16, RegisterType.BITFIELD32)
    access = {"RW": "rw", "W": "w"}.get(str(definition.get("access", "R")).upper(), "r")
    low, high = (None, None) if access == "r" else _write_range(definition, register_type)
    return PointTemplate(
        name=name, offset=offset, sunspec_type=sunspec_type, type=register_type,
        length=int(definition["size"]) if register_type is RegisterType.STRING else None,
        scale_factor=scale_factor, scale=scale, unit=str(definition.get("units", "")).strip(),
        access=access,  # type: ignore[arg-type]
        min=low, max=high,
        not_implemented=0 if sunspec_type in _ACCUMULATORS else None,
        enum=None if is_bits else symbols, bits=symbols if is_bits else None,
        label=str(definition.get("label", definition["name"])), value=definition.get("value"),
    )


def _resolve_scale_factor(sf: str, prefix: str, parents: list[dict[str, Any]]) -> str:
    # SunSpec looks a scale factor up in the point's own group first, then in the
    # enclosing groups (704's PFWInj.PF uses the model-level PF_SF).
    if len(parents) > 1 and any(point["name"] == sf for point in parents[-1].get("points", [])):
        return f"{prefix}_{sf}" if prefix else sf
    return sf


def _write_range(definition: dict[str, Any], register_type: RegisterType) -> tuple[float, float]:
    # Our schema wants a write range for every writable point. SunSpec gives none,
    # so it is derived: enum symbols, percentages, power factors, else the raw
    # type range minus the "not implemented" pattern (exact at scale factor 0;
    # the control layer's safety envelope sets the real limits).
    if "min" in definition and "max" in definition:
        return float(definition["min"]), float(definition["max"])
    symbols = [int(symbol["value"]) for symbol in definition.get("symbols", [])]
    if symbols and register_type in (RegisterType.ENUM16, RegisterType.ENUM32):
        return float(min(symbols)), float(max(symbols))
    units = str(definition.get("units", "")).strip()
    signed = register_type.is_signed
    if units == "Pct" or units.startswith("%"):
        return (-100.0 if signed else 0.0), 100.0
    if units == "cos()":
        return -1.0, 1.0
    if register_type is RegisterType.FLOAT32:
        return -3.4e38, 3.4e38
    bits = 16 * register_type.register_count
    if signed:
        return float(-(2 ** (bits - 1)) + 1), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 2)


def model_points(model_id: int, address: int, length: int | None = None, prefix: str | None = None,
                 max_repetitions: int = DEFAULT_MAX_REPETITIONS) -> list[PointSpec]:
    """Points of model ``model_id`` whose ``ID`` register is at ``address``.

    ``length`` is the model's ``L`` as the device reports it (None: the
    definition's fixed length, no repetitions). Points that do not fit in ``L``
    are dropped, as are points whose scale factor was dropped, so a device
    implementing an older, shorter revision still decodes. ``ID`` and ``L``
    get ``initial`` values, so emulators serve correct headers.
    """
    definition = model_definition(model_id)
    prefix = prefix or f"m{model_id}"
    model_length = definition.fixed_length if length is None else length
    repetitions = 0
    if definition.repeating_length and model_length > definition.fixed_length:
        repetitions = min(max_repetitions, (model_length - definition.fixed_length) // definition.repeating_length)
    templates = list(definition.fixed)
    group_start = 2 + definition.fixed_length
    for index in range(1, repetitions + 1):
        group_prefix = f"{definition.repeating_name}{index}"
        for template in definition.repeating:
            scale_factor = template.scale_factor
            if scale_factor is not None and any(t.name == scale_factor for t in definition.repeating):
                scale_factor = f"{group_prefix}_{scale_factor}"
            templates.append(replace(template, name=f"{group_prefix}_{template.name}", scale_factor=scale_factor,
                                     offset=group_start + template.offset))
        group_start += definition.repeating_length
    fitting = [template for template in templates if template.offset + template.size <= 2 + model_length]
    kept = {template.name for template in fitting}
    points = []
    for template in fitting:
        if template.scale_factor is not None and template.scale_factor not in kept:
            continue
        initial: int | None = None
        if template.name == "ID":
            initial = model_id
        elif template.name == "L":
            initial = model_length
        elif template.sunspec_type == "count" or definition.repeating_count_point == template.name:
            initial = repetitions
        points.append(PointSpec(
            name=f"{prefix}_{template.name}", address=address + template.offset, type=template.type,
            length=template.length, scale=template.scale,
            scale_factor_point=f"{prefix}_{template.scale_factor}" if template.scale_factor else None,
            unit=template.unit, access=template.access, min=template.min, max=template.max,
            not_implemented=template.not_implemented, enum=template.enum, bits=template.bits,
            description=f"SunSpec {model_id} {template.label}", initial=initial,
        ))
    return points
