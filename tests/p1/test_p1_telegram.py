"""Parsed telegrams -> typed readings, for each DSMR variant; the emulator's telegram round trip."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dsmr_parser import telegram_specifications
from dsmr_parser.exceptions import InvalidChecksumError
from dsmr_parser.parsers import TelegramParser

from drivers.emulators.p1_writer import (
    P1Fault,
    PhaseValues,
    TelegramValues,
    apply_fault,
    build_telegram,
    crc16_arc,
)
from drivers.p1 import P1DependencyError, P1Reader, get_variant, telegram_to_readings
from drivers.p1.specs import load_specification
from drivers.readings import Quality
from tests.p1.conftest import T0
from tests.p1.telegrams import TELEGRAM_V2_2, TELEGRAM_V4_2, TELEGRAM_V5

RECEIVED_S = 1_800_000_000.0

VALUES = TelegramValues(
    timestamp_s=T0, grid_import_w=1193.0, grid_export_w=0.0,
    import_t1_wh=123_456_789, import_t2_wh=2_399, export_t1_wh=2_444, export_t2_wh=17,
    tariff=1,
    phases=(PhaseValues(230.1, 5, 1193, 0), PhaseValues(229.0, 0, 0, 0), PhaseValues(231.5, 1, 0, 250)),
    gas_m3=1234.567, gas_timestamp_s=T0 - 300,
)


def parse(text: str, version: str):
    return TelegramParser(load_specification(version)).parse(text)


def values(telegram) -> dict[str, float | int | str | None]:
    return {name: r.value for name, r in telegram.readings.items()}


def test_crc16_arc_matches_a_real_meter():
    body = TELEGRAM_V5[: TELEGRAM_V5.index("!") + 1].encode()
    assert crc16_arc(body) == 0x6EEE
    assert crc16_arc(b"123456789") == 0xBB3D  # the CRC-16/ARC check value


def test_emulator_telegram_round_trips_through_dsmr_parser():
    text = build_telegram(VALUES).decode("ascii")
    assert text.startswith("/") and text.endswith("\r\n")
    assert text[-7] == "!" and text[-6:-2] == text[-6:-2].upper()
    result = telegram_to_readings(parse(text, "5"), RECEIVED_S)
    assert values(result) == {
        "grid_import_w": 1193.0, "grid_export_w": 0.0, "grid_power_w": 1193.0,
        "import_energy_wh": 123_459_188.0, "export_energy_wh": 2_461.0, "tariff": 1,
        "voltage_l1_v": 230.1, "voltage_l2_v": 229.0, "voltage_l3_v": 231.5,
        "current_l1_a": 5.0, "current_l2_a": 0.0, "current_l3_a": 1.0,
        "grid_import_l1_w": 1193.0, "grid_import_l2_w": 0.0, "grid_import_l3_w": 0.0,
        "grid_export_l1_w": 0.0, "grid_export_l2_w": 0.0, "grid_export_l3_w": 250.0,
        "grid_power_l1_w": 1193.0, "grid_power_l2_w": 0.0, "grid_power_l3_w": -250.0,
        "gas_m3": 1234.567,
    }
    assert {r.unit for n, r in result.readings.items() if n.endswith("_w")} == {"W"}
    assert result["import_energy_wh"].unit == "Wh"
    assert all(r.quality is Quality.GOOD for r in result.readings.values())
    # The meter's own time stamps the electricity readings, the gas capture time the gas.
    assert result.meter_time_s == T0 and result.timestamp_s == T0
    assert result["grid_import_w"].timestamp_s == T0
    assert result["gas_m3"].timestamp_s == T0 - 300
    assert result.received_s == RECEIVED_S


@pytest.mark.parametrize("version", ["5B", "5L", "4+"])
def test_emulator_telegram_parses_with_the_other_dsmr5_profiles(version):
    result = telegram_to_readings(parse(build_telegram(VALUES).decode(), version), RECEIVED_S)
    assert result.value("grid_import_w") == 1193.0
    assert result.value("import_energy_wh") == 123_459_188.0
    assert result.value("export_energy_wh") == 2_461.0


def test_timestamp_in_winter_time_round_trips():
    winter = datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    text = build_telegram(TelegramValues(timestamp_s=winter)).decode()
    assert "0-0:1.0.0(250115130000W)" in text
    assert telegram_to_readings(parse(text, "5"), RECEIVED_S).meter_time_s == winter


def test_untrusted_meter_clock_uses_the_reception_time():
    result = telegram_to_readings(parse(build_telegram(VALUES).decode(), "5"), RECEIVED_S,
                                  trust_meter_clock=False)
    assert result.timestamp_s == RECEIVED_S
    assert {r.timestamp_s for r in result.readings.values()} == {RECEIVED_S}


def test_dsmr_5_real_meter_telegram():
    result = telegram_to_readings(parse(TELEGRAM_V5, "5"), RECEIVED_S)
    assert result.value("grid_import_w") == 244.0
    assert result.value("import_energy_wh") == 4426.0 + 2399.0
    assert result.value("export_energy_wh") == 2444.0
    assert result.value("current_l3_a") == 0.86
    assert result.value("gas_m3") == 0.107  # channel 1 is the gas meter, channel 2 is empty
    assert result.meter_time_s == datetime(2017, 1, 2, 18, 20, 2, tzinfo=timezone.utc).timestamp()


def test_dsmr_4_real_meter_telegram():
    result = telegram_to_readings(parse(TELEGRAM_V4_2, "4"), RECEIVED_S)
    assert values(result) == {
        "grid_import_w": 2027.0, "grid_export_w": 0.0, "grid_power_w": 2027.0,
        "import_energy_wh": 1_581_123.0 + 1_435_706.0, "export_energy_wh": 0.0, "tariff": 2,
        "current_l1_a": 0.0, "current_l2_a": 6.0, "current_l3_a": 2.0,
        "grid_import_l1_w": 170.0, "grid_import_l2_w": 1247.0, "grid_import_l3_w": 209.0,
        "grid_export_l1_w": 0.0, "grid_export_l2_w": 0.0, "grid_export_l3_w": 0.0,
        "grid_power_l1_w": 170.0, "grid_power_l2_w": 1247.0, "grid_power_l3_w": 209.0,
        "gas_m3": 981.443,
    }
    assert result.timestamp_s == datetime(2016, 11, 13, 19, 57, 57, tzinfo=timezone.utc).timestamp()
    assert result["gas_m3"].timestamp_s == datetime(2016, 11, 29, 19, 0, 0, tzinfo=timezone.utc).timestamp()


def test_dsmr_2_2_real_meter_telegram_without_timestamp_or_crc():
    result = telegram_to_readings(parse(TELEGRAM_V2_2, "2.2"), RECEIVED_S)
    assert values(result) == {
        "grid_import_w": 1010.0, "grid_export_w": 0.0, "grid_power_w": 1010.0,
        "import_energy_wh": 2002.0, "export_energy_wh": 2002.0, "tariff": 1, "gas_m3": 1.001,
    }
    assert result.meter_time_s is None
    assert result.timestamp_s == RECEIVED_S


def test_unknown_unit_is_flagged_implausible():
    text = build_telegram(VALUES).decode().replace("1-0:1.7.0(01.193*kW)", "1-0:1.7.0(01.193*MW)")
    body = text[: text.rindex("!") + 1]
    text = body + f"{crc16_arc(body.encode()):04X}\r\n"
    result = telegram_to_readings(parse(text, "5"), RECEIVED_S)
    assert result["grid_import_w"].quality is Quality.IMPLAUSIBLE
    assert not result["grid_import_w"].usable
    assert "grid_power_w" not in result


@pytest.mark.parametrize("fault", [P1Fault.CORRUPT_CRC, P1Fault.CORRUPT_DATA])
def test_injected_corruption_fails_the_crc(fault):
    with pytest.raises(InvalidChecksumError):
        parse(apply_fault(build_telegram(VALUES), fault).decode(), "5")


def test_variants_name_the_dsmr_line_settings():
    assert (get_variant("2.2").serial.baudrate, get_variant("2.2").serial.bytesize) == (9600, 7)
    assert (get_variant("4").serial.baudrate, get_variant("4").serial.parity) == (115200, "E")
    assert (get_variant("5").serial.bytesize, get_variant("5").serial.parity) == (8, "N")
    assert load_specification("5B") is telegram_specifications.BELGIUM_FLUVIUS
    assert load_specification("5S") is telegram_specifications.SWEDEN
    with pytest.raises(ValueError, match="expected one of"):
        get_variant("6")
    with pytest.raises(ValueError, match="encrypted"):
        get_variant("MSn")


def test_importing_the_package_does_not_import_dsmr_parser():
    code = "import sys, drivers.p1; assert 'dsmr_parser' not in sys.modules, 'imported'"
    repo_root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, cwd=repo_root)


def test_missing_dsmr_parser_names_the_extra(monkeypatch):
    names = {"dsmr_parser", "dsmr_parser.parsers", "dsmr_parser.exceptions", "dsmr_parser.telegram_specifications"}
    names |= {m for m in sys.modules if m.startswith("dsmr_parser.")}
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import raises ModuleNotFoundError
    with pytest.raises(P1DependencyError, match=r"hems\[p1\]"):
        P1Reader("/dev/null", "5")
