"""Load forecast from the home's own history: a recency-weighted profile by local time of day
and day type, blended with the standard household profile while history is short.

The forecaster runs at every plan of every home, so nothing in it walks the history in Python:
each observation's bin (local slot, day type) is found once, when it is observed, and kept with
its time and value in arrays; a forecast weighs and sums them with numpy. The bins and standard
profile values of the forecast instants are remembered per instant (each plan brings one new)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from hems.forecast.profile import StandardProfile, day_type, holiday_calendar
from hems.forecast.window import ObservationWindow, epoch_microseconds

_MICROSECOND = timedelta(microseconds=1)
_DAY_TYPE_COUNT = 3
#: Forecast instants whose bin and standard value are remembered: two days of 5-minute slots.
INSTANT_CACHE_SIZE = 576


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
    """Learns a time-of-day x day-type profile from measured load; one instance per home.

    Instants are aware datetimes (UTC in the runtime)."""

    def __init__(self, config: LoadForecastConfig = LoadForecastConfig(), standard: StandardProfile | None = None) -> None:
        self.config = config
        self._zone = ZoneInfo(config.timezone)
        self._standard = standard or StandardProfile.load()
        self._slots = 86_400 // config.slot_s
        self._history = ObservationWindow({"values_w": np.float64, "bins": np.intp})
        self._history_us = timedelta(days=config.history_days) // _MICROSECOND
        self._holidays = holiday_calendar(config.holiday_country, config.holiday_subdivision)
        # instant -> (bin index, standard profile W): fixed for an instance's configuration.
        self._instants: OrderedDict[datetime, tuple[int, float]] = OrderedDict()

    def observe(self, instant: datetime, load_w: float) -> None:
        """Record a measured average load for the slot starting at ``instant`` (UTC)."""
        if not np.isfinite(load_w) or load_w < 0:
            return  # an implausible reading never trains the profile
        time_us = epoch_microseconds(instant)
        slot, kind = self._bin(instant)
        self._history.append(time_us, float(load_w), slot * _DAY_TYPE_COUNT + kind)
        self._history.forget_before(time_us - self._history_us)

    @property
    def history_days(self) -> float:
        """Span of the stored history in days (from the oldest kept to the newest observation)."""
        return self._history.span_us() / 10**6 / 86_400.0

    def _bin(self, instant: datetime) -> tuple[int, int]:
        local = instant.astimezone(self._zone)
        slot = (local.hour * 3600 + local.minute * 60 + local.second) // self.config.slot_s
        # Saturday and Sunday keep their own profile; weekdays share one.
        return int(slot) % self._slots, day_type(local, self._holidays)

    def _instant_bins(self, instants: list[datetime]) -> tuple[np.ndarray, np.ndarray]:
        """Bin index and standard-profile load (W) of each instant, computed once per instant."""
        cache = self._instants
        missing = [instant for instant in dict.fromkeys(instants) if instant not in cache]
        if missing:
            # power_w is elementwise: the values of some instants are those of a longer request.
            standard = self._standard.power_w(missing, self.config.annual_kwh, self.config.timezone, self._holidays)
            for instant, standard_w in zip(missing, standard):
                slot, kind = self._bin(instant)
                cache[instant] = (slot * _DAY_TYPE_COUNT + kind, float(standard_w))
        entries = [cache[instant] for instant in instants]
        while len(cache) > max(INSTANT_CACHE_SIZE, len(instants)):  # after the read
            cache.popitem(last=False)
        bins = np.fromiter((entry[0] for entry in entries), dtype=np.intp, count=len(entries))
        standard_w = np.fromiter((entry[1] for entry in entries), dtype=float, count=len(entries))
        return bins, standard_w

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> np.ndarray:
        """Expected average load (W) of ``steps`` slots from ``start``, using history up to ``now``."""
        instants = [start + timedelta(seconds=step_s * (i + 0.5)) for i in range(steps)]
        bins, standard = self._instant_bins(instants)
        if not len(self._history):
            return standard
        times_us, values_w, history_bins = (self._history.column(name) for name in ("times_us", "values_w", "bins"))
        age_days = np.maximum((epoch_microseconds(now) - times_us) / 10**6, 0.0) / 86_400.0
        weight = np.exp2(-(age_days / self.config.half_life_days))
        size = self._slots * _DAY_TYPE_COUNT
        # bincount adds in history order, as a loop over the history would.
        sums = np.bincount(history_bins, weights=weight * values_w, minlength=size).reshape(self._slots, -1)
        weights = np.bincount(history_bins, weights=weight, minlength=size).reshape(self._slots, -1)
        # A bin never seen for its day type borrows the other day types' mean of that slot.
        all_types = sums.sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
        learned = np.where(weights > 0, sums / np.maximum(weights, 1e-12), all_types[:, None]).ravel()
        seen = np.repeat(weights.sum(axis=1) > 0, _DAY_TYPE_COUNT)
        trust = min(1.0, self.history_days / self.config.full_trust_days)
        return np.where(seen[bins], trust * learned[bins] + (1 - trust) * standard, standard)
