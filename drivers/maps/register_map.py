"""A loaded register map: decode register images into readings, encode writes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from drivers.maps.roles import Role
from drivers.maps.schema import PointSpec, RegisterMapSpec, Table
from drivers.readings import Quality, Reading
from drivers.registers import RegisterType, decode_raw, encode_raw, raw_bits

#: Where a register lives: (unit id override or None for the device's own, table).
RegisterSpace = tuple[int | None, Table]


class PointWriteError(ValueError):
    """A write was refused before anything was sent (unknown, read-only, out of range)."""


@dataclass
class RegisterImage:
    """Register values read from a device, by space and address."""

    registers: dict[RegisterSpace, dict[int, int]] = field(default_factory=dict)

    def store(self, space: RegisterSpace, start_address: int, values: Iterable[int]) -> None:
        """Record a block of registers read from ``space`` starting at ``start_address``."""
        table = self.registers.setdefault(space, {})
        for offset, value in enumerate(values):
            table[start_address + offset] = value

    def get(self, point: PointSpec) -> list[int] | None:
        """The point's registers, or None if any of them was not read."""
        table = self.registers.get((point.device_id, point.table))
        if table is None:
            return None
        try:
            return [table[address] for address in range(point.address, point.end_address)]
        except KeyError:
            return None


class RegisterMap:
    """A validated map with lookups by name and role."""

    def __init__(self, spec: RegisterMapSpec, origin: str = "") -> None:
        self.spec = spec
        #: The file the map was loaded from (for messages).
        self.origin = origin
        self.points: dict[str, PointSpec] = {point.name: point for point in spec.point}
        self._by_role: dict[Role, PointSpec] = {}
        for point in spec.point:
            if point.role is not None:
                if point.role in self._by_role:
                    raise ValueError(f"{spec.device.id}: role {point.role.value} is given to "
                                     f"{self._by_role[point.role].name} and {point.name}")
                self._by_role[point.role] = point

    @property
    def id(self) -> str:
        """The map's identifier (its file stem)."""
        return self.spec.device.id

    def point_for(self, role: Role) -> PointSpec | None:
        """The point carrying ``role``, if the device has it."""
        return self._by_role.get(role)

    @property
    def roles(self) -> dict[Role, PointSpec]:
        """Every role this map provides."""
        return dict(self._by_role)

    def word_order(self, point: PointSpec) -> str:
        """The point's word order, falling back to the device default."""
        return point.word_order or self.spec.device.word_order

    def scale_of(self, point: PointSpec, image: RegisterImage) -> float | None:
        """The full multiplier raw -> engineering value, or None if a scale factor is missing."""
        scale = point.scale
        if point.scale_factor_point is not None:
            factor_point = self.points[point.scale_factor_point]
            factor_registers = image.get(factor_point)
            if factor_registers is None:
                return None
            exponent = decode_raw(factor_registers, RegisterType.SUNSSF)
            if raw_bits(exponent, RegisterType.SUNSSF) == 0x8000 or not -10 <= int(exponent) <= 10:
                return None
            scale *= 10.0 ** int(exponent)
        return scale

    def decode(self, point: PointSpec, image: RegisterImage, timestamp_s: float) -> Reading | None:
        """Decode one point from ``image``; None if its registers were not read."""
        registers = image.get(point)
        if registers is None:
            return None
        raw = decode_raw(registers, point.type, self.word_order(point))
        unit = point.unit or (point.role.unit if point.role else "")
        sentinel = self.spec.sentinel_for(point)
        if sentinel is not None and raw_bits(raw, point.type) == sentinel:
            return Reading(point.name, None, unit, timestamp_s, Quality.NOT_IMPLEMENTED)
        if point.type is RegisterType.STRING:
            return Reading(point.name, raw, unit, timestamp_s)
        if point.type in (RegisterType.ENUM16, RegisterType.ENUM32, RegisterType.BITFIELD16,
                          RegisterType.BITFIELD32, RegisterType.SUNSSF):
            return Reading(point.name, int(raw), unit, timestamp_s)
        scale = self.scale_of(point, image)
        if scale is None:
            return Reading(point.name, None, unit, timestamp_s, Quality.NOT_IMPLEMENTED)
        value = float(raw) * scale * point.sign
        quality = Quality.GOOD
        if not math.isfinite(value) or (point.min is not None and value < point.min) or (
            point.max is not None and value > point.max
        ):
            quality = Quality.IMPLAUSIBLE
        return Reading(point.name, value, unit, timestamp_s, quality)

    def decode_all(self, image: RegisterImage, timestamp_s: float) -> dict[str, Reading]:
        """Decode every point whose registers are in ``image``."""
        readings = {}
        for point in self.spec.point:
            reading = self.decode(point, image, timestamp_s)
            if reading is not None:
                readings[point.name] = reading
        return readings

    def encode(self, point: PointSpec, value: float | int | str, scale: float) -> list[int]:
        """Check ``value`` against the point's write range and encode it.

        ``scale`` is the full multiplier (see :meth:`scale_of`); the caller reads
        scale-factor registers first.
        """
        if not point.writable:
            raise PointWriteError(f"{self.id}.{point.name} is read-only")
        if point.type is RegisterType.STRING:
            return encode_raw(str(value), point.type, register_count=point.register_count)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PointWriteError(f"{self.id}.{point.name}: {value!r} is not a finite number")
        low, high = point.min, point.max
        if (low is not None and value < low) or (high is not None and value > high):
            raise PointWriteError(f"{self.id}.{point.name}: {value} {point.unit} is outside the allowed "
                                  f"range [{low}, {high}]")
        raw = value * point.sign / scale
        if point.type is not RegisterType.FLOAT32:
            raw = round(raw)
        return encode_raw(raw, point.type, self.word_order(point))

    def spaces(self) -> Mapping[RegisterSpace, list[PointSpec]]:
        """Points grouped by register space, sorted by address."""
        grouped: dict[RegisterSpace, list[PointSpec]] = {}
        for point in sorted(self.spec.point, key=lambda p: p.address):
            grouped.setdefault((point.device_id, point.table), []).append(point)
        return grouped
