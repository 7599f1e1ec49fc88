"""The daemon's learned forecast restores its history after a restart."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from hems.forecast.load import LoadForecastConfig
from hems.forecast.pv import PvForecastConfig
from hems.mpc.site import PvArrayConfig
from hems.runtime.forecasting import LearnedForecast

START = datetime(2025, 6, 1, tzinfo=timezone.utc)


def forecaster() -> LearnedForecast:
    return LearnedForecast(LoadForecastConfig(timezone="UTC"),
                           PvForecastConfig(51.0, 10.0, (PvArrayConfig(peak_power_w=5000.0),)), step_s=900)


def test_restored_history_replaces_the_standard_profile():
    """Eight days of a flat 2 kW load (more than full_trust_days) make the forecast 2 kW; PV
    measured at half the clear sky halves the PV forecast."""
    fresh = forecaster()
    restored = forecaster()
    instants = [START + timedelta(minutes=5 * index) for index in range(8 * 288)]
    pv_instants = [instant for instant in instants if 8 <= instant.hour < 16]
    clear_sky_w = restored.pv.clear_sky_w(pv_instants)
    restored.restore([(instant, 2000.0) for instant in instants],
                     [(instant, 0.5 * clear) for instant, clear in zip(pv_instants, clear_sky_w)])
    now = instants[-1]
    tomorrow = datetime(2025, 6, 9, tzinfo=timezone.utc)
    learned = restored.forecast(tomorrow, 96, 900, now)
    standard = fresh.forecast(tomorrow, 96, 900, now)
    assert np.allclose(learned.load_w, 2000.0, rtol=0.01)
    assert not np.allclose(standard.load_w, 2000.0, rtol=0.1)
    assert abs(restored.pv.scale(now) - 0.5) < 0.01
    assert learned.pv_w.max() < 0.6 * standard.pv_w.max() / fresh.pv.config.initial_scale


def test_mean_absolute_errors_are_scored_per_finished_slot():
    forecast = forecaster()
    issued = forecast.forecast(START, 4, 900, START)
    forecast.observe(START, issued.load_w[0] + 100.0, issued.pv_w[0])
    errors = forecast.mean_absolute_errors_w()
    assert abs(errors["load"] - 100.0) < 1e-9 and errors["pv"] == 0.0
