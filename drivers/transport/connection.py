"""One Modbus connection per endpoint, shared by every device behind it.

pymodbus's own retries and background reconnect are switched off: this module
owns both, so that retries back off with jitter, a bus is never hammered while a
device is gone, and each state change is logged exactly once (pymodbus logs a hex
dump per failed frame, so its logger is quieted to CRITICAL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.backoff import backoff_delay_s
from drivers.maps.schema import Table
from drivers.transport.endpoint import Endpoint, RtuEndpoint, TcpEndpoint

logger = logging.getLogger("drivers.transport")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

#: Modbus exception codes worth a retry: 5 acknowledge, 6 server busy.
_RETRYABLE_EXCEPTION_CODES = frozenset({5, 6})
#: Silence RTU requires between frames: 3.5 character times.
_RTU_FRAME_GAP_CHARACTERS = 3.5
#: Below this, waiting is done by yielding to the loop rather than with a timer.
_TIMER_RESOLUTION_S = 0.0015


class DeviceError(Exception):
    """A request to a device failed; ``kind`` is a short label for counting."""

    kind = "error"


class DeviceUnavailable(DeviceError):
    """Not connected, and no reconnect attempt is due yet."""

    kind = "disconnected"


class DeviceTimeout(DeviceError):
    """The device did not answer within the timeout, after every retry."""

    kind = "timeout"


class ModbusExceptionResponse(DeviceError):
    """The device answered with a Modbus exception (2 illegal address, 3 illegal value, 4 failure, ...)."""

    def __init__(self, code: int, request: str) -> None:
        super().__init__(f"Modbus exception {code} on {request}")
        self.code = code
        self.kind = f"exception_code_{code}"


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts, bounded retries and reconnect backoff (exponential, with jitter)."""

    timeout_s: float = 1.0
    retries: int = 2
    retry_delay_s: float = 0.05
    reconnect_delay_s: float = 0.5
    reconnect_delay_max_s: float = 60.0
    #: Consecutive unanswered requests after which the TCP connection is dropped
    #: and re-established (a half-open socket looks exactly like this).
    reconnect_after_timeouts: int = 3
    jitter_ratio: float = 0.2

    def backoff_s(self, base_s: float, attempt: int, cap_s: float, rng: random.Random) -> float:
        """``base * 2**attempt`` capped, spread by +-``jitter_ratio`` so clients do not synchronise."""
        return backoff_delay_s(base_s, attempt, cap_s, rng, self.jitter_ratio)


class ModbusConnection:
    """A pymodbus client plus the lock that serialises its frames.

    On RS-485 the lock is the bus lock: two devices on one line share this object,
    so their frames never interleave, and ``interframe_delay_s`` of silence is kept
    between the end of one answer and the next request.
    """

    def __init__(self, endpoint: Endpoint, policy: RetryPolicy | None = None,
                 monotonic: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 backoff_clock: Callable[[], float] | None = None) -> None:
        """``monotonic`` times the bus (always real time); ``backoff_clock`` schedules reconnect
        attempts (a simulated clock in accelerated runs; default ``monotonic``)."""
        self.endpoint = endpoint
        self.policy = policy or RetryPolicy()
        self._monotonic = monotonic
        self._backoff_clock = backoff_clock or monotonic
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._connected = False
        self._reconnect_attempt = 0
        self._next_connect_at = 0.0
        self._consecutive_timeouts = 0
        self._last_frame_end = 0.0
        self._ever_connected = False
        self.interframe_delay_s = (
            _RTU_FRAME_GAP_CHARACTERS * endpoint.character_time_s if isinstance(endpoint, RtuEndpoint) else 0.0
        )
        #: Called with True/False on every change, e.g. to re-apply setpoints.
        self.on_connection_change: list[Callable[[bool], None]] = []
        self.connects = 0

    @property
    def connected(self) -> bool:
        """True while the transport is up."""
        return self._connected

    def require_interframe_delay(self, delay_s: float) -> None:
        """Raise the silence between frames to what the slowest device on the bus needs."""
        self.interframe_delay_s = max(self.interframe_delay_s, delay_s)

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        # retries=0 and reconnect_delay=0: this class does both itself.
        if isinstance(self.endpoint, TcpEndpoint):
            return AsyncModbusTcpClient(self.endpoint.host, port=self.endpoint.port, timeout=self.policy.timeout_s,
                                        retries=0, reconnect_delay=0)
        return AsyncModbusSerialClient(self.endpoint.port, baudrate=self.endpoint.baudrate,
                                       parity=self.endpoint.parity, stopbits=self.endpoint.stopbits,
                                       bytesize=self.endpoint.bytesize, timeout=self.policy.timeout_s, retries=0,
                                       reconnect_delay=0)

    async def _ensure_connected(self) -> None:
        if self._connected:
            return
        now = self._backoff_clock()
        if now < self._next_connect_at:
            raise DeviceUnavailable(f"{self.endpoint} is disconnected; next attempt in "
                                    f"{self._next_connect_at - now:.1f} s")
        if self._client is not None:
            self._client.close()
        self._client = self._make_client()
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=self.policy.timeout_s * 2)
        except (OSError, asyncio.TimeoutError, ModbusException) as error:
            ok = False
            detail = str(error) or type(error).__name__
        else:
            detail = "connect refused or timed out"
        if not ok:
            self._client.close()
            delay = self.policy.backoff_s(self.policy.reconnect_delay_s, self._reconnect_attempt,
                                          self.policy.reconnect_delay_max_s, self._rng)
            self._reconnect_attempt += 1
            self._next_connect_at = self._backoff_clock() + delay
            if self._reconnect_attempt == 1:
                logger.warning("cannot connect to %s (%s); retrying with backoff", self.endpoint, detail)
            raise DeviceUnavailable(f"cannot connect to {self.endpoint}: {detail}")
        self._set_connected(True)

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            self.connects += 1
            self._reconnect_attempt = 0
            self._consecutive_timeouts = 0
            logger.info("%s %s", "reconnected to" if self._ever_connected else "connected to", self.endpoint)
            self._ever_connected = True
        else:
            logger.warning("lost connection to %s", self.endpoint)
            if self._client is not None:
                self._client.close()
            self._next_connect_at = self._backoff_clock() + self.policy.backoff_s(
                self.policy.reconnect_delay_s, 0, self.policy.reconnect_delay_max_s, self._rng)
        for callback in self.on_connection_change:
            callback(connected)

    async def _execute(self, description: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
        async with self._lock:
            await self._ensure_connected()
            attempt = 0
            while True:
                await self._keep_bus_silence()
                try:
                    response = await call(self._client)
                except ModbusIOException as error:
                    self._last_frame_end = self._monotonic()
                    self._consecutive_timeouts += 1
                    if self._consecutive_timeouts >= self.policy.reconnect_after_timeouts and isinstance(
                        self.endpoint, TcpEndpoint
                    ):
                        self._set_connected(False)
                        raise DeviceTimeout(f"no answer from {self.endpoint} to {description}") from error
                    if attempt >= self.policy.retries:
                        raise DeviceTimeout(f"no answer from {self.endpoint} to {description}") from error
                except (ConnectionException, OSError) as error:
                    self._set_connected(False)
                    raise DeviceUnavailable(f"connection to {self.endpoint} lost during {description}") from error
                else:
                    self._last_frame_end = self._monotonic()
                    self._consecutive_timeouts = 0
                    if not response.isError():
                        return response
                    code = getattr(response, "exception_code", 4)
                    if code not in _RETRYABLE_EXCEPTION_CODES or attempt >= self.policy.retries:
                        raise ModbusExceptionResponse(code, description)
                await asyncio.sleep(self.policy.backoff_s(self.policy.retry_delay_s, attempt, 1.0, self._rng))
                attempt += 1

    async def _keep_bus_silence(self) -> None:
        """Wait until the line has been quiet for ``interframe_delay_s`` since the last frame.

        The event loop's timers resolve to about a millisecond, so a 0.3 ms RTU gap
        slept with asyncio.sleep would cost a whole millisecond per frame; the last
        stretch is instead waited by yielding to the loop until the deadline.
        """
        deadline = self._last_frame_end + self.interframe_delay_s
        remaining = deadline - self._monotonic()
        if remaining > _TIMER_RESOLUTION_S:
            await asyncio.sleep(remaining - _TIMER_RESOLUTION_S)
        while self._monotonic() < deadline:
            await asyncio.sleep(0)

    async def read(self, table: Table, address: int, count: int, device_id: int) -> list[int]:
        """Read ``count`` registers; raises a :class:`DeviceError` on failure."""
        description = f"read {table.value} {address}+{count} unit {device_id}"
        if table is Table.HOLDING:
            response = await self._execute(description, lambda client: client.read_holding_registers(
                address, count=count, device_id=device_id))
        else:
            response = await self._execute(description, lambda client: client.read_input_registers(
                address, count=count, device_id=device_id))
        registers = list(response.registers)
        if len(registers) < count:
            raise DeviceError(f"short answer to {description}: {len(registers)} registers")
        return registers[:count]

    async def write(self, address: int, values: list[int], device_id: int) -> None:
        """Write holding registers (function 16, or 6 for a single register)."""
        description = f"write {address}+{len(values)} unit {device_id}"
        if len(values) == 1:
            await self._execute(description, lambda client: client.write_register(
                address, values[0], device_id=device_id))
        else:
            await self._execute(description, lambda client: client.write_registers(
                address, values, device_id=device_id))

    def close(self) -> None:
        """Close the transport; the next request reconnects."""
        if self._client is not None:
            self._client.close()
        self._connected = False


class ConnectionPool:
    """Hands out one :class:`ModbusConnection` per endpoint.

    Owned by whoever runs a home (no module-level state), so many homes can live
    in one process, each with its own pool.
    """

    def __init__(self, policy: RetryPolicy | None = None,
                 backoff_clock: Callable[[], float] = time.monotonic) -> None:
        """``backoff_clock`` schedules reconnect attempts (a simulated clock in accelerated runs)."""
        self.policy = policy or RetryPolicy()
        self._backoff_clock = backoff_clock
        self._connections: dict[Endpoint, ModbusConnection] = {}

    def get(self, endpoint: Endpoint, timeout_s: float | None = None) -> ModbusConnection:
        """The shared connection for ``endpoint``. ``timeout_s`` overrides the pool's request
        timeout; devices behind one endpoint share the longest one asked for."""
        connection = self._connections.get(endpoint)
        if connection is None:
            policy = self.policy if timeout_s is None else dataclasses.replace(self.policy, timeout_s=timeout_s)
            connection = self._connections[endpoint] = ModbusConnection(endpoint, policy, backoff_clock=self._backoff_clock)
        elif timeout_s is not None and timeout_s > connection.policy.timeout_s:
            connection.policy = dataclasses.replace(connection.policy, timeout_s=timeout_s)
        return connection

    def close(self) -> None:
        """Close every connection."""
        for connection in self._connections.values():
            connection.close()
