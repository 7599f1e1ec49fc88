"""Home configuration: errors name the key, the value and the allowed range."""

from __future__ import annotations

import pytest

from hems.config import ConfigError, load_config

VALID = """
[home]
id = "home-01"
state_directory = "/tmp/hems"

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


@pytest.mark.parametrize("original, replacement, expected", [
    ('unit_id = 2', 'unit_id = 300', "device[0].unit_id = 300 is out of range: allowed <= 255"),
    ('baudrate = 9600', 'baudrate = 10', "device[0].rtu.baudrate = 10 is out of range: allowed >= 1200"),
    ('id = "home-01"', 'id = "home-01"\ncolour = "red"', "home.colour: unknown key"),
    ('tcp = "192.0.2.10:502"', '', "give exactly one of 'tcp' or 'rtu'"),
    ('name = "hybrid"', 'name = "meter"', "device names must be unique: meter"),
    ('[home]\nid = "home-01"', '[home]', "home.id: required key is missing"),
])
def test_errors_name_key_value_and_range(tmp_path, original, replacement, expected):
    assert original in VALID
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, VALID.replace(original, replacement)))
    assert expected in str(raised.value)


def test_broken_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[home\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")
