"""The safety envelope (properties over any input) and the ramp limiter.

Notation used in the docstrings below, for limits L, state S, desired D and control period T:

- ``floor = max(L.soc_min, L.backup_reserve_soc)``, ``G = SOC_GUARD``;
- the *SoC-permitted range* of the battery is ``[-dmax, cmax]`` with
  ``dmax = min(L.max_discharge_w, max(0, S.soc - floor - G) * L.capacity_wh * 3600 / T)`` and
  ``cmax = min(L.max_charge_w, max(0, L.soc_max - G - S.soc) * L.capacity_wh * 3600 / T)``
  (the most power that one control period can move without coming within G of a bound);
- ``base = S.grid_without_battery_w``; ``b`` the battery setpoint the envelope returns;
- ``pv_new = min(S.pv_power_w, limit)`` for the returned PV limit (``S.pv_power_w`` if None): the
  PV power after the limit is applied (a limit never raises the PV).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems.control.envelope import (
    PV_RISE_SHARE, SOC_GUARD, RampLimiter, SafetyLimits, Setpoints, SiteState, apply_envelope,
)

#: Float slack for sums of numbers up to ~1e6 W.
TOL_W = 1e-6
KNOWN_REASONS = {"max_charge", "max_discharge", "soc_max", "soc_reserve", "import_limit", "export_limit",
                 "export_limit_pv"}


# -- strategies ------------------------------------------------------------------------------------

@st.composite
def safety_limits(draw) -> SafetyLimits:
    """Valid limits: soc_min < soc_max, reserve in [0, 1], positive powers, export >= 0, margin >= 0,
    and a margin small enough that the fuse band and the export band overlap
    (``import_limit - margin > -(export_limit - margin)``; wider margins are refused)."""
    soc_min = draw(st.floats(0.0, 0.9))
    soc_max = draw(st.floats(soc_min + 0.01, 1.0))
    import_limit = draw(st.floats(500.0, 50_000.0))
    export_limit = draw(st.one_of(st.just(0.0), st.floats(0.0, 30_000.0)))
    margin = draw(st.one_of(st.just(0.0), st.just(100.0),
                            st.floats(0.0, min(5000.0, (import_limit + export_limit) / 2),
                                      exclude_max=True)))
    return SafetyLimits(
        capacity_wh=draw(st.floats(500.0, 100_000.0)),
        max_charge_w=draw(st.floats(100.0, 20_000.0)),
        max_discharge_w=draw(st.floats(100.0, 20_000.0)),
        soc_min=soc_min, soc_max=soc_max,
        backup_reserve_soc=draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0))),
        import_limit_w=import_limit, export_limit_w=export_limit, margin_w=margin,
        pv_peak_w=draw(st.one_of(st.none(), st.floats(100.0, 20_000.0))),
    )


@st.composite
def site_states(draw, limits: SafetyLimits) -> SiteState:
    """Any finite state: grid -20..20 kW, battery within its limits, SoC 0..1 (with the bounds and
    the guard bands sampled on purpose), PV 0..peak, optional held PV limit."""
    floor = limits.soc_floor
    soc = draw(st.one_of(
        st.floats(0.0, 1.0),
        st.sampled_from([0.0, 1.0, floor, floor + SOC_GUARD, limits.soc_max, limits.soc_max - SOC_GUARD]),
    ).map(lambda value: min(max(value, 0.0), 1.0)))
    peak = limits.pv_peak_w if limits.pv_peak_w is not None else 20_000.0
    pv = draw(st.one_of(st.just(0.0), st.just(peak), st.floats(0.0, peak)))
    return SiteState(
        grid_import_w=draw(st.floats(-20_000.0, 20_000.0)),
        battery_charge_w=draw(st.floats(-limits.max_discharge_w, limits.max_charge_w)),
        battery_soc=soc, pv_power_w=pv,
        pv_limit_w=draw(st.one_of(st.none(), st.floats(0.0, peak))),
    )


desired_battery = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([1e6, -1e6, 0.0, math.nan, math.inf, -math.inf]))
#: Any PV limit except NaN, which the envelope turns into full curtailment
#: (test_nan_pv_limit_request_is_no_curtailment documents that bug).
desired_pv_limit = st.one_of(st.none(), st.floats(-1e6, 1e6), st.sampled_from([0.0, -1.0, math.inf, -math.inf]))


@st.composite
def cases(draw):
    limits = draw(safety_limits())
    state = draw(site_states(limits))
    desired = Setpoints(draw(desired_battery), draw(desired_pv_limit))
    period = draw(st.one_of(st.sampled_from([1.0, 10.0, 300.0]), st.floats(1.0, 900.0)))
    return limits, state, desired, period


# -- the oracle: the envelope's contract, computed independently -----------------------------------

def permitted_range(limits: SafetyLimits, state: SiteState, period_s: float) -> tuple[float, float]:
    """``(-dmax, cmax)`` of the module docstring."""
    to_w = limits.capacity_wh * 3600.0 / period_s
    floor = max(limits.soc_min, limits.backup_reserve_soc)
    dmax = min(limits.max_discharge_w, max(0.0, state.battery_soc - floor - SOC_GUARD) * to_w)
    cmax = min(limits.max_charge_w, max(0.0, limits.soc_max - SOC_GUARD - state.battery_soc) * to_w)
    return -dmax, cmax


def pv_after(state: SiteState, limit: float | None) -> float:
    return state.pv_power_w if limit is None else min(state.pv_power_w, limit)


# -- the core safety property ----------------------------------------------------------------------

@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_envelope_result_is_always_inside_the_local_limits(case):
    """For any finite state, any desired setpoints and any valid limits (see the strategies), the
    envelope's result ``b`` (battery) and ``limit`` (PV) satisfy:

    1. ``-L.max_discharge_w <= b <= L.max_charge_w`` and ``b`` is finite;
    2. ``S.soc <= floor + G  =>  b >= 0`` (no discharge at or below the guarded floor) and
       ``S.soc >= L.soc_max - G  =>  b <= 0`` (no charge at or above the guarded ceiling);
    3. the energy moved in one period ``b * T / 3600`` Wh never carries the SoC across the floor
       (when above it) or across soc_max (when below it): ``soc + b*T/3600/capacity`` stays in
       ``[floor, soc_max]`` on the side it started;
    4. fuse: ``base + b <= L.import_limit_w - L.margin_w`` whenever the battery alone can achieve it
       within its SoC-permitted range (``base - dmax <= import_limit - margin``);
    5. export: ``base + (S.pv_power_w - pv_new) + b >= -(L.export_limit_w - L.margin_w)`` (the PV
       that the limit cuts off is no longer exported) whenever the battery and PV curtailment
       together can achieve it (``base + S.pv_power_w + cmax >= -(export_limit - margin)``, PV
       curtailed to 0 and the battery charging at cmax);
    6. ``limit`` is None or a finite number >= 0 (never negative);
    7. every entry of the reasons tuple is a known limit name, none twice.

    All comparisons with an absolute slack of 1e-6 W (sums of numbers up to 1e6 W in floats).
    """
    limits, state, desired, period = case
    result = apply_envelope(desired, state, limits, period)
    b, limit = result.setpoints.battery_charge_w, result.setpoints.pv_limit_w
    floor = limits.soc_floor
    # 1
    assert math.isfinite(b)
    assert -limits.max_discharge_w - TOL_W <= b <= limits.max_charge_w + TOL_W
    # 2
    if state.battery_soc <= floor + SOC_GUARD:
        assert b >= -TOL_W, "discharging at or below the guarded floor"
    if state.battery_soc >= limits.soc_max - SOC_GUARD:
        assert b <= TOL_W, "charging at or above the guarded ceiling"
    # 3
    soc_after = state.battery_soc + b * period / 3600.0 / limits.capacity_wh
    if state.battery_soc >= floor:
        assert soc_after >= floor - 1e-12
    if state.battery_soc <= limits.soc_max:
        assert soc_after <= limits.soc_max + 1e-12
    # 4
    low, high = permitted_range(limits, state, period)
    base = state.grid_without_battery_w
    fuse_w = limits.import_limit_w - limits.margin_w
    if base + low <= fuse_w:
        assert base + b <= fuse_w + TOL_W, "battery pushes the site over the fuse although it need not"
    # 5
    export_bound_w = -(limits.export_limit_w - limits.margin_w)
    if base + state.pv_power_w + high >= export_bound_w:
        predicted = base + (state.pv_power_w - pv_after(state, limit)) + b
        assert predicted >= export_bound_w - TOL_W, "export over the limit although battery + PV could hold it"
    # 6
    assert limit is None or (math.isfinite(limit) and limit >= 0.0)
    # 7
    assert set(result.clamped_by) <= KNOWN_REASONS
    assert len(set(result.clamped_by)) == len(result.clamped_by)


@settings(max_examples=800, deadline=None)
@given(cases())
def test_envelope_reasons_name_each_limit_that_changed_the_value(case):
    """With ``d`` the desired battery power (NaN and infinities count as 0, the idle command):

    - ``b < d - 1e-6`` (lowered) => the reasons contain ``import_limit``, or ``b`` equals cmax and
      the reasons contain ``max_charge`` (cmax == max_charge_w) or ``soc_max`` (cmax < max_charge_w);
    - ``b > d + 1e-6`` (raised) => the reasons contain ``export_limit``, or ``b`` equals -dmax and
      the reasons contain ``max_discharge`` (dmax == max_discharge_w) or ``soc_reserve`` (else);
    - the PV the returned limit lets through is lower than the PV the desired limit lets through
      (``pv_new < min(pv, max(0, desired limit))`` by more than 1e-6 W) => ``export_limit_pv``;
    - ``export_limit_pv`` in the reasons => a PV limit is returned and it is at or below the PV
      power now (it binds; with no PV at all it is 0), unless the excess was below 1e-6 W.
    """
    limits, state, desired, period = case
    result = apply_envelope(desired, state, limits, period)
    reasons = set(result.clamped_by)
    b = result.setpoints.battery_charge_w
    d = desired.battery_charge_w if math.isfinite(desired.battery_charge_w) else 0.0
    low, high = permitted_range(limits, state, period)
    if b < d - TOL_W:
        if "import_limit" not in reasons:
            assert b == pytest.approx(high, abs=TOL_W)
            assert ("max_charge" if high == limits.max_charge_w else "soc_max") in reasons
    if b > d + TOL_W:
        if "export_limit" not in reasons:
            assert b == pytest.approx(low, abs=TOL_W)
            assert ("max_discharge" if -low == limits.max_discharge_w else "soc_reserve") in reasons
    desired_limit = desired.pv_limit_w
    desired_pv = state.pv_power_w if desired_limit is None else pv_after(state, max(0.0, desired_limit))
    new_pv = pv_after(state, result.setpoints.pv_limit_w)
    if new_pv < desired_pv - TOL_W:
        assert "export_limit_pv" in reasons
    if "export_limit_pv" in reasons:
        limit = result.setpoints.pv_limit_w
        if limit is None:  # only an excess lost in rounding may be dropped again
            export_bound_w = -(limits.export_limit_w - limits.margin_w)
            assert state.grid_without_battery_w + b >= export_bound_w - TOL_W
        else:
            assert limit <= state.pv_power_w


# -- examples: one per clamp reason ----------------------------------------------------------------

LIMITS = SafetyLimits(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=4_000, soc_min=0.05, soc_max=0.95,
                      backup_reserve_soc=0.2, import_limit_w=17_000, export_limit_w=5_000, margin_w=100,
                      pv_peak_w=10_000)
MID = SiteState(grid_import_w=500, battery_charge_w=0, battery_soc=0.5, pv_power_w=0)


def envelope(battery_w: float, state: SiteState = MID, pv_limit_w: float | None = None,
             limits: SafetyLimits = LIMITS, period_s: float = 10.0):
    return apply_envelope(Setpoints(battery_w, pv_limit_w), state, limits, period_s)


def test_inside_every_limit_nothing_changes():
    result = envelope(1_000)
    assert result.setpoints == Setpoints(1_000, None)
    assert result.clamped_by == ()


def test_max_charge():
    result = envelope(9_000)
    assert result.setpoints.battery_charge_w == 5_000
    assert result.clamped_by == ("max_charge",)


def test_max_discharge():
    result = envelope(-9_000, SiteState(grid_import_w=9_000, battery_charge_w=0, battery_soc=0.5))
    assert result.setpoints.battery_charge_w == -4_000
    assert result.clamped_by == ("max_discharge",)


def test_soc_reserve_at_the_floor_forbids_any_discharge():
    # The floor is the backup reserve (0.2 > soc_min 0.05).
    state = SiteState(grid_import_w=3_000, battery_charge_w=0, battery_soc=0.2 + SOC_GUARD)
    result = envelope(-3_000, state)
    # 0.2 + 0.005 - 0.2 - 0.005 is 1.6e-11 W of "room" in floats, not 0: hence approx.
    assert result.setpoints.battery_charge_w == pytest.approx(0.0, abs=1e-6)
    assert result.clamped_by == ("soc_reserve",)
    below = SiteState(grid_import_w=3_000, battery_charge_w=0, battery_soc=0.1)
    assert envelope(-3_000, below).setpoints.battery_charge_w == 0.0


def test_soc_reserve_near_the_floor_allows_only_one_periods_energy():
    # 0.2 % of 10 kWh above the guarded floor = 20 Wh: 7.2 kW for 10 s, capped at max 4 kW;
    # 0.01 % = 1 Wh: 360 W for 10 s.
    state = SiteState(grid_import_w=3_000, battery_charge_w=0, battery_soc=0.2 + SOC_GUARD + 0.0001)
    result = envelope(-3_000, state)
    assert result.setpoints.battery_charge_w == pytest.approx(-360.0)
    assert result.clamped_by == ("soc_reserve",)


def test_soc_max_near_the_ceiling():
    state = SiteState(grid_import_w=-3_000, battery_charge_w=0, battery_soc=0.95 - SOC_GUARD - 0.0001)
    result = envelope(3_000, state)
    assert result.setpoints.battery_charge_w == pytest.approx(360.0)
    assert result.clamped_by == ("soc_max",)


def test_import_limit_makes_the_battery_discharge():
    # House 18 kW and nothing else: the battery must discharge 1.1 kW to stay 100 W under the fuse.
    state = SiteState(grid_import_w=18_000, battery_charge_w=0, battery_soc=0.5)
    result = envelope(0.0, state)
    assert result.setpoints.battery_charge_w == pytest.approx(-1_100)
    assert result.clamped_by == ("import_limit",)


def test_import_limit_stops_charging_from_the_grid():
    state = SiteState(grid_import_w=15_000, battery_charge_w=0, battery_soc=0.5)
    result = envelope(4_000, state)
    assert result.setpoints.battery_charge_w == pytest.approx(1_900)
    assert result.clamped_by == ("import_limit",)


def test_import_limit_beyond_what_the_battery_can_do_discharges_at_most_max():
    state = SiteState(grid_import_w=25_000, battery_charge_w=0, battery_soc=0.5)
    result = envelope(0.0, state)
    assert result.setpoints.battery_charge_w == -4_000
    assert "import_limit" in result.clamped_by


def test_export_limit_makes_the_battery_charge():
    # PV 8 kW, house 1 kW: 7 kW export, limit 5 kW - 100 W margin: the battery takes 2.1 kW.
    state = SiteState(grid_import_w=-7_000, battery_charge_w=0, battery_soc=0.5, pv_power_w=8_000)
    result = envelope(0.0, state)
    assert result.setpoints.battery_charge_w == pytest.approx(2_100)
    assert result.clamped_by == ("export_limit",)
    # The site now sits on the export bound: the PV is held where it is (written ahead of a rise,
    # which is no curtailment yet, so no export_limit_pv).
    assert result.setpoints.pv_limit_w == pytest.approx(8_000)


def test_export_limit_pv_curtails_what_a_full_battery_cannot_take():
    state = SiteState(grid_import_w=-7_000, battery_charge_w=0, battery_soc=0.95, pv_power_w=8_000)
    result = envelope(0.0, state)
    assert result.setpoints.battery_charge_w == 0.0
    assert result.setpoints.pv_limit_w == pytest.approx(8_000 - 2_100)
    assert "export_limit_pv" in result.clamped_by


def test_export_bound_is_written_ahead_when_pv_could_reach_it_within_a_period():
    # Export 4.5 kW against a bound of 4.9 kW: PV may rise 20 % of peak (2 kW) in a period, so the
    # bound (PV 8.4 kW) is written already, with no reason since nothing was changed yet.
    state = SiteState(grid_import_w=-4_500, battery_charge_w=0, battery_soc=0.95, pv_power_w=8_000)
    result = envelope(0.0, state)
    assert result.setpoints.pv_limit_w == pytest.approx(8_400)
    assert result.clamped_by == ()
    # Far from the bound, nothing is written.
    calm = SiteState(grid_import_w=-1_000, battery_charge_w=0, battery_soc=0.95, pv_power_w=3_000)
    assert envelope(0.0, calm).setpoints.pv_limit_w is None
    assert 3_000 + PV_RISE_SHARE * 10_000 < 3_000 + 3_900  # the calm case is indeed beyond the rise


def test_held_pv_limit_tracks_the_site_and_is_released_at_the_peak():
    # Held 5 kW, PV 2 kW, import 500 W: PV could rise to 2 + 0.5 + 4.9 = 7.4 kW before the export bound.
    state = SiteState(grid_import_w=500, battery_charge_w=0, battery_soc=0.5, pv_power_w=2_000, pv_limit_w=5_000)
    assert envelope(0.0, state).setpoints.pv_limit_w == pytest.approx(7_400)
    # With 4 kW import the bound (10.9 kW) is beyond the 10 kW peak: the limit is given back.
    state = SiteState(grid_import_w=4_000, battery_charge_w=0, battery_soc=0.5, pv_power_w=2_000, pv_limit_w=5_000)
    assert envelope(0.0, state).setpoints.pv_limit_w is None


def test_requested_negative_pv_limit_becomes_zero():
    assert envelope(0.0, pv_limit_w=-500.0).setpoints.pv_limit_w == 0.0


def test_nan_and_infinite_battery_requests_become_idle():
    assert envelope(math.nan).setpoints.battery_charge_w == 0.0
    assert envelope(math.inf).setpoints.battery_charge_w == 0.0
    assert envelope(-math.inf).setpoints.battery_charge_w == 0.0


def test_sub_second_period_is_treated_as_one_second():
    # Conservative: a 0.1 s period may move only as much power as a 1 s period.
    state = SiteState(grid_import_w=3_000, battery_charge_w=0, battery_soc=0.2 + SOC_GUARD + 0.0001)
    assert envelope(-3_000, state, period_s=0.1).setpoints.battery_charge_w == pytest.approx(-3_000)
    state = SiteState(grid_import_w=3_000, battery_charge_w=0, battery_soc=0.2 + SOC_GUARD + 0.00001)
    assert envelope(-3_000, state, period_s=0.1).setpoints.battery_charge_w == pytest.approx(-360.0)


# -- ramp limiter ----------------------------------------------------------------------------------

def test_ramp_first_step_is_unconstrained():
    ramp = RampLimiter(100.0)
    assert ramp.step(5_000, now_s=0.0) == 5_000


def test_ramp_moves_at_most_ramp_times_elapsed_both_ways():
    ramp = RampLimiter(100.0)
    ramp.commit(1_000, 10.0)
    assert ramp.step(5_000, 12.0) == 1_200
    assert ramp.step(-5_000, 12.0) == 800
    assert ramp.step(1_150, 12.0) == 1_150  # within reach: the target itself
    assert ramp.step(5_000, 10.0) == 1_000  # no time, no movement
    assert ramp.step(5_000, 5.0) == 1_000  # time going backwards never widens the step


def test_ramp_reset_forgets_history():
    ramp = RampLimiter(100.0)
    ramp.commit(0.0, 0.0)
    assert ramp.step(3_000, 1.0) == 100.0
    ramp.reset()
    assert ramp.step(3_000, 1.0) == 3_000


@given(st.floats(1.0, 10_000.0), st.floats(-1e5, 1e5), st.floats(-1e5, 1e5), st.floats(0.0, 1_000.0))
def test_ramp_property(ramp_w_per_s, last_w, target_w, elapsed_s):
    """``|step - last| <= ramp * elapsed`` and the step lies between last and target."""
    ramp = RampLimiter(ramp_w_per_s)
    ramp.commit(last_w, 100.0)
    value = ramp.step(target_w, 100.0 + elapsed_s)
    assert abs(value - last_w) <= ramp_w_per_s * elapsed_s * (1 + 1e-12) + 1e-9
    assert min(last_w, target_w) <= value <= max(last_w, target_w)


# -- regressions of bugs found and fixed ----------------------------------------------------------

def test_nan_pv_limit_request_is_no_curtailment():
    state = SiteState(grid_import_w=500, battery_charge_w=0, battery_soc=0.5, pv_power_w=3_000)
    result = envelope(0.0, state, pv_limit_w=math.nan)
    assert result.setpoints.pv_limit_w is None  # today: 0.0, i.e. 3 kW of PV switched off


def test_requested_pv_curtailment_never_pushes_the_site_over_the_fuse():
    # House 20 kW, PV 5 kW: grid 15 kW under a 17 kW fuse. The plan asks to curtail PV to 0 W.
    state = SiteState(grid_import_w=15_000, battery_charge_w=0, battery_soc=0.5, pv_power_w=5_000)
    result = envelope(0.0, state, pv_limit_w=0.0)
    b, limit = result.setpoints.battery_charge_w, result.setpoints.pv_limit_w
    grid_after = state.grid_without_battery_w + (state.pv_power_w - pv_after(state, limit)) + b
    assert grid_after <= LIMITS.import_limit_w - LIMITS.margin_w + TOL_W  # today: 20 kW


def test_a_margin_wider_than_the_gap_between_the_limits_is_refused():
    """With margin > (import + export) / 2 the export bound would lie above the fuse bound and
    the export clamp would charge the battery over the fuse: such limits are refused."""
    with pytest.raises(ValueError, match="margin_w"):
        SafetyLimits(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=5_000, soc_min=0.05, soc_max=0.95,
                     backup_reserve_soc=0.0, import_limit_w=3_000, export_limit_w=0.0, margin_w=4_000)