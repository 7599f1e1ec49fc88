"""The bundled register maps: each loads, cites its source, can be identified, and round-trips values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from drivers.maps import RegisterImage, RegisterMap, available_maps, load_map
from drivers.maps.catalog import readme_section, render_markdown
from drivers.maps.schema import CommandAndPowerControl, PointSpec, SignedPowerControl, SunSpecStorageControl
from drivers.registers import RegisterType

MAPS = available_maps()
README = Path(__file__).resolve().parents[2] / "README.md"
_FLOAT32_RELATIVE_PRECISION = 2.0**-23
_NUMERIC_TYPES = {RegisterType.INT16, RegisterType.UINT16, RegisterType.INT32, RegisterType.UINT32,
                  RegisterType.INT64, RegisterType.UINT64, RegisterType.FLOAT32}


def test_the_required_device_families_are_bundled() -> None:
    assert {"eastron_sdm630", "eastron_sdm120", "carlo_gavazzi_em24", "huawei_sun2000", "sma_sunny_tripower",
            "sma_sunny_boy_storage", "fronius_gen24", "solaredge_storedge", "victron_gx",
            "sungrow_sh"} <= set(MAPS)


@pytest.mark.parametrize("name", MAPS)
def test_map_loads_and_cites_its_source(name: str) -> None:
    # Loading validates the schema: addresses in range, no overlapping points, scale-factor points
    # exist, control and identify name real points, roles are unique.
    register_map = load_map(name)
    assert register_map.id == name
    assert len(register_map.spec.device.source) >= 10
    assert register_map.spec.point, "a map without points"
    text = Path(register_map.origin).read_text(encoding="utf-8")
    assert text.startswith("#"), "the file must begin with a comment block citing its source"
    assert "address" in text.split("[device]")[0].lower(), "the header must say how addresses were converted"


@pytest.mark.parametrize("name", MAPS)
def test_map_has_a_usable_identify_section(name: str) -> None:
    register_map = load_map(name)
    identify = register_map.spec.identify
    assert identify is not None
    point = register_map.points[identify.point]
    assert point.initial is not None, "an emulator must serve something the scanner recognises"
    if identify.equals is not None:
        assert point.initial == identify.equals
    if identify.contains is not None:
        assert identify.contains in str(point.initial)
    if identify.one_of is not None:
        assert point.initial in identify.one_of


@pytest.mark.parametrize("name", MAPS)
def test_writable_points_have_a_write_range(name: str) -> None:
    for point in load_map(name).spec.point:
        if point.writable and point.type is not RegisterType.STRING:
            assert point.min is not None and point.max is not None, point.name


@pytest.mark.parametrize("name", MAPS)
def test_roles_are_unique_and_carry_matching_units(name: str) -> None:
    register_map = load_map(name)
    roles = [point.role for point in register_map.spec.point if point.role is not None]
    assert len(roles) == len(set(roles))
    for role, point in register_map.roles.items():
        if point.unit and role.unit:
            assert point.unit == role.unit, f"{point.name}: unit {point.unit!r} but role {role.value} wants {role.unit!r}"


@pytest.mark.parametrize("name", MAPS)
def test_battery_control_points_exist_and_are_writable(name: str) -> None:
    register_map = load_map(name)
    battery = register_map.spec.control.battery
    if battery is None:
        return
    written: list[str] = []
    if isinstance(battery, SignedPowerControl):
        written = [battery.power_point, battery.enable_point, battery.timeout_point]
    elif isinstance(battery, CommandAndPowerControl):
        written = [battery.command_point, battery.charge_power_point, battery.discharge_power_point,
                   battery.mode_point, battery.timeout_point]
        command = register_map.points[battery.command_point]
        for value in (battery.charge_command, battery.discharge_command, battery.stop_command):
            assert command.min <= value <= command.max
    elif isinstance(battery, SunSpecStorageControl):
        written = [battery.mode_point, battery.charge_rate_point, battery.discharge_rate_point, battery.timeout_point]
        assert battery.max_charge_point in register_map.points
    for point_name in filter(None, written):
        assert register_map.points[point_name].writable, point_name
    assert "battery" in register_map.spec.device.kinds


def _image_with_scale_factors(register_map: RegisterMap) -> RegisterImage:
    image = RegisterImage()
    for point in register_map.spec.point:
        if point.type is RegisterType.SUNSSF:
            assert point.initial is not None, f"{point.name}: a scale factor needs an initial value"
            writable = point.model_copy(update={"access": "rw", "min": -10, "max": 10})
            image.store((point.device_id, point.table), point.address,
                        register_map.encode(writable, int(point.initial), 1.0))
    return image


def _test_values(point: PointSpec) -> list[float]:
    if point.min is not None and point.max is not None:
        return [point.min, point.max, (point.min + point.max) / 2]
    return [0.0, 1.0]


@pytest.mark.parametrize("name", MAPS)
def test_numeric_points_round_trip_through_encode_and_decode(name: str) -> None:
    register_map = load_map(name)
    image = _image_with_scale_factors(register_map)
    checked = 0
    for point in register_map.spec.point:
        if point.type not in _NUMERIC_TYPES:
            continue
        scale = register_map.scale_of(point, image)
        assert scale is not None, f"{point.name}: scale factor missing"
        writable = point if point.writable else point.model_copy(update={"access": "rw"})
        for value in _test_values(point):
            registers = register_map.encode(writable, value, scale)
            assert len(registers) == point.register_count
            trial = RegisterImage(registers={key: dict(table) for key, table in image.registers.items()})
            trial.store((point.device_id, point.table), point.address, registers)
            reading = register_map.decode(point, trial, 0.0)
            assert reading is not None and reading.value is not None, f"{point.name}={value}: not decoded"
            tolerance = abs(scale) / 2
            if point.type is RegisterType.FLOAT32:
                tolerance = max(tolerance, abs(value) * _FLOAT32_RELATIVE_PRECISION)
            assert math.isclose(reading.value, value, abs_tol=tolerance + 1e-9), (point.name, value, reading.value)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("name", MAPS)
def test_initial_values_are_encodable(name: str) -> None:
    register_map = load_map(name)
    image = _image_with_scale_factors(register_map)
    for point in register_map.spec.point:
        if point.initial is None:
            continue
        writable = point.model_copy(update={"access": "rw", "min": None, "max": None})
        if point.type is RegisterType.STRING:
            assert isinstance(point.initial, str) and len(point.initial) <= 2 * point.register_count, point.name
            register_map.encode(writable, point.initial, 1.0)
        elif point.type is not RegisterType.SUNSSF:
            scale = register_map.scale_of(point, image)
            assert scale is not None
            register_map.encode(writable, point.initial, scale)


def test_catalog_lists_every_map() -> None:
    table = render_markdown()
    for name in MAPS:
        assert f"`{name}`" in table


def test_readme_device_table_matches_the_catalog() -> None:
    section = readme_section(README.read_text(encoding="utf-8"))
    assert section is not None, "README.md lacks the <!-- devices:start/end --> markers"
    assert section == render_markdown(), "README device table is stale: run python -m drivers.maps.catalog"
