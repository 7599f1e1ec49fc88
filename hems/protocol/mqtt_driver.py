"""Drive one paho-mqtt client from the asyncio event loop, the way paho documents external loops.

The loop watches paho's socket (``add_reader``/``add_writer``) and calls ``loop_read``/``loop_write``;
a task calls ``loop_misc`` every second (keepalive) and reconnects with exponential backoff. No
thread per client, and no ``select()``: paho's own network thread (``loop_start``) uses ``select()``,
which fails for file descriptors numbered 1024 and above, i.e. in any process that holds a few
hundred connections (the 200-home demo did). Only the blocking part of a connect (TCP, TLS
handshake) runs in a worker thread; paho's protocol callbacks all run on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["CONNECT_TIMEOUT_S", "PahoLoopDriver"]

#: paho's TCP connect (and TLS handshake) timeout; a connect in progress delays stop() by up to this much.
CONNECT_TIMEOUT_S = 5.0
#: How often paho's keepalive bookkeeping runs (a PINGREQ is due every keepalive interval at most).
HOUSEKEEPING_INTERVAL_S = 1.0
#: How long stop() waits for the DISCONNECT to be written before it closes the socket itself.
DISCONNECT_TIMEOUT_S = 1.0


class PahoLoopDriver:
    """Connects ``client`` and keeps it connected until ``stop``. Create it before the client's
    ``connect_async`` (paho takes no connect timeout after that), ``start`` it after.

    ``on_connect_failed`` gets the reason of each connect attempt that failed before MQTT started
    (TCP, TLS, DNS); a refused CONNACK reaches the client's ``on_connect`` as usual. Call
    ``connection_accepted`` on an accepted CONNACK: the backoff starts afresh after that connection.
    """

    def __init__(self, client: mqtt.Client, *, reconnect_min_s: float, reconnect_max_s: float,
                 on_connect_failed: Callable[[str], None], name: str) -> None:
        self._client = client
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._on_connect_failed = on_connect_failed
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._socket_fd: int | None = None  # paho's socket, while the event loop watches it
        self._wake = asyncio.Event()  # the socket closed, or stop() was called
        self._stopping = False
        self._accepted = False
        self._task: asyncio.Task[None] | None = None
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = self._loop.create_task(self._keep_connected(), name=f"mqtt-connection-{self._name}")

    async def stop(self) -> None:
        """Send DISCONNECT (the broker then discards the will), close the socket, end the task."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            # Not cancelled: it may be waiting for a connect in a worker thread, whose socket it must
            # close once the connect returns. It ends within CONNECT_TIMEOUT_S + DISCONNECT_TIMEOUT_S.
            await asyncio.shield(task)

    def connection_accepted(self) -> None:
        """The broker accepted the current connection: the next outage starts the backoff afresh."""
        self._accepted = True

    # The connection: connect (in a worker thread), housekeeping while up, backoff while down.

    async def _keep_connected(self) -> None:
        delay_s = self._reconnect_min_s
        try:
            while not self._stopping:
                self._accepted = False
                if await self._connect():
                    await self._while_connected()
                if self._stopping:
                    return
                if self._accepted:
                    delay_s = self._reconnect_min_s
                await self._sleep_unless_stopped(delay_s)
                delay_s = min(delay_s * 2, self._reconnect_max_s)
        finally:
            await self._disconnect()

    async def _connect(self) -> bool:
        """Open the socket and queue CONNECT; False (reason reported) when that fails."""
        try:
            # Blocks for TCP and TLS: a worker thread. paho's socket callbacks come from there.
            await asyncio.to_thread(self._client.reconnect)
        except Exception as error:  # OSError (refused, timeout, TLS, DNS) or paho's ValueError
            self._on_connect_failed(repr(error))
            return False
        return True

    async def _while_connected(self) -> None:
        """Run paho's keepalive bookkeeping until the socket closes or stop() is called."""
        while self._socket_fd is not None and not self._stopping:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HOUSEKEEPING_INTERVAL_S):
                    await self._wake.wait()
                continue
            self._client.loop_misc()

    async def _sleep_unless_stopped(self, delay_s: float) -> None:
        self._wake.clear()
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._wake.wait()

    async def _disconnect(self) -> None:
        if self._socket_fd is None:
            return
        self._wake.clear()
        self._client.disconnect()  # queued; loop_write closes the socket once it is written
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                while self._socket_fd is not None:
                    await self._wake.wait()
                    self._wake.clear()
        if self._socket_fd is not None:  # the broker does not read: close without DISCONNECT
            self._unwatch_socket()
            sock = self._client.socket()
            if sock is not None:
                sock.close()

    # paho's socket callbacks: the event loop watches the socket.

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the event loop's thread: now when called there, else soon."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
                loop.call_soon_threadsafe(callback, *args)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        _send_small_packets_at_once(sock)
        self._on_loop(self._watch_socket, sock.fileno())

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # paho closes the socket right after this returns: unwatch it first (it runs on the loop).
        self._on_loop(self._unwatch_socket)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_writable, sock.fileno())

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._unwatch_writable, sock.fileno())

    def _watch_socket(self, fd: int) -> None:
        assert self._loop is not None
        self._socket_fd = fd
        self._loop.add_reader(fd, self._readable)

    def _unwatch_socket(self) -> None:
        fd, self._socket_fd = self._socket_fd, None
        if fd is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._wake.set()

    def _watch_writable(self, fd: int) -> None:
        if self._loop is not None and fd == self._socket_fd:
            self._loop.add_writer(fd, self._client.loop_write)

    def _unwatch_writable(self, fd: int) -> None:
        if self._loop is not None and fd == self._socket_fd:
            self._loop.remove_writer(fd)

    def _readable(self) -> None:
        client = self._client
        client.loop_read()
        # TLS decrypts whole records: bytes already decrypted never make the socket readable again.
        sock = client.socket()
        while isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
            client.loop_read()
            sock = client.socket()


def _send_small_packets_at_once(sock: Any) -> None:
    """Switch Nagle's algorithm off on the client's socket (paho leaves it on).

    A handler acks a message (PUBACK) and publishes its answer: two small packets in a row. With
    Nagle the second waits for the TCP acknowledgement of the first, which the broker delays by
    up to 40 ms; every request/answer round then costs tens of milliseconds instead of a few."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
