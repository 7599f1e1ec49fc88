"""PV forecast without weather data: pvlib clear-sky (Ineichen, bundled Linke turbidity)
transposed onto each configured array, times a scale factor learned from recent
measured / clear-sky ratios (which absorbs typical cloudiness, soiling and shading).

pvlib (and pandas) are imported lazily, on the first forecast."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

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


#: Clear-sky values remembered per instant: a few days of 5-minute slots.
CLEAR_SKY_CACHE_SIZE = 2048


class PvForecaster:
    """Clear-sky PV power per slot, scaled by a learned factor; one instance per home."""

    def __init__(self, config: PvForecastConfig) -> None:
        self.config = config
        self._ratios: deque[tuple[datetime, float, float]] = deque()  # (instant, measured, clear sky)
        self._clear_sky_cache: OrderedDict[datetime, float] = OrderedDict()

    def clear_sky_w(self, instants_utc: list[datetime]) -> np.ndarray:
        """AC power of all arrays under clear sky at each instant.

        Each plan asks for the instants of the last one again, shifted by a slot, and each
        observed slot for one of them: pvlib's chain (a turbidity table read from its HDF5
        file, the sun, the transposition) runs only for instants not seen before."""
        cache = self._clear_sky_cache
        missing = [instant for instant in dict.fromkeys(instants_utc) if instant not in cache]
        if missing:
            for instant, value in zip(missing, self._compute_clear_sky_w(missing)):
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
        self._ratios.append((instant, float(measured_w), clear))
        horizon = instant - timedelta(days=self.config.history_days)
        while self._ratios and self._ratios[0][0] < horizon:
            self._ratios.popleft()

    def scale(self, now: datetime) -> float:
        """Recency-weighted ratio of measured to clear-sky energy, in [0, 1.2]."""
        if not self._ratios:
            return self.config.initial_scale
        measured = clear = 0.0
        for instant, value, sky in self._ratios:
            weight = 0.5 ** (max((now - instant).total_seconds(), 0.0) / 86_400.0 / self.config.half_life_days)
            measured += weight * value
            clear += weight * sky
        # An energy-weighted ratio: noon slots, which matter most, dominate it.
        return float(min(max(measured / clear, 0.0), 1.2)) if clear > 0 else self.config.initial_scale

    def recent_scale(self, now: datetime) -> float | None:
        """The clear-sky index measured over the last ``recent_window_s`` (None: no daylight
        measurement in it). Clouds persist for hours: this is today's weather, the learned scale
        the typical one."""
        since = now - timedelta(seconds=self.config.recent_window_s)
        recent = [(value, sky) for instant, value, sky in self._ratios if since <= instant <= now]
        clear = sum(sky for _, sky in recent)
        if not recent or clear <= 0:
            return None
        return float(min(max(sum(value for value, _ in recent) / clear, 0.0), 1.2))

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
        """Expected average PV power (W) of ``steps`` slots from ``start`` (slot midpoints)."""
        instants = [start + timedelta(seconds=step_s * (i + 0.5)) for i in range(steps)]
        return self.scales(instants, now) * self.clear_sky_w(instants)
