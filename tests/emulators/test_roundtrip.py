"""Every map round-trips through its emulator over real TCP on 127.0.0.1."""

from __future__ import annotations

import math

import pytest

from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.catalog import sunspec_builtins
from drivers.emulators.plant import ENERGY_ROLES, SERVED_ROLES, SETTABLE_ROLES
from drivers.maps import PointSpec, RegisterMap, available_maps, load_map
from drivers.readings import Quality
from drivers.registers import RegisterType
from tests.emulators.helpers import client_for, hybrid_test_map, running

_NAMES = [*available_maps(), *sorted(sunspec_builtins()), "emu_test_hybrid"]


def _load(name: str) -> RegisterMap:
    if name == "emu_test_hybrid":
        return hybrid_test_map()
    builtins = sunspec_builtins()
    if name in builtins:
        return builtins[name]
    return load_map(name)


def _resolution(register_map: RegisterMap, point: PointSpec, client) -> float:
    scale = register_map.scale_of(point, client._last_image) or 1.0
    return abs(scale)


def _close(actual: object, expected: float, resolution: float, point: PointSpec) -> bool:
    if not isinstance(actual, (int, float)):
        return False
    tolerance = resolution / 2 + 1e-9 + (abs(expected) * 1e-6 if point.type is RegisterType.FLOAT32 else 0.0)
    return math.isclose(float(actual), expected, abs_tol=tolerance)


def _served_expectation(point: PointSpec, plant: SitePlant) -> float:
    value = plant.role_values()[point.role]
    if point.role in ENERGY_ROLES and isinstance(point.initial, (int, float)):
        value += point.initial
    return value


def _value_to_write(point: PointSpec, resolution: float) -> float | int | str:
    if point.type is RegisterType.STRING:
        return "HEMS"
    low, high = point.min, point.max
    assert low is not None and high is not None
    if point.enum:
        inside = [int(key) for key in point.enum if low <= int(key) <= high]
        if inside:
            return inside[-1]
    middle = (low + high) / 2
    if point.type is RegisterType.FLOAT32:
        return middle
    steps = math.floor(middle / resolution)
    value = steps * resolution
    if point.type in (RegisterType.ENUM16, RegisterType.ENUM32, RegisterType.BITFIELD16, RegisterType.BITFIELD32,
                      RegisterType.SUNSSF):
        return int(round(value))
    return value


@pytest.mark.parametrize("name", _NAMES)
async def test_map_round_trips_through_its_emulator(name: str, clock, plant: SitePlant) -> None:
    register_map = _load(name)
    binding = MapBinding(register_map, register_map.spec.device.default_unit_id)
    async with running([binding], plant) as server, client_for(server, binding) as client:
        clock.advance(600)  # counters move off their start values
        readings = await client.poll()
        assert client.health.failures_total == 0, client.health.last_error
        assert set(readings) == set(register_map.points)
        problems = []
        for point in register_map.spec.point:
            reading = readings[point.name]
            resolution = _resolution(register_map, point, client)
            if point.role in SERVED_ROLES:
                expected = _served_expectation(point, plant)
                if point.type in (RegisterType.ENUM16, RegisterType.ENUM32):
                    expected = float(round(expected))
                if not _close(reading.value, expected, max(resolution, 1.0 if point.type.name.startswith("ENUM")
                                                           else resolution), point):
                    problems.append(f"{point.name} ({point.role.value}): read {reading.value}, plant {expected}")
            elif point.initial is not None:
                if isinstance(point.initial, str):
                    ok = reading.value == point.initial.rstrip("\x00 ")
                else:
                    ok = _close(reading.value, float(point.initial), resolution, point)
                if not ok:
                    problems.append(f"{point.name}: read {reading.value}, initial {point.initial}")
        assert not problems, "\n".join(problems)

        for point in register_map.spec.point:
            if not point.writable:
                continue
            resolution = _resolution(register_map, point, client)
            value = _value_to_write(point, resolution)
            await client.write(point.name, value)  # raises on refusal or read-back mismatch
            if point.access == "w" or (point.role in SERVED_ROLES and point.role not in SETTABLE_ROLES):
                continue
            reading = (await client.poll())[point.name]
            if isinstance(value, str):
                assert reading.value == value
            else:
                assert reading.quality is not Quality.NOT_IMPLEMENTED, point.name
                assert _close(reading.value, float(value), resolution, point), (point.name, reading.value, value)
        assert client.health.failures_total == 0, client.health.last_error
