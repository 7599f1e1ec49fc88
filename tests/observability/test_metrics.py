"""Metrics of a home, scraped over real HTTP and parsed with prometheus-client's parser."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.transport.health import DeviceHealth
from hems.observability.metrics import DEFAULT_METRICS_ADDRESS, HomeMetrics, start_exporter


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape keyed by (name, sorted labels)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def test_scrape_over_http_has_names_values_and_labels():
    metrics = HomeMetrics()
    metrics.set_site(grid_import_w=-1200.0, pv_power_w=3000.0, battery_charge_w=800.0, battery_soc_ratio=0.42)
    metrics.add_energy(imported_wh=2.0, exported_wh=0.5)
    metrics.observe_solve(0.015, "optimal")
    metrics.observe_solve(0.4, "fallback")
    metrics.set_plan_age(12.0)
    metrics.loop_overrun("poll")
    metrics.set_forecast_mae("pv", 150.0)
    metrics.reading_rejected("stale", 3)
    health = DeviceHealth("meter", unavailable_after_failures=2)
    health.record_failure("timeout", "no answer")
    metrics.update_device_health("meter", health)
    exporter = start_exporter(metrics.registry, address="127.0.0.1", port=0)
    try:
        assert exporter.port > 0 and exporter.address == "127.0.0.1"
        text = scrape(exporter.port)
    finally:
        exporter.stop()
    got = samples(text)
    assert got[("hems_grid_import_watts", ())] == 0.0
    assert got[("hems_grid_export_watts", ())] == 1200.0
    assert got[("hems_pv_power_watts", ())] == 3000.0
    assert got[("hems_battery_power_watts", ())] == 800.0
    assert got[("hems_battery_soc_ratio", ())] == 0.42
    assert got[("hems_energy_imported_joules_total", ())] == 7200.0  # 2 Wh
    assert got[("hems_energy_exported_joules_total", ())] == 1800.0
    assert got[("hems_mpc_solve_seconds_count", ())] == 2
    assert got[("hems_mpc_solve_seconds_bucket", (("le", "0.001"),))] == 0
    assert got[("hems_mpc_solve_seconds_bucket", (("le", "0.02"),))] == 1
    assert got[("hems_mpc_solve_seconds_bucket", (("le", "1.0"),))] == 2
    assert got[("hems_mpc_status", (("status", "fallback"),))] == 1
    assert got[("hems_mpc_status", (("status", "optimal"),))] == 0
    assert got[("hems_plan_age_seconds", ())] == 12.0
    assert got[("hems_device_up", (("device", "meter"),))] == 1
    assert got[("hems_modbus_errors_total", (("device", "meter"), ("kind", "timeout")))] == 1
    assert got[("hems_loop_overruns_total", (("loop", "poll"),))] == 1
    assert got[("hems_forecast_mae_watts", (("quantity", "pv"),))] == 150.0
    assert got[("hems_readings_rejected_total", (("reason", "stale"),))] == 3
    assert not [name for name, _ in got if name.endswith("_created")]


def test_exporter_stops_and_defaults_to_loopback():
    assert DEFAULT_METRICS_ADDRESS == "127.0.0.1"
    exporter = start_exporter(HomeMetrics().registry, port=0)
    assert exporter.address == "127.0.0.1"
    port = exporter.port
    scrape(port)
    exporter.stop()
    assert not exporter.thread.is_alive()
    with pytest.raises(OSError):
        scrape(port)


def test_device_health_feeds_counters_by_delta():
    metrics = HomeMetrics()
    health = DeviceHealth("battery", unavailable_after_failures=2)

    def errors(kind: str) -> float:
        return samples(metrics.render().decode()).get(
            ("hems_modbus_errors_total", (("device", "battery"), ("kind", kind))), 0.0)

    for _ in range(3):
        health.record_failure("timeout", "t")
    metrics.update_device_health("battery", health)
    metrics.update_device_health("battery", health)  # no new failures: no increment
    assert errors("timeout") == 3
    assert samples(metrics.render().decode())[("hems_device_up", (("device", "battery"),))] == 0
    health.record_failure("exception_code_2", "illegal address")
    health.record_failure("timeout", "t")
    health.record_success(1.0)
    metrics.update_device_health("battery", health)
    assert (errors("timeout"), errors("exception_code_2")) == (4, 1)
    assert samples(metrics.render().decode())[("hems_device_up", (("device", "battery"),))] == 1
    fresh = DeviceHealth("battery")  # replaced (reconfigured device): counts restart at zero
    fresh.record_failure("timeout", "t")
    metrics.update_device_health("battery", fresh)
    assert errors("timeout") == 5


def test_homes_have_separate_registries():
    first, second = HomeMetrics(), HomeMetrics()
    first.set_site(pv_power_w=100.0)
    second.set_site(pv_power_w=200.0)
    assert samples(first.render().decode())[("hems_pv_power_watts", ())] == 100.0
    assert samples(second.render().decode())[("hems_pv_power_watts", ())] == 200.0


def test_out_of_range_values_are_refused():
    metrics = HomeMetrics()
    with pytest.raises(ValueError, match="battery_soc_ratio"):
        metrics.set_site(battery_soc_ratio=42.0)  # a percentage passed as a ratio
    with pytest.raises(ValueError):
        metrics.add_energy(imported_wh=-1.0)
