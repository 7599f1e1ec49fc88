"""Checking a cleared slot: flows, voltages, margins and the congestion report, by hand."""

from __future__ import annotations

import pytest

from hems.community.grid import ConstraintKind, FeederModel, GridLimits, check

# a, b, c along one line; 0.5, 1 and 2 V/kW. Transformer 100 kW both ways. 900 s: 1 Wh = 4 W.
LINE = FeederModel(("a", "b", "c"), (100.0, 200.0, 300.0), (0.5, 1.0, 2.0), 100_000, 100_000,
                   unplaced_homes=("d",))


def test_an_exporting_line_rises_toward_its_far_end():
    result = check(LINE, None, {"a": -2_500, "b": -2_500, "c": -2_500, "d": 300}, 900)
    assert result.flow_w == -28_800  # 30 kW out, 1.2 kW in at d (at the transformer)
    assert result.voltages_v == {"a": 245.0, "b": 255.0, "c": 265.0}
    assert result.at_transformer == ("d",)
    assert [(item.kind, item.home) for item in result.violations] == [
        (ConstraintKind.OVERVOLTAGE, "b"), (ConstraintKind.OVERVOLTAGE, "c")]
    assert result.margin(ConstraintKind.OVERVOLTAGE, "c").excess == pytest.approx(12)
    assert result.margin(ConstraintKind.TRANSFORMER_EXPORT).margin == 71_200
    assert result.report() == ["overvoltage at b: 255 V against 253 V (band), exceeded by 2 V",
                               "overvoltage at c: 265 V against 253 V (band), exceeded by 12 V"]


def test_an_importing_line_sags_and_an_operator_limit_binds():
    # a and b import 5 kW, c 10 kW: c sees 230 − (0.5·5 + 1·5 + 2·10) = 202.5 V < 207 V
    limits = GridLimits(import_limit_w=12_000)
    result = check(LINE, limits, {"a": 1_250, "b": 1_250, "c": 2_500}, 900)
    assert result.voltages_v["c"] == pytest.approx(202.5)
    kinds = {(item.kind, item.home): item for item in result.violations}
    assert set(kinds) == {(ConstraintKind.UNDERVOLTAGE, "c"), (ConstraintKind.TRANSFORMER_IMPORT, None)}
    flow = kinds[ConstraintKind.TRANSFORMER_IMPORT, None]
    assert (flow.value, flow.limit, flow.excess, flow.set_by) == (20_000, 12_000, 8_000, "operator")
    assert kinds[ConstraintKind.UNDERVOLTAGE, "c"].excess == pytest.approx(4.5)


def test_a_quiet_slot_keeps_every_limit_and_the_slot_length_scales_power():
    assert not check(LINE, None, {}, 900).congested
    hour = check(LINE, None, {"a": -2_500, "b": -2_500, "c": -2_500}, 3_600)  # 2.5 kW each
    assert hour.flow_w == -7_500 and hour.voltages_v["c"] == pytest.approx(238.75) and not hour.congested
    with pytest.raises(ValueError):
        check(LINE, None, {}, 0)
    with pytest.raises(KeyError):
        hour.margin(ConstraintKind.OVERVOLTAGE, "d")


def test_a_limit_met_exactly_is_kept():
    result = check(LINE, GridLimits(export_limit_w=40_000), {"d": -10_000}, 900)
    assert result.margin(ConstraintKind.TRANSFORMER_EXPORT).margin == 0 and not result.congested
    assert check(LINE, GridLimits(export_limit_w=39_999), {"d": -10_000}, 900).congested
