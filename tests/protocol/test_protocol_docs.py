"""docs/protocol.md is generated from the models and cannot drift from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hems.protocol import docs
from hems.protocol import power_plant_docs
from hems.protocol.payloads import PAYLOAD_TYPES

DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_the_committed_page_is_the_generated_one():
    assert DOCS_PAGE.read_text(encoding="utf-8") == docs.render(), (
        "docs/protocol.md is stale: run `python -m hems.protocol.docs > docs/protocol.md`")


def test_the_module_prints_the_page():
    completed = subprocess.run([sys.executable, "-m", "hems.protocol.docs"], capture_output=True, check=True,
                               timeout=60)
    assert completed.stdout.decode("utf-8") == docs.render()


def test_the_page_covers_every_message_type_with_its_topic_and_version():
    page = docs.render()
    templates = docs.topic_templates()
    for kind, model in PAYLOAD_TYPES.items():
        section = page.split(f"### `{kind}`: {model.__name__}", 1)[1].split("\n### ", 1)[0]
        assert f"- Topic: `{templates[docs.ROUTES[kind].topic]}`" in section
        assert f"- schema_version: {model.SCHEMA_VERSION}" in section
        assert f'"message_type": "{kind}"' in section
        assert "<details><summary>JSON Schema</summary>" in section
        for field in model.model_fields:
            assert f"| `{field}` |" in section


@pytest.mark.parametrize(("name", "unit"), [("energy_wh", "Wh"), ("limit_price_micro", "µ¤/kWh"),
                                            ("paid_nano", "n¤"), ("duration_s", "s"), ("slots", ""),
                                            ("price_rule_k", ""), ("net_import_wh", "Wh")])
def test_units_follow_from_name_suffixes(name, unit):
    assert docs.unit_of(name) == unit


def test_topics_come_from_the_topic_builder():
    templates = docs.topic_templates()
    assert templates["market/slot/<start>/result"] == "hems/v1/<community>/market/slot/<start>/result"
    assert templates["home/<home>/orders"] == "hems/v1/<community>/home/<home>/orders"
    assert set(route.topic for route in docs.ROUTES.values()) | set(power_plant_docs.SHARED_TOPICS) == set(templates)


def test_a_field_without_a_description_stops_the_generator(monkeypatch):
    notes = dict(docs.FIELD_NOTES)
    del notes["MeterReport.import_wh"]
    monkeypatch.setattr(docs, "FIELD_NOTES", notes)
    with pytest.raises(docs.DocsError, match="MeterReport.import_wh"):
        docs.render()


def test_a_note_for_a_field_that_does_not_exist_stops_the_generator(monkeypatch):
    monkeypatch.setattr(docs, "FIELD_NOTES", {**docs.FIELD_NOTES, "MeterReport.reading_wh": "gone"})
    with pytest.raises(docs.DocsError, match="MeterReport.reading_wh"):
        docs.render()


def test_an_enum_value_without_a_meaning_stops_the_generator(monkeypatch):
    notes = {name: dict(values) for name, values in docs.ENUM_NOTES.items()}
    del notes["OrderStatus"]["EXPIRED"]
    monkeypatch.setattr(docs, "ENUM_NOTES", notes)
    with pytest.raises(docs.DocsError, match="EXPIRED"):
        docs.render()


def test_a_message_type_without_a_route_stops_the_generator(monkeypatch):
    routes = dict(docs.ROUTES)
    del routes["meter"]
    monkeypatch.setattr(docs, "ROUTES", routes)
    with pytest.raises(docs.DocsError, match="'meter' has no route"):
        docs.render()
