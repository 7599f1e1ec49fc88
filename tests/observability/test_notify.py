"""sd_notify and the watchdog against real AF_UNIX datagram sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hems.observability.notify import Notifier, Watchdog, send_notify, watchdog_interval_s
from tests.conftest import wait_for


@pytest.fixture
def path_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="hems-notify-", dir="/tmp"))
    path = directory / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    yield receiver, str(path)
    receiver.close()
    path.unlink()
    directory.rmdir()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"hems-test-{uuid.uuid4().hex}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    yield receiver, "@" + name
    receiver.close()


def receive(receiver: socket.socket) -> str:
    return receiver.recv(4096).decode()


def test_path_socket_receives_every_message(path_socket):
    receiver, address = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready("started, 3 devices")
    assert receive(receiver) == "READY=1\nSTATUS=started, 3 devices"
    assert notifier.status("planning\nslot 12:00")
    assert receive(receiver) == "STATUS=planning slot 12:00"  # a newline would start a new key
    assert notifier.watchdog()
    assert receive(receiver) == "WATCHDOG=1"
    assert notifier.stopping()
    assert receive(receiver) == "STOPPING=1"


def test_abstract_socket(abstract_socket):
    receiver, address = abstract_socket
    assert send_notify("READY=1", {"NOTIFY_SOCKET": address})
    assert receive(receiver) == "READY=1"
    assert Notifier({"NOTIFY_SOCKET": address}).watchdog()
    assert receive(receiver) == "WATCHDOG=1"


def test_unset_socket_returns_false():
    assert send_notify("READY=1", {}) is False
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False


def test_unreachable_socket_returns_false_without_raising(caplog):
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/hems/notify.sock"})
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False
    assert sum("cannot notify" in record.getMessage() for record in caplog.records) == 1  # logged once


def test_interval_is_half_of_watchdog_usec():
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert Watchdog.from_environment(Notifier({}), lambda: True, environ={}) is None
    watchdog = Watchdog.from_environment(Notifier({}), lambda: True, environ={"WATCHDOG_USEC": "100000"})
    assert watchdog is not None and watchdog.interval_s == 0.05


async def test_watchdog_pings_only_while_healthy(abstract_socket):
    receiver, address = abstract_socket
    receiver.setblocking(False)
    received: list[str] = []
    healthy = True
    watchdog = Watchdog.from_environment(Notifier({"NOTIFY_SOCKET": address}), lambda: healthy,
                                         environ={"WATCHDOG_USEC": "20000"})  # ping every 10 ms
    assert watchdog is not None

    def drain() -> int:
        while True:
            try:
                received.append(receiver.recv(4096).decode())
            except BlockingIOError:
                return len(received)

    task = watchdog.start()
    try:
        await wait_for(lambda: drain() >= 3, timeout_s=5)
        assert set(received) == {"WATCHDOG=1"}
        healthy = False
        pings_when_unhealthy = watchdog.pings
        await asyncio.sleep(0.1)  # ten intervals: any ping now would be a bug
        assert watchdog.pings == pings_when_unhealthy  # health is checked on this same loop
        stopped_at = drain()
        await asyncio.sleep(0.1)
        assert drain() == stopped_at  # no pings at all while unhealthy
        healthy = True
        await wait_for(lambda: drain() > stopped_at, timeout_s=5)  # resumes when healthy again
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_failing_health_check_counts_as_unhealthy():
    def broken() -> bool:
        raise RuntimeError("loop state unreadable")

    watchdog = Watchdog(Notifier({}), 1.0, broken)
    assert watchdog.check_and_ping() is False
