"""The history a demo home starts with: the observations its forecaster would have made live.

A running daemon learns once per slot (the load at the slot's start, PV at its midpoint). The demo
seeds its store so that the runtime's own restore (``HomeRuntime._restore_history``) hands the
forecaster exactly those observations, once each.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from hems.clock import VirtualClock
from hems.demo.home_site import home_config, seed_history
from hems.demo.model import DemoHome, HomeProfiles
from hems.demo.profiles import build_profiles
from hems.demo.settings import DEFAULT_START_S, RuntimeSettings
from hems.demo.sites import generate_homes
from hems.runtime.forecasting import LearnedForecast
from hems.runtime.home import HomeRuntime
from hems.runtime.snapshot import Quantity
from hems.runtime.telemetry import HOUSE_LOAD_W, SITE
from hems.store import AsyncStore, Store

HISTORY_DAYS = 3
UNTIL_S = DEFAULT_START_S - 1800  # where the demo's daemons start: half an hour before the run


@pytest.fixture(scope="module")
def pv_home() -> tuple[DemoHome, HomeProfiles]:
    """A generated home with PV and its profiles (built once: pvlib takes a while)."""
    home = next(home for home in generate_homes(6) if home.pv is not None)
    return home, build_profiles(home, DEFAULT_START_S, 3600, history_days=HISTORY_DAYS)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def test_each_past_slot_is_stored_once_where_the_runtime_restores_it(
        tmp_path: Path, pv_home: tuple[DemoHome, HomeProfiles]) -> None:
    _, profiles = pv_home
    bucket_s = RuntimeSettings().store_bucket_s
    written = seed_history(tmp_path, profiles, UNTIL_S, bucket_s)

    ended = [index for index in range(len(profiles.household_w))
             if profiles.start_s + (index + 1) * profiles.step_s <= UNTIL_S]
    assert written == 2 * len(ended) and len(ended) == HISTORY_DAYS * 96 - 2
    with Store.in_directory(tmp_path, bucket_s=bucket_s, clock=lambda: float(UNTIL_S)) as store:
        loads = store.readings(SITE, HOUSE_LOAD_W, since_s=0.0)
        pv = store.readings(SITE, Quantity.PV_POWER_W.value, since_s=0.0)
    load_w = profiles.household_w + profiles.ev_w + profiles.heat_pump_w
    # Load: the bucket that starts the slot; PV: the bucket whose midpoint is the slot's midpoint.
    assert [bucket.bucket_start_s for bucket in loads] == [profiles.start_s + index * profiles.step_s
                                                          for index in ended]
    assert [bucket.bucket_start_s + bucket_s / 2 for bucket in pv] == [
        profiles.start_s + index * profiles.step_s + profiles.step_s / 2 for index in ended]
    assert [bucket.mean for bucket in loads] == pytest.approx(load_w[ended].tolist(), abs=1e-9)
    assert [bucket.mean for bucket in pv] == pytest.approx(profiles.pv_available_w[ended].tolist(), abs=1e-9)
    assert all(bucket.count == 1 for bucket in [*loads, *pv])


async def test_the_restored_forecaster_equals_one_that_learnt_the_same_days_live(
        tmp_path: Path, pv_home: tuple[DemoHome, HomeProfiles]) -> None:
    home, profiles = pv_home
    settings = RuntimeSettings()
    seed_history(tmp_path, profiles, UNTIL_S, settings.store_bucket_s)
    config = home_config(home, 1502, tmp_path, settings, market=None)  # the port is never dialled here

    runtime = HomeRuntime(config, VirtualClock(UNTIL_S), environ={}, start_metrics_exporter=False)
    runtime.store = await AsyncStore.in_directory(tmp_path, bucket_s=settings.store_bucket_s,
                                                  clock=lambda: float(UNTIL_S))
    restored = LearnedForecast(config.load_forecast_config(), config.pv_forecast_config(), settings.slot_s)
    try:
        await runtime._restore_history(restored)  # noqa: SLF001 - the runtime's own restore is what is tested
    finally:
        await runtime.store.close()

    live = LearnedForecast(config.load_forecast_config(), config.pv_forecast_config(), settings.slot_s)
    load_w = profiles.household_w + profiles.ev_w + profiles.heat_pump_w
    for index in range(len(load_w)):
        slot_start_s = profiles.start_s + index * profiles.step_s
        if slot_start_s + profiles.step_s > UNTIL_S:
            break
        live.observe(_utc(slot_start_s), float(load_w[index]), float(profiles.pv_available_w[index]))

    start = _utc(UNTIL_S)
    for hours_later in (0, 6, 12):
        at = start + timedelta(hours=hours_later)
        expected, got = live.forecast(at, 36, settings.slot_s, at), restored.forecast(at, 36, settings.slot_s, at)
        assert np.allclose(got.load_w, expected.load_w, rtol=1e-12, atol=1e-9)
        assert np.allclose(got.pv_w, expected.pv_w, rtol=1e-9, atol=1e-6)
    assert got.pv_w.max() > 0  # a PV home at noon: the PV part was compared, not two zero arrays


def test_a_bucket_that_cannot_be_centred_on_the_slot_is_refused(
        tmp_path: Path, pv_home: tuple[DemoHome, HomeProfiles]) -> None:
    _, profiles = pv_home
    with pytest.raises(ValueError, match="odd multiple"):
        seed_history(tmp_path, profiles, UNTIL_S, 450)  # 900 / 450 = 2: no bucket centred on the midpoint
