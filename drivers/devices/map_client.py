"""Read and write a device through its register map over a shared connection."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from drivers.maps import PointSpec, PointWriteError, RegisterImage, RegisterMap, Role
from drivers.readings import Quality, Reading
from drivers.transport import DeviceError, DeviceHealth, ModbusConnection, plan_blocks
from drivers.transport.blocks import ReadBlock


class ReadBackMismatch(DeviceError):
    """A written value did not read back as written."""

    kind = "read_back_mismatch"


class MapClient:
    """One device (a map at a unit id behind a connection).

    ``poll`` reads the chosen points in as few requests as the map allows and
    decodes them; the request plan is computed once. ``write`` checks the value
    against the map's allowed range before anything is sent and reads it back.
    """

    def __init__(self, connection: ModbusConnection, register_map: RegisterMap, unit_id: int | None = None,
                 name: str | None = None, points: Iterable[str] | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 device_id_overrides: Mapping[int, int] | None = None) -> None:
        self.connection = connection
        self.map = register_map
        self.unit_id = register_map.spec.device.default_unit_id if unit_id is None else unit_id
        #: Per-installation unit ids for points the map places behind another id
        #: (Victron's VE.Bus id depends on the port the inverter is wired to).
        self.device_id_overrides = dict(device_id_overrides or {})
        self.name = name or f"{register_map.id}@{connection.endpoint}/{self.unit_id}"
        self.health = DeviceHealth(self.name)
        self._wall_clock = wall_clock
        connection.require_interframe_delay(register_map.spec.device.interframe_delay_ms / 1000)
        selected = list(register_map.points.values()) if points is None else self._with_scale_factors(points)
        self._points = selected
        device = register_map.spec.device
        self._blocks = plan_blocks(selected, device.max_block_registers, device.max_gap_registers)
        self._last_image = RegisterImage()
        self.last_readings: dict[str, Reading] = {}

    def _with_scale_factors(self, names: Iterable[str]) -> list[PointSpec]:
        chosen: dict[str, PointSpec] = {}
        for name in names:
            point = self.map.points[name]
            chosen[name] = point
            if point.scale_factor_point is not None:
                chosen[point.scale_factor_point] = self.map.points[point.scale_factor_point]
        return list(chosen.values())

    @property
    def blocks(self) -> list[ReadBlock]:
        """The read requests one poll makes."""
        return list(self._blocks)

    def _device_id(self, point_device_id: int | None) -> int:
        if point_device_id is None:
            return self.unit_id
        return self.device_id_overrides.get(point_device_id, point_device_id)

    async def poll(self) -> dict[str, Reading]:
        """Read every selected point. On failure, return the last values marked STALE.

        Never raises for device faults: they are counted in :attr:`health`.
        """
        image = RegisterImage()
        try:
            for block in self._blocks:
                registers = await self.connection.read(block.table, block.address, block.count,
                                                       self._device_id(block.device_id))
                image.store((block.device_id, block.table), block.address, registers)
        except DeviceError as error:
            self.health.record_failure(error.kind, str(error))
            self.last_readings = {name: _stale(reading) for name, reading in self.last_readings.items()}
            return dict(self.last_readings)
        now = self._wall_clock()
        self.health.record_success(now)
        self._last_image = image
        self.last_readings = self.map.decode_all(image, now)
        return dict(self.last_readings)

    def reading(self, role: Role) -> Reading | None:
        """The last reading of the point that carries ``role``."""
        point = self.map.point_for(role)
        return None if point is None else self.last_readings.get(point.name)

    async def read_point(self, name: str) -> Reading:
        """Read one point now (with its scale factor); raises :class:`DeviceError`."""
        point = self.map.points[name]
        image = RegisterImage()
        for needed in self._with_scale_factors([name]):
            registers = await self.connection.read(needed.table, needed.address, needed.register_count,
                                                   self._device_id(needed.device_id))
            image.store((needed.device_id, needed.table), needed.address, registers)
        reading = self.map.decode(point, image, self._wall_clock())
        assert reading is not None  # every register was just read
        return reading

    async def write(self, name: str, value: float | int | str, read_back: bool = True) -> None:
        """Range-check, encode and write one point, then read it back.

        Raises :class:`PointWriteError` before sending for an unknown, read-only or
        out-of-range value, :class:`DeviceError` when the device refuses or does
        not answer, :class:`ReadBackMismatch` when the read-back differs.
        """
        point = self.map.points.get(name)
        if point is None:
            raise PointWriteError(f"{self.map.id} has no point {name!r}")
        scale = point.scale
        if point.scale_factor_point is not None:
            factor = await self.read_point(point.scale_factor_point)
            if not factor.usable:
                raise PointWriteError(f"{self.map.id}.{name}: scale factor {point.scale_factor_point} unavailable")
            scale *= 10.0 ** int(factor.value)  # type: ignore[arg-type]
        registers = self.map.encode(point, value, scale)
        try:
            await self.connection.write(point.address, registers, self._device_id(point.device_id))
        except DeviceError as error:
            self.health.record_failure(error.kind, str(error))
            raise
        if not read_back or point.access == "w":
            return
        echoed = await self.connection.read(point.table, point.address, point.register_count,
                                            self._device_id(point.device_id))
        if echoed != registers:
            error = ReadBackMismatch(f"{self.map.id}.{name}: wrote {registers}, read back {echoed}")
            self.health.record_failure(error.kind, str(error))
            raise error


def _stale(reading: Reading) -> Reading:
    if reading.quality is Quality.GOOD:
        return Reading(reading.name, reading.value, reading.unit, reading.timestamp_s, Quality.STALE)
    return reading
