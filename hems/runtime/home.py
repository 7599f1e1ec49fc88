"""One home's daemon: poll -> estimate -> forecast -> plan -> actuate, as asyncio loops.

:class:`HomeRuntime` wires the parts together and owns their lifecycle. Three loops run
side by side, each with its own period and none ever stacked:

- telemetry (``loops.telemetry_period_s``): poll, estimate, metrics, store, Home Assistant;
- planning (checked every telemetry period): plan at each slot boundary, on SoC deviation and
  when there is no plan; the solve runs in a worker thread;
- control (``loops.control_period_s``, half a telemetry period after it): mode, envelope, writes.

With ``[market] enabled`` the market agent (hems/trading) runs beside them on its own tasks: it
bids before each gate closure from the plan's inputs, feeds allocations back into the plan and
reports each slot's metered energy from the telemetry snapshots.

Nothing here is global: the demo and the tests run many homes in one process. ``hems run``
(hems/cli/run.py) adds signal handling and logging around :meth:`HomeRuntime.run`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

from drivers.p1 import P1Reader
from hems.clock import Clock, holding
from hems.config import HomeConfig
from hems.control.controller import ControlDecision, Controller, ControlSettings
from hems.control.envelope import SafetyLimits
from hems.control.policy import ControlMode
from hems.mpc.planner import Planner
from hems.observability.home_assistant import HomeAssistantPublisher
from hems.observability.home_assistant_payloads import HomeAssistantSettings
from hems.observability.metrics import HomeMetrics, MetricsExporter, start_exporter
from hems.observability.notify import Notifier, Watchdog
from hems.runtime.actuators import build_actuators
from hems.runtime.estimation import PlausibilityLimits, StateEstimator, quantities_provided
from hems.runtime.forecasting import ForecastProvider, LearnedForecast
from hems.runtime.loops import PeriodicLoop
from hems.runtime.planning import PlanInForce, PlanningService
from hems.runtime.site_devices import SiteDevices, build_site_devices
from hems.runtime.snapshot import Quantity
from hems.runtime.status import plan_record, status_line
from hems.runtime.telemetry import HOUSE_LOAD_W, SITE, TelemetryService
from hems.store import AsyncStore
from hems.trading.agent import MarketAgent
from hems.trading.settings import settings_from_config

logger = logging.getLogger(__name__)

#: systemd gives a stopping service 10 s (TimeoutStopSec); the devices must be released before.
RELEASE_TIMEOUT_S = 6.0


class HomeRuntime:
    """The daemon of one home. ``await run()`` until :meth:`request_stop`."""

    def __init__(self, config: HomeConfig, clock: Clock, *, forecast: ForecastProvider | None = None,
                 environ: Mapping[str, str] | None = None, devices: SiteDevices | None = None,
                 metrics: HomeMetrics | None = None, hang_after_s: float = 120.0,
                 start_metrics_exporter: bool = True) -> None:
        self.config = config
        self.clock = clock
        self.site = config.site
        self.metrics = metrics or HomeMetrics()
        self.notifier = Notifier(environ)
        self._environ = environ
        self._forecast = forecast
        self._hang_after_s = hang_after_s
        self._start_metrics_exporter = start_metrics_exporter
        self.devices = devices
        self.store: AsyncStore | None = None
        self.exporter: MetricsExporter | None = None
        self.telemetry: TelemetryService | None = None
        self.planning: PlanningService | None = None
        self.controller: Controller | None = None
        self.loops: list[PeriodicLoop] = []
        self.decisions: list[ControlDecision] = []  # the last few, for tests and the status line
        self.ready = False
        self._stop_requested = asyncio.Event()
        self._telemetry_lock = asyncio.Lock()
        self._watchdog_task: asyncio.Task[None] | None = None
        self.watchdog: Watchdog | None = None
        self.home_assistant: HomeAssistantPublisher | None = None
        self.p1: P1Reader | None = None
        self._p1_task: asyncio.Task[None] | None = None
        self.market: MarketAgent | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, build devices and planner, start the metrics exporter."""
        config = self.config
        self.store = await AsyncStore.in_directory(
            config.home.state_directory, bucket_s=config.store.bucket_s,
            retention_days=config.store.retention_days, clock=self.clock.now_s)
        if self.devices is None:
            self.devices = await build_site_devices(config, wall_clock=self.clock.now_s,
                                                    backoff_clock=self.clock.monotonic_s)
        planner = await asyncio.to_thread(Planner, self.site)
        forecast = self._forecast
        if forecast is None:
            forecast = LearnedForecast(config.load_forecast_config(), config.pv_forecast_config(),
                                       self.site.mpc.step_s)
            await self._restore_history(forecast)
        self.planning = PlanningService(planner, forecast, config.tariff.prices, self.site.timezone,
                                        config.loops.replan_soc_deviation, config.loops.replan_min_interval_s)
        estimator = StateEstimator(PlausibilityLimits.from_site(self.site), on_rejected=self.metrics.reading_rejected)
        if config.p1 is not None:
            self.p1 = P1Reader(config.p1.port, config.p1.dsmr_version, clock=self.clock.now_s)
            self._p1_task = asyncio.get_running_loop().create_task(self.p1.run(), name="hems-p1")
        self.telemetry = TelemetryService(self.devices, estimator, self.metrics, self.store, planner.step_s,
                                          p1=self.p1, on_slot_finished=self.planning.observe_slot)
        batteries, pv_inverters = build_actuators(self.devices, config.control, self._record_setpoint)
        self.controller = Controller(
            SafetyLimits.from_site(self.site, config.control.export_margin_w),
            ControlSettings(
                control_period_s=config.loops.control_period_s,
                max_reading_age_s=config.reading_max_age_s,
                fallback=ControlMode(config.control.fallback),
                battery_ramp_w_per_s=config.control.battery_ramp_w_per_s,
                curtail_pv=config.control.curtail_pv),
            batteries, pv_inverters)
        if config.home_assistant.enabled:
            self.home_assistant = await self._start_home_assistant()
        if config.market.enabled:
            self.market = await self._start_market()
        if config.metrics.enabled and self._start_metrics_exporter:
            self.exporter = start_exporter(self.metrics.registry, config.metrics.address, config.metrics.port)
        logger.info("home %s started: %d device(s), %d battery and %d PV output(s) under control",
                    config.home.id, len(self.devices.clients), len(batteries), len(pv_inverters))

    async def run(self) -> None:
        """Start, run the loops until :meth:`request_stop`, then shut down safely."""
        # Simulated time waits for the start-up (discovery, planner build) and until the loops
        # have taken hold of the clock themselves (one event-loop turn after they are created).
        with holding(self.clock):
            await self.start()
            self._start_loops()
            await asyncio.sleep(0)
        try:
            await self._stop_requested.wait()
        finally:
            await self.shutdown()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (signal handlers call this)."""
        self._stop_requested.set()

    def _start_loops(self) -> None:
        loops = self.config.loops
        overrun = self.metrics.loop_overrun
        # Planning and control run just after a telemetry cycle, so they see a fresh snapshot;
        # control also waits for a poll that takes longer than the offset (the telemetry lock).
        offset_s = min(1.0, loops.telemetry_period_s / 4)
        self.loops = [
            PeriodicLoop("telemetry", loops.telemetry_period_s, self._telemetry_cycle, self.clock, overrun,
                         self._hang_after_s),
            PeriodicLoop("planning", loops.telemetry_period_s, self._planning_cycle, self.clock, overrun,
                         self._hang_after_s, start_offset_s=offset_s / 2),
            PeriodicLoop("control", loops.control_period_s, self._control_cycle, self.clock, overrun,
                         self._hang_after_s, start_offset_s=offset_s),
        ]
        for loop in self.loops:
            loop.start()
        self.watchdog = Watchdog.from_environment(self.notifier, self.healthy, self._environ)
        if self.watchdog is not None:
            self._watchdog_task = self.watchdog.start()

    async def shutdown(self) -> None:
        """STOPPING=1, stop the loops, return the devices to autonomous mode, flush, close."""
        self.notifier.stopping("stopping: returning devices to autonomous mode")
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
        for loop in self.loops:  # all at once: no loop may run on while another one stops
            loop.request_stop()
        if self.market is not None:
            self.market.request_stop()
        for loop in self.loops:
            await loop.stop()
        if self.controller is not None:
            try:
                released = await asyncio.wait_for(self.controller.release_all(self.clock.now_s(), force=True),
                                                  RELEASE_TIMEOUT_S)
            except asyncio.TimeoutError:
                released = False
            if released:
                logger.info("devices returned to autonomous mode")
            else:
                logger.warning("not every device confirmed autonomous mode; their dead-man timeouts apply")
        if self.p1 is not None and self._p1_task is not None:
            self.p1.stop()
            await asyncio.wait({self._p1_task}, timeout=2.0)
        if self.home_assistant is not None:
            await self.home_assistant.stop()
        if self.market is not None:
            await self.market.stop()  # says offline (retained) before it disconnects
        if self.exporter is not None:
            self.exporter.stop()
        if self.store is not None:
            await self.store.close()
        if self.devices is not None:
            self.devices.close()

    def healthy(self) -> bool:
        """True while no loop is hung (the watchdog's condition)."""
        return all(loop.healthy for loop in self.loops)

    # -- loop bodies ----------------------------------------------------------------------

    async def _telemetry_cycle(self) -> None:
        assert self.telemetry is not None
        async with self._telemetry_lock:
            now_s = self.clock.now_s()
            snapshot = await self.telemetry.cycle(now_s)
        if self.home_assistant is not None and self.home_assistant.due(now_s):
            in_force = self.plan_in_force
            await self.home_assistant.publish(snapshot, None if in_force is None else in_force.plan,
                                              None if in_force is None else in_force.made_at_s)
        if self.market is not None:
            await self.market.observe(snapshot, now_s)

    async def _planning_cycle(self) -> None:
        assert self.telemetry is not None and self.planning is not None and self.store is not None
        now_s = self.clock.now_s()
        snapshot = self.telemetry.snapshot
        if snapshot.get(Quantity.GRID_IMPORT_W) is None:
            return  # nothing measured yet: a plan from defaults would only mislead
        reason = self.planning.reason_to_plan(snapshot, now_s)
        if reason is not None:
            in_force = await self.planning.plan(snapshot, now_s)
            plan = in_force.plan
            self.metrics.observe_solve(plan.solve_ms / 1000.0, plan.status)
            logger.debug("planned (%s): %s by %s in %.0f ms", reason, plan.status, plan.solver, plan.solve_ms)
            await self.store.save_plan(in_force.start_s, plan.status, plan.solve_ms / 1000.0,
                                       plan_record(in_force), created_at_s=now_s)
            if not self.ready:
                self.ready = True
                self.notifier.ready(status_line(snapshot, in_force, None))
        if self.planning.current is not None:
            self.metrics.set_plan_age(now_s - self.planning.current.made_at_s)
        if isinstance(self.planning.forecast, LearnedForecast):
            for quantity, mae_w in self.planning.forecast.mean_absolute_errors_w().items():
                if math.isfinite(mae_w):
                    self.metrics.set_forecast_mae(quantity, mae_w)

    async def _control_cycle(self) -> None:
        assert self.telemetry is not None and self.controller is not None and self.planning is not None
        async with self._telemetry_lock:
            now_s = self.clock.now_s()
            in_force = self.planning.current
            step = in_force.step_at(now_s) if in_force is not None else None
            decision = await self.controller.cycle(self.telemetry.snapshot, step, now_s)
        self.decisions = (self.decisions + [decision])[-100:]
        self.notifier.status(status_line(self.telemetry.snapshot, in_force, decision,
                                         market=None if self.market is None else self.market.state))

    @property
    def plan_in_force(self) -> PlanInForce | None:
        """The current plan, if any."""
        return None if self.planning is None else self.planning.current

    async def _record_setpoint(self, device: str, output: str, value_w: float | None, read_back_ok: bool,
                               at_s: float) -> None:
        if self.store is None:
            return
        role = output if value_w is not None else f"{output}:autonomous"
        await self.store.record_setpoint(device, role, 0.0 if value_w is None else value_w, read_back_ok,
                                         written_at_s=at_s)

    async def _restore_history(self, forecast: LearnedForecast) -> None:
        """Feed the stored history to a fresh forecaster, so a restart does not forget the home."""
        assert self.store is not None
        since_s = self.clock.now_s() - self.config.forecast.load_history_days * 86_400.0
        half_bucket_s = self.config.store.bucket_s / 2

        def instant(bucket_start_s: float) -> datetime:
            return datetime.fromtimestamp(bucket_start_s, tz=timezone.utc)

        loads = await self.store.readings(SITE, HOUSE_LOAD_W, since_s=since_s)
        pv = await self.store.readings(SITE, Quantity.PV_POWER_W.value, since_s=since_s)
        await asyncio.to_thread(
            forecast.restore, [(instant(b.bucket_start_s), b.mean) for b in loads],
            [(instant(b.bucket_start_s + half_bucket_s), b.mean) for b in pv])
        if loads:
            logger.info("forecast history restored: %d load and %d PV intervals", len(loads), len(pv))

    async def _start_home_assistant(self) -> HomeAssistantPublisher:
        section = self.config.home_assistant
        password = None
        if section.password_file is not None:
            text = await asyncio.to_thread(section.password_file.read_text, encoding="utf-8")
            password = text.strip()
        settings = HomeAssistantSettings(
            broker=section.broker, discovery_prefix=section.discovery_prefix,
            state_topic_prefix=section.state_topic_prefix, username=section.username, password=password,
            publish_period_s=section.publish_period_s, currency=section.currency,
            ca_file=None if section.ca_file is None else str(section.ca_file))
        publisher = HomeAssistantPublisher(settings, self.config.home.id, self.clock.now_s,
                                           quantities=quantities_provided(self.devices, with_p1=self.config.p1 is not None),
                                           stale_after_s=self.config.reading_max_age_s)
        await publisher.start()
        return publisher

    async def _start_market(self) -> MarketAgent | None:
        """The market agent, connecting in the background; None when its password cannot be read
        (the home then runs against the retail tariff, and says so in the log and the metrics)."""
        assert self.store is not None and self.planning is not None
        try:
            settings = await settings_from_config(self.config)
        except OSError as error:
            logger.error("market: cannot read market.password_file (%s); the home runs retail only", error)
            self.metrics.set_market_state("retail_only")
            return None
        # A reading gap longer than a few polls leaves a slot unmetered rather than guessed.
        max_gap_s = max(60.0, 3 * self.config.loops.telemetry_period_s)
        agent = MarketAgent(settings, self.clock, self.store, self.planning, metrics=self.metrics,
                            max_gap_s=max_gap_s)
        self.planning.market_terms = agent.plan_terms
        await agent.start()
        return agent

    def describe(self) -> dict[str, Any]:
        """Iterations, overruns and errors per loop (tests and the benchmark read them), and the
        market agent's state under ``"market"`` when it runs."""
        described: dict[str, Any] = {
            loop.name: {"iterations": loop.iterations, "overruns": loop.overruns, "errors": loop.errors}
            for loop in self.loops}
        if self.market is not None:
            described["market"] = self.market.describe()
        return described
