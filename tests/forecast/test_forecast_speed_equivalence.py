"""The fast forecasters return what the straightforward ones returned.

The load forecaster used to walk its whole history in Python at every forecast, and the PV
forecaster ran pvlib for every new instant, i.e. at every plan. The reference functions below are
those algorithms, kept as written before they were made fast; the forecasters must agree with them
to 1e-9 relative on histories with DST change days, public holidays, implausible readings,
readings out of order and eviction, and while rolling forward plan by plan."""

from __future__ import annotations

from collections import deque
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems.forecast.load import LoadForecastConfig, LoadForecaster
from hems.forecast.profile import StandardProfile, day_type, holiday_calendar
from hems.forecast.pv import PvForecastConfig, PvForecaster
from hems.mpc.site import PvArrayConfig

STANDARD = StandardProfile.load()


# --- the reference load forecaster: the algorithm before it was vectorised --------------------

def reference_load_observe(history: deque, config: LoadForecastConfig, instant: datetime, load_w: float) -> None:
    """Old ``LoadForecaster.observe`` on a deque of (instant, value)."""
    if not np.isfinite(load_w) or load_w < 0:
        return
    history.append((instant, float(load_w)))
    horizon = instant - timedelta(days=config.history_days)
    while history and history[0][0] < horizon:
        history.popleft()


def reference_load_forecast(history: deque, config: LoadForecastConfig, start: datetime, steps: int,
                            step_s: int, now: datetime) -> np.ndarray:
    """Old ``LoadForecaster.forecast``: a Python loop over the history and over the instants."""
    zone = ZoneInfo(config.timezone)
    holidays = holiday_calendar(config.holiday_country, config.holiday_subdivision)
    slots = 86_400 // config.slot_s

    def bin_of(instant: datetime) -> tuple[int, int]:
        local = instant.astimezone(zone)
        slot = (local.hour * 3600 + local.minute * 60 + local.second) // config.slot_s
        return int(slot) % slots, day_type(local, holidays)

    instants = [start + timedelta(seconds=step_s * (i + 0.5)) for i in range(steps)]
    standard = STANDARD.power_w(instants, config.annual_kwh, config.timezone, holidays)
    if not history:
        return standard
    sums, weights = np.zeros((slots, 3)), np.zeros((slots, 3))
    for instant, value in history:
        age_days = max((now - instant).total_seconds(), 0.0) / 86_400.0
        weight = 0.5 ** (age_days / config.half_life_days)
        slot, kind = bin_of(instant)
        sums[slot, kind] += weight * value
        weights[slot, kind] += weight
    all_types = sums.sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    learned = np.where(weights > 0, sums / np.maximum(weights, 1e-12), all_types[:, None])
    seen = weights.sum(axis=1) > 0
    span_days = (history[-1][0] - history[0][0]).total_seconds() / 86_400.0 if len(history) >= 2 else 0.0
    trust = min(1.0, span_days / config.full_trust_days)
    result = np.empty(steps)
    for index, instant in enumerate(instants):
        slot, kind = bin_of(instant)
        result[index] = trust * learned[slot, kind] + (1 - trust) * standard[index] if seen[slot] else standard[index]
    return result


# Forecast starts (UTC) whose history and horizon hold a DST change or public holidays in Germany.
PERIODS = {
    "spring DST (29 March 2026, 01:00 UTC)": datetime(2026, 3, 28, 21, 0, tzinfo=timezone.utc),
    "Good Friday and Easter Monday 2026": datetime(2026, 4, 2, 6, 0, tzinfo=timezone.utc),
    "autumn DST (25 October 2026, 01:00 UTC), 3 October in the history":
        datetime(2026, 10, 24, 22, 30, tzinfo=timezone.utc),
    "Christmas 2025": datetime(2025, 12, 24, 12, 0, tzinfo=timezone.utc),
}


def synthetic_load_history(rng: np.random.Generator, start: datetime, days: float,
                           gap: float) -> list[tuple[datetime, float]]:
    """15-min readings before ``start``: some missing, some implausible, some off the grid by
    seconds and microseconds, a few swapped with their neighbour (arrival out of order)."""
    readings = []
    for index in range(int(days * 96)):
        if rng.random() < gap:
            continue
        instant = start - timedelta(days=days) + timedelta(minutes=15 * index)
        if rng.random() < 0.1:
            instant += timedelta(seconds=int(rng.integers(0, 900)), microseconds=int(rng.integers(0, 10**6)))
        value = float(rng.gamma(2.0, 250.0))
        draw = rng.random()
        value = float("nan") if draw < 0.02 else -value if draw < 0.04 else float("inf") if draw < 0.05 else value
        readings.append((instant, value))
    for index in range(1, len(readings)):
        if rng.random() < 0.02:
            readings[index - 1], readings[index] = readings[index], readings[index - 1]
    return readings


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(period=st.sampled_from(sorted(PERIODS)), seed=st.integers(0, 2**32 - 1),
       history_span_days=st.sampled_from([0.0, 0.25, 3.0, 10.0, 35.0]), history_days=st.sampled_from([2, 7, 28]),
       half_life_days=st.sampled_from([1.5, 7.0]), full_trust_days=st.sampled_from([2.0, 7.0, 30.0]),
       slot_s=st.sampled_from([900, 1800]), step_s=st.sampled_from([900, 3600]), steps=st.sampled_from([1, 96, 192]),
       holidays=st.sampled_from(["DE", None]), gap=st.sampled_from([0.0, 0.3]),
       now_offset_s=st.integers(-7200, 3600))
def test_load_forecast_equals_the_loop_over_the_history_while_rolling_forward(
        period: str, seed: int, history_span_days: float, history_days: int, half_life_days: float,
        full_trust_days: float, slot_s: int, step_s: int, steps: int, holidays: str | None, gap: float,
        now_offset_s: int) -> None:
    config = LoadForecastConfig(annual_kwh=4200.0, timezone="Europe/Berlin", half_life_days=half_life_days,
                                history_days=history_days, full_trust_days=full_trust_days, slot_s=slot_s,
                                holiday_country=holidays)
    rng = np.random.default_rng(seed)
    start = PERIODS[period]
    fast, reference = LoadForecaster(config, STANDARD), deque()
    for instant, value in synthetic_load_history(rng, start, history_span_days, gap):
        fast.observe(instant, value)
        reference_load_observe(reference, config, instant, value)
    # Plan after plan, a slot later each, learning the slot just finished (the runtime's pattern);
    # ``now`` before some readings checks that a negative age counts as zero.
    for shift in range(6):
        slot = start + timedelta(seconds=step_s * shift)
        now = slot + timedelta(seconds=now_offset_s)
        expected = reference_load_forecast(reference, config, slot, steps, step_s, now)
        np.testing.assert_allclose(fast.forecast(slot, steps, step_s, now), expected, rtol=1e-9, atol=0)
        load_w = float(rng.gamma(2.0, 250.0)) if shift != 2 else float("nan")
        fast.observe(slot, load_w)
        reference_load_observe(reference, config, slot, load_w)
    assert fast.history_days == pytest.approx(
        (reference[-1][0] - reference[0][0]).total_seconds() / 86_400.0 if len(reference) > 1 else 0.0, abs=1e-12)


def test_load_history_is_forgotten_after_history_days() -> None:
    """Only the last ``history_days`` train the profile: a home that changed its habits two
    days ago, with a two-day memory, is forecast from the new habits alone."""
    config = LoadForecastConfig(history_days=2, full_trust_days=1.0, holiday_country="DE")
    forecaster, reference = LoadForecaster(config, STANDARD), deque()
    start = PERIODS["autumn DST (25 October 2026, 01:00 UTC), 3 October in the history"]
    for index in range(10 * 96):  # far more than the initial capacity of the stored window
        instant = start - timedelta(days=10) + timedelta(minutes=15 * index)
        # The last reading is 15 min before the start: the window reaches 2 days before it.
        level = 900.0 if instant < start - timedelta(days=2, minutes=15) else 300.0
        forecaster.observe(instant, level)
        reference_load_observe(reference, config, instant, level)
    forecast = forecaster.forecast(start, 192, 900, start)
    np.testing.assert_allclose(forecast, reference_load_forecast(reference, config, start, 192, 900, start), rtol=1e-9)
    np.testing.assert_allclose(forecast, 300.0, rtol=1e-12)
    assert forecaster.history_days == pytest.approx(2.0)


# --- the reference PV scales: the loops before they were vectorised ---------------------------

def reference_pv_observe(ratios: deque, config: PvForecastConfig, instant: datetime, measured_w: float,
                         clear_w: float) -> None:
    """Old ``PvForecaster.observe`` on a deque of (instant, measured, clear sky)."""
    if not np.isfinite(measured_w) or measured_w < 0:
        return
    if clear_w < config.min_clear_sky_fraction * sum(array.peak_power_w for array in config.arrays):
        return
    ratios.append((instant, float(measured_w), clear_w))
    horizon = instant - timedelta(days=config.history_days)
    while ratios and ratios[0][0] < horizon:
        ratios.popleft()


def reference_pv_scales(ratios: deque, config: PvForecastConfig, instants: list[datetime], now: datetime) -> np.ndarray:
    """Old ``scale``, ``recent_scale`` and ``scales``."""
    learned = config.initial_scale
    if ratios:
        measured = clear = 0.0
        for instant, value, sky in ratios:
            weight = 0.5 ** (max((now - instant).total_seconds(), 0.0) / 86_400.0 / config.half_life_days)
            measured += weight * value
            clear += weight * sky
        learned = float(min(max(measured / clear, 0.0), 1.2)) if clear > 0 else config.initial_scale
    since = now - timedelta(seconds=config.recent_window_s)
    recent = [(value, sky) for instant, value, sky in ratios if since <= instant <= now]
    clear = sum(sky for _, sky in recent)
    if not recent or clear <= 0:
        return np.full(len(instants), learned)
    recent_scale = float(min(max(sum(value for value, _ in recent) / clear, 0.0), 1.2))
    lead_s = np.array([max((instant - now).total_seconds(), 0.0) for instant in instants])
    weight = np.exp(-lead_s / config.recent_fade_s)
    return weight * recent_scale + (1.0 - weight) * learned


PV_CONFIG = PvForecastConfig(latitude_deg=48.0, longitude_deg=7.8, arrays=(
    PvArrayConfig(peak_power_w=6000, azimuth_deg=100.0, tilt_deg=30.0),
    PvArrayConfig(peak_power_w=4000, azimuth_deg=260.0, tilt_deg=20.0, inverter_limit_w=3000.0)))
PV_DAY = datetime(2026, 6, 19, tzinfo=timezone.utc)


def clear_sky_computed_alone(instants: list[datetime]) -> np.ndarray:
    """pvlib's clear sky for exactly these instants, by a forecaster that has never run."""
    return PvForecaster(PV_CONFIG).clear_sky_w(instants)


def cloudy(rng: np.random.Generator, clear_w: float) -> float:
    draw = rng.random()
    return float("nan") if draw < 0.03 else -1.0 if draw < 0.05 else clear_w * float(rng.uniform(0.1, 1.1))


class CountingPvForecaster(PvForecaster):
    """A real forecaster that counts how often pvlib runs and for how many instants."""

    def __init__(self, config: PvForecastConfig) -> None:
        super().__init__(config)
        self.pvlib_runs: list[int] = []

    def _compute_clear_sky_w(self, instants_utc: list[datetime]) -> np.ndarray:
        self.pvlib_runs.append(len(instants_utc))
        return super()._compute_clear_sky_w(instants_utc)


@pytest.mark.parametrize("steps", [36, 96, 192])
def test_pv_forecast_asked_plan_by_plan_equals_a_fresh_forecaster(steps: int) -> None:
    """A forecaster asked every 15 minutes over a day (pvlib runs once, for the first horizon and
    the next one, or the next day if that is longer) gives at every plan what a fresh forecaster
    restored from the same readings gives, and what the old loops over the ratios give on a clear
    sky computed for exactly the plan's instants."""
    rng = np.random.default_rng(steps)
    history = [PV_DAY - timedelta(days=3) + timedelta(minutes=15 * index + 7.5) for index in range(3 * 96)]
    history_w = [cloudy(rng, clear_w) for clear_w in clear_sky_computed_alone(history)]
    day = [PV_DAY + timedelta(minutes=15 * index + 7.5) for index in range(96)]
    day_clear_w = clear_sky_computed_alone(day)
    day_w = [cloudy(rng, clear_w) for clear_w in day_clear_w]

    stepped = CountingPvForecaster(PV_CONFIG)
    for instant, clear_w, measured_w in zip(history, stepped.clear_sky_w(history), history_w):  # the restore
        stepped.observe(instant, measured_w, float(clear_w))
    runs_before_the_day = len(stepped.pvlib_runs)
    reference: deque = deque()
    for instant, clear_w, measured_w in zip(history, clear_sky_computed_alone(history), history_w):
        reference_pv_observe(reference, PV_CONFIG, instant, measured_w, float(clear_w))
    faded = 0
    for index in range(96):
        slot = PV_DAY + timedelta(minutes=15 * index)
        now = slot + timedelta(seconds=20)
        got = stepped.forecast(slot, steps, 900, now)
        if index % 8 == 0 or index in (47, 95):
            instants = [slot + timedelta(seconds=900 * (i + 0.5)) for i in range(steps)]
            scales = reference_pv_scales(reference, PV_CONFIG, instants, now)
            faded += int(np.ptp(scales) > 0.01)
            np.testing.assert_allclose(got, scales * clear_sky_computed_alone(instants), rtol=1e-9, atol=1e-12)
            fresh = PvForecaster(PV_CONFIG)
            seen = history + day[:index]
            for instant, clear_w, measured_w in zip(seen, fresh.clear_sky_w(seen), history_w + day_w[:index]):
                fresh.observe(instant, measured_w, float(clear_w))
            np.testing.assert_allclose(got, fresh.forecast(slot, steps, 900, now), rtol=1e-9, atol=1e-12)
        stepped.observe(day[index], day_w[index])  # the clear sky from the forecaster's cache
        reference_pv_observe(reference, PV_CONFIG, day[index], day_w[index], float(day_clear_w[index]))
    assert stepped.pvlib_runs[runs_before_the_day:] == [steps + max(steps, 96)]  # once for the whole day
    assert faded > 3  # the morning's clouds were in the compared forecasts, not only the learned scale
    assert got.max() > 1000


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 900), at_the_edges=st.booleans(),
       recent_window_s=st.sampled_from([900.0, 3600.0, 5400.5]), half_life_days=st.sampled_from([0.5, 2.0]))
def test_pv_scales_equal_the_loops_over_the_ratios(seed: int, count: int, at_the_edges: bool,
                                                    recent_window_s: float, half_life_days: float) -> None:
    """Learned and recent scales from readings spread over ten days (so the oldest are
    forgotten), some exactly at ``now`` and at the start of the recent window, some after ``now``."""
    config = PvForecastConfig(latitude_deg=48.0, longitude_deg=7.8, arrays=PV_CONFIG.arrays,
                              recent_window_s=recent_window_s, half_life_days=half_life_days)
    rng = np.random.default_rng(seed)
    now = PV_DAY + timedelta(hours=11, microseconds=int(rng.integers(0, 10**6)))
    instants = sorted(now - timedelta(minutes=float(rng.uniform(-60, 14_400))) for _ in range(count))
    if at_the_edges:
        instants += [now - timedelta(seconds=recent_window_s), now]
    forecaster, reference = PvForecaster(config), deque()
    for instant in instants:
        clear_w = float(rng.uniform(0.0, 10_000.0))
        measured_w = cloudy(rng, clear_w)
        forecaster.observe(instant, measured_w, clear_w)
        reference_pv_observe(reference, config, instant, measured_w, clear_w)
    ahead = [now + timedelta(seconds=900 * (i + 0.5)) - timedelta(hours=1) for i in range(96)]
    np.testing.assert_allclose(forecaster.scales(ahead, now), reference_pv_scales(reference, config, ahead, now),
                               rtol=1e-9, atol=0)


def test_pv_prefetch_and_cache_eviction_return_pvlib_values_for_the_instants_asked() -> None:
    """Short requests (which prefetch the next horizon) and long ones (too long to prefetch for),
    interleaved until the cache overflows, return pvlib's values for exactly the instants asked,
    and pvlib runs only for instants not in the cache."""
    from hems.forecast.pv import CLEAR_SKY_CACHE_SIZE

    forecaster = CountingPvForecaster(PV_CONFIG)
    long_steps = CLEAR_SKY_CACHE_SIZE // 4 + 1  # twice its request and prefetch would not fit: none
    start = PV_DAY - timedelta(days=2)
    for steps, shift in ((96, 0), (long_steps, 3), (96, 700), (96, 701), (1500, 900), (96, 0), (200, 2000)):
        slot = start + timedelta(minutes=15 * shift)
        instants = [slot + timedelta(seconds=900 * (i + 0.5)) for i in range(steps)]
        np.testing.assert_allclose(forecaster.forecast(slot, steps, 900, slot) / PV_CONFIG.initial_scale,
                                   clear_sky_computed_alone(instants), rtol=1e-9, atol=1e-12)
    # 0-191 (with the next horizon); 192-515 (no prefetch); 700-891; nothing for 701 (prefetched);
    # 900-2399, which evicts the 160 oldest; 0-159 again (0-95 and the prefetched 96-159);
    # nothing for 2000-2199.
    assert forecaster.pvlib_runs == [192, long_steps - 189, 192, 1500, 160]


def test_learned_bins_use_the_local_date_and_the_holiday_calendar() -> None:
    """A reading at 22:30 UTC on 2 October is 00:30 on 3 October in Berlin, a holiday: it trains
    the Sunday bin, while one 24 h earlier (a Friday) trains the weekday bin."""
    config = LoadForecastConfig(holiday_country="DE", full_trust_days=0.01)
    forecaster = LoadForecaster(config, STANDARD)
    assert date(2026, 10, 3) in holiday_calendar("DE")
    forecaster.observe(datetime(2026, 10, 1, 22, 30, tzinfo=timezone.utc), 1000.0)
    forecaster.observe(datetime(2026, 10, 2, 22, 30, tzinfo=timezone.utc), 4000.0)
    sunday = datetime(2026, 10, 10, 22, 30, tzinfo=timezone.utc)  # 00:30 local on Sunday 11 October
    monday = datetime(2026, 10, 11, 22, 30, tzinfo=timezone.utc)
    assert forecaster.forecast(sunday, 1, 900, sunday)[0] == pytest.approx(4000.0, rel=1e-12)
    assert forecaster.forecast(monday, 1, 900, monday)[0] == pytest.approx(1000.0, rel=1e-12)
