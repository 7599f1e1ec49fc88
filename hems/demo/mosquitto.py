"""A mosquitto broker as a child process of the demo: loopback, a free port, stopped by its PID.

Why the demo prefers it to the embedded amqtt broker (:mod:`hems.demo.broker`) when mosquitto is
installed: amqtt runs in the trading run's own event loop, so every message it forwards costs the
worker process that also runs every home and the manager; and at 200 homes it gave up thousands of
deliveries ("Timeout waiting for PUBACK", bench/RESULTS.md). mosquitto is C, in its own process, and
waits for acknowledgements as long as a client stays connected.

Its configuration is made for one machine's community, not for a deployment (that is
deploy/mosquitto): anonymous on 127.0.0.1 only, nothing persisted, and queues long enough that a
busy manager never loses a QoS 1 message (:data:`MAX_QUEUED_MESSAGES` per client; the default of
1,000 is a burst of a few market moments at 200 homes). Pitfalls handled as in tests/mosquitto.py:
an explicit listener refuses anonymous clients unless ``allow_anonymous true``; mosquitto started as
root drops to the user ``mosquitto``, which cannot read a root-owned configuration, unless told
``user root``; a port taken between probing and binding is retried with another.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["BrokerError", "MosquittoProcess", "choose_broker", "mosquitto_binary"]

#: Broker choices of ``hems demo --broker`` besides a URL.
AUTO, EMBEDDED, MOSQUITTO = "auto", "embedded", "mosquitto"
#: QoS 1 messages mosquitto queues per client beyond those in flight (its default: 1,000).
MAX_QUEUED_MESSAGES = 1_000_000
#: QoS 1 messages in flight to one client at a time (its default: 20): the manager takes a slot's
#: bids from every home at once.
MAX_INFLIGHT_MESSAGES = 1_000
PORT_ATTEMPTS = 3
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class BrokerError(RuntimeError):
    """The broker could not be started; the message carries the end of its log."""


def mosquitto_binary() -> str | None:
    """The mosquitto executable: on PATH, else /usr/sbin/mosquitto (Debian's place, not on a user's
    PATH), else None."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if debian.is_file() and os.access(debian, os.X_OK) else None


def choose_broker(choice: str, installed: bool | None = None) -> str:
    """What ``--broker choice`` means on this machine: ``auto`` is ``mosquitto`` when mosquitto is
    ``installed`` (None: look for it, :func:`mosquitto_binary`), else ``embedded``; any other choice
    is kept."""
    if choice != AUTO:
        return choice
    if installed is None:
        installed = mosquitto_binary() is not None
    return MOSQUITTO if installed else EMBEDDED


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller copes with losing it to someone else)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class MosquittoProcess:
    """One mosquitto listening on ``127.0.0.1:port``; its configuration and log under ``directory``.

    ``start()`` returns once the port accepts connections; ``stop()`` ends it by its PID (SIGTERM,
    then SIGKILL after :data:`STOP_TIMEOUT_S`). Also a context manager.
    """

    host = "127.0.0.1"

    def __init__(self, directory: Path, *, binary: str | None = None, log_path: Path | None = None) -> None:
        resolved = binary or mosquitto_binary()
        if resolved is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto; scripts/bootstrap.sh does)")
        self.binary = resolved
        self.directory = Path(directory)
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = log_path or self.directory / "mosquitto.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's PID while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def config_lines(self) -> list[str]:
        """The configuration for :attr:`port` (see the module docstring)."""
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true", "persistence false",
                 f"max_queued_messages {MAX_QUEUED_MESSAGES}", f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
                 "set_tcp_nodelay true", "sys_interval 0", "log_dest stderr", "log_type error",
                 "log_type warning", "log_type notice", "log_type information", "connection_messages true"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")
        return lines

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of the broker's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def start(self, timeout_s: float = START_TIMEOUT_S) -> MosquittoProcess:
        """Start the broker; raises :class:`BrokerError` with its log when it does not listen."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(PORT_ATTEMPTS):
            self._choose_ports()
            self._write_config()
            with self.log_path.open("ab") as log:
                # To a file: a pipe nobody reads would fill and stop the broker.
                self._process = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=log)
            if self._wait_listening(timeout_s):
                return self
            self.stop()
            if not self._may_retry(self.log_tail()):
                break
        raise BrokerError(f"mosquitto did not start on {self.host}:{self.port}:\n{self.log_tail()}")

    # What a broker with other listeners or a given configuration (tests/mosquitto.py) changes.

    def _choose_ports(self) -> None:
        """The port(s) of the next start attempt."""
        self.port = free_tcp_port(self.host)

    def _listening_ports(self) -> list[int]:
        """The ports that must accept connections before ``start`` returns."""
        return [self.port]

    def _write_config(self) -> None:
        self.config_path.write_text("\n".join(self.config_lines()) + "\n", encoding="utf-8")

    def _may_retry(self, log: str) -> bool:
        """Another attempt on fresh ports helps only when ours was taken between probing and binding."""
        return "Address already in use" in log

    def _wait_listening(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        ports = self._listening_ports()
        while ports and time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                with socket.create_connection((self.host, ports[0]), timeout=0.2):
                    ports.pop(0)
            except OSError:
                time.sleep(0.01)
        return not ports

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """End the broker by its PID. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
