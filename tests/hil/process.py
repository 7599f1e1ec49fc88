"""The daemon as systemd runs it: ``hems run --config FILE`` in its own process, against an emulated
site served from the test process, with a real sd_notify socket and the metrics exporter on HTTP.

Everything here waits on conditions with timeouts, never on fixed sleeps, and never blocks the test's
event loop for long: the emulator the daemon talks to runs on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.modbus_server import EmulatorServer
from drivers.emulators.plant import Battery, PvArray
from drivers.maps import RegisterMap
from drivers.sunspec.site_image import hybrid_site_map
from tests.hil.site import HIL_CONTROL, config_text

REPO = Path(__file__).resolve().parents[2]

#: Importing cvxpy and building the planner takes a few seconds on a PC, far more on a busy Pi-class box.
READY_TIMEOUT_S = 60.0
#: systemd's TimeoutStopSec is 15 s and the daemon gives the device release 6 s of it.
STOP_TIMEOUT_S = 10.0
#: AF_UNIX socket paths are limited to 107 bytes.
MAX_SOCKET_PATH = 100


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_daemon_config(directory: Path, device_port: int, metrics_port: int, *, telemetry_period_s: float = 1,
                        control_period_s: float = 2, stale_after_s: float = 5,
                        setpoint_timeout_s: float = 30) -> Path:
    """tests/hil/site.py's home with short periods and the metrics exporter on; returns the file."""
    text = config_text(directory / "state", device_port, device_timeout_s=0.5,
                       loops={"telemetry_period_s": telemetry_period_s, "control_period_s": control_period_s},
                       control={**HIL_CONTROL, "stale_after_s": stale_after_s,
                                "setpoint_timeout_s": setpoint_timeout_s},
                       metrics={"enabled": True, "address": "127.0.0.1", "port": metrics_port})
    path = directory / "hems.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- the emulated site, in real time -------------------------------------------------------------


@dataclass
class RealTimeSite:
    """A 5 kWp / 10 kWh SunSpec hybrid inverter on 127.0.0.1, its plant on the wall clock."""

    plant: SitePlant
    server: EmulatorServer
    binding: MapBinding

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def storage_control_mode(self) -> int:
        """StorCtl_Mod (SunSpec model 124) as the emulator would answer a Modbus read of it now."""
        rmap: RegisterMap = self.binding.register_map
        reading = rmap.decode(rmap.points["m124_StorCtl_Mod"], self.server.registers.view(self.binding),
                              time.time())
        assert reading is not None and isinstance(reading.value, (int, float)), reading
        return int(reading.value)

    def under_remote_control(self) -> bool:
        """The battery follows a remote command: the plant holds a live window and StorCtl_Mod != 0."""
        return self.plant.remote_active() and self.storage_control_mode() != 0

    def autonomous(self) -> bool:
        """The battery runs on its own: no remote window, StorCtl_Mod == 0."""
        return self.plant.remote is None and self.storage_control_mode() == 0


@contextlib.asynccontextmanager
async def real_time_site(soc_pct: float = 50.0) -> AsyncIterator[RealTimeSite]:
    """The HIL site of tests/hil/site.py, but on the wall clock (SitePlant's default clock)."""
    plant = SitePlant(pv=PvArray(peak_w=5000.0), battery=Battery(capacity_wh=10_000.0, soc_pct=soc_pct))
    binding = MapBinding(hybrid_site_map(with_battery_model=True), 1)
    server = EmulatorServer([binding], plant, tcp=("127.0.0.1", 0))
    await server.start()
    try:
        yield RealTimeSite(plant, server, binding)
    finally:
        await server.stop()


# -- sd_notify ----------------------------------------------------------------------------------------


@dataclass
class NotifyListener:
    """A bound AF_UNIX datagram socket playing systemd's side of sd_notify.

    Like systemd, it reads every datagram as it arrives (a reader on the test's event loop): a
    listener that stops reading makes the daemon block in ``send()`` once the socket's queue
    (``net.unix.max_dgram_qlen``, 10 datagrams) is full. Each datagram is kept with its arrival
    time (monotonic); ``assignments()`` splits them into ``KEY=value`` lines.
    """

    path: str
    sock: socket.socket
    received: list[tuple[float, str]] = field(default_factory=list)

    def drain(self) -> list[tuple[float, str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            self.received.append((time.monotonic(), data.decode("utf-8")))

    def assignments(self, key: str) -> list[tuple[float, str]]:
        """(arrival, value) of every ``key=value`` line received so far."""
        found = []
        for at, datagram in self.drain():
            for line in datagram.split("\n"):
                name, _, value = line.partition("=")
                if name == key:
                    found.append((at, value))
        return found

    def values(self, key: str) -> list[str]:
        return [value for _, value in self.assignments(key)]

    def times(self, key: str, value: str = "1") -> list[float]:
        return [at for at, found in self.assignments(key) if found == value]


@contextlib.contextmanager
def notify_listener(directory: Path) -> Iterator[NotifyListener]:
    """A NOTIFY_SOCKET in ``directory`` (or a short temporary directory when that path is too long),
    read continuously from the running event loop."""
    loop = asyncio.get_running_loop()
    short: Path | None = None
    path = directory / "notify.sock"
    if len(str(path)) > MAX_SOCKET_PATH:
        short = Path(tempfile.mkdtemp(prefix="hems-notify-", dir="/tmp"))
        path = short / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.setblocking(False)
        listener = NotifyListener(str(path), sock)
        loop.add_reader(sock.fileno(), listener.drain)
        try:
            yield listener
        finally:
            loop.remove_reader(sock.fileno())
            listener.drain()
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        if short is not None:
            short.rmdir()


# -- the daemon process ----------------------------------------------------------------------------------


class DaemonDied(AssertionError):
    """The daemon exited while the test waited for something else."""


class Daemon:
    """``python -m hems run --config FILE`` with systemd's environment; stderr goes to ``log_path``.

    With ``watchdog_pid_self`` the process gets ``WATCHDOG_PID`` = its own pid, as systemd sets it
    (a shell that ``exec``s the interpreter knows the pid before Python starts); otherwise
    ``WATCHDOG_PID`` is unset, which the daemon also takes as "the watchdog is mine".
    """

    def __init__(self, config_path: Path, notify_path: str, log_path: Path, *, watchdog_usec: int = 2_000_000,
                 watchdog_pid_self: bool = False) -> None:
        self.config_path = config_path
        self.notify_path = notify_path
        self.log_path = log_path
        self.watchdog_usec = watchdog_usec
        self.watchdog_pid_self = watchdog_pid_self
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        env = {**os.environ, "NOTIFY_SOCKET": self.notify_path, "WATCHDOG_USEC": str(self.watchdog_usec),
               "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_PID", None)
        env.pop("JOURNAL_STREAM", None)  # log key=value lines to stderr, whoever runs the tests
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        command = [sys.executable, "-m", "hems", "run", "--config", str(self.config_path)]
        if self.watchdog_pid_self:
            command = ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *command]
        with open(self.log_path, "ab") as log:
            log.write(f"--- {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        assert self.process is not None
        return self.process.poll()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, timeout_s: float) -> int:
        """The exit code, waiting at most ``timeout_s`` without blocking the event loop."""
        deadline = time.monotonic() + timeout_s
        while (code := self.returncode) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon {self.pid} still running {timeout_s} s later\n{self.log()}")
            await asyncio.sleep(0.02)
        return code

    def check_alive(self, what: str = "") -> None:
        """Fail with the daemon's log if it has exited."""
        if self.returncode is not None:
            raise DaemonDied(f"daemon exited with {self.returncode} while waiting for {what}\n{self.log()}")

    async def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float,
                       interval_s: float = 0.05) -> None:
        """Wait until ``condition()``; fail with the daemon's log if it dies or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.check_alive(what)
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout_s} s\n{self.log()}")
            await asyncio.sleep(interval_s)

    def kill(self) -> None:
        """SIGKILL the daemon (by its pid) if it still runs, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)


@contextlib.contextmanager
def daemon_process(config_path: Path, notify_path: str, log_path: Path, **options: object) -> Iterator[Daemon]:
    """A started :class:`Daemon`, always killed afterwards; its log is printed (pytest shows it on failure)."""
    daemon = Daemon(config_path, notify_path, log_path, **options)  # type: ignore[arg-type]
    try:
        yield daemon.start()
    finally:
        daemon.kill()
        print(f"--- daemon log ({log_path}) ---\n{daemon.log()}", file=sys.stderr)


# -- metrics and the store, from outside ---------------------------------------------------------------------


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200, response.status
        return response.read().decode("utf-8")


async def scrape(port: int) -> dict[str, Metric]:
    """GET http://127.0.0.1:port/metrics (in a thread: the emulator runs on this loop), parsed."""
    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Metric], family: str, name: str | None = None, **labels: str) -> float | None:
    """The value of one sample (``name`` defaults to the family's), or None when absent."""
    metric = families.get(family)
    if metric is None:
        return None
    for found in metric.samples:
        if found.name == (name or family) and all(found.labels.get(k) == v for k, v in labels.items()):
            return float(found.value)
    return None


def read_only_query(database: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` through a read-only connection (a WAL reader sees every committed row);
    empty while the daemon has not created the database or its tables yet."""
    if not database.exists():
        return []
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2.0)
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
    finally:
        connection.close()


def committed_rows(database: Path) -> tuple[dict[int, tuple], dict[int, tuple]]:
    """Every plan and setpoint row committed so far, by id."""
    plans = {row[0]: row for row in read_only_query(
        database, "SELECT id, slot_start_s, status, solve_time_s, horizon_json, created_at_s FROM plans")}
    setpoints = {row[0]: row for row in read_only_query(
        database, "SELECT id, device, role, value, written_at_s, readback_ok FROM setpoints")}
    return plans, setpoints
