"""Approval: caps that keep every limit for any positions inside them, with the least curtailment."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hems.community.grid import (ConstraintKind, FeederModel, GridLimits, approve, check, effective_limits)

from .strategies import feeders, operator_limits, positions

LINE = FeederModel(("a", "b", "c"), (100.0, 200.0, 300.0), (0.5, 1.0, 2.0), 100_000, 100_000)
EXPORTING = {"a": -2_500, "b": -2_500, "c": -2_500}  # 10 kW each over 900 s: c at 265 V


def corners(caps):
    """Importers at their caps with exporters at 0, the reverse, and everyone at its cap."""
    importing = {home: cap.max_import_wh for home, cap in caps.items()}
    exporting = {home: -cap.max_export_wh for home, cap in caps.items()}
    both = {home: cap.max_import_wh - cap.max_export_wh for home, cap in caps.items()}
    return importing, exporting, both


def test_an_overvoltage_at_the_far_end_curtails_the_far_home_first():
    # c must lose 12 V; c moves its own voltage by 2 V/kW, b by 1, a by 0.5: 6 kW of c = 1500 Wh
    approval = approve(LINE, None, EXPORTING, 900)
    assert [item.describe() for item in approval.check.violations] == [
        "overvoltage at b: 255 V against 253 V (band), exceeded by 2 V",
        "overvoltage at c: 265 V against 253 V (band), exceeded by 12 V"]
    assert approval.curtailed_wh == {"c": 1_500} and approval.rounding == "snapped"
    assert approval.caps["c"].max_export_wh == 1_000 and approval.caps["c"].max_import_wh == 0
    assert approval.caps["a"].max_export_wh == approval.caps["b"].max_export_wh == 2_500
    assert approval.lp_curtailed_wh == pytest.approx(1_500)
    (row,) = approval.binding
    assert (row.kind, row.home, row.worst_case_value) == (ConstraintKind.OVERVOLTAGE, "c", 265)
    assert row.shadow_price == pytest.approx(1 / 0.008, rel=1e-4)  # Wh of c per V: 2 V/kW · 4 W/Wh
    assert check(LINE, None, {"a": -2_500, "b": -2_500, "c": -1_000}, 900).voltages_v["c"] == 253


def test_when_the_far_home_is_not_enough_the_next_farthest_follows():
    # band 5 %: c must lose 23.5 V; all of c gives 20 V, then b at 1 V/kW: 3.5 kW = 875 Wh
    line = FeederModel(LINE.homes, LINE.positions_m, LINE.sensitivities_v_per_kw, 100_000, 100_000,
                       voltage_band_pct=5)
    approval = approve(line, None, EXPORTING, 900)
    assert approval.curtailed_wh == {"c": 2_500, "b": 875}
    assert approval.caps["c"].max_export_wh == 0 and approval.caps["b"].max_export_wh == 1_625


def test_on_the_transformer_alone_the_biggest_exporter_is_curtailed():
    feeder = FeederModel((), (), (), 100_000, 100_000, unplaced_homes=("h1", "h2", "h3", "h4"))
    cleared = {"h1": -1_000, "h2": -2_000, "h3": -3_000, "h4": -500}  # 26 kW
    approval = approve(feeder, GridLimits(export_limit_w=16_000), cleared, 900)
    assert approval.curtailed_wh == {"h3": 2_500}  # any 2500 Wh would do; the tie-break picks h3
    (row,) = approval.binding
    assert (row.kind, row.limit, row.worst_case_value, row.unit) == (
        ConstraintKind.TRANSFORMER_EXPORT, 16_000, 26_000, "W")
    assert row.shadow_price == pytest.approx(0.25, rel=1e-4)  # 1 W of limit = 0.25 Wh per 900 s


def test_a_neighbour_s_import_is_not_counted_on():
    # Net 16 kW out against 12 kW. Capping e at 4000 Wh would do if i kept importing, but after the
    # re-clear i may import nothing: e is held to the limit by itself.
    feeder = FeederModel((), (), (), 100_000, 100_000)
    approval = approve(feeder, GridLimits(export_limit_w=12_000), {"e": -6_000, "i": 2_000}, 900)
    assert approval.caps["e"].max_export_wh == 3_000 and approval.caps["i"].max_import_wh == 2_000
    assert approval.caps["i"].max_export_wh == 0


def test_a_slot_inside_every_limit_is_approved_as_cleared_without_a_solve():
    approval = approve(LINE, GridLimits(export_limit_w=40_000), {"a": -2_000, "b": -1_000, "d": 900}, 900)
    assert approval.approved and approval.caps is None and approval.cap("a") is None
    assert approval.solver_status is None and approval.total_curtailed_wh == 0


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_any_positions_inside_the_caps_keep_every_limit(data):
    feeder = data.draw(feeders(max_homes=7))
    limits = data.draw(operator_limits())
    cleared = data.draw(positions(feeder))
    approval = approve(feeder, limits, cleared, 900)
    if not check(feeder, limits, cleared, 900).congested:
        assert approval.caps is None and approval.solver_status is None
        return
    assert approval.solver_status == "optimal" and approval.rounding in ("snapped", "floor")
    caps = approval.caps
    assert set(caps) == set(cleared)
    for home, wh in cleared.items():  # only toward zero, never across it
        cap = caps[home]
        assert cap.max_import_wh == 0 if wh <= 0 else 0 <= cap.max_import_wh <= wh
        assert cap.max_export_wh == 0 if wh >= 0 else 0 <= cap.max_export_wh <= -wh
        assert approval.curtailed_wh.get(home, 0) == abs(wh) - cap.max_import_wh - cap.max_export_wh
    assert approval.cap("not-in-the-slot").max_import_wh == 0
    for corner in corners(caps):
        assert check(feeder, limits, corner, 900).violations == ()
    for _ in range(3):
        inside = {home: data.draw(st.integers(-cap.max_export_wh, cap.max_import_wh)) for home, cap in caps.items()}
        assert check(feeder, limits, inside, 900).violations == ()


def independent_optimum(feeder: FeederModel, limits, cleared: dict[str, int], duration_s: int) -> float:
    """The least curtailment, from the full model in cvxpy: every home's voltage row, no pruning."""
    homes = sorted(cleared)
    x = np.array([cleared[home] for home in homes], dtype=float)
    up, down = np.maximum(x, 0), np.maximum(-x, 0)
    imports, exports = cp.Variable(len(homes), nonneg=True), cp.Variable(len(homes), nonneg=True)
    w = 3600 / duration_s
    effective = effective_limits(feeder, limits)
    constraints = [imports <= up, exports <= down, w * cp.sum(imports) <= effective.import_limit_w,
                   w * cp.sum(exports) <= effective.export_limit_w]
    if feeder.homes:  # V per Wh at every feeder home (rows) of every home in the slot (columns)
        matrix = np.array([[min(feeder.sensitivity(home), feeder.sensitivity(other)) * w / 1000 for other in homes]
                           for home in feeder.homes])
        constraints += [matrix @ exports <= feeder.max_voltage_v - feeder.nominal_voltage_v,
                        matrix @ imports <= feeder.nominal_voltage_v - feeder.min_voltage_v]
    problem = cp.Problem(cp.Minimize(cp.sum(up - imports) + cp.sum(down - exports)), constraints)
    problem.solve(solver=cp.HIGHS)
    assert problem.status == cp.OPTIMAL
    return float(problem.value)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_curtailment_is_the_optimum_of_an_independent_lp(data):
    feeder = data.draw(feeders(max_homes=6))
    limits = data.draw(operator_limits())
    cleared = data.draw(positions(feeder))
    assume(check(feeder, limits, cleared, 900).congested)
    approval = approve(feeder, limits, cleared, 900)
    optimum = independent_optimum(feeder, limits, cleared, 900)
    assert approval.lp_curtailed_wh == pytest.approx(optimum, rel=1e-5, abs=1e-4)
    # whole Wh toward safety: less than one Wh more per curtailed home
    assert optimum - 1e-4 <= approval.total_curtailed_wh < optimum + len(approval.curtailed_wh) + 1e-4


def brute_force_optimum(feeder: FeederModel, limits, cleared: dict[str, int], duration_s: int) -> int:
    """The least whole-Wh curtailment whose box keeps every limit at ALL its 2^n corners, by
    enumeration, with the voltages from the full matrix (not the model's linear-time sum)."""
    homes = sorted(cleared)
    x = np.array([cleared[home] for home in homes])
    magnitude, sign = np.abs(x), np.sign(x)
    kept = np.array(list(itertools.product(*(range(m + 1) for m in magnitude))))  # (combos, n)
    pattern = np.array(list(itertools.product((0, 1), repeat=len(homes))))  # (corners, n)
    box = kept[:, None, :] * pattern[None, :, :] * sign  # (combos, corners, n), Wh
    w = 3600 / duration_s
    effective = effective_limits(feeder, limits)
    flow = box.sum(axis=2) * w
    safe = (flow <= effective.import_limit_w) & (-flow <= effective.export_limit_w)
    if feeder.homes:
        matrix = np.array([[min(feeder.sensitivity(home), feeder.sensitivity(other)) for other in homes]
                           for home in feeder.homes])
        voltage = feeder.nominal_voltage_v - np.einsum("fn,kcn->kcf", matrix, box * w / 1000)
        safe &= np.all((voltage <= feeder.max_voltage_v) & (voltage >= feeder.min_voltage_v), axis=2)
    feasible = np.all(safe, axis=1)
    return int((magnitude.sum() - kept.sum(axis=1))[feasible].min())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_on_tiny_slots_the_caps_are_no_worse_than_brute_force_allows(data):
    feeder = data.draw(feeders(max_homes=3, unplaced=1, tiny=True))
    limits = data.draw(operator_limits(tiny=True))
    cleared = data.draw(positions(feeder, max_wh=8))
    assume(check(feeder, limits, cleared, 3_600).congested)
    approval = approve(feeder, limits, cleared, 3_600)
    best = brute_force_optimum(feeder, limits, cleared, 3_600)
    # LP relaxation ≤ whole-Wh optimum ≤ the approval's whole-Wh caps < LP + one Wh per curtailed home
    assert approval.lp_curtailed_wh - 1e-6 <= best <= approval.total_curtailed_wh
    assert approval.total_curtailed_wh < approval.lp_curtailed_wh + len(approval.curtailed_wh) + 1e-6
