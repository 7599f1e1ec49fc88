"""Every section: its defaults, an unknown key named, out-of-range values with key, value and range."""

from __future__ import annotations

import pytest

from hems.mpc.site import BatteryConfig, GridConfig, MpcSettings, PvConfig, SiteConfig
from hems.observability.metrics import DEFAULT_METRICS_ADDRESS, DEFAULT_METRICS_PORT
from tests.config.helpers import MINIMAL, load, problems, with_section


def test_defaults_of_every_optional_section():
    config = load(MINIMAL)
    assert config.loops.model_dump() == {"telemetry_period_s": 5.0, "control_period_s": 10.0,
                                         "replan_soc_deviation": 0.05, "replan_min_interval_s": 60.0}
    assert config.control.model_dump() == {
        "fallback": "autonomous", "stale_after_s": None, "battery_ramp_w_per_s": 1000.0, "deadband_w": 25.0,
        "setpoint_timeout_s": 60.0, "export_margin_w": 100.0, "curtail_pv": True}
    assert config.forecast.model_dump() == {"annual_load_kwh": 3500.0, "load_history_days": 28,
                                            "pv_initial_scale": 0.7, "holiday_country": "DE",
                                            "holiday_subdivision": None}
    assert config.store.model_dump() == {"retention_days": 90.0, "bucket_s": 300}
    assert config.metrics.model_dump() == {"enabled": True, "address": DEFAULT_METRICS_ADDRESS,
                                           "port": DEFAULT_METRICS_PORT}
    assert config.logging.model_dump() == {"level": "INFO", "format": "keyvalue"}
    assert not config.logging.json_format
    assert config.home_assistant.model_dump() == {
        "enabled": False, "broker": "mqtt://127.0.0.1:1883", "discovery_prefix": "homeassistant",
        "state_topic_prefix": "hems", "username": None, "password_file": None, "publish_period_s": 30.0,
        "currency": "EUR", "ca_file": None, "cert_file": None, "key_file": None}
    assert config.tariff.import_price_per_kwh == 0.30 and config.tariff.export_price_per_kwh == 0.08
    assert config.tariff.period == ()
    assert config.device == [] and config.p1 is None


def test_site_sections_build_the_mpc_site_config_with_its_defaults():
    config = load(MINIMAL)
    assert isinstance(config.site, SiteConfig)
    assert config.site.battery == BatteryConfig(capacity_wh=10000, max_charge_w=5000, max_discharge_w=5000)
    assert config.site.grid == GridConfig(import_limit_w=17000, export_limit_w=4000)
    assert config.site.pv == PvConfig() and config.site.mpc == MpcSettings()
    assert config.site.ev is None and config.site.heat_pump is None
    assert config.battery is config.site.battery


def test_full_site_sections():
    text = MINIMAL + """
[pv]
curtailable = false
[[pv.arrays]]
peak_power_w = 5000
tilt_deg = 35
azimuth_deg = 135
[[pv.arrays]]
peak_power_w = 3000
azimuth_deg = 225
inverter_limit_w = 2500
[ev]
max_charge_w = 11000
min_charge_w = 1400
[heat_pump]
max_electric_w = 3000
kind = "tank"
[mpc]
step_s = 900
horizon_steps = 48
time_budget_s = 2.0
"""
    site = load(text).site
    assert not site.pv.curtailable and [a.peak_power_w for a in site.pv.arrays] == [5000, 3000]
    assert site.pv.arrays[1].inverter_limit_w == 2500 and site.pv.arrays[1].tilt_deg == 30.0
    assert site.ev.min_charge_w == 1400 and site.heat_pump.kind == "tank"
    assert site.mpc.horizon_steps == 48 and site.mpc.time_budget_s == 2.0


def test_forecast_helpers():
    config = load(with_section("forecast", "annual_load_kwh = 5000\nload_history_days = 14\npv_initial_scale = 0.5")
                  + "[[pv.arrays]]\npeak_power_w = 4000\n")
    load_config = config.load_forecast_config()
    assert (load_config.annual_kwh, load_config.history_days, load_config.timezone) == (5000, 14, "Europe/Berlin")
    pv_config = config.pv_forecast_config()
    assert pv_config.initial_scale == 0.5 and pv_config.arrays[0].peak_power_w == 4000


@pytest.mark.parametrize("section", ["home", "battery", "grid", "pv", "ev", "heat_pump", "mpc", "tariff", "loops",
                                     "control", "forecast", "store", "metrics", "logging", "home_assistant", "p1"])
def test_an_unknown_key_in_each_section_is_named(section):
    required = {"ev": "max_charge_w = 7000\n", "heat_pump": "max_electric_w = 3000\n", "p1": 'port = "/dev/ttyAMA0"\n'}
    lines = problems(with_section(section, required.get(section, "") + "no_such_key = 1"))
    assert lines == [f"{section}.no_such_key: unknown key"]


@pytest.mark.parametrize("table, body, expected", [
    ("pv.arrays", "peak_power_w = 1\nbearing = 3", "pv.arrays[0].bearing: unknown key"),
    ("tariff.period", 'start = "01:00"\nend = "02:00"\nimport_price_per_kwh = 0.1\nrate = 2',
     "tariff.period[0].rate: unknown key"),
])
def test_an_unknown_key_in_array_tables_is_named(table, body, expected):
    assert problems(f"{MINIMAL}\n[[{table}]]\n{body}\n") == [expected]


@pytest.mark.parametrize("section, body, expected", [
    ("battery", "soc_min = 1.4", "battery.soc_min = 1.4 is out of range: allowed a fraction in [0, 1]"),
    ("battery", "charge_efficiency = 0.3", "battery.charge_efficiency = 0.3 is out of range: allowed [0.5, 1]"),
    ("battery", "soc_min = 0.96", "battery.soc_max = 0.95 (the default) is out of range: allowed > soc_min (0.96)"),
    ("battery", "charge_taper_start_soc = 0.8\ncharge_w_at_full = 6000",
     "battery.charge_w_at_full = 6000 is out of range: allowed [0, max_charge_w (5000)]"),
    ("grid", "demand_charge_per_kw = -1", "grid.demand_charge_per_kw = -1 is out of range: allowed >= 0"),
    ("ev", "max_charge_w = -5", "ev.max_charge_w = -5 is out of range: allowed > 0"),
    ("ev", 'max_charge_w = "fast"', 'ev.max_charge_w = "fast" is invalid: allowed > 0'),
    ("heat_pump", 'max_electric_w = 3000\nkind = "pool"',
     'heat_pump.kind = "pool" is invalid: allowed "space" or "tank"'),
    ("mpc", "step_s = 60", "mpc.step_s = 60 is out of range: allowed an integer number of seconds in [300, 3600]"),
    ("tariff", "import_price_per_kwh = 30", "tariff.import_price_per_kwh = 30 is out of range: allowed [-10, 10]"),
    ("tariff", "export_price_per_kwh = -11", "tariff.export_price_per_kwh = -11 is out of range: allowed [-10, 10]"),
    ("loops", "telemetry_period_s = 0.1", "loops.telemetry_period_s = 0.1 is out of range: allowed [0.5, 300]"),
    ("loops", "replan_soc_deviation = 0.9", "loops.replan_soc_deviation = 0.9 is out of range: allowed [0.01, 0.5]"),
    ("loops", "replan_min_interval_s = -1", "loops.replan_min_interval_s = -1 is out of range: allowed [0, 3600]"),
    ("control", "battery_ramp_w_per_s = 0", "control.battery_ramp_w_per_s = 0 is out of range: allowed (0, 100000]"),
    ("control", "deadband_w = 2000", "control.deadband_w = 2000 is out of range: allowed [0, 1000]"),
    ("control", "setpoint_timeout_s = 5", "control.setpoint_timeout_s = 5 is out of range: allowed [10, 3600]"),
    ("control", "export_margin_w = 6000", "control.export_margin_w = 6000 is out of range: allowed [0, 5000]"),
    ("control", 'fallback = "off"', 'control.fallback = "off" is invalid: allowed "autonomous" or "self_consumption"'),
    ("control", 'curtail_pv = "yes"', 'control.curtail_pv = "yes": Input should be a valid boolean'),
    ("forecast", "annual_load_kwh = 50", "forecast.annual_load_kwh = 50 is out of range: allowed [100, 100000]"),
    ("forecast", "load_history_days = 0", "forecast.load_history_days = 0 is out of range: allowed [1, 365]"),
    ("forecast", "pv_initial_scale = 2", "forecast.pv_initial_scale = 2 is out of range: allowed [0, 1.5]"),
    ("store", "retention_days = 0.5", "store.retention_days = 0.5 is out of range: allowed [1, 3650]"),
    ("store", "bucket_s = 30", "store.bucket_s = 30 is out of range: allowed [60, 3600]"),
    ("metrics", "port = 70000", "metrics.port = 70000 is out of range: allowed [0, 65535]"),
    ("metrics", 'address = "not an address"', 'metrics.address = "not an address" is invalid'),
    ("logging", 'format = "xml"', 'logging.format = "xml" is invalid: allowed "keyvalue" or "json"'),
    ("logging", 'level = "LOUD"', 'logging.level = "LOUD" is invalid: allowed "DEBUG", "INFO", "WARNING" or "ERROR"'),
    ("home_assistant", "publish_period_s = 0",
     "home_assistant.publish_period_s = 0 is out of range: allowed [1, 3600]"),
    ("home_assistant", 'broker = "http://example.org"', 'home_assistant.broker = "http://example.org" is invalid'),
    ("home_assistant", 'broker = "mqtt://u:p@host"', "without credentials"),
    ("home_assistant", 'broker = "mqtt://host:99999"', 'home_assistant.broker = "mqtt://host:99999" is invalid'),
    ("home_assistant", 'discovery_prefix = "ha/#"', 'home_assistant.discovery_prefix = "ha/#"'),
    ("home_assistant", 'password = "secret"', "home_assistant.password: a password never goes in this file"),
])
def test_out_of_range_values_name_key_value_and_range(section, body, expected):
    required = {"ev": "", "heat_pump": ""}
    lines = problems(with_section(section, required.get(section, "") + body))
    assert any(expected in line for line in lines), lines


def test_a_site_section_reports_all_its_unknown_and_missing_keys_at_once():
    text = MINIMAL.replace("capacity_wh = 10000\n", "colour = 1\n") + "\n[ev]\nspeed = 3\n"
    assert problems(text) == ["battery.colour: unknown key", "battery.capacity_wh: required key is missing",
                              "ev.speed: unknown key", "ev.max_charge_w: required key is missing"]


def test_pv_array_problems_name_the_array():
    text = MINIMAL + "\n[[pv.arrays]]\npeak_power_w = 4000\n[[pv.arrays]]\npeak_power_w = 3000\ntilt_deg = 95\n"
    assert problems(text) == ["pv.arrays[1].tilt_deg = 95 is out of range: allowed [0, 90]"]
    assert problems(MINIMAL + "\n[[pv.arrays]]\ntilt_deg = 20\n") == [
        "pv.arrays[0].peak_power_w: required key is missing"]


def test_control_period_must_not_be_shorter_than_the_telemetry_period():
    lines = problems(with_section("loops", "telemetry_period_s = 20\ncontrol_period_s = 10"))
    assert lines == ["loops.control_period_s = 10 is out of range: allowed >= telemetry_period_s (20)"]
    assert load(with_section("loops", "telemetry_period_s = 10\ncontrol_period_s = 10")).loops.control_period_s == 10


def test_cross_section_timing_checks_name_their_key():
    text = with_section("loops", "telemetry_period_s = 20\ncontrol_period_s = 40") + "\n[control]\nstale_after_s = 30\n"
    assert problems(text) == [
        "control.stale_after_s = 30 is out of range: allowed >= 2 x loops.telemetry_period_s (40)",
        "control.setpoint_timeout_s = 60 is out of range: allowed >= 2 x loops.control_period_s (80)"]


def test_home_assistant_broker_parts_and_logging_level_case():
    config = load(with_section("home_assistant", 'enabled = true\nbroker = "mqtts://broker.example.org"\n'
                                                 'username = "hems"\npassword_file = "/etc/hems/mqtt-password"')
                  + '\n[logging]\nlevel = "debug"\nformat = "json"\n')
    assistant = config.home_assistant
    assert (assistant.broker_host, assistant.broker_port, assistant.broker_tls) == ("broker.example.org", 8883, True)
    assert str(assistant.password_file) == "/etc/hems/mqtt-password"
    assert config.logging.level == "DEBUG" and config.logging.json_format
    plain = load(MINIMAL).home_assistant
    assert (plain.broker_host, plain.broker_port, plain.broker_tls) == ("127.0.0.1", 1883, False)


def test_metrics_accepts_addresses_and_host_names():
    for address in ("0.0.0.0", "::1", "gateway.local", "localhost"):
        assert load(with_section("metrics", f'address = "{address}"\nport = 0')).metrics.address == address


def test_normalised_config_is_json_with_every_default():
    document = load(MINIMAL).normalised()
    assert document["battery"]["soc_min"] == 0.05 and document["mpc"]["step_s"] == 900
    assert document["home"]["state_directory"] == "/var/lib/hems" and document["ev"] is None
    assert document["tariff"] == {"import_price_per_kwh": 0.3, "export_price_per_kwh": 0.08, "period": []}


def test_an_unknown_holiday_calendar_is_named():
    found = problems(with_section("forecast", 'holiday_country = "XX"'))
    assert any("holiday_country" in problem and "XX" in problem for problem in found)
