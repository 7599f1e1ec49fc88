"""PV forecast without weather data: pvlib clear-sky (Ineichen, bundled Linke turbidity)
transposed onto each configured array, times a scale factor learned from recent
measured / clear-sky ratios (which absorbs typical cloudiness, soiling and shading).

pvlib (and pandas) are imported lazily, on the first forecast. pvlib's chain runs once per
horizon of plans, or once per day if the horizon is shorter, not at every plan (see
:meth:`PvForecaster.forecast`); the learned scales read the measured ratios with numpy."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from hems.forecast.window import ObservationWindow, epoch_microseconds
from hems.mpc.site import PvArrayConfig


@dataclass(frozen=True)
class PvForecastConfig:
    """Where the arrays are and how the scale factor is learned."""

    latitude_deg: float
    longitude_deg: float
    arrays: tuple[PvArrayConfig, ...]
    altitude_m: float = 100.0
    initial_scale: float = 0.7  # before any measurement: a typical mix of clear and cloudy days
    history_days: int = 7
    half_life_days: float = 2.0
    min_clear_sky_fraction: float = 0.1  # ignore ratios at dawn/dusk (noisy, shading)
    air_temp_c: float = 15.0
    #: Intraday correction: the clear-sky index of the last ``recent_window_s`` of measurements
    #: replaces the learned scale for the next slots, fading into it with this time constant.
    recent_window_s: float = 3600.0
    recent_fade_s: float = 7200.0


#: Clear-sky values remembered per instant: a few days of 5-minute slots. A forecast of n steps
#: that has to run pvlib stores n + m instants (it prefetches m, the next horizon but at least a
#: day), and only while 2 (n + m) fit, so that the prefetched slots outlive the plans that read them.
CLEAR_SKY_CACHE_SIZE = 2048


class PvForecaster:
    """Clear-sky PV power per slot, scaled by a learned factor; one instance per home."""

    def __init__(self, config: PvForecastConfig) -> None:
        self.config = config
        self._ratios = ObservationWindow({"measured_w": np.float64, "clear_sky_w": np.float64})
        self._history_us = timedelta(days=config.history_days) // timedelta(microseconds=1)
        self._recent_window = timedelta(seconds=config.recent_window_s)
        self._clear_sky_cache: OrderedDict[datetime, float] = OrderedDict()

    def clear_sky_w(self, instants_utc: list[datetime]) -> np.ndarray:
        """AC power of all arrays under clear sky at each instant.

        Each plan asks for the instants of the last one again, shifted by a slot, and each
        observed slot for one of them: pvlib's chain (a turbidity table read from its HDF5
        file, the sun, the transposition) runs only for instants not seen before, and
        :meth:`forecast` has it compute the next horizon whenever it runs."""
        return self._clear_sky_w(instants_utc, list)

    def _clear_sky_w(self, instants_utc: list[datetime], ahead: Callable[[], list[datetime]]) -> np.ndarray:
        """:meth:`clear_sky_w`; if pvlib has to run, it also computes the instants ``ahead()``."""
        cache = self._clear_sky_cache
        missing = dict.fromkeys(instant for instant in instants_utc if instant not in cache)
        if missing:
            # Each instant's value is independent of the others computed with it.
            missing.update(dict.fromkeys(instant for instant in ahead() if instant not in cache))
            for instant, value in zip(missing, self._compute_clear_sky_w(list(missing))):
                cache[instant] = float(value)
        values = np.array([cache[instant] for instant in instants_utc], dtype=float)
        while len(cache) > CLEAR_SKY_CACHE_SIZE:  # after the read: a long history may not fit
            cache.popitem(last=False)
        return values

    def _compute_clear_sky_w(self, instants_utc: list[datetime]) -> np.ndarray:
        import pandas as pd
        import pvlib

        config = self.config
        times = pd.DatetimeIndex(instants_utc)
        location = pvlib.location.Location(config.latitude_deg, config.longitude_deg, altitude=config.altitude_m)
        sky = location.get_clearsky(times, model="ineichen")
        sun = location.get_solarposition(times)
        total = np.zeros(len(times))
        for array in config.arrays:
            poa = pvlib.irradiance.get_total_irradiance(
                array.tilt_deg, array.azimuth_deg, sun["apparent_zenith"], sun["azimuth"],
                sky["dni"], sky["ghi"], sky["dhi"])["poa_global"].fillna(0.0).to_numpy()
            # Simple steady-state cell temperature (NOCT-like: +25 K at 800 W/m^2).
            cell_c = config.air_temp_c + poa * 25.0 / 800.0
            dc = pvlib.pvsystem.pvwatts_dc(poa, cell_c, array.peak_power_w, array.temperature_coefficient_per_k)
            ac = np.asarray(dc) * array.system_efficiency
            if array.inverter_limit_w is not None:
                ac = np.minimum(ac, array.inverter_limit_w)
            total += np.maximum(ac, 0.0)
        return total

    def observe(self, instant: datetime, measured_w: float, clear_sky_w: float | None = None) -> None:
        """Record the measured average PV power of the slot centred at ``instant``."""
        if not np.isfinite(measured_w) or measured_w < 0:
            return
        clear = float(self.clear_sky_w([instant])[0]) if clear_sky_w is None else clear_sky_w
        peak = sum(array.peak_power_w for array in self.config.arrays)
        if clear < self.config.min_clear_sky_fraction * peak:
            return
        time_us = epoch_microseconds(instant)
        self._ratios.append(time_us, float(measured_w), float(clear))
        self._ratios.forget_before(time_us - self._history_us)

    def scale(self, now: datetime) -> float:
        """Recency-weighted ratio of measured to clear-sky energy, in [0, 1.2]."""
        ratios = self._ratios
        if not len(ratios):
            return self.config.initial_scale
        age_days = np.maximum((epoch_microseconds(now) - ratios.column("times_us")) / 10**6, 0.0) / 86_400.0
        weight = np.exp2(-(age_days / self.config.half_life_days))
        measured = float((weight * ratios.column("measured_w")).sum())
        clear = float((weight * ratios.column("clear_sky_w")).sum())
        # An energy-weighted ratio: noon slots, which matter most, dominate it.
        return float(min(max(measured / clear, 0.0), 1.2)) if clear > 0 else self.config.initial_scale

    def recent_scale(self, now: datetime) -> float | None:
        """The clear-sky index measured over the last ``recent_window_s`` (None: no daylight
        measurement in it). Clouds persist for hours: this is today's weather, the learned scale
        the typical one."""
        ratios = self._ratios
        times_us = ratios.column("times_us")
        recent = (times_us >= epoch_microseconds(now - self._recent_window)) & (times_us <= epoch_microseconds(now))
        clear = float(ratios.column("clear_sky_w")[recent].sum())
        if not recent.any() or clear <= 0:
            return None
        return float(min(max(float(ratios.column("measured_w")[recent].sum()) / clear, 0.0), 1.2))

    def scales(self, instants: list[datetime], now: datetime) -> np.ndarray:
        """The scale applied at each instant: the recent clear-sky index near ``now``, fading
        (exponentially, ``recent_fade_s``) into the learned scale further ahead."""
        learned = self.scale(now)
        recent = self.recent_scale(now)
        if recent is None:
            return np.full(len(instants), learned)
        lead_s = np.array([max((instant - now).total_seconds(), 0.0) for instant in instants])
        weight = np.exp(-lead_s / self.config.recent_fade_s)
        return weight * recent + (1.0 - weight) * learned

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> np.ndarray:
        """Expected average PV power (W) of ``steps`` slots from ``start`` (slot midpoints).

        The next plans ask for the same grid a slot later each: when pvlib must run, it also
        computes the slots after this horizon, another horizon but at least a day of them, so
        that it runs about once per horizon (or per day) of plans, not at every plan."""
        instants = [start + timedelta(seconds=step_s * (i + 0.5)) for i in range(steps)]

        def ahead() -> list[datetime]:
            count = max(steps, math.ceil(86_400 / step_s))
            if 2 * (steps + count) > CLEAR_SKY_CACHE_SIZE:
                return []
            return [start + timedelta(seconds=step_s * (i + 0.5)) for i in range(steps, steps + count)]

        return self.scales(instants, now) * self._clear_sky_w(instants, ahead)
