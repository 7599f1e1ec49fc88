"""Forecasters per plan (session 8): the learned load and PV forecasts as the runtime calls them,
against the algorithms they replaced.

Run: .venv/bin/python bench/bench_forecast.py [--steps 36 96 192] [--repeats 3] [--history-days 28] [--json]

One home, one simulated day (2026-06-19 UTC, Europe/Berlin, German holidays, 48.0 N 7.8 E with an
8 kWp and a 3 kWp array). As ``HomeRuntime`` does: the forecasters are built and restored from
``--history-days`` of stored history (load at each 15-min slot start, PV at its midpoint, the
clear sky of all PV instants computed at once; ``LearnedForecast.restore``). Then, for each of the
96 slots of the day, as ``PlanningService._plan_blocking`` does: the slot just finished is
observed (load at its start, PV at its midpoint, ``LearnedForecast.observe``) and both forecasts
are made for ``steps`` slots from the slot start, with ``now`` 3 s after it.

"old" = the implementations before session 8, copied below as ``OldLoadForecaster`` and
``OldPvForecaster`` (a Python loop over the whole history per forecast; pvlib for every new
instant, i.e. once per plan). "new" = hems.forecast. Both get the same readings; their forecasts
are compared (largest relative difference) and each day is timed with ``time.perf_counter``, old
and new interleaved per repeat. Reported: the median over the repeats of the day's mean per plan
(observe + load forecast + PV forecast: a day's total / 96, which includes the plans that run
pvlib), of the median plan and of the slowest plan, and of the restore.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import OrderedDict, deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hems.forecast.load import LoadForecastConfig, LoadForecaster  # noqa: E402
from hems.forecast.profile import StandardProfile, day_type, holiday_calendar  # noqa: E402
from hems.forecast.pv import PvForecastConfig, PvForecaster  # noqa: E402
from hems.mpc.site import PvArrayConfig  # noqa: E402

DAY = datetime(2026, 6, 19, tzinfo=timezone.utc)
SLOT_S = 900
NOW_AFTER_SLOT_START_S = 3.0
LOAD_CONFIG = LoadForecastConfig(annual_kwh=4000.0, timezone="Europe/Berlin", holiday_country="DE")
PV_CONFIG = PvForecastConfig(latitude_deg=48.0, longitude_deg=7.8, arrays=(
    PvArrayConfig(peak_power_w=8000, azimuth_deg=180.0, tilt_deg=30.0),
    PvArrayConfig(peak_power_w=3000, azimuth_deg=270.0, tilt_deg=15.0, inverter_limit_w=2500.0)))


class OldLoadForecaster:
    """hems.forecast.load.LoadForecaster before session 8."""

    def __init__(self, config: LoadForecastConfig) -> None:
        self.config = config
        self._zone = ZoneInfo(config.timezone)
        self._standard = StandardProfile.load()
        self._slots = 86_400 // config.slot_s
        self._history: deque[tuple[datetime, float]] = deque()
        self._holidays = holiday_calendar(config.holiday_country, config.holiday_subdivision)

    def observe(self, instant: datetime, load_w: float) -> None:
        if not np.isfinite(load_w) or load_w < 0:
            return
        self._history.append((instant, float(load_w)))
        horizon = instant - timedelta(days=self.config.history_days)
        while self._history and self._history[0][0] < horizon:
            self._history.popleft()

    @property
    def history_days(self) -> float:
        if len(self._history) < 2:
            return 0.0
        return (self._history[-1][0] - self._history[0][0]).total_seconds() / 86_400.0

    def _bin(self, instant: datetime) -> tuple[int, int]:
        local = instant.astimezone(self._zone)
        slot = (local.hour * 3600 + local.minute * 60 + local.second) // self.config.slot_s
        return int(slot) % self._slots, day_type(local, self._holidays)

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> np.ndarray:
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


class OldPvForecaster(PvForecaster):
    """hems.forecast.pv.PvForecaster before session 8 (pvlib's chain, ``_compute_clear_sky_w``,
    is inherited: session 8 did not change it)."""

    def __init__(self, config: PvForecastConfig) -> None:
        super().__init__(config)
        self._old_ratios: deque[tuple[datetime, float, float]] = deque()
        self._old_cache: OrderedDict[datetime, float] = OrderedDict()

    def clear_sky_w(self, instants_utc: list[datetime]) -> np.ndarray:
        cache = self._old_cache
        missing = [instant for instant in dict.fromkeys(instants_utc) if instant not in cache]
        if missing:
            for instant, value in zip(missing, self._compute_clear_sky_w(missing)):
                cache[instant] = float(value)
        values = np.array([cache[instant] for instant in instants_utc], dtype=float)
        while len(cache) > 2048:
            cache.popitem(last=False)
        return values

    def observe(self, instant: datetime, measured_w: float, clear_sky_w: float | None = None) -> None:
        if not np.isfinite(measured_w) or measured_w < 0:
            return
        clear = float(self.clear_sky_w([instant])[0]) if clear_sky_w is None else clear_sky_w
        peak = sum(array.peak_power_w for array in self.config.arrays)
        if clear < self.config.min_clear_sky_fraction * peak:
            return
        self._old_ratios.append((instant, float(measured_w), clear))
        horizon = instant - timedelta(days=self.config.history_days)
        while self._old_ratios and self._old_ratios[0][0] < horizon:
            self._old_ratios.popleft()

    def scale(self, now: datetime) -> float:
        if not self._old_ratios:
            return self.config.initial_scale
        measured = clear = 0.0
        for instant, value, sky in self._old_ratios:
            weight = 0.5 ** (max((now - instant).total_seconds(), 0.0) / 86_400.0 / self.config.half_life_days)
            measured += weight * value
            clear += weight * sky
        return float(min(max(measured / clear, 0.0), 1.2)) if clear > 0 else self.config.initial_scale

    def recent_scale(self, now: datetime) -> float | None:
        since = now - timedelta(seconds=self.config.recent_window_s)
        recent = [(value, sky) for instant, value, sky in self._old_ratios if since <= instant <= now]
        clear = sum(sky for _, sky in recent)
        if not recent or clear <= 0:
            return None
        return float(min(max(sum(value for value, _ in recent) / clear, 0.0), 1.2))

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> np.ndarray:
        instants = [start + timedelta(seconds=step_s * (i + 0.5)) for i in range(steps)]
        return self.scales(instants, now) * self.clear_sky_w(instants)


def readings(history_days: int) -> tuple[dict[datetime, float], dict[datetime, float]]:
    """Load at slot starts and PV at slot midpoints from ``history_days`` before DAY to its end:
    the standard profile with day-to-day noise, and the clear sky under a random cloudiness."""
    rng = np.random.default_rng(8)
    first = DAY - timedelta(days=history_days)
    starts = [first + timedelta(seconds=SLOT_S * i) for i in range((history_days + 1) * 96)]
    standard = StandardProfile.load().power_w(starts, LOAD_CONFIG.annual_kwh, LOAD_CONFIG.timezone,
                                              holiday_calendar("DE"))
    load_w = dict(zip(starts, standard * rng.lognormal(0.0, 0.4, len(starts))))
    middles = [instant + timedelta(seconds=SLOT_S / 2) for instant in starts]
    clear = PvForecaster(PV_CONFIG).clear_sky_w(middles)
    pv_w = dict(zip(middles, clear * rng.uniform(0.2, 1.0, len(middles))))
    return load_w, pv_w


def run_day(load: LoadForecaster | OldLoadForecaster, pv: PvForecaster, steps: int, load_w: dict[datetime, float],
            pv_w: dict[datetime, float]) -> tuple[float, list[tuple[float, float]], list[np.ndarray]]:
    """(restore seconds, (load, PV) seconds of each plan, forecasts): the runtime's calls for one
    home and one day. A plan's load part is the observation of the finished slot's load and the
    load forecast; its PV part likewise."""
    history_load = [(instant, value) for instant, value in load_w.items() if instant < DAY]
    history_pv = [(instant, value) for instant, value in pv_w.items() if instant < DAY]
    started = time.perf_counter()
    for instant, value in history_load:  # LearnedForecast.restore
        load.observe(instant, value)
    clear = pv.clear_sky_w([instant for instant, _ in history_pv])
    for (instant, value), clear_w in zip(history_pv, clear):
        pv.observe(instant, value, float(clear_w))
    restored = time.perf_counter()
    forecasts, plans_s = [], []
    for index in range(96):
        slot = DAY + timedelta(seconds=SLOT_S * index)
        finished = slot - timedelta(seconds=SLOT_S)
        middle = finished + timedelta(seconds=SLOT_S / 2)
        now = slot + timedelta(seconds=NOW_AFTER_SLOT_START_S)
        load_started = time.perf_counter()
        if index:  # LearnedForecast.observe of the slot just finished
            load.observe(finished, load_w[finished])
        forecasts.append(load.forecast(slot, steps, SLOT_S, now))
        pv_started = time.perf_counter()
        if index:
            pv.observe(middle, pv_w[middle])
        forecasts.append(pv.forecast(slot, steps, SLOT_S, now))
        pv_ended = time.perf_counter()
        plans_s.append((pv_started - load_started, pv_ended - pv_started))
    return restored - started, plans_s, forecasts


def largest_relative_difference(old: list[np.ndarray], new: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300), initial=0.0)) for a, b in zip(old, new))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[36, 96, 192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_w, pv_w = readings(args.history_days)
    results = []
    for steps in args.steps:
        times: dict[str, list[tuple[float, list[tuple[float, float]]]]] = {"old": [], "new": []}
        difference = 0.0
        for _ in range(args.repeats):
            old = run_day(OldLoadForecaster(LOAD_CONFIG), OldPvForecaster(PV_CONFIG), steps, load_w, pv_w)
            new = run_day(LoadForecaster(LOAD_CONFIG), PvForecaster(PV_CONFIG), steps, load_w, pv_w)
            times["old"].append(old[:2])
            times["new"].append(new[:2])
            difference = max(difference, largest_relative_difference(old[2], new[2]))
        row: dict[str, float] = {"steps": steps, "largest_relative_difference": difference}
        for name, days in times.items():
            plans = [[load_s + pv_s for load_s, pv_s in plans_s] for _, plans_s in days]
            row[f"{name}_ms_per_plan"] = statistics.median(sum(day) for day in plans) / 96 * 1000
            row[f"{name}_load_ms_per_plan"] = statistics.median(
                sum(load_s for load_s, _ in plans_s) for _, plans_s in days) / 96 * 1000
            row[f"{name}_pv_ms_per_plan"] = statistics.median(
                sum(pv_s for _, pv_s in plans_s) for _, plans_s in days) / 96 * 1000
            row[f"{name}_median_plan_ms"] = statistics.median(statistics.median(day) for day in plans) * 1000
            row[f"{name}_slowest_plan_ms"] = statistics.median(max(day) for day in plans) * 1000
            row[f"{name}_restore_ms"] = statistics.median(restore_s for restore_s, _ in days) * 1000
        row["ratio"] = row["old_ms_per_plan"] / row["new_ms_per_plan"]
        results.append(row)
    summary = {"machine": f"{platform.machine()}, {platform.python_version()}, numpy {np.__version__}",
               "history_days": args.history_days, "repeats": args.repeats, "results": results}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['machine']}; {args.history_days} days of history; medians over {args.repeats} days; ms")
    print("steps  code  per plan (load + PV)     median plan  slowest plan  restore  ratio  max rel diff")
    for row in results:
        for name in ("old", "new"):
            print(f"{row['steps']:5.0f}  {name:4s}  {row[f'{name}_ms_per_plan']:7.3f} "
                  f"({row[f'{name}_load_ms_per_plan']:6.3f} + {row[f'{name}_pv_ms_per_plan']:6.3f})"
                  f"  {row[f'{name}_median_plan_ms']:11.3f}  {row[f'{name}_slowest_plan_ms']:12.1f}"
                  f"  {row[f'{name}_restore_ms']:7.1f}"
                  + (f"  {row['ratio']:5.1f}  {row['largest_relative_difference']:.1e}" if name == "new" else ""))


if __name__ == "__main__":
    main()
