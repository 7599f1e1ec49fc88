"""The Grafana dashboard uses only metrics HomeMetrics exposes, and imports with a datasource input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.transport.health import DeviceHealth
from hems.observability.metrics import HomeMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "hems-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
#: Sample suffixes and the metric type that exposes them.
SUFFIX_TYPES = {"_bucket": "histogram", "_sum": "histogram", "_count": "histogram", "_total": "counter"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def exercised_metrics() -> dict[str, str]:
    """Every sample name a scrape of a busy home returns, mapped to its family's type."""
    metrics = HomeMetrics()
    metrics.set_site(grid_import_w=500.0, pv_power_w=1000.0, battery_charge_w=-200.0, battery_soc_ratio=0.5)
    metrics.add_energy(imported_wh=1.0, exported_wh=1.0)
    metrics.observe_solve(0.01, "optimal")
    metrics.set_plan_age(10.0)
    health = DeviceHealth("meter", unavailable_after_failures=2)
    health.record_failure("timeout", "no answer")
    metrics.update_device_health("meter", health)
    metrics.loop_overrun("poll")
    metrics.set_forecast_mae("pv", 100.0)
    metrics.reading_rejected("stale")
    metrics.set_market_connected(True)
    metrics.set_market_state("trading")
    metrics.market_message("out", "orders")
    metrics.market_rejection("INVALID_CONTENT")
    metrics.set_outbox_pending(1)
    metrics.vpp_commitment("confirmed")
    return {sample.name: family.type for family in text_string_to_metric_families(metrics.render().decode())
            for sample in family.samples}


def base_name(name: str, types: dict[str, str]) -> str:
    """The family name: a suffix is stripped only where the family's type produces it
    (``hems_mpc_solve_seconds_count`` -> ``hems_mpc_solve_seconds``; a gauge ending in ``_count`` stays)."""
    for suffix, kind in SUFFIX_TYPES.items():
        if name.endswith(suffix) and types.get(name) == kind:
            return name[: -len(suffix)]
    return name


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges and
    grouping clauses that are neither functions nor keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", text):
        word = match.group(1)
        if word.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+(?:e\d+)?", word):
            names.add(word)
    return names


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels", [])))
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_metric_name_parser():
    assert metric_names('histogram_quantile(0.95, sum by (instance, le) '
                        '(rate(hems_mpc_solve_seconds_bucket{instance=~"$home"}[$__rate_interval])))') == {
        "hems_mpc_solve_seconds_bucket"}
    assert metric_names('increase(a_total{x="y"}[1d]) / 3.6e6 + on (instance) b == 1') == {"a_total", "b"}
    types = {"h_count": "histogram", "g_count": "gauge", "c_total": "counter"}
    assert [base_name(name, types) for name in ("h_count", "g_count", "c_total")] == ["h", "g_count", "c"]


def test_every_expression_uses_only_metrics_that_home_metrics_exposes(dashboard: dict[str, Any]):
    exposed = exercised_metrics()
    families = {base_name(name, exposed) for name in exposed}
    used: set[str] = set()
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            for name in names:
                assert name in exposed, f"panel {panel['title']!r}: {name} is not exposed by HomeMetrics"
                used.add(base_name(name, exposed))
            assert '$home' in target["expr"], (panel["title"], target["expr"])
    # And every metric HomeMetrics defines has a panel.
    assert used == families, families - used


def test_panels_have_titles_unique_ids_and_the_datasource_input(dashboard: dict[str, Any]):
    assert dashboard["schemaVersion"] >= 36
    assert {"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}.items() <= \
        dashboard["__inputs"][0].items()
    panels = all_panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel.get("title"), panel
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    home = {variable["name"]: variable for variable in dashboard["templating"]["list"]}["home"]
    assert home["datasource"] == DATASOURCE
    match = re.fullmatch(r"label_values\((hems_\w+), instance\)", home["query"]["query"])
    assert match and home["definition"] == home["query"]["query"]
    assert match.group(1) in exercised_metrics()
