"""``hems check-config FILE``: exit codes, summary, JSON, problems on stderr, map and capability checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from drivers.maps import MAPS_DIRECTORY
from hems.cli import main
from tests.config.helpers import MINIMAL

METER = """
[[device]]
name = "meter"
map = "eastron_sdm630"
rtu = { port = "/dev/ttyUSB0" }
unit_id = 2
"""
HYBRID = """
[[device]]
name = "hybrid"
map = "sunspec"
tcp = "192.0.2.10:502"
capabilities = ["pv_inverter", "battery"]
"""


def check(tmp_path, capsys, text: str, *options: str) -> tuple[int, str, str, str]:
    path = tmp_path / "hems.toml"
    path.write_text(text)
    code = main(["check-config", str(path), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, str(path)


def test_a_valid_file_prints_a_summary_and_exits_0(tmp_path, capsys):
    text = MINIMAL + METER + HYBRID + '\n[[pv.arrays]]\npeak_power_w = 6000\n[[tariff.period]]\nstart = "17:00"\n' \
                                      'end = "21:00"\nimport_price_per_kwh = 0.4\n'
    code, out, err, path = check(tmp_path, capsys, text)
    assert code == 0, err
    assert out.startswith(f"{path}: ok\n")
    for expected in ("home-01", "meter: eastron_sdm630, rtu /dev/ttyUSB0 9600 8N1 unit 2; grid_meter",
                     "hybrid: sunspec (discovered at start-up), tcp 192.0.2.10:502 unit 1; pv_inverter, battery",
                     "10 kWh", "import <= 17000 W, export <= 4000 W", "6 kWp", "1 time-of-use period",
                     "telemetry every 5 s, control every 10 s", "http://127.0.0.1:9925/metrics"):
        assert expected in out, expected
    assert err == ""


def test_json_prints_the_normalised_configuration(tmp_path, capsys):
    code, out, _, _ = check(tmp_path, capsys, MINIMAL + METER, "--json")
    assert code == 0
    document = json.loads(out)
    assert document["battery"]["capacity_wh"] == 10000 and document["battery"]["soc_max"] == 0.95
    assert document["device"][0]["rtu"]["baudrate"] == 9600 and document["loops"]["control_period_s"] == 10


def test_every_problem_on_its_own_line_prefixed_by_the_file_and_exit_2(tmp_path, capsys):
    text = MINIMAL.replace("max_charge_w = 5000", "max_charge_w = 5000\nsoc_min = 1.4") + \
        "\n[loops]\ntelemetry_period_s = 0.1\ncolour = 1\n"
    code, out, err, path = check(tmp_path, capsys, text)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines == [f"{path}: battery.soc_min = 1.4 is out of range: allowed a fraction in [0, 1]",
                     f"{path}: loops.telemetry_period_s = 0.1 is out of range: allowed [0.5, 300]",
                     f"{path}: loops.colour: unknown key"]


def test_missing_file_and_broken_toml(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml: file not found" in capsys.readouterr().err
    code, _, err, _ = check(tmp_path, capsys, "[home\n")
    assert code == 2 and "not valid TOML" in err


@pytest.mark.parametrize("device, expected", [
    (METER.replace("eastron_sdm630", "no_such_meter"), 'device[0].map = "no_such_meter": no register map'),
    (METER.replace("unit_id = 2", 'unit_id = 2\ncapabilities = ["battery"]'),
     "device[0].capabilities: eastron_sdm630 provides no battery_soc_pct for Battery"),
    (HYBRID.replace('"battery"]', '"ev_charger"]'), 'device[0].capabilities = ["pv_inverter", "ev_charger"] is '
                                                    "invalid: SunSpec discovery finds only"),
    (METER.replace("eastron_sdm630", "/nonexistent/meter.toml"), 'device[0].map = "/nonexistent/meter.toml"'),
    ('[[device]]\nname = "gx"\nmap = "victron_gx"\ntcp = "192.0.2.20"\nunit_id_overrides = { 226 = 228 }\n',
     "device[0].unit_id_overrides: 226 is not a unit id that map victron_gx places points at (it uses: 227)"),
])
def test_map_and_capability_problems_exit_2(tmp_path, capsys, device, expected):
    code, _, err, path = check(tmp_path, capsys, MINIMAL + device)
    assert code == 2
    assert f"{path}: {expected}" in err, err


def test_a_map_file_by_path_and_victron_overrides(tmp_path, capsys):
    copy = tmp_path / "maps" / "eastron_sdm630.toml"
    copy.parent.mkdir()
    shutil.copy(MAPS_DIRECTORY / "eastron_sdm630.toml", copy)
    text = MINIMAL + METER.replace('"eastron_sdm630"', f'"{copy}"') + \
        '[[device]]\nname = "gx"\nmap = "victron_gx"\ntcp = "192.0.2.20"\nunit_id_overrides = { 227 = 228 }\n'
    code, out, err, _ = check(tmp_path, capsys, text)
    assert code == 0, err
    assert "meter: eastron_sdm630" in out and "gx: victron_gx, tcp 192.0.2.20 unit 100" in out


def test_warnings_do_not_fail_the_check(tmp_path, capsys):
    code, out, err, path = check(tmp_path, capsys, MINIMAL + METER + "\n[ev]\nmax_charge_w = 11000\n")
    assert code == 0 and "ok" in out
    assert f"{path}: warning: no device provides battery" in err
    assert f"{path}: warning: [ev] is configured but no device provides ev_charger" in err


def test_the_installed_command(tmp_path):
    path = tmp_path / "hems.toml"
    path.write_text(MINIMAL + "\n[control]\nfallback = \"off\"\n")
    result = subprocess.run([sys.executable, "-m", "hems", "check-config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f'{path}: control.fallback = "off" is invalid: allowed "autonomous" or ' \
                                    '"self_consumption"'
