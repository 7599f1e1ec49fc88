"""The [grid] section and the linear model of one radial line."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.grid import FeederModel, FeederSection
from hems.config.base import Section
from hems.config.errors import ConfigError, validate_toml

from .strategies import feeders


class ManagerFile(Section):
    """The shape the manager's file will have once the lead adds ``grid`` to CommunityConfig."""

    grid: FeederSection


GOOD = """
[grid]
transformer_import_limit_w = 250000
transformer_export_limit_w = 150000

[[grid.homes]]
id = "near"
position_m = 40
voltage_sensitivity_v_per_kw = 0.1

[[grid.homes]]
id = "far"
position_m = 400
voltage_sensitivity_v_per_kw = 1.25

[[grid.homes]]
id = "middle"
position_m = 200.5
voltage_sensitivity_v_per_kw = 0.6
"""


def parse(text: str) -> FeederSection:
    return validate_toml(text, "community.toml", ManagerFile, decimals=True).grid


def test_a_good_section_reads_with_its_defaults_and_decimals():
    section = parse(GOOD)
    assert section.nominal_voltage_v == 230 and section.voltage_band_pct == 10
    assert section.homes[2].position_m == 200.5 and isinstance(section.homes[2].position_m, float)
    model = FeederModel.from_section(section, ["near", "far", "middle", "new-home"])
    assert model.homes == ("near", "middle", "far")  # nearest (least sensitive) first
    assert model.sensitivities_v_per_kw == (0.1, 0.6, 1.25)
    assert model.unplaced_homes == ("new-home",)
    assert model.sensitivity("new-home") == 0.0 and model.index("new-home") is None
    assert model.max_voltage_v == pytest.approx(253) and model.min_voltage_v == pytest.approx(207)


@pytest.mark.parametrize(("change", "message"), [
    (('id = "far"', 'id = "near"'), 'grid.homes[1].id = "near" is invalid: allowed an id not used by another home'),
    (("1.25", "0.5"), "grid.homes[1].voltage_sensitivity_v_per_kw = 0.5 is out of range: allowed >= 0.6, the "
                      "sensitivity of 'middle' at 200.5 m (on one radial line a farther home is more sensitive)"),
    (("position_m = 40", "position_m = -5"), "grid.homes[0].position_m = -5 is out of range: allowed [0, 100000]"),
    (("0.1", "0"), "grid.homes[0].voltage_sensitivity_v_per_kw = 0 is out of range: allowed (0, 100]"),
    (("150000", "0"), "grid.transformer_export_limit_w = 0 is out of range: allowed (0, 1000000000]"),
    (("[[grid.homes]]", "voltage_band_pct = 25\n[[grid.homes]]"),
     "grid.voltage_band_pct = 25 is out of range: allowed (0, 20]"),
    (('id = "near"', 'id = "near"\nphase = "L1"'), "grid.homes[0].phase: unknown key"),
    (("transformer_import_limit_w = 250000", ""), "grid.transformer_import_limit_w: required key is missing"),
    (('id = "far"', 'id = "far home"'), "grid.homes[1].id"),
])
def test_mistakes_name_the_key(change, message):
    with pytest.raises(ConfigError) as raised:
        parse(GOOD.replace(*change, 1))
    assert message in str(raised.value)


def test_only_a_strictly_nearer_home_bounds_the_sensitivity():
    def section(*homes):
        return {"transformer_import_limit_w": 1, "transformer_export_limit_w": 1,
                "homes": [{"id": name, "position_m": position, "voltage_sensitivity_v_per_kw": s}
                          for name, position, s in homes]}
    # two homes at one distance, each on its own service cable: either may be the more sensitive
    FeederSection.model_validate(section(("a", 100, 0.8), ("b", 100, 0.5), ("c", 150, 0.8)))
    # ... but a home nearer than both bounds them, whichever of the two is listed last
    for homes in ([("x", 50, 0.6), ("a", 100, 0.8), ("b", 100, 0.5)], [("x", 50, 0.6), ("b", 100, 0.5), ("a", 100, 0.8)]):
        with pytest.raises(ValueError, match="'x' at 50 m"):
            FeederSection.model_validate(section(*homes))


def test_the_sensitivity_matrix_is_the_shared_path():
    model = FeederModel(("a", "b", "c"), (100.0, 200.0, 300.0), (0.5, 1.0, 2.0), 1e5, 1e5)
    assert model.sensitivity_matrix().tolist() == [[0.5, 0.5, 0.5], [0.5, 1.0, 1.0], [0.5, 1.0, 2.0]]
    # 10 kW injected at each: a sees 0.5·30, b 0.5·10 + 1·20, c 0.5·10 + 1·10 + 2·10
    assert model.voltages_v({"a": 10, "b": 10, "c": 10, "elsewhere": 99}) == {"a": 245.0, "b": 255.0, "c": 265.0}


@settings(max_examples=40, deadline=None)
@given(feeders(max_homes=12), st.data())
def test_the_linear_time_voltage_rise_is_the_matrix_product(model, data):
    count = len(model.homes)
    injection = np.array(data.draw(st.lists(st.floats(-50, 50), min_size=count, max_size=count)))
    assert np.allclose(model.voltage_rise_v(injection), model.sensitivity_matrix() @ injection, atol=1e-9)


def test_a_model_rejects_an_unsorted_or_inconsistent_line():
    with pytest.raises(ValueError, match="sorted"):
        FeederModel(("a", "b"), (0.0, 1.0), (2.0, 1.0), 1, 1)
    with pytest.raises(ValueError, match="length"):
        FeederModel(("a", "b"), (0.0,), (1.0, 2.0), 1, 1)
    with pytest.raises(ValueError, match="twice"):
        FeederModel(("a", "a"), (0.0, 1.0), (1.0, 2.0), 1, 1)


def test_decimal_text_is_accepted_as_written():
    section = FeederSection.model_validate({"transformer_import_limit_w": 5, "transformer_export_limit_w": 5,
                                            "nominal_voltage_v": Decimal("400"), "voltage_band_pct": Decimal("7.5")})
    assert FeederModel.from_section(section).min_voltage_v == pytest.approx(370)
