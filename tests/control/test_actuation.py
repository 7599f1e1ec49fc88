"""SetpointActuator: a pure unit, driven with fake write and release coroutines."""

from __future__ import annotations

import logging

import pytest

from drivers.maps import PointWriteError
from drivers.transport import DeviceError, DeviceTimeout
from hems.control.actuation import SetpointActuator


class FakeDevice:
    """Records writes and releases; fails the next ``fail_next`` calls with ``error``."""

    def __init__(self) -> None:
        self.writes: list[float] = []
        self.releases = 0
        self.fail_next = 0
        self.error: Exception = DeviceTimeout("no answer from battery")
        self.recorded: list[tuple] = []

    async def write(self, value_w: float) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise self.error
        self.writes.append(value_w)

    async def release(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise self.error
        self.releases += 1

    async def record(self, *args) -> None:
        self.recorded.append(args)

    def actuator(self, refresh_interval_s: float = 30.0, deadband_w: float = 25.0, recorder: bool = True):
        return SetpointActuator("bat1", "battery_charge_w", self.write, self.release, refresh_interval_s,
                                deadband_w, recorder=self.record if recorder else None)


async def test_first_command_writes_and_deadband_suppresses_small_changes():
    device = FakeDevice()
    actuator = device.actuator(deadband_w=25.0)
    assert await actuator.command(1_000.0, now_s=0.0)
    assert await actuator.command(1_020.0, now_s=1.0)  # held within the deadband: True, not written
    assert await actuator.command(975.0, now_s=2.0)  # exactly the deadband: not written
    assert device.writes == [1_000.0]
    assert await actuator.command(974.0, now_s=3.0)
    assert device.writes == [1_000.0, 974.0]
    assert actuator.status.commanded_w == 974.0 and actuator.status.writes == 2


async def test_refresh_after_the_interval_even_when_unchanged():
    device = FakeDevice()
    actuator = device.actuator(refresh_interval_s=30.0)
    await actuator.command(500.0, 100.0)
    await actuator.command(500.0, 129.9)
    assert device.writes == [500.0]
    await actuator.command(500.0, 130.0)
    assert device.writes == [500.0, 500.0]
    assert actuator.status.written_at_s == 130.0
    await actuator.command(500.0, 159.0)  # the interval counts from the refresh
    assert len(device.writes) == 2


async def test_reconnect_forces_a_rewrite_and_a_disconnect_does_not():
    device = FakeDevice()
    actuator = device.actuator()
    await actuator.command(500.0, 0.0)
    actuator.device_reconnected(False)
    await actuator.command(500.0, 1.0)
    assert device.writes == [500.0]
    actuator.device_reconnected(True)
    assert actuator.due(500.0, 2.0)
    await actuator.command(500.0, 2.0)
    assert device.writes == [500.0, 500.0]
    await actuator.command(500.0, 3.0)
    assert len(device.writes) == 2


def test_device_error_takes_a_message():
    # The constructor is Exception's; kind is a class label used for counting.
    error = DeviceError("boom")
    assert str(error) == "boom" and error.kind == "error"
    assert DeviceTimeout("x").kind == "timeout"


async def test_failed_writes_are_counted_logged_once_and_retried(caplog):
    device = FakeDevice()
    actuator = device.actuator()
    await actuator.command(1_000.0, 0.0)
    device.fail_next = 3
    device.error = DeviceError("connection reset")
    with caplog.at_level(logging.DEBUG, logger="hems.control.actuation"):
        results = [await actuator.command(1_000.0 + 100 * i, float(i)) for i in range(1, 4)]
        assert results == [False, False, False]
        assert actuator.status.failures == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "bat1" in warnings[0].getMessage() and "connection reset" in warnings[0].getMessage()
        # The next cycle retries even with the same value as the last failed one (it is not held).
        assert await actuator.command(1_300.0, 4.0)
        assert device.writes == [1_000.0, 1_300.0]
        infos = [r for r in caplog.records if r.levelno == logging.INFO and "written again" in r.getMessage()]
        assert len(infos) == 1
        # A new failure after recovery is logged again.
        device.fail_next = 1
        assert not await actuator.command(2_000.0, 5.0)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert actuator.status.failures == 4 and actuator.status.commanded_w == 1_300.0


async def test_failed_write_keeps_reapply_pending_even_within_the_deadband():
    device = FakeDevice()
    actuator = device.actuator()
    await actuator.command(1_000.0, 0.0)
    device.fail_next = 1
    assert not await actuator.command(2_000.0, 1.0)
    # 1_000 is what the device may still hold, but after a failed write it is unknown: re-written.
    assert await actuator.command(1_000.0, 2.0)
    assert device.writes == [1_000.0, 1_000.0]


@pytest.mark.parametrize("error", [PointWriteError("read-back mismatch"), ValueError("out of range")])
async def test_other_write_failures_are_counted_too(error):
    device = FakeDevice()
    device.error, device.fail_next = error, 1
    actuator = device.actuator()
    assert not await actuator.command(100.0, 0.0)
    assert actuator.status.failures == 1


async def test_unexpected_exceptions_propagate():
    device = FakeDevice()
    device.error, device.fail_next = RuntimeError("programming error"), 1
    with pytest.raises(RuntimeError):
        await device.actuator().command(100.0, 0.0)


async def test_release_writes_once_and_force_writes_again():
    device = FakeDevice()
    actuator = device.actuator()
    await actuator.command(800.0, 0.0)
    assert await actuator.release(1.0)
    assert await actuator.release(2.0)
    assert device.releases == 1
    assert actuator.status.commanded_w is None and actuator.status.releases == 1
    assert await actuator.release(3.0, force=True)
    assert device.releases == 2
    # After a release, a command is written again whatever the value.
    await actuator.command(800.0, 4.0)
    assert device.writes == [800.0, 800.0]


async def test_a_fresh_actuator_releases_once_since_the_device_state_is_unknown():
    device = FakeDevice()
    actuator = device.actuator()
    assert await actuator.release(0.0)
    assert await actuator.release(1.0)
    assert device.releases == 1


async def test_failed_release_is_counted_and_retried():
    device = FakeDevice()
    actuator = device.actuator()
    await actuator.command(800.0, 0.0)
    device.fail_next = 1
    assert not await actuator.release(1.0)
    assert actuator.status.failures == 1
    assert await actuator.release(2.0)
    assert device.releases == 1


async def test_forget_makes_the_next_release_and_command_write():
    device = FakeDevice()
    actuator = device.actuator()
    await actuator.command(800.0, 0.0)
    await actuator.release(1.0)
    actuator.forget()
    await actuator.release(2.0)
    assert device.releases == 2
    actuator.forget()
    await actuator.command(800.0, 3.0)
    await actuator.command(800.0, 4.0)
    assert device.writes == [800.0, 800.0]


async def test_recorder_gets_device_output_value_ok_and_time():
    device = FakeDevice()
    actuator = device.actuator()
    await actuator.command(1_000.0, 10.0)
    await actuator.command(1_010.0, 11.0)  # not written: not recorded
    device.fail_next = 1
    await actuator.command(2_000.0, 12.0)
    await actuator.release(13.0)
    assert device.recorded == [
        ("bat1", "battery_charge_w", 1_000.0, True, 10.0),
        ("bat1", "battery_charge_w", 2_000.0, False, 12.0),
        ("bat1", "battery_charge_w", None, True, 13.0),
    ]


async def test_without_a_recorder_nothing_breaks():
    device = FakeDevice()
    actuator = device.actuator(recorder=False)
    assert await actuator.command(1.0, 0.0)
    assert await actuator.release(1.0)
    assert device.recorded == []
