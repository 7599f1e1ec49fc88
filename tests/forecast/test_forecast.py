"""Load and PV forecasts and their MAE, on synthetic history (no downloads)."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.forecast.error import MaeTracker
from hems.forecast.load import LoadForecastConfig, LoadForecaster
from hems.forecast.window import ObservationWindow
from hems.forecast.profile import StandardProfile
from hems.forecast.pv import PvForecastConfig, PvForecaster
from hems.mpc.site import PvArrayConfig

START = datetime(2024, 6, 3, tzinfo=timezone.utc)  # a Monday


def test_standard_profile_scales_to_annual_consumption():
    profile = StandardProfile.load()
    assert profile.table_w.shape == (96, 3) and profile.month_factor.shape == (12,)
    instants = [datetime(2023, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=15 * i) for i in range(96 * 365)]
    energy_kwh = profile.power_w(instants, 4000.0, "Europe/Berlin").sum() * 0.25 / 1000
    assert energy_kwh == pytest.approx(4000.0, rel=0.03)


def test_load_forecast_falls_back_then_learns_the_home():
    forecaster = LoadForecaster(LoadForecastConfig(annual_kwh=3000))
    standard = forecaster.forecast(START, 96, 900, now=START)
    assert standard.sum() * 0.25 / 1000 == pytest.approx(3000 / 365 * 0.87, rel=0.1)
    # This home draws 2 kW from 18:00 to 20:00 local (16:00-18:00 UTC), 200 W otherwise.
    def home(instant):
        return 2000.0 if 16 <= instant.hour < 18 else 200.0
    for day in range(14):
        for slot in range(96):
            instant = START - timedelta(days=14 - day) + timedelta(minutes=15 * slot)
            forecaster.observe(instant, home(instant))
    forecast = forecaster.forecast(START, 96, 900, now=START)
    truth = np.array([home(START + timedelta(minutes=15 * i)) for i in range(96)])
    assert np.abs(forecast - truth).mean() < 0.2 * np.abs(standard - truth).mean()
    assert np.abs(forecast - truth).max() < 1.0


def test_load_forecast_weights_recent_days_more():
    forecaster = LoadForecaster(LoadForecastConfig(half_life_days=2.0, full_trust_days=1.0))
    for day in range(10):
        level = 1000.0 if day < 7 else 300.0  # the home changed three days ago
        for slot in range(96):
            forecaster.observe(START - timedelta(days=10 - day) + timedelta(minutes=15 * slot), level)
    forecast = forecaster.forecast(START, 96, 900, now=START)
    assert forecast.mean() < (7 * 1000 + 3 * 300) / 10  # below the unweighted mean
    assert forecast.mean() > 300


def test_pv_forecast_learns_scale_from_measurements():
    config = PvForecastConfig(latitude_deg=51.0, longitude_deg=10.0, arrays=(PvArrayConfig(peak_power_w=8000),))
    forecaster = PvForecaster(config)
    clear = forecaster.clear_sky_w([START + timedelta(minutes=15 * i + 7.5) for i in range(96)])
    assert 5000 < clear.max() < 8000 and clear[:8].max() == 0  # no sun around midnight UTC
    first = forecaster.forecast(START, 96, 900, now=START)
    np.testing.assert_allclose(first, config.initial_scale * clear)
    for day in range(1, 4):
        for i in range(96):
            instant = START - timedelta(days=day) + timedelta(minutes=15 * i + 7.5)
            sky = float(forecaster.clear_sky_w([instant])[0]) if 30 <= i <= 70 else 0.0
            forecaster.observe(instant, 0.45 * sky, clear_sky_w=sky)
    assert forecaster.scale(START) == pytest.approx(0.45, abs=0.01)
    np.testing.assert_allclose(forecaster.forecast(START, 96, 900, now=START), forecaster.scale(START) * clear)


def test_mae_tracker_scores_latest_forecast():
    tracker = MaeTracker()
    tracker.issue(START, 900, np.array([100.0, 200.0, 300.0]))
    tracker.issue(START + timedelta(minutes=15), 900, np.array([250.0]))  # replaces slot 1
    assert tracker.observe(START, 150.0) == 50.0
    assert tracker.observe(START + timedelta(minutes=15), 200.0) == 50.0
    assert tracker.observe(START + timedelta(hours=5), 1.0) is None  # never forecast
    assert tracker.mae_w == 50.0 and tracker.count == 2


def test_public_holidays_are_forecast_like_sundays():
    """Christmas Day 2025 is a Thursday: with the German calendar its standard profile is the
    Sunday profile of the same month; without a calendar it is a weekday."""
    christmas = datetime(2025, 12, 25, tzinfo=timezone.utc)
    sunday = datetime(2025, 12, 21, tzinfo=timezone.utc)
    thursday = datetime(2025, 12, 18, tzinfo=timezone.utc)
    german = LoadForecaster(LoadForecastConfig(timezone="UTC", holiday_country="DE"))
    none = LoadForecaster(LoadForecastConfig(timezone="UTC"))
    assert np.allclose(german.forecast(christmas, 96, 900, christmas), german.forecast(sunday, 96, 900, sunday))
    assert np.allclose(none.forecast(christmas, 96, 900, christmas), none.forecast(thursday, 96, 900, thursday))
    assert not np.allclose(german.forecast(christmas, 96, 900, christmas),
                           none.forecast(christmas, 96, 900, christmas))


def test_clear_sky_cache_returns_what_pvlib_computes_even_beyond_its_size() -> None:
    from hems.forecast.pv import CLEAR_SKY_CACHE_SIZE

    config = PvForecastConfig(latitude_deg=48.0, longitude_deg=7.8, arrays=(PvArrayConfig(peak_power_w=6000),))
    start = datetime(2026, 6, 19, tzinfo=timezone.utc)
    instants = [start + timedelta(minutes=5 * index) for index in range(CLEAR_SKY_CACHE_SIZE + 500)]
    cached = PvForecaster(config)
    first = cached.clear_sky_w(instants)  # more instants than the cache holds
    again = cached.clear_sky_w(instants[-96:])  # partly cached, shifted
    fresh = PvForecaster(config).clear_sky_w(instants[-96:])
    assert first.max() > 3000
    np.testing.assert_allclose(again, fresh)
    np.testing.assert_allclose(first[-96:], fresh)


def test_todays_clouds_correct_the_next_hours_and_fade_into_the_learned_scale() -> None:
    config = PvForecastConfig(latitude_deg=48.0, longitude_deg=7.8, arrays=(PvArrayConfig(peak_power_w=6000),))
    forecaster = PvForecaster(config)
    today = datetime(2026, 6, 19, tzinfo=timezone.utc)
    for day in range(1, 8):  # a clear week: the learned scale is ~1
        for hour in range(6, 18):
            instant = today - timedelta(days=day) + timedelta(hours=hour)
            forecaster.observe(instant, float(forecaster.clear_sky_w([instant])[0]))
    now = today + timedelta(hours=9)
    for minutes in range(0, 60, 15):  # this morning: 40 % of the clear sky
        instant = now - timedelta(minutes=60 - minutes - 7.5)
        forecaster.observe(instant, 0.4 * float(forecaster.clear_sky_w([instant])[0]))
    assert forecaster.scale(now) > 0.9
    assert forecaster.recent_scale(now) == pytest.approx(0.4, abs=0.01)
    steps = 32  # until 17:00 UTC, daylight all along
    clear = forecaster.clear_sky_w([now + timedelta(minutes=15 * (i + 0.5)) for i in range(steps)])
    ratio = forecaster.forecast(now, steps, 900, now) / clear
    assert ratio[0] == pytest.approx(0.4, abs=0.05)  # the next slot: today's sky
    assert np.all(np.diff(ratio) > 0)  # fading ...
    assert ratio[-1] > 0.8  # ... into the learned scale 8 h ahead


@settings(max_examples=60, deadline=None)
@given(operations=st.lists(st.tuples(st.booleans(), st.integers(0, 5_000)), max_size=3_000),
       capacity=st.sampled_from([1, 2, 7, 1024]))
def test_observation_window_keeps_what_a_deque_keeps(operations: list[tuple[bool, int]], capacity: int) -> None:
    """Appends and front evictions, interleaved at random past several growths and compactions,
    leave the same observations, in the same order, as a deque with popleft."""
    window = ObservationWindow({"value": np.float64, "bin": np.intp}, capacity=capacity)
    reference: deque[tuple[int, float, int]] = deque()
    time_us = 0
    for is_append, amount in operations:
        if is_append:
            time_us += amount - 500  # mostly forwards, sometimes backwards
            window.append(time_us, amount / 7.0, amount % 3)
            reference.append((time_us, amount / 7.0, amount % 3))
        else:
            horizon_us = time_us - amount
            window.forget_before(horizon_us)
            while reference and reference[0][0] < horizon_us:
                reference.popleft()
        assert len(window) == len(reference)
    assert window.column("times_us").tolist() == [entry[0] for entry in reference]
    assert window.column("value").tolist() == [entry[1] for entry in reference]
    assert window.column("bin").tolist() == [entry[2] for entry in reference]
    assert window.span_us() == (reference[-1][0] - reference[0][0] if len(reference) > 1 else 0)
