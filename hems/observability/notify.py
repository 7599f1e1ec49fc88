"""sd_notify for Type=notify and the systemd watchdog.

The protocol is one datagram to the AF_UNIX socket named by ``NOTIFY_SOCKET`` (a
leading ``@`` means the abstract namespace), sent here without blocking. systemd-python's
``daemon.notify`` is not used although it may be installed (it is, for the journal
handler): libsystemd sends with a blocking ``sendmsg``, and a service manager that stops
reading would then freeze the event loop, watchdog, control and signal handling with it.
Outside systemd every call returns False and does nothing, so the daemon runs the same
from a shell.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

logger = logging.getLogger("hems.observability.notify")


def send_notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``KEY=value`` lines) to ``NOTIFY_SOCKET``; False when unset.

    Raises OSError when the socket is set but cannot be reached.
    """
    target = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not target:
        return False
    address = "\0" + target[1:] if target.startswith("@") else target
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        # Never block the event loop: a manager that stopped reading fills the socket queue, and
        # a blocking send would then freeze polling, control and signal handling alike.
        sock.setblocking(False)
        sock.connect(address)
        sock.send(message.encode("utf-8"))
    return True


class Notifier:
    """Tells the service manager about readiness, status, liveness and stopping.

    ``environ`` lets tests (and several homes in one process) point at their own
    socket; with None, the process environment is used.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._failing = False  # log a broken socket once, not on every watchdog ping

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens (NOTIFY_SOCKET set)."""
        return bool((os.environ if self._environ is None else self._environ).get("NOTIFY_SOCKET"))

    def notify(self, message: str) -> bool:
        """Send raw ``KEY=value`` lines; True if they were sent."""
        try:
            sent = send_notify(message, self._environ)
        except OSError as error:
            if not self._failing:
                logger.warning("cannot notify the service manager: %s", error)
                self._failing = True
            return False
        if sent and self._failing:
            logger.info("service manager notifications work again")
            self._failing = False
        return sent

    def ready(self, status: str = "") -> bool:
        """Start-up is complete (Type=notify units count as started from here)."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Tell the watchdog we are alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        """Shutdown has begun (sent on SIGTERM, before the devices are made safe)."""
        return self.notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def _one_line(text: str) -> str:
    # A newline would start a new KEY=value assignment in the datagram.
    return " ".join(text.split())


def watchdog_interval_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, or None when the watchdog is off or not ours.

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for; a
    child that inherited the environment must not ping on its parent's behalf.
    """
    environ = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None
        except ValueError:
            return None
    return usec / 2_000_000.0


class Watchdog:
    """Pings the systemd watchdog from the event loop while ``healthy()`` is True.

    Running on the main loop means a blocked loop stops the pings by itself; the
    health callback adds the loops' own checks (e.g. "the poll loop finished an
    iteration in the last 30 s"), so a task that is stuck while the loop runs is
    caught too. systemd then kills and restarts the service (Restart=on-failure).
    """

    def __init__(self, notifier: Notifier, interval_s: float, healthy: Callable[[], bool]) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s = {interval_s!r} is out of range: allowed > 0")
        self.notifier = notifier
        self.interval_s = interval_s
        self._healthy = healthy
        self.pings = 0  # pings sent, for tests and the status line
        self._unhealthy_logged = False

    @classmethod
    def from_environment(cls, notifier: Notifier, healthy: Callable[[], bool],
                         environ: Mapping[str, str] | None = None, pid: int | None = None) -> Watchdog | None:
        """A watchdog at half of WATCHDOG_USEC, or None when systemd asked for none."""
        interval_s = watchdog_interval_s(environ, pid)
        return None if interval_s is None else cls(notifier, interval_s, healthy)

    def check_and_ping(self) -> bool:
        """Ping once if healthy; return whether a ping was sent."""
        try:
            healthy = bool(self._healthy())
        except Exception:  # a broken health check counts as unhealthy, never crashes the loop
            logger.exception("watchdog health check failed")
            healthy = False
        if not healthy:
            if not self._unhealthy_logged:
                logger.error("unhealthy: withholding watchdog pings, systemd will restart hems")
                self._unhealthy_logged = True
            return False
        if self._unhealthy_logged:
            logger.info("healthy again: watchdog pings resumed")
            self._unhealthy_logged = False
        if self.notifier.watchdog():
            self.pings += 1
            return True
        return False

    async def run(self) -> None:
        """Ping every ``interval_s`` until cancelled."""
        while True:
            self.check_and_ping()
            await asyncio.sleep(self.interval_s)

    def start(self) -> asyncio.Task[None]:
        """Run ``run()`` as a task on the current event loop; cancel it to stop."""
        return asyncio.get_running_loop().create_task(self.run(), name="hems-watchdog")
