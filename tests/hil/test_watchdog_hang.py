"""The systemd watchdog stops when a loop hangs while the event loop still runs.

The whole runtime runs in this process, in real time, against the emulated SunSpec hybrid inverter
on 127.0.0.1. The forecast is made in the planning loop's worker thread; once the first plan is in
force, the next forecast blocks. The planning loop then hangs, telemetry and control go on, and
the runtime must withhold WATCHDOG=1 (so that systemd restarts it) until the forecast returns.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from hems.clock import SystemClock
from hems.runtime.forecasting import SiteForecast
from hems.runtime.home import HomeRuntime
from tests.conftest import wait_for
from tests.hil.process import READY_TIMEOUT_S, notify_listener, real_time_site
from tests.hil.site import home_config

WATCHDOG_USEC = 400_000  # a ping every 0.2 s
HANG_AFTER_S = 0.5


class HangingForecast:
    """A flat forecast whose calls block, once ``hang`` is set, until ``release`` is set."""

    def __init__(self) -> None:
        self.hang = threading.Event()
        self.release = threading.Event()
        self.hanging = threading.Event()
        self.calls = 0

    def forecast(self, start: datetime, steps: int, step_s: int, now: datetime) -> SiteForecast:
        self.calls += 1
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait()
            self.hanging.clear()
        return SiteForecast(np.full(steps, 600.0), np.zeros(steps))

    def observe(self, slot_start: datetime, load_w: float, pv_w: float) -> None:
        """Nothing to learn."""


async def test_watchdog_pings_stop_while_the_planning_loop_hangs(tmp_path: Path):
    async with real_time_site(soc_pct=50.0) as site:
        config = home_config(tmp_path, site.port, telemetry_period_s=1, control_period_s=2)
        # Re-plan at once when the SoC drifts by 1 %: that is how the test makes the loop plan again.
        config = config.model_copy(update={"loops": config.loops.model_copy(
            update={"replan_soc_deviation": 0.01, "replan_min_interval_s": 0.0})})
        forecast = HangingForecast()
        with notify_listener(tmp_path) as notify:
            # No WATCHDOG_PID: the watchdog is this process's (as systemd leaves it unset for a main PID
            # that execs, and as watchdog_interval_s reads it).
            runtime = HomeRuntime(config, SystemClock(), forecast=forecast,
                                  environ={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
                                  hang_after_s=HANG_AFTER_S, start_metrics_exporter=False)
            task = asyncio.create_task(runtime.run())
            try:
                await wait_for(lambda: bool(notify.times("READY")) or task.done(), READY_TIMEOUT_S, 0.05)
                assert not task.done(), task
                assert runtime.watchdog is not None and runtime.watchdog.interval_s == WATCHDOG_USEC / 2e6
                ready_at = notify.times("READY")[0]

                # Healthy: a ping every 0.2 s.
                await wait_for(lambda: len([t for t in notify.times("WATCHDOG") if t > ready_at]) >= 5, 5)
                assert runtime.healthy()

                # The next forecast hangs; a SoC jump makes the planning loop ask for one.
                forecast.hang.set()
                calls = forecast.calls
                site.plant.battery.soc_pct = 70.0
                await wait_for(forecast.hanging.is_set, 10)
                assert forecast.calls == calls + 1
                await wait_for(lambda: not runtime.healthy(), HANG_AFTER_S + 5)
                hung_at = time.monotonic()
                planning = next(loop for loop in runtime.loops if loop.name == "planning")
                assert not planning.healthy
                assert all(loop.healthy for loop in runtime.loops if loop is not planning)
                pings = len(notify.times("WATCHDOG"))
                sent = runtime.watchdog.pings

                # The event loop runs on: telemetry polls and control cycles report STATUS=...
                telemetry = next(loop for loop in runtime.loops if loop.name == "telemetry")
                polls, statuses = telemetry.iterations, len(notify.values("STATUS"))
                await wait_for(lambda: telemetry.iterations >= polls + 3 and len(notify.values("STATUS")) > statuses,
                               10)
                # ... but in those seconds (well over 10 watchdog intervals) not one ping.
                assert time.monotonic() - hung_at > 10 * runtime.watchdog.interval_s
                assert len(notify.times("WATCHDOG")) == pings
                assert runtime.watchdog.pings == sent
                assert not runtime.healthy() and forecast.hanging.is_set()

                # The forecast returns: the plan is made, the loop is healthy and the pings resume.
                forecast.hang.clear()
                forecast.release.set()
                await wait_for(lambda: runtime.healthy() and len(notify.times("WATCHDOG")) > pings, 10)
            finally:
                forecast.release.set()  # never leave the worker thread blocked
                runtime.request_stop()
                await asyncio.wait_for(task, 30)
            assert notify.values("STOPPING") == ["1"]
            assert site.autonomous(), (site.plant.remote, site.storage_control_mode())
