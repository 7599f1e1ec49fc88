"""One home's daemon in steady state (issue 4): CPU per simulated hour, peak RSS, reading -> setpoint.

The site is the hardware-in-the-loop home of tests/hil/site.py: a SunSpec hybrid inverter
(models 1, 103, 120, 123, 124, 203, 802; PV 5 kWp, battery 10 kWh) served by ``EmulatorServer``
over real Modbus TCP on 127.0.0.1. The daemon runs with its default loop periods (telemetry 5 s,
control 10 s, 96 x 15-minute plans), the defaults of ``[control]`` (readings stale after two
telemetry periods, setpoint_timeout_s 60, deadband 25 W) and the production forecast (``LearnedForecast``), unlike
tests/hil/site.py (30 s periods, perfect forecast). Three measurements, one run:

1. **CPU seconds per simulated hour** (accelerated, deterministic). ``HomeRuntime`` runs on a
   ``VirtualClock`` in the main thread; the emulator runs in a second thread with its own event
   loop, its plant reading the same virtual clock (time stands still while the daemon awaits the
   socket, as in tests/hil/site.py). The kernel accounts CPU per thread, so the attribution needs
   no profiler and no replay: daemon = process CPU (``time.process_time``) - emulator thread CPU
   (``time.thread_time`` asked inside that thread), over ``--hours`` simulated hours after a
   30-minute warm-up (start-up, SunSpec discovery, planner build and the first plan excluded).
   The daemon figure is split into its event-loop thread (poll, estimate, store calls, control,
   writes) and its other threads (the plan in ``asyncio.to_thread``, whose CPU is also taken in
   that thread by wrapping ``PlanningService._plan_blocking``; the SQLite worker; the metrics
   exporter, whose own CPU is read from /proc/self/task/TID/schedstat). The bench's sleeper task
   in the main thread wakes twice in the window and is negligible.

   Validation in real time: ``python -m hems run --config FILE`` as a subprocess (SystemClock),
   against ``python -m hems emulate sunspec_hybrid`` in another process, same site, same
   periods, metrics exporter on and NOTIFY_SOCKET set as under systemd. From READY (sd_notify to
   a socket of ours) + 1.5 s, for ``--window`` seconds: the CPU of each of the daemon's threads
   (/proc/PID/task/TID/schedstat, ns; /proc/PID/stat ticks as a cross-check), extrapolated to an
   hour and as % of one core. The metrics endpoint is scraped just before and just after the
   window (outside it) to count its plans and overruns. The figure is compared with what the
   accelerated run predicts for the same window: its per-hour figure without plans and without
   the exporter's idle polling, plus that polling at its real-time rate (prometheus_client wakes
   every 0.5 s of real time), plus the plans in the window. This subprocess runs while
   measurement 3 runs in this process (both mostly idle; it keeps the bench under 5 minutes).

2. **Peak RSS**: the same subprocess: VmHWM (peak since start, start-up included) and VmRSS at
   READY and after the window, against a bare ``python -c "import cvxpy, pymodbus, numpy"``
   measured in the same run (the limit: what the imports alone cost), and a fresh interpreter
   taken through the daemon's stages (its imports, the planner built, the first forecast, the
   first plan) to show where the difference comes from.

3. **Reading -> setpoint written** (real time). ``HomeRuntime`` on the SystemClock in this
   process against an emulator subprocess, with the shortest periods the config allows
   (telemetry 0.5 s, control 1 s: scheduled offset min(1 s, 0.5 s / 4) = 0.125 s; at the default
   periods it is 1 s), ``deadband_w = 0`` and ``setpoint_timeout_s = 10``, and the emulator's
   plant at 10x real time (``--speed 10``) so that the setpoint moves, and is written, in every
   control cycle (the daemon itself runs in real time). Measured from outside the daemon code,
   by wrapping the runtime's control-loop body (an instance attribute) and, after ``start()``, each
   actuator's write callable (``SetpointActuator._write`` = ``Battery.set_charge_power``: the
   SunSpec model 124 strategy's four point writes, each read back, two with a scale-factor read)
   and the connection's ``read``/``write`` (to record the requests). Per written setpoint, in
   ``time.time()`` (the clock that stamps readings): ``reading`` = ``measured_at_s`` of the
   snapshot's grid reading (stamped by ``MapClient.poll`` when the poll's last block arrived; one
   device, so every quantity shares it), ``control start``, ``write start``, ``write end``
   (read-back included). Figures: from poll completion (write end - reading), excluding the
   scheduled offset (write end - max(reading, control start)), and the write alone.
   The limit: a bare pymodbus client on the same emulator, measured in the same run in two ways.
   (a) While the daemon runs, in each control period when the daemon is idle (0.25 s and 0.6 s
   after the control cycle started, the poll and the write being over): one single-register read
   (fc 3), then alternately one single-register write (fc 6) or the daemon's whole request
   sequence for one setpoint, replayed with the values the daemon just wrote (the same command
   again, so the plant does not change). Like the daemon's write, these start after the emulator
   has been idle for a while, which on this VM costs ~0.7 ms per first request (wake-up).
   (b) After the daemon stopped, ``--raw-rounds`` rounds back to back (hot, the best case).

Run: .venv/bin/python bench/bench_daemon.py [--hours 4] [--window 180] [--cycles 200] [--json]
(about 4 minutes on the 2-core machine with the defaults). Prints a summary, or one JSON
object with --json; bench/RESULTS.md records the figures with machine and date.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hems.clock import SystemClock, VirtualClock  # noqa: E402
from hems.config import HomeConfig  # noqa: E402
from hems.runtime.home import HomeRuntime  # noqa: E402
from hems.runtime.snapshot import Quantity  # noqa: E402
from tests.hil.site import config_text as site_config_text  # noqa: E402

#: 2025-06-21 00:00 UTC, as tests/hil/site.py.
DAY_START_S = 1_750_464_000.0
HOUR_S = 3600.0
WARMUP_S = 1800.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Latency run: the shortest periods the config allows, every moved setpoint written, and a plant
#: running 10x real time so that the setpoint moves in (nearly) every control cycle.
LATENCY_LOOPS = {"telemetry_period_s": 0.5, "control_period_s": 1.0}
LATENCY_CONTROL = {"deadband_w": 0.0, "setpoint_timeout_s": 10.0}
LATENCY_EMULATOR_SPEED = 10.0

def config_text(state_directory: Path, port: int, loops: dict | None = None, control: dict | None = None,
                metrics: dict | None = None) -> str:
    """The HIL home of tests/hil/site.py with the daemon's default [loops] and [control] (telemetry
    5 s, control 10 s, stale after two telemetry periods, setpoint_timeout_s 60, deadband 25 W)."""
    return site_config_text(state_directory, port, loops=loops, device_timeout_s=1.0,
                            control={"fallback": "self_consumption", **(control or {})}, metrics=metrics)


def make_config(text: str) -> HomeConfig:
    return HomeConfig.model_validate(tomllib.loads(text))


def quantiles(values: list[float], scale: float = 1e3, digits: int = 2) -> dict:
    """median, p95, max (and min) of ``values`` in ms by default."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"n": len(values), "median": round(statistics.median(ordered) * scale, digits),
            "p95": round(p95 * scale, digits), "max": round(ordered[-1] * scale, digits),
            "min": round(ordered[0] * scale, digits)}


# -- 1. accelerated CPU -------------------------------------------------------------------------


class EmulatorThread:
    """The HIL site's emulator in a thread of its own, on the daemon's virtual clock."""

    def __init__(self, clock: VirtualClock, soc_pct: float = 50.0) -> None:
        self.clock = clock
        self.soc_pct = soc_pct
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None
        self.port: int | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="emulator", daemon=True)

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc) -> None:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _main(self) -> None:
        from drivers.emulators import MapBinding, SitePlant
        from drivers.emulators.modbus_server import EmulatorServer
        from drivers.emulators.plant import Battery, PvArray
        from drivers.sunspec.site_image import hybrid_site_map

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            plant = SitePlant(pv=PvArray(peak_w=5000.0), battery=Battery(capacity_wh=10_000.0, soc_pct=self.soc_pct),
                              clock=self.clock)
            self.server = EmulatorServer([MapBinding(hybrid_site_map(with_battery_model=True), 1)], plant,
                                         tcp=("127.0.0.1", 0))
            self.loop.run_until_complete(self.server.start())
            self.port = self.server.port
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def cpu_s(self) -> float:
        """CPU seconds this thread has used (asked inside the thread)."""
        assert self.loop is not None
        future: concurrent.futures.Future[float] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(lambda: future.set_result(time.thread_time()))
        return future.result(10)


def _counts(runtime: HomeRuntime, emulator: EmulatorThread) -> dict:
    actuators = runtime.controller.battery_actuators + runtime.controller.pv_actuators
    return {
        "telemetry_cycles": runtime.loops[0].iterations, "planning_checks": runtime.loops[1].iterations,
        "control_cycles": runtime.loops[2].iterations, "plans": runtime.planning.plans_made,
        "setpoint_writes": sum(a.status.writes for a in actuators),
        "releases": sum(a.status.releases for a in actuators),
        "write_failures": sum(a.status.failures for a in actuators),
        "overruns": sum(loop.overruns for loop in runtime.loops), "loop_errors": sum(loop.errors for loop in runtime.loops),
        "emulator_requests": emulator.server.requests_served,
    }


async def accelerated_cpu(hours: float, start_hour: float) -> dict:
    """CPU of the daemon per simulated hour, emulator excluded (see the module docstring)."""
    start_s = DAY_START_S + start_hour * HOUR_S
    clock = VirtualClock(start_s)
    with tempfile.TemporaryDirectory(prefix="hems-bench-") as state, EmulatorThread(clock) as emulator:
        config = make_config(config_text(Path(state), emulator.port, metrics={"port": 0}))
        runtime = HomeRuntime(config, clock, environ={})
        plan_cpu_s: list[float] = []
        # This task holds simulated time until the loops hold it: between the end of start()
        # (run() leaves `holding`) and the loop tasks' first step nobody would, and a sleeper
        # would let time jump to its wake-up.
        with clock.participant():
            task = asyncio.create_task(runtime.run())
            while not (runtime.loops and all(loop._task is not None for loop in runtime.loops)):
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            # The solve's CPU, measured in its worker thread (forecast + MPC + plan objects).
            plan_blocking = runtime.planning._plan_blocking

            def timed_plan(*args):
                started = time.thread_time()
                try:
                    return plan_blocking(*args)
                finally:
                    plan_cpu_s.append(time.thread_time() - started)
            runtime.planning._plan_blocking = timed_plan
        try:
            await clock.sleep_until_s(start_s + WARMUP_S)
            assert runtime.ready, "no plan after the warm-up"
            before = _counts(runtime, emulator)
            plans_before = len(plan_cpu_s)
            exporter_tid = runtime.exporter.thread.native_id
            exporter0 = proc_threads_cpu_s(os.getpid())[exporter_tid]
            wall0, process0, main0, emu0 = time.perf_counter(), time.process_time(), time.thread_time(), emulator.cpu_s()
            await clock.sleep_until_s(start_s + WARMUP_S + hours * HOUR_S)
            emu1 = emulator.cpu_s()
            wall1, process1, main1 = time.perf_counter(), time.process_time(), time.thread_time()
            exporter1 = proc_threads_cpu_s(os.getpid())[exporter_tid]
            after = _counts(runtime, emulator)
            window_plans = plan_cpu_s[plans_before:]
        finally:
            runtime.request_stop()
            await asyncio.wait_for(task, 30)
    emulator_s = emu1 - emu0
    daemon_s = (process1 - process0) - emulator_s
    main_s = main1 - main0
    counts = {key: after[key] - before[key] for key in after}
    per_hour = lambda seconds: round(seconds / hours, 3)  # noqa: E731
    return {
        "simulated_hours": hours, "from_utc_hour": start_hour + WARMUP_S / HOUR_S, "wall_s": round(wall1 - wall0, 1),
        "speedup": round(hours * HOUR_S / (wall1 - wall0), 1),
        "daemon_cpu_s_per_hour": per_hour(daemon_s),
        "daemon_event_loop_thread_cpu_s_per_hour": per_hour(main_s),
        "daemon_other_threads_cpu_s_per_hour": per_hour(daemon_s - main_s),
        "plans_cpu_s_per_hour": per_hour(sum(window_plans)),
        "daemon_without_plans_cpu_s_per_hour": per_hour(daemon_s - sum(window_plans)),
        "plan_cpu_ms": quantiles(window_plans, digits=1),
        # prometheus_client's serve_forever wakes every 0.5 s of real time: a cost per real hour.
        "metrics_exporter_idle_cpu_s_per_real_hour": round((exporter1 - exporter0) / (wall1 - wall0) * HOUR_S, 3),
        "metrics_exporter_cpu_s_in_window": round(exporter1 - exporter0, 4),
        "emulator_cpu_s_per_hour": per_hour(emulator_s),
        "daemon_percent_of_one_core_at_real_time": round(100 * daemon_s / (hours * HOUR_S), 3),
        "daemon_cpu_ms_per_telemetry_cycle": round(1e3 * daemon_s / max(counts["telemetry_cycles"], 1), 2),
        "counts": counts,
    }


# -- 2. real-time subprocess: CPU and RSS -------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, all threads, dead ones included (10 ms clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_threads_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each live thread of a process, in ns resolution (schedstat run time)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            continue
    return threads


def window_cpu_s(before: dict[int, float], after: dict[int, float]) -> tuple[float, int]:
    """CPU used between two :func:`proc_threads_cpu_s` readings, and how many threads ended in
    between (their last stretch is then missing: the caller falls back to the tick count)."""
    ended = len(set(before) - set(after))
    return sum(seconds - before.get(tid, 0.0) for tid, seconds in after.items()), ended


def proc_memory_mb(pid: int | str) -> dict:
    """VmRSS, VmHWM (MB) and the thread count of a process."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024.0, 1)
        elif key == "Threads":
            values[key] = int(rest)
    return values


def bare_import_memory(statement: str) -> dict:
    """VmRSS / VmHWM of a fresh interpreter after ``statement``."""
    code = (f"{statement}\nfrom pathlib import Path\n"
            "print(Path('/proc/self/status').read_text())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    values = {}
    for line in result.stdout.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024.0, 1)
    return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Emulator:
    """``python -m hems emulate sunspec_hybrid`` in a process of its own, in real time."""

    def __init__(self, start_hour: float, speed: float = 1.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hems", "emulate", "sunspec_hybrid", "--tcp", "127.0.0.1:0",
             "--start-hour", str(start_hour), "--speed", str(speed), "--status-every", "0"],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        line = self.process.stdout.readline()
        match = re.search(r"tcp://[\d.]+:(\d+)", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"hems emulate did not start: {line!r}")
        self.port = int(match.group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class NotifyReceiver:
    """An abstract AF_UNIX datagram socket for NOTIFY_SOCKET, drained by a thread (a full
    queue would block the daemon's sendall)."""

    def __init__(self) -> None:
        self.name = f"hems-bench-{uuid.uuid4().hex}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.name)
        self.socket.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.ready_at: float | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return "@" + self.name

    def _drain(self) -> None:
        while not self._stop:
            try:
                message = self.socket.recv(65536).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            self.messages.append((now, message))
            if self.ready_at is None and "READY=1" in message.splitlines():
                self.ready_at = now

    def status_messages_between(self, start: float, end: float) -> int:
        return sum(1 for at, message in self.messages if start <= at < end and message.startswith("STATUS="))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.socket.close()


def scrape(port: int) -> dict[str, float]:
    """The counters of the metrics endpoint this bench needs."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    wanted = {"hems_mpc_solve_seconds_count": 0.0, "hems_loop_overruns_total": 0.0, "hems_modbus_errors_total": 0.0}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name in wanted:
            wanted[name] += float(line.rsplit(" ", 1)[1])
    return wanted


def real_time_daemon(window_s: float, start_hour: float, directory: Path) -> dict:
    """``hems run`` in a subprocess: CPU over ``window_s`` from READY, RSS."""
    emulator = Emulator(start_hour)
    receiver = NotifyReceiver()
    metrics_port = free_port()
    path = directory / "daemon.toml"
    path.write_text(config_text(directory / "state", emulator.port, metrics={"port": metrics_port}))
    log = open(directory / "daemon.log", "w")
    environment = {**os.environ, "NOTIFY_SOCKET": receiver.address}
    launched = time.monotonic()
    daemon = subprocess.Popen([sys.executable, "-m", "hems", "run", "--config", str(path)], env=environment,
                              stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1])
    try:
        while receiver.ready_at is None:
            if daemon.poll() is not None or time.monotonic() - launched > 120:
                raise RuntimeError(f"hems run never became ready; see {directory / 'daemon.log'}")
            time.sleep(0.05)
        ready_s = receiver.ready_at - launched
        memory_ready = proc_memory_mb(daemon.pid)
        time.sleep(1.0)  # past the READY cycle
        metrics0 = scrape(metrics_port)
        time.sleep(0.5)  # the exporter serves each scrape in a thread of its own: let it end first
        t0, ticks0, threads0 = time.monotonic(), proc_cpu_s(daemon.pid), proc_threads_cpu_s(daemon.pid)
        emu0 = proc_threads_cpu_s(emulator.process.pid)
        time.sleep(window_s)
        t1, ticks1, threads1 = time.monotonic(), proc_cpu_s(daemon.pid), proc_threads_cpu_s(daemon.pid)
        emu1 = proc_threads_cpu_s(emulator.process.pid)
        memory_end = proc_memory_mb(daemon.pid)
        metrics1 = scrape(metrics_port)
        startup_cpu = ticks0
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait()
        log.close()
        receiver.close()
        emulator.stop()
    elapsed = t1 - t0
    cpu, ended = window_cpu_s(threads0, threads1)
    if ended:
        cpu = ticks1 - ticks0
    main_thread = threads1.get(daemon.pid, 0.0) - threads0.get(daemon.pid, 0.0)
    others = sorted((round(seconds - threads0.get(tid, 0.0), 4) for tid, seconds in threads1.items()
                     if tid != daemon.pid), reverse=True)
    emulator_cpu, _ = window_cpu_s(emu0, emu1)
    log_text = (directory / "daemon.log").read_text()
    return {
        "window_s": round(elapsed, 1), "ready_after_s": round(ready_s, 2), "startup_cpu_s": round(startup_cpu, 2),
        "daemon_cpu_s": round(cpu, 4), "daemon_cpu_s_per_hour": round(cpu * HOUR_S / elapsed, 2),
        "daemon_percent_of_one_core": round(100 * cpu / elapsed, 2),
        "event_loop_thread_cpu_s": round(main_thread, 4), "other_threads_cpu_s": others,
        "daemon_cpu_s_from_ticks": round(ticks1 - ticks0, 2), "threads_ended_in_window": ended,
        "emulator_cpu_s_per_hour": round(emulator_cpu * HOUR_S / elapsed, 2),
        "control_cycles": receiver.status_messages_between(t0, t1),
        "plans": metrics1["hems_mpc_solve_seconds_count"] - metrics0["hems_mpc_solve_seconds_count"],
        "overruns": metrics1["hems_loop_overruns_total"] - metrics0["hems_loop_overruns_total"],
        "modbus_errors": metrics1["hems_modbus_errors_total"] - metrics0["hems_modbus_errors_total"],
        "memory_at_ready_mb": memory_ready, "memory_after_window_mb": memory_end, "exit_code": code,
        "log_warnings": [line for line in log_text.splitlines() if "level=warning" in line or "level=error" in line][:10],
    }


# -- 3. reading -> setpoint written ---------------------------------------------------------------


class InstrumentedRuntime(HomeRuntime):
    """HomeRuntime with time stamps taken at its control cycles and around its actuator writes; the
    daemon's code is untouched (the wrappers are instance attributes)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.control_starts: list[float] = []
        self.writes: list[dict] = []
        self.requests: list[tuple] | None = None  # being recorded while not None
        self.sequences: list[list[tuple]] = []
        self.control_started = asyncio.Event()
        self._control_cycle = self._timed(self._control_cycle, self._control_started)

    def _control_started(self, at: float) -> None:
        self.control_starts.append(at)
        self.control_started.set()

    @staticmethod
    def _timed(body, on_start):
        async def wrapper() -> None:
            on_start(time.time())
            await body()
        return wrapper

    async def start(self) -> None:
        await super().start()
        for client in self.devices.clients.values():
            connection = client.connection
            read, write = connection.read, connection.write

            async def counted_read(table, address, count, device_id, _read=read):
                if self.requests is not None:
                    self.requests.append(("read", table, address, count, device_id))
                return await _read(table, address, count, device_id)

            async def counted_write(address, values, device_id, _write=write):
                if self.requests is not None:
                    self.requests.append(("write", address, list(values), device_id))
                return await _write(address, values, device_id)

            connection.read, connection.write = counted_read, counted_write
        for actuator in self.controller.battery_actuators + self.controller.pv_actuators:
            actuator._write = self._timed_write(actuator.output, actuator._write)

    def _timed_write(self, output: str, write):
        async def wrapper(value_w: float) -> None:
            snapshot = self.telemetry.snapshot  # the control cycle holds the telemetry lock
            self.requests = []
            started = time.time()
            try:
                await write(value_w)
            finally:
                ended = time.time()
                requests, self.requests = self.requests, None
            grid = snapshot.get(Quantity.GRID_IMPORT_W)
            self.writes.append({"output": output, "reading_at": None if grid is None else grid.measured_at_s,
                                "taken_at": snapshot.taken_at_s, "control_start": self.control_starts[-1],
                                "write_start": started, "write_end": ended, "requests": len(requests)})
            self.sequences.append(requests)
        return wrapper


class RawClient:
    """A bare pymodbus client on the emulator: the limit the daemon's requests are compared with."""

    def __init__(self, port: int) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        self.client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)

    async def __aenter__(self) -> RawClient:
        await self.client.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        self.client.close()

    async def send(self, request: tuple) -> None:
        from drivers.maps import Table

        client = self.client
        if request[0] == "read":
            _, table, address, count, device_id = request
            read = client.read_holding_registers if table is Table.HOLDING else client.read_input_registers
            response = await read(address, count=count, device_id=device_id)
        elif len(request[2]) == 1:
            response = await client.write_register(request[1], request[2][0], device_id=request[3])
        else:
            response = await client.write_registers(request[1], request[2], device_id=request[3])
        assert not response.isError(), response

    async def timed(self, requests: list[tuple]) -> float:
        started = time.perf_counter()
        for request in requests:
            await self.send(request)
        return time.perf_counter() - started


def single_read(sequence: list[tuple]) -> tuple:
    """One register the daemon reads (the first read of its setpoint sequence)."""
    request = next(request for request in sequence if request[0] == "read")
    return ("read", request[1], request[2], 1, request[4])


def single_write(sequence: list[tuple]) -> tuple:
    """The first write of the daemon's last setpoint sequence, with the value it wrote (a no-op for
    the plant: the window it sets is the one in force)."""
    request = next(request for request in sequence if request[0] == "write")
    return ("write", request[1], request[2][:1], request[3])


async def probe_idle(runtime: InstrumentedRuntime, raw: RawClient, samples: dict[str, list[float]]) -> None:
    """Raw round trips as the daemon sends its setpoint: after the emulator has been idle for a
    while (the daemon writes 0.125 s after its poll). In every control period, 0.25 s after the
    control cycle started (the daemon's write is done, the next poll is 0.125 s away): one single
    read; at 0.6 s: alternately one single write or the whole setpoint sequence, replaying the
    daemon's last sequence with its values (the same command again, so the plant is unchanged)."""
    from hems.control.policy import ControlMode

    turn = 0
    while True:
        await runtime.control_started.wait()
        runtime.control_started.clear()
        began = runtime.control_starts[-1]
        await asyncio.sleep(max(0.0, began + 0.25 - time.time()))
        if not runtime.sequences or not runtime.decisions or runtime.decisions[-1].mode is ControlMode.AUTONOMOUS:
            continue
        sequence = runtime.sequences[-1]
        samples["single_read"].append(await raw.timed([single_read(sequence)]))
        await asyncio.sleep(max(0.0, began + 0.6 - time.time()))
        if turn % 2 == 0:
            samples["single_write"].append(await raw.timed([single_write(sequence)]))
        else:
            samples["setpoint_sequence"].append(await raw.timed(sequence))
        turn += 1


async def reading_to_setpoint(cycles: int, start_hour: float, raw_rounds: int, directory: Path) -> dict:
    """The daemon in real time against an emulator subprocess; see the module docstring."""
    emulator = Emulator(start_hour, speed=LATENCY_EMULATOR_SPEED)
    idle: dict[str, list[float]] = {"single_read": [], "single_write": [], "setpoint_sequence": []}
    hot: dict[str, list[float]] = {"single_read": [], "single_write": [], "setpoint_sequence": []}
    try:
        config = make_config(config_text(directory / "state-latency", emulator.port, LATENCY_LOOPS, LATENCY_CONTROL,
                                         metrics={"enabled": False}))
        runtime = InstrumentedRuntime(config, SystemClock(), environ={}, start_metrics_exporter=False)
        task = asyncio.create_task(runtime.run())
        async with RawClient(emulator.port) as raw:
            prober = None
            try:
                while not runtime.ready:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.05)
                first = len(runtime.control_starts) + 3  # a few cycles past READY
                prober = asyncio.create_task(probe_idle(runtime, raw, idle))
                while len(runtime.control_starts) < first + cycles and not task.done():
                    await asyncio.sleep(0.2)
            finally:
                if prober is not None:
                    prober.cancel()
                    await asyncio.gather(prober, return_exceptions=True)
                runtime.request_stop()
                await asyncio.wait_for(task, 30)
            last = min(first + cycles, len(runtime.control_starts))
            window = (runtime.control_starts[first], runtime.control_starts[last - 1])
            chosen = [(w, s) for w, s in zip(runtime.writes, runtime.sequences)
                      if window[0] <= w["control_start"] <= window[1]
                      and w["reading_at"] is not None and w["output"] == "battery_charge_w"]
            writes = [w for w, _ in chosen]
            sequence = chosen[-1][1]
            # Back to back, after the daemon stopped: the best case of the same requests.
            for _ in range(raw_rounds):
                hot["single_read"].append(await raw.timed([single_read(sequence)]))
                hot["single_write"].append(await raw.timed([single_write(sequence)]))
                hot["setpoint_sequence"].append(await raw.timed(sequence))
    finally:
        emulator.stop()
    from_reading = [w["write_end"] - w["reading_at"] for w in writes]
    excluding = [w["write_end"] - max(w["reading_at"], w["control_start"]) for w in writes]
    write_only = [w["write_end"] - w["write_start"] for w in writes]
    median = statistics.median
    result = {
        "telemetry_period_s": LATENCY_LOOPS["telemetry_period_s"], "control_period_s": LATENCY_LOOPS["control_period_s"],
        "scheduled_offset_s": min(1.0, LATENCY_LOOPS["telemetry_period_s"] / 4),
        "emulator_speed": LATENCY_EMULATOR_SPEED, "control_cycles": last - first, "setpoints_written": len(writes),
        "control_started_before_poll_completed": sum(1 for w in writes if w["control_start"] < w["reading_at"]),
        "requests_per_setpoint": sorted({w["requests"] for w in writes}),
        "from_poll_completion_ms": quantiles(from_reading),
        "excluding_scheduled_offset_ms": quantiles(excluding),
        "write_with_read_back_ms": quantiles(write_only),
        "control_start_to_write_start_ms": quantiles([w["write_start"] - w["control_start"] for w in writes], digits=3),
        "telemetry_start_to_control_start_ms": quantiles([w["control_start"] - w["taken_at"] for w in writes]),
        "telemetry_start_to_poll_completion_ms": quantiles([w["reading_at"] - w["taken_at"] for w in writes]),
        "overruns": {loop.name: loop.overruns for loop in runtime.loops},
        "raw_after_idle_ms": {name: quantiles(values, digits=3) for name, values in idle.items()},
        "raw_back_to_back_ms": {name: quantiles(values, digits=3) for name, values in hot.items()},
        "raw_sequence": [(r[0], r[1] if r[0] == "write" else r[2]) for r in sequence],
    }
    result["ratios"] = {
        "excluding_offset / raw single read after idle": round(median(excluding) / median(idle["single_read"]), 1),
        "excluding_offset / raw single read back to back": round(median(excluding) / median(hot["single_read"]), 1),
        "write / raw same sequence after idle": round(median(write_only) / median(idle["setpoint_sequence"]), 2),
        "write / raw same sequence back to back": round(median(write_only) / median(hot["setpoint_sequence"]), 2),
    }
    return result


# -- main -------------------------------------------------------------------------------------------


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import cvxpy
    import pymodbus
    return {"machine": platform.machine(), "cpu": model, "nproc": os.cpu_count(), "python": platform.python_version(),
            "pymodbus": pymodbus.__version__, "cvxpy": cvxpy.__version__}


def footprint() -> None:
    """Run in a fresh interpreter by :func:`main` (``--footprint``): RSS after each stage of what the
    daemon loads, as JSON: its imports, the planner built, the first forecast (which imports
    pvlib and pandas lazily), the first plan."""
    from datetime import datetime, timezone

    def memory() -> dict:
        return proc_memory_mb("self")

    # This module imports only what the daemon imports (hems.runtime.home, hems.config, hems.clock).
    import hems.cli.run  # noqa: F401
    from hems.mpc.inputs import PlanInputs
    from hems.mpc.planner import Planner
    from hems.runtime.forecasting import LearnedForecast

    stages = {"daemon's imports (hems.runtime.home, hems.cli.run)": memory()}
    config = make_config(config_text(Path("/nonexistent"), 502))
    planner = Planner(config.site)
    stages["+ Planner built"] = memory()
    forecast = LearnedForecast(config.load_forecast_config(), config.pv_forecast_config(), config.site.mpc.step_s)
    start = datetime.fromtimestamp(DAY_START_S + 8 * HOUR_S, tz=timezone.utc)
    predicted = forecast.forecast(start, planner.n_steps, planner.step_s, start)
    stages["+ first forecast (imports pvlib, pandas)"] = memory()
    instants = [start.timestamp() + planner.step_s * index for index in range(planner.n_steps)]
    prices = config.tariff.prices([datetime.fromtimestamp(t, tz=timezone.utc) for t in instants], "UTC")
    planner.plan(PlanInputs(start=start, load_w=list(predicted.load_w), pv_w=list(predicted.pv_w),
                            import_price=list(prices[0]), export_price=list(prices[1]), soc_initial=0.5))
    stages["+ first plan"] = memory()
    print(json.dumps(stages))


def staged_footprint() -> dict:
    output = subprocess.run([sys.executable, __file__, "--footprint"], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=4.0, help="simulated hours of the accelerated run (default 4)")
    parser.add_argument("--start-hour", type=float, default=8.0,
                        help="hour (UTC) the runs start at; the accelerated run measures from 30 min later")
    parser.add_argument("--window", type=float, default=180.0,
                        help="real-time steady-state window of `hems run`, s (default 180; runs alongside the latency)")
    parser.add_argument("--cycles", type=int, default=200, help="control cycles for the latency (default 200)")
    parser.add_argument("--raw-rounds", type=int, default=300, help="back-to-back bare pymodbus rounds (default 300)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--footprint", action="store_true", help=argparse.SUPPRESS)  # internal, see footprint()
    arguments = parser.parse_args()
    if arguments.footprint:
        footprint()
        return
    started = time.perf_counter()
    result: dict = {"machine": machine(), "command": " ".join([os.path.relpath(sys.executable)] + sys.argv)}
    result["import_memory_mb"] = {
        "import cvxpy, pymodbus, numpy": bare_import_memory("import cvxpy, pymodbus, numpy"),
        **staged_footprint(),
    }
    result["accelerated"] = asyncio.run(accelerated_cpu(arguments.hours, arguments.start_hour))

    async def real_time_parts(directory: Path) -> tuple[dict, dict]:
        # The `hems run` subprocess (default periods, idle 99.9 % of the time) runs while the
        # latency is measured in this process: three processes that are mostly idle, on 2 cores.
        daemon = asyncio.create_task(asyncio.to_thread(real_time_daemon, arguments.window, arguments.start_hour + 0.5,
                                                       directory))
        latency = await reading_to_setpoint(arguments.cycles, arguments.start_hour + 0.5, arguments.raw_rounds,
                                            directory)
        return await daemon, latency

    with tempfile.TemporaryDirectory(prefix="hems-bench-") as directory:
        result["real_time"], result["latency"] = asyncio.run(real_time_parts(Path(directory)))
    accelerated, real = result["accelerated"], result["real_time"]
    # Like for like: the accelerated figure without plans, plus the plans the window held.
    # Like for like: the accelerated figure without plans and without the exporter's idle polling
    # (which costs per real hour, not per simulated hour), plus that polling at its real-time rate,
    # plus the plans the window held.
    exporter_per_simulated_hour = accelerated["metrics_exporter_cpu_s_in_window"] / accelerated["simulated_hours"]
    expected = ((accelerated["daemon_without_plans_cpu_s_per_hour"] - exporter_per_simulated_hour)
                * real["window_s"] / HOUR_S
                + accelerated["metrics_exporter_idle_cpu_s_per_real_hour"] * real["window_s"] / HOUR_S
                + real["plans"] * accelerated["plan_cpu_ms"]["median"] / 1e3)
    real["expected_from_accelerated_cpu_s"] = round(expected, 4)
    real["ratio_to_expected"] = round(real["daemon_cpu_s"] / expected, 2)
    expected_loop = accelerated["daemon_event_loop_thread_cpu_s_per_hour"] * real["window_s"] / HOUR_S
    real["event_loop_thread_expected_cpu_s"] = round(expected_loop, 4)
    real["event_loop_thread_ratio_to_expected"] = round(real["event_loop_thread_cpu_s"] / expected_loop, 2)
    result["total_wall_s"] = round(time.perf_counter() - started, 1)
    if arguments.json:
        print(json.dumps(result, indent=1))
    else:
        print_summary(result)


def print_summary(result: dict) -> None:
    accelerated, real, latency = result["accelerated"], result["real_time"], result["latency"]
    print(f"machine: {result['machine']}")
    print(f"1. CPU per simulated hour (virtual clock, {accelerated['simulated_hours']} h from "
          f"{accelerated['from_utc_hour']:.1f} UTC, {accelerated['speedup']}x real time): daemon "
          f"{accelerated['daemon_cpu_s_per_hour']} s/h (event-loop thread "
          f"{accelerated['daemon_event_loop_thread_cpu_s_per_hour']}, other threads "
          f"{accelerated['daemon_other_threads_cpu_s_per_hour']}; plans {accelerated['plans_cpu_s_per_hour']}), "
          f"emulator {accelerated['emulator_cpu_s_per_hour']} s/h; {accelerated['counts']}")
    print(f"   real time, `hems run`, {real['window_s']} s window: {real['daemon_cpu_s']} s = "
          f"{real['daemon_cpu_s_per_hour']} s/h = {real['daemon_percent_of_one_core']} % of one core "
          f"(expected from the accelerated run {real['expected_from_accelerated_cpu_s']} s, ratio "
          f"{real['ratio_to_expected']}); plans {real['plans']}, control cycles {real['control_cycles']}, "
          f"overruns {real['overruns']}; event-loop thread {real['event_loop_thread_cpu_s']} s (expected "
          f"{real['event_loop_thread_expected_cpu_s']}, ratio {real['event_loop_thread_ratio_to_expected']}), "
          f"other threads {real['other_threads_cpu_s']}")
    print(f"2. memory: daemon {real['memory_at_ready_mb']} at READY, {real['memory_after_window_mb']} after the "
          f"window; {result['import_memory_mb']}")
    print(f"3. reading -> setpoint ({latency['setpoints_written']} setpoints in {latency['control_cycles']} cycles, "
          f"{latency['requests_per_setpoint']} requests each): from poll completion "
          f"{latency['from_poll_completion_ms']}; excluding the offset {latency['excluding_scheduled_offset_ms']}; "
          f"write {latency['write_with_read_back_ms']}")
    print(f"   raw after idle {latency['raw_after_idle_ms']}")
    print(f"   raw back to back {latency['raw_back_to_back_ms']}")
    print(f"   ratios {latency['ratios']}")
    print(f"total {result['total_wall_s']} s")


if __name__ == "__main__":
    main()
