"""Actuation: write one setpoint to one device, read it back, keep it alive, give it back.

A :class:`SetpointActuator` owns one output (the battery's charge power, the PV inverter's
power limit). It writes only when the value moved by more than the deadband, when the
dead-man refresh is due, or when the device reconnected (a device that restarted has forgotten
what it was told); every write is read back by the driver; a failed write is counted, logged
once and retried at the next control cycle. ``release`` hands the device back to its own
control.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from drivers.maps import PointWriteError
from drivers.transport import DeviceError

logger = logging.getLogger(__name__)

#: Called after each write: (device, output, value or None for release, read back ok, at_s).
WriteRecorder = Callable[[str, str, float | None, bool, float], Awaitable[None]]


@dataclass
class ActuatorStatus:
    """What the actuator last did."""

    commanded_w: float | None = None  # None: the device runs autonomously (or unknown)
    written_at_s: float | None = None
    needs_reapply: bool = True
    writes: int = 0
    failures: int = 0
    releases: int = 0


class SetpointActuator:
    """One controllable output of one device."""

    def __init__(self, device: str, output: str, write: Callable[[float], Awaitable[None]],
                 release: Callable[[], Awaitable[None]], refresh_interval_s: float, deadband_w: float,
                 recorder: WriteRecorder | None = None) -> None:
        self.device = device
        self.output = output
        self._write = write
        self._release = release
        self.refresh_interval_s = refresh_interval_s
        self.deadband_w = deadband_w
        self._recorder = recorder
        self.status = ActuatorStatus()
        self._failing = False

    def device_reconnected(self, connected: bool) -> None:
        """Connection callback: after a reconnect the setpoint is written again."""
        if connected:
            self.status.needs_reapply = True

    def due(self, value_w: float, now_s: float) -> bool:
        """Whether ``value_w`` must be written now."""
        status = self.status
        if status.needs_reapply or status.commanded_w is None or status.written_at_s is None:
            return True
        if abs(value_w - status.commanded_w) > self.deadband_w:
            return True
        return now_s - status.written_at_s >= self.refresh_interval_s

    async def command(self, value_w: float, now_s: float) -> bool:
        """Write ``value_w`` if due; returns True when the device holds it (written now or
        earlier within the deadband)."""
        if not self.due(value_w, now_s):
            return True
        try:
            await self._write(value_w)
        except (DeviceError, PointWriteError, ValueError) as error:
            self._failed("write", value_w, error)
            await self._record(value_w, False, now_s)
            return False
        self._succeeded()
        status = self.status
        status.commanded_w, status.written_at_s, status.needs_reapply = value_w, now_s, False
        status.writes += 1
        await self._record(value_w, True, now_s)
        return True

    async def release(self, now_s: float, force: bool = False) -> bool:
        """Return the device to its own control (once; ``force`` writes again anyway)."""
        status = self.status
        if status.commanded_w is None and not status.needs_reapply and not force:
            return True
        try:
            await self._release()
        except (DeviceError, PointWriteError, ValueError) as error:
            self._failed("release", None, error)
            return False
        self._succeeded()
        status.commanded_w, status.written_at_s, status.needs_reapply = None, now_s, False
        status.releases += 1
        await self._record(None, True, now_s)
        return True

    def forget(self) -> None:
        """The device is lost: what it holds is unknown until it answers again."""
        self.status.commanded_w = None
        self.status.needs_reapply = True

    def _failed(self, action: str, value_w: float | None, error: Exception) -> None:
        self.status.failures += 1
        self.status.needs_reapply = True
        if not self._failing:
            logger.warning("%s %s failed on %s (value %s): %s", action, self.output, self.device, value_w, error)
            self._failing = True

    def _succeeded(self) -> None:
        if self._failing:
            logger.info("%s on %s written again", self.output, self.device)
            self._failing = False

    async def _record(self, value_w: float | None, read_back_ok: bool, now_s: float) -> None:
        if self._recorder is not None:
            await self._recorder(self.device, self.output, value_w, read_back_ok, now_s)
