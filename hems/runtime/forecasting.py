"""What the planner is told about the future: load and PV per slot.

:class:`LearnedForecast` is the daemon's default: the load from the home's own history (falling
back to the standard household profile) and PV from pvlib's clear sky scaled by what was
measured. The demo and the hardware-in-the-loop tests pass their own :class:`ForecastProvider`
when they want to separate the control from the forecast error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from hems.forecast.error import MaeTracker
from hems.forecast.load import LoadForecastConfig, LoadForecaster
from hems.forecast.pv import PvForecastConfig, PvForecaster


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

    def __init__(self, load: LoadForecastConfig, pv: PvForecastConfig | None, step_s: int) -> None:
        """``pv`` None: the site has no PV arrays configured (the PV forecast is zero);
        ``step_s`` is the planner's slot length (PV is observed at slot midpoints)."""
        self.load = LoadForecaster(load)
        self.pv = PvForecaster(pv) if pv is not None and pv.arrays else None
        self.step_s = step_s
        self.load_error = MaeTracker()
        self.pv_error = MaeTracker()

    def restore(self, load_history: Sequence[tuple[datetime, float]],
                pv_history: Sequence[tuple[datetime, float]]) -> None:
        """Learn from stored history after a restart: average powers at the given instants
        (PV at interval midpoints). The clear sky is computed once for all PV instants."""
        for instant, load_w in load_history:
            self.load.observe(instant, load_w)
        if self.pv is not None and pv_history:
            clear_sky_w = self.pv.clear_sky_w([instant for instant, _ in pv_history])
            for (instant, pv_w), clear_w in zip(pv_history, clear_sky_w):
                self.pv.observe(instant, pv_w, float(clear_w))

    def mean_absolute_errors_w(self) -> dict[str, float]:
        """Rolling MAE of the load and PV forecasts (NaN before the first scored slot)."""
        return {"load": self.load_error.mae_w, "pv": self.pv_error.mae_w}

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
