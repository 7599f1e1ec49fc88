"""Home configuration: [home], [[device]] and [p1]; errors name the key, the value and the range."""

from __future__ import annotations

import pytest

from hems.config import ConfigError, load_config
from tests.config.helpers import MINIMAL, load, problems

VALID = MINIMAL + """
[[device]]
name = "meter"
map = "eastron_sdm630"
rtu = { port = "/dev/ttyUSB0", baudrate = 9600 }
unit_id = 2

[[device]]
name = "hybrid"
map = "sunspec"
tcp = "192.0.2.10:502"
"""


def write(tmp_path, text: str):
    path = tmp_path / "home.toml"
    path.write_text(text)
    return path


def test_valid_config_loads(tmp_path):
    config = load_config(write(tmp_path, VALID))
    assert [device.name for device in config.device] == ["meter", "hybrid"]
    assert config.device[0].rtu.baudrate == 9600 and config.device[0].unit_id == 2
    assert config.device[1].is_sunspec and config.device[1].describe_endpoint() == "tcp 192.0.2.10:502"


def test_home_defaults_and_location():
    home = load(MINIMAL).home
    assert (home.latitude_deg, home.longitude_deg, home.timezone) == (51.0, 10.0, "Europe/Berlin")
    assert str(home.state_directory) == "/var/lib/hems"
    config = load(MINIMAL.replace('id = "home-01"', 'id = "home-01"\nlatitude_deg = 48.1\n'
                                  'longitude_deg = -3.5\ntimezone = "America/New_York"'))
    assert (config.site.latitude_deg, config.site.longitude_deg, config.site.timezone) == (
        48.1, -3.5, "America/New_York")


@pytest.mark.parametrize("original, replacement, expected", [
    ('unit_id = 2', 'unit_id = 300', "device[0].unit_id = 300 is out of range: allowed [0, 255]"),
    ('baudrate = 9600', 'baudrate = 10', "device[0].rtu.baudrate = 10 is out of range: allowed [1200, 921600]"),
    ('id = "home-01"', 'id = "home-01"\ncolour = "red"', "home.colour: unknown key"),
    ('tcp = "192.0.2.10:502"', '', "device[1]: give exactly one of 'tcp' or 'rtu'"),
    ('name = "hybrid"', 'name = "meter"', 'device[1].name = "meter" is invalid'),
    ('[home]\nid = "home-01"', '[home]', "home.id: required key is missing"),
    ('id = "home-01"', 'id = "home-01"\nlatitude_deg = 91',
     "home.latitude_deg = 91 is out of range: allowed [-90, 90]"),
    ('id = "home-01"', 'id = "home-01"\nlongitude_deg = -181',
     "home.longitude_deg = -181 is out of range: allowed [-180, 180]"),
    ('id = "home-01"', 'id = "home-01"\ntimezone = "Mars/Olympus"', 'home.timezone = "Mars/Olympus" is invalid'),
    ('map = "eastron_sdm630"', 'map = "eastron sdm630"', 'device[0].map = "eastron sdm630" is invalid'),
    ('tcp = "192.0.2.10:502"', 'tcp = "192.0.2.10:70000"', "outside 1..65535"),
    ('unit_id = 2', 'unit_id = 2\nflavour = 1', "device[0].flavour: unknown key"),
    ('unit_id = 2', 'unit_id = 2\ncapabilities = ["toaster"]', 'device[0].capabilities[0] = "toaster" is invalid'),
])
def test_errors_name_key_value_and_range(tmp_path, original, replacement, expected):
    assert original in VALID
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, VALID.replace(original, replacement)))
    assert expected in str(raised.value)


def test_grid_and_battery_are_required():
    lines = problems('[home]\nid = "x"\n')
    assert "battery: required key is missing" in lines and "grid: required key is missing" in lines


def test_several_problems_are_reported_at_once():
    text = VALID.replace("unit_id = 2", "unit_id = 300").replace('id = "home-01"', 'id = "home-01"\ncolour = 1')
    lines = problems(text + "\n[loops]\ntelemetry_period_s = 0.1\n")
    assert len(lines) == 3 and lines[0] == "home.colour: unknown key"


def test_devices_on_one_port_share_its_settings_and_p1_needs_its_own_port():
    text = VALID.replace('tcp = "192.0.2.10:502"', 'rtu = { port = "/dev/ttyUSB0", baudrate = 19200 }')
    text += '\n[p1]\nport = "/dev/ttyUSB0"\n'
    lines = problems(text)
    assert any(line.startswith("device[1].rtu: /dev/ttyUSB0 19200 8N1 differs from device[0]") for line in lines)
    assert any(line.startswith('p1.port = "/dev/ttyUSB0" is invalid') for line in lines)


def test_two_devices_at_one_unit_id_of_one_endpoint():
    text = VALID.replace('tcp = "192.0.2.10:502"', 'rtu = { port = "/dev/ttyUSB0", baudrate = 9600 }\nunit_id = 2')
    assert any(line.startswith("device[1].unit_id = 2 is invalid") for line in problems(text))


def test_p1_version_and_unit_id_overrides():
    config = load(VALID + '\n[p1]\nport = "/dev/ttyUSB1"\ndsmr_version = "5B"\n')
    assert config.p1.dsmr_version == "5B"
    assert 'p1.dsmr_version = "7" is invalid: allowed "2.2"' in problems(VALID + '\n[p1]\nport = "/dev/ttyUSB1"\n'
                                                                          'dsmr_version = "7"\n')[0]
    overridden = load(VALID.replace('unit_id = 2', 'unit_id = 2\nunit_id_overrides = { 227 = 228 }'))
    assert overridden.device[0].unit_id_overrides == {227: 228}
    lines = problems(VALID.replace('unit_id = 2', 'unit_id = 2\nunit_id_overrides = { 227 = 300 }'))
    assert lines == ["device[0].unit_id_overrides.227 = 300 is out of range: allowed [0, 255]"]


def test_broken_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[home\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_configuration_is_frozen():
    config = load(VALID)
    with pytest.raises(Exception):
        config.home = None  # type: ignore[misc]
    with pytest.raises(Exception):
        config.loops.telemetry_period_s = 1  # type: ignore[misc]
