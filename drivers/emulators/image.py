"""Register images for the emulators: a map's points laid out per unit id and table.

The emulator keeps its own copy of every register (:class:`SiteRegisters`), because
pymodbus hands a request hook only the block of the table being accessed, while
decoding a control point may need a scale factor or a point from elsewhere.
"""

from __future__ import annotations

import bisect

import math
from dataclasses import dataclass, field

from drivers.maps import PointSpec, RegisterImage, RegisterMap, Table
from drivers.registers import RegisterType, encode_raw

#: Where a register lives on the emulator: (unit id, table).
Space = tuple[int, Table]

_RAW_TYPES = (RegisterType.ENUM16, RegisterType.ENUM32, RegisterType.BITFIELD16, RegisterType.BITFIELD32,
              RegisterType.SUNSSF)


@dataclass(frozen=True, slots=True)
class MapBinding:
    """A map served at a unit id (points with their own ``device_id`` live there instead)."""

    register_map: RegisterMap
    unit_id: int

    def unit_of(self, point: PointSpec) -> int:
        """The unit id a point is served at."""
        return self.unit_id if point.device_id is None else point.device_id


@dataclass
class SiteRegisters:
    """Every register of one emulator server, with live decoding views per binding."""

    spaces: dict[Space, dict[int, int]] = field(default_factory=dict)
    #: Address -> point (and its binding), per space; points never overlap within a space.
    points: dict[Space, list[tuple[MapBinding, PointSpec]]] = field(default_factory=dict)
    #: Registers inside small gaps that answer although no point lives there (always read-only).
    fillers: dict[Space, set[int]] = field(default_factory=dict)
    #: Per space: the points sorted by address and their end addresses, for bisection (every
    #: request looks up the points it touches; a linear scan dominated the emulators' CPU time).
    _sorted: dict[Space, tuple[list[int], list[tuple[MapBinding, PointSpec]]]] = field(default_factory=dict)
    _views: dict[int, RegisterImage] = field(default_factory=dict)

    def view(self, binding: MapBinding) -> RegisterImage:
        """A :class:`RegisterImage` of ``binding``'s registers, sharing this object's storage."""
        cached = self._views.get(id(binding))
        if cached is not None:
            return cached
        image = RegisterImage()
        for point in binding.register_map.spec.point:
            key = (point.device_id, point.table)
            if key not in image.registers:
                image.registers[key] = self.spaces.setdefault((binding.unit_of(point), point.table), {})
        self._views[id(binding)] = image
        return image

    def add_binding(self, binding: MapBinding) -> None:
        """Lay out ``binding``'s points with their initial registers."""
        rmap = binding.register_map
        for point in rmap.spec.point:
            space = (binding.unit_of(point), point.table)
            table = self.spaces.setdefault(space, {})
            for address in range(point.address, point.end_address):
                if address in table:
                    raise ValueError(f"{rmap.id}.{point.name}: unit {space[0]} {point.table.value} register "
                                     f"{address} is already served by another point")
            self.points.setdefault(space, []).append((binding, point))
            self._sorted.pop(space, None)
        image = self.view(binding)
        # Scale factors first: other points' initial values are encoded with them.
        ordered = sorted(rmap.spec.point, key=lambda p: p.type is not RegisterType.SUNSSF)
        for point in ordered:
            registers = initial_registers(rmap, point, image)
            image.store((point.device_id, point.table), point.address, registers)
        self._fill_gaps(binding)

    def _fill_gaps(self, binding: MapBinding) -> None:
        device = binding.register_map.spec.device
        allowed_gap = device.max_gap_registers
        if allowed_gap <= 0:
            return  # such devices answer ILLEGAL_ADDRESS inside gaps, and so does the emulator
        filler = 0xFFFF if device.sunspec_sentinels else 0
        own_spaces = {(binding.unit_of(point), point.table) for point in binding.register_map.spec.point}
        for space in own_spaces:
            table = self.spaces[space]
            addresses = sorted(table)
            for before, after in zip(addresses, addresses[1:]):
                if 1 < after - before <= allowed_gap + 1:
                    for address in range(before + 1, after):
                        table[address] = filler
                        self.fillers.setdefault(space, set()).add(address)

    def overlapping(self, space: Space, address: int, count: int) -> list[tuple[MapBinding, PointSpec]]:
        """Points of ``space`` that share a register with ``[address, address + count)``."""
        end = address + count
        index = self._sorted.get(space)
        if index is None:
            ordered = sorted(self.points.get(space, []), key=lambda entry: entry[1].address)
            index = self._sorted[space] = ([point.end_address for _, point in ordered], ordered)
        ends, ordered = index
        found = []
        # Points never overlap, so their end addresses are sorted like their start addresses.
        for position in range(bisect.bisect_right(ends, address), len(ordered)):
            binding, point = ordered[position]
            if point.address >= end:
                break
            found.append((binding, point))
        return found


def initial_registers(rmap: RegisterMap, point: PointSpec, image: RegisterImage) -> list[int]:
    """The registers a point holds before the plant sets it.

    Its ``initial`` value encoded with the map's codec; without one, the map's
    "not implemented" sentinel (SunSpec devices) or zeros.
    """
    if point.initial is not None:
        registers = encode_value(rmap, point, point.initial, image, avoid_sentinels=False, clip=False)
        if registers is not None:
            return registers
    sentinel = rmap.spec.sentinel_for(point)
    if sentinel is not None and point.type is not RegisterType.STRING:
        return bits_to_registers(sentinel, point.register_count, rmap.word_order(point))
    return [0] * point.register_count


def bits_to_registers(bits: int, count: int, word_order: str) -> list[int]:
    """An unsigned bit pattern as ``count`` registers in ``word_order``."""
    registers = [(bits >> (16 * (count - 1 - index))) & 0xFFFF for index in range(count)]
    return registers if word_order == "big" else registers[::-1]


def raw_limits(register_type: RegisterType, avoid_sentinels: bool = True) -> tuple[float, float]:
    """The raw range a value is clipped to; served measurements stop one short of SunSpec's sentinels."""
    if register_type is RegisterType.FLOAT32:
        return (-3.0e38, 3.0e38)
    bits = 16 * register_type.register_count
    margin = 1 if avoid_sentinels else 0
    if register_type.is_signed:
        return (-(2 ** (bits - 1)) + margin, 2 ** (bits - 1) - 1)
    return (0, 2**bits - 1 - margin)


def encode_value(rmap: RegisterMap, point: PointSpec, value: float | int | str,
                 image: RegisterImage, avoid_sentinels: bool = True, clip: bool = True) -> list[int] | None:
    """Encode an engineering value for serving, without the map's write-range check.

    Clips to what the register type can hold (a measured value never wraps round);
    with ``clip=False`` a value that does not fit raises ValueError instead (a map's
    ``initial`` that cannot be served is a mistake in the map, not a measurement).
    None when a scale factor is missing or the value is not a finite number.
    """
    if point.type is RegisterType.STRING:
        return encode_raw(str(value), point.type, register_count=point.register_count)
    if isinstance(value, str):
        return None
    if not math.isfinite(float(value)):
        return None
    if point.type in _RAW_TYPES:
        raw: float = round(float(value))
    else:
        scale = rmap.scale_of(point, image)
        if scale is None:
            return None
        raw = float(value) * point.sign / scale
        if point.type is not RegisterType.FLOAT32:
            raw = round(raw)
    low, high = raw_limits(point.type, avoid_sentinels)
    if not clip and not low <= raw <= high:
        raise ValueError(f"{rmap.id}.{point.name}: {value} does not fit in {point.type.value} at this scale")
    raw = min(max(raw, low), high)
    return encode_raw(raw, point.type, rmap.word_order(point))


def implausible_value(rmap: RegisterMap, point: PointSpec, image: RegisterImage) -> list[int] | None:
    """Registers decoding to a value outside the point's min/max (or the type's extreme if it has none)."""
    low, high = point.min, point.max
    if low is None and high is None:
        scale = rmap.scale_of(point, image) or 1.0
        return encode_value(rmap, point, raw_limits(point.type)[1] * scale * point.sign, image)
    span = max(abs((high if high is not None else 0.0) - (low if low is not None else 0.0)), 1.0)
    candidates = []
    if high is not None:
        candidates.append(high + 10 * span)
    if low is not None:
        candidates.append(low - 10 * span)
    for candidate in candidates:
        registers = encode_value(rmap, point, candidate, image)
        if registers is None:
            continue
        probe = RegisterImage({key: dict(table) for key, table in image.registers.items()})
        probe.store((point.device_id, point.table), point.address, registers)
        reading = rmap.decode(point, probe, 0.0)
        if reading is not None and isinstance(reading.value, float) and (
            (high is not None and reading.value > high) or (low is not None and reading.value < low)
        ):
            return registers
    return None
