"""What the planner is told about the future: load and PV per slot.

:class:`LearnedForecast` is the daemon's default: the load from the home's own history (falling
back to the standard household profile) and PV from pvlib's clear sky scaled by what was
measured. The demo and the hardware-in-the-loop tests pass their own :class:`ForecastProvider`
when they want to separate the control from the forecast error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from hems.forecast.error import MaeTracker
from hems.forecast.load import LoadForecastConfig, LoadForecaster
from hems.forecast.pv import PvForecastConfig, PvForecaster
from hems.mpc.site import SiteConfig


@dataclass(frozen=True)
class SiteForecast:
    """Average powers per slot (W)."""

    load_w: np.ndarray
    pv_w: np.ndarray


class ForecastProvider(Protocol):
    """Forecasts for the planner, and what was measured, to learn from."""

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> SiteForecast:
        """Per-slot forecasts from ``start``, knowing what was measured up to ``now``."""

    def observe(self, slot_start: datetime, load_w: float, pv_w: float) -> None:
        """The measured average powers of a finished slot."""


class LearnedForecast:
    """Load from history, PV from clear sky times a learned scale; tracks each forecast's MAE."""

    def __init__(self, site: SiteConfig, annual_load_kwh: float = 3500.0, load_history_days: int = 28,
                 pv_initial_scale: float = 0.7) -> None:
        self.load = LoadForecaster(LoadForecastConfig(
            annual_kwh=annual_load_kwh, timezone=site.timezone, history_days=load_history_days,
            slot_s=site.mpc.step_s if 86_400 % site.mpc.step_s == 0 else 900))
        self.pv = PvForecaster(PvForecastConfig(
            latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg, arrays=site.pv.arrays,
            initial_scale=pv_initial_scale)) if site.pv.arrays else None
        self.step_s = site.mpc.step_s
        self.load_error = MaeTracker()
        self.pv_error = MaeTracker()

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> SiteForecast:
        """Load and PV forecasts; the issued values are remembered for the MAE."""
        load_w = self.load.forecast(start, steps, step_s, now)
        pv_w = self.pv.forecast(start, steps, step_s, now) if self.pv is not None else np.zeros(steps)
        self.load_error.issue(start, step_s, load_w)
        self.pv_error.issue(start, step_s, pv_w)
        return SiteForecast(load_w, pv_w)

    def observe(self, slot_start: datetime, load_w: float, pv_w: float) -> None:
        """Learn from a finished slot and score the forecasts made for it."""
        self.load.observe(slot_start, load_w)
        self.load_error.observe(slot_start, load_w)
        self.pv_error.observe(slot_start, pv_w)
        if self.pv is not None:
            self.pv.observe(slot_start + timedelta(seconds=self.step_s / 2), pv_w)
