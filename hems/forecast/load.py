"""Load forecast from the home's own history: a recency-weighted profile by local time of day
and day type, blended with the standard household profile while history is short."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from hems.forecast.profile import StandardProfile, day_type, holiday_calendar


@dataclass(frozen=True)
class LoadForecastConfig:
    """How the load forecaster weighs its history."""

    annual_kwh: float = 3500.0  # scales the standard profile before there is history
    timezone: str = "Europe/Berlin"
    half_life_days: float = 7.0  # weight of a day halves every half_life_days
    history_days: int = 28
    full_trust_days: float = 7.0  # days of history after which the standard profile drops out
    slot_s: int = 900  # resolution of the profile
    holiday_country: str | None = None  # ISO 3166 code: public holidays forecast like Sundays
    holiday_subdivision: str | None = None  # e.g. "BY" for Bavaria


class LoadForecaster:
    """Learns a time-of-day x day-type profile from measured load; one instance per home."""

    def __init__(self, config: LoadForecastConfig = LoadForecastConfig(), standard: StandardProfile | None = None) -> None:
        self.config = config
        self._zone = ZoneInfo(config.timezone)
        self._standard = standard or StandardProfile.load()
        self._slots = 86_400 // config.slot_s
        self._history: deque[tuple[datetime, float]] = deque()
        self._holidays = holiday_calendar(config.holiday_country, config.holiday_subdivision)

    def observe(self, instant: datetime, load_w: float) -> None:
        """Record a measured average load for the slot starting at ``instant`` (UTC)."""
        if not np.isfinite(load_w) or load_w < 0:
            return  # an implausible reading never trains the profile
        self._history.append((instant, float(load_w)))
        horizon = instant - timedelta(days=self.config.history_days)
        while self._history and self._history[0][0] < horizon:
            self._history.popleft()

    @property
    def history_days(self) -> float:
        """Span of the stored history in days."""
        if len(self._history) < 2:
            return 0.0
        return (self._history[-1][0] - self._history[0][0]).total_seconds() / 86_400.0

    def _bin(self, instant: datetime) -> tuple[int, int]:
        local = instant.astimezone(self._zone)
        slot = (local.hour * 3600 + local.minute * 60 + local.second) // self.config.slot_s
        # Saturday and Sunday keep their own profile; weekdays share one.
        return int(slot) % self._slots, day_type(local, self._holidays)

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> np.ndarray:
        """Expected average load (W) of ``steps`` slots from ``start``, using history up to ``now``."""
        instants = [start + timedelta(seconds=step_s * (i + 0.5)) for i in range(steps)]
        standard = self._standard.power_w(instants, self.config.annual_kwh, self.config.timezone, self._holidays)
        if not self._history:
            return standard
        sums = np.zeros((self._slots, 3))
        weights = np.zeros((self._slots, 3))
        for instant, value in self._history:
            age_days = max((now - instant).total_seconds(), 0.0) / 86_400.0
            weight = 0.5 ** (age_days / self.config.half_life_days)
            slot, kind = self._bin(instant)
            sums[slot, kind] += weight * value
            weights[slot, kind] += weight
        # A bin never seen for its day type borrows the other day types' mean of that slot.
        all_types = sums.sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
        learned = np.where(weights > 0, sums / np.maximum(weights, 1e-12), all_types[:, None])
        seen = weights.sum(axis=1) > 0
        trust = min(1.0, self.history_days / self.config.full_trust_days)
        result = np.empty(steps)
        for index, instant in enumerate(instants):
            slot, kind = self._bin(instant)
            if seen[slot]:
                result[index] = trust * learned[slot, kind] + (1 - trust) * standard[index]
            else:
                result[index] = standard[index]
        return result
