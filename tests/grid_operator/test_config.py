"""The limits file and GRID.toml: what a day's entries become on the wire, exact conversions, and
errors that name the key and what is allowed."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hems.cli import main
from hems.config.errors import ConfigError
from hems.grid_operator.config import load_limits_file, load_simulation_config, parse_limits_file
from hems.grid_operator.messages import power_w, price_micro
from hems.grid_operator.quantities import exact_price_micro, kw_to_w
from hems.protocol.messages import MAX_PRICE_MICRO
from hems.protocol.power_plant import MAX_POWER_W
from hems.protocol.units import micro_to_price

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_limits_file(text)
    return caught.value.problems


def test_entries_take_slot_then_period_then_default():
    limits = parse_limits_file("""
[default]
import_limit_kw = 250
export_limit_kw = 150
[[period]]
from = "17:00"
to = "18:00"
import_limit_kw = 60
fee = 0.015
[[slot]]
at = "17:30"
export_limit_kw = 0.5
""")
    slots = limits.publication(date(2026, 11, 21), limits.zone, limits.slot_minutes).slots
    by_hour = {(slot.slot_start.hour, slot.slot_start.minute):
               (slot.import_limit_w, slot.export_limit_w, slot.locational_fee_micro) for slot in slots}
    assert len(slots) == 96 and slots[0].slot_start == datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert by_hour[(16, 45)] == (250_000, 150_000, 0)
    assert by_hour[(17, 0)] == by_hour[(17, 15)] == by_hour[(17, 45)] == (60_000, None, 15_000)  # complete entries:
    assert by_hour[(17, 30)] == (None, 500, 0)  # what a [[slot]] leaves out is no limit, not the period's
    assert by_hour[(18, 0)] == (250_000, 150_000, 0)


def test_without_a_default_only_the_named_slots_are_published():
    limits = parse_limits_file('slot_minutes = 30\n[[period]]\nfrom = "22:00"\nto = "24:00"\nfee = 0.1\n')
    slots = limits.publication(date(2026, 11, 21), limits.zone, limits.slot_minutes).slots
    assert [(slot.slot_start.hour, slot.slot_start.minute, slot.duration_s) for slot in slots] == [
        (22, 0, 1800), (22, 30, 1800), (23, 0, 1800), (23, 30, 1800)]
    assert {slot.locational_fee_micro for slot in slots} == {100_000}


def test_a_zone_whose_midnight_is_off_the_slot_grid_is_refused_for_that_day():
    limits = parse_limits_file('timezone = "Asia/Kathmandu"\nslot_minutes = 60\n[default]\nfee = 0.01\n')
    with pytest.raises(ValueError, match="midnight of 2026-11-21 in Asia/Kathmandu is 18:15Z"):
        limits.publication(date(2026, 11, 21), limits.zone, limits.slot_minutes)


@pytest.mark.parametrize("text, problem", [
    ('[default]\nimport_limit_kw = 10000.001\n',
     "default.import_limit_kw = 10000.001 is out of range: allowed [0, 10000]"),
    ('[default]\nexport_limit_kw = -1\n', "default.export_limit_kw = -1 is out of range: allowed [0, 10000]"),
    ('[default]\nfee = 100.5\n', "default.fee = 100.5 is out of range: allowed [0, 100]"),
    ('[default]\nfee = 0.0150001\n', "default.fee = 0.0150001 is invalid: allowed a whole number of µ¤/kWh"),
    ('slot_minutes = 7\n[default]\n', "slot_minutes = 7 is invalid: allowed a divisor of 60"),
    ('slot_minutes = 90\n[default]\n', "slot_minutes = 90 is out of range: allowed [1, 60]"),
    ('slot_minutes = 5\n[default]\n', "slot_minutes = 5 is out of range: allowed a length that names at most 192"),
    ('timezone = "Mars/Olympus"\n[default]\n', 'timezone = "Mars/Olympus" is invalid: allowed an IANA time zone'),
    ('day = "tomorrow"\n[default]\n', 'day = "tomorrow": '),
    ('[[period]]\nfrom = "17:10"\nto = "18:00"\n',
     'period[0].from = "17:10" is invalid: allowed a time of day on a 15-minute slot boundary'),
    ('[[period]]\nfrom = "17:00"\nto = "17:00"\n',
     'period[0].to = "17:00" is out of range: allowed after from (17:00), at most "24:00"'),
    ('[[period]]\nfrom = "5pm"\nto = "18:00"\n', 'period[0].from = "5pm" is invalid: allowed a time of day HH:MM'),
    ('[[period]]\nfrom = "16:00"\nto = "18:00"\n[[period]]\nfrom = "17:00"\nto = "19:00"\n',
     'period[1].from = "17:00" is out of range: allowed >= "18:00", the end of period[0] (periods must not overlap)'),
    ('[[slot]]\nat = "17:00"\n[[slot]]\nat = "17:00"\n',
     'slot[1].at = "17:00" is invalid: allowed a time not named by slot[0] already'),
    ('[[slot]]\nwhen = "17:00"\n', "slot[0].at: required key is missing"),
    ('timezone = "UTC"\n', "(top level): names no slot: give [default], [[period]] or [[slot]] entries"),
])
def test_a_bad_limits_file_names_the_key_and_what_is_allowed(text, problem):
    assert any(line.startswith(problem) for line in problems_of(text)), problems_of(text)


@pytest.mark.parametrize("text, problem", [
    ('[[request]]\nat = "17:00"\nslots = 4\ndelta_kw = 0\nprice = 0.2\n',
     "request[0].delta_kw = 0 is invalid: allowed a change other than 0"),
    ('[[request]]\nat = "17:00"\nslots = 4\ndelta_kw = -20000\nprice = 0.2\n',
     "request[0].delta_kw = -20000 is out of range: allowed [-10000, 10000]"),
    ('[[request]]\nat = "17:00"\nslots = 0\ndelta_kw = 5\nprice = 0.2\n',
     "request[0].slots = 0 is out of range: allowed [1, 192]"),
    ('[[request]]\nat = "17:00"\nslots = 4\ndelta_kw = 5\n', "request[0].price: required key is missing"),
    ('[[request]]\nat = "17:00"\nslots = 4\ndelta_kw = 5\nprice = 0.2\nnotice_minutes = 2000\n',
     "request[0].notice_minutes = 2000 is out of range: allowed [0, 1440]"),
    ('[[request]]\nat = "17:00"\nslots = 4\ndelta_kw = 5\nprice = 0.2\n'
     '[[request]]\nat = "17:00"\nslots = 2\ndelta_kw = 5\nprice = 0.2\n',
     "request[1]: same time as request[0]: give each a distinct name"),
    ('[limits]\npublish_at = "noon"\n[limits.default]\n', 'limits.publish_at = "noon" is invalid'),
    ('[limits]\n[[limits.period]]\nfrom = "01:00"\nto = "00:30"\n',
     'limits.period[0].to = "00:30" is out of range: allowed after from (01:00)'),
    ('slot_minutes = 60\n[[request]]\nat = "17:30"\nslots = 1\ndelta_kw = 5\nprice = 0.2\n',
     'request[0].at = "17:30" is invalid: allowed a time of day on a 60-minute slot boundary'),
    ('timezone = "UTC"\n', "(top level): nothing to do: give a [limits] table or [[request]] entries"),
])
def test_simulate_refuses_a_bad_grid_toml_with_exit_2_naming_the_key(capsys, tmp_path, text, problem):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    code = main(["grid", "simulate", "--broker", "mqtt://127.0.0.1:1", "--community", "c", "--config", str(path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert f"{path}: {problem}" in captured.err


def test_the_shipped_examples_are_valid():
    limits = load_limits_file(EXAMPLES / "grid-limits.toml")
    publication = limits.publication(date(2026, 11, 21), limits.zone, limits.slot_minutes)
    assert len(publication.slots) == 96
    simulation = load_simulation_config(EXAMPLES / "grid-simulate.toml")
    assert [request.request_id(date(2026, 11, 21)) for request in simulation.request] == [
        "evening-peak-20261121", "midday-soak-20261121"]


@given(st.integers(-MAX_POWER_W, MAX_POWER_W))
def test_every_whole_watt_typed_in_kw_comes_back_exactly(watts):
    typed = str(Decimal(watts) / 1000)
    assert kw_to_w(typed) == watts
    if watts:
        assert power_w(typed, signed=True) == watts


@given(st.integers(0, MAX_PRICE_MICRO))
def test_every_whole_micro_price_typed_per_kwh_comes_back_exactly(micro):
    typed = str(Decimal(micro) / 1_000_000)
    assert exact_price_micro(typed) == price_micro(typed) == micro
    assert price_micro(repr(micro_to_price(micro))) == micro  # a float's shortest repr is exact enough


@given(st.integers(0, 10**9), st.integers(4, 9))
def test_a_value_finer_than_the_wire_is_refused_not_rounded(whole, places):
    finer = Decimal(whole * 10 + 1).scaleb(-places)  # always a nonzero digit beyond 3 decimals
    with pytest.raises(ValueError, match="not a whole number of W"):
        kw_to_w(finer)
    if places > 6:
        with pytest.raises(ValueError, match="not a whole number of µ¤/kWh"):
            exact_price_micro(finer)
