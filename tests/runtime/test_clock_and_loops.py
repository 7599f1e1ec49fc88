"""VirtualClock (discrete-event time) and PeriodicLoop (never stacked, counted overruns)."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import nullcontext

import pytest

from hems.clock import SystemClock, VirtualClock, holding
from hems.runtime.loops import PeriodicLoop

T0 = 1_700_000_000.0


# -- VirtualClock ----------------------------------------------------------------------------------

async def test_two_participants_interleave_at_exact_simulated_times():
    clock = VirtualClock(T0)
    events: list[tuple[float, str]] = []

    async def ticker(name: str, period_s: float, count: int) -> None:
        with clock.participant():
            for _ in range(count):
                events.append((clock.now_s() - T0, name))
                await clock.sleep(period_s)

    await asyncio.gather(ticker("a", 3.0, 6), ticker("b", 5.0, 4))
    assert [t for t, name in events if name == "a"] == [0, 3, 6, 9, 12, 15]
    assert [t for t, name in events if name == "b"] == [0, 5, 10, 15]
    times = [t for t, _ in events]
    assert times == sorted(times)  # the two tasks really interleave in simulated order
    assert clock.now_s() - T0 == 20.0  # b's last sleep ends at 20


async def test_time_stands_still_while_a_participant_awaits_real_io():
    clock = VirtualClock(T0)
    log: list[str] = []
    seen: dict[str, float] = {}

    async def worker() -> None:
        with clock.participant():
            seen["before"] = clock.now_s()
            await asyncio.sleep(0.05)  # real I/O, not the clock
            seen["after"] = clock.now_s()
            log.append("io done")
            await clock.sleep(0.5)

    async def sleeper() -> None:
        with clock.participant():
            await clock.sleep(1.0)
            log.append(f"sleeper woke at {clock.now_s() - T0:g}")

    await asyncio.gather(worker(), sleeper())
    assert seen["after"] == seen["before"] == T0
    assert log == ["io done", "sleeper woke at 1"]


async def test_non_participant_sleepers_are_woken_but_do_not_hold_time():
    clock = VirtualClock(T0)
    seen: dict[str, float] = {}

    async def participant() -> None:
        with clock.participant():
            for _ in range(10):
                await clock.sleep(1.0)

    async def bystander() -> None:
        await clock.sleep(3.0)
        seen["woke"] = clock.now_s() - T0
        await asyncio.sleep(0.05)  # real work by a non-participant: time goes on meanwhile
        seen["after_work"] = clock.now_s() - T0

    await asyncio.wait_for(asyncio.gather(participant(), bystander()), 5.0)
    assert seen["woke"] == 3.0
    assert seen["after_work"] == 10.0


async def test_a_non_participant_waking_between_participant_ticks_does_not_stop_time():
    clock = VirtualClock(T0)

    async def participant() -> None:
        with clock.participant():
            for _ in range(10):
                await clock.sleep(1.0)

    async def bystander() -> float:
        await clock.sleep(3.5)
        return clock.now_s() - T0

    _, woke = await asyncio.wait_for(asyncio.gather(participant(), bystander()), 1.0)  # today: hangs
    assert woke == 3.5 and clock.now_s() == T0 + 10.0


async def test_without_participants_sleep_jumps_straight_to_the_wake_up():
    clock = VirtualClock(T0)
    started = time.monotonic()
    await clock.sleep(3600.0)
    assert clock.now_s() == T0 + 3600.0
    assert time.monotonic() - started < 1.0
    await clock.sleep_until_s(T0 + 10.0)  # in the past: returns after one turn, time unchanged
    await clock.sleep(-5.0)
    assert clock.monotonic_s() == clock.now_s() == clock() == T0 + 3600.0


async def test_a_cancelled_sleeper_does_not_hold_or_drag_time():
    clock = VirtualClock(T0)
    wake_times: list[float] = []

    async def long_sleeper() -> None:
        with clock.participant():
            await clock.sleep(100.0)

    async def short_sleeper() -> None:
        with clock.participant():
            await clock.sleep(1.0)
            wake_times.append(clock.now_s() - T0)
            long.cancel()
            await clock.sleep(5.0)
            wake_times.append(clock.now_s() - T0)

    long = asyncio.create_task(long_sleeper())
    await asyncio.gather(short_sleeper(), return_exceptions=False)
    assert wake_times == [1.0, 6.0]  # not 100: the cancelled wake-up is dropped
    assert long.cancelled()


async def test_a_cancelled_non_participant_wake_up_is_skipped():
    clock = VirtualClock(T0)
    with clock.participant():  # hold time while setting up
        bystander = asyncio.create_task(clock.sleep(2.0))
        await asyncio.sleep(0)
        bystander.cancel()
        await asyncio.gather(bystander, return_exceptions=True)
        await clock.sleep(5.0)
        assert clock.now_s() == T0 + 5.0


async def test_advance_by_hand_wakes_due_sleepers_only():
    clock = VirtualClock(T0)
    with clock.participant():  # the test task works, so time moves only by hand
        woke: list[float] = []

        async def sleeper() -> None:
            await clock.sleep(10.0)
            woke.append(clock.now_s() - T0)

        task = asyncio.create_task(sleeper())
        await asyncio.sleep(0.01)
        assert clock.now_s() == T0 and not woke  # a busy participant holds time
        clock.advance(4.0)
        await asyncio.sleep(0)
        assert clock.now_s() == T0 + 4.0 and not woke
        clock.advance(-3.0)  # never backwards
        assert clock.now_s() == T0 + 4.0
        clock.advance(6.0)
        await task
        assert woke == [10.0]


def test_participant_needs_a_running_task():
    with pytest.raises(RuntimeError):
        with VirtualClock(T0).participant():
            pass


async def test_holding_is_a_participant_for_virtual_clocks_and_nothing_for_real_ones():
    assert isinstance(holding(SystemClock()), nullcontext)
    clock = VirtualClock(T0)
    bystander = asyncio.create_task(clock.sleep(1.0))
    with holding(clock):
        await asyncio.sleep(0.01)
        assert not bystander.done() and clock.now_s() == T0
    await bystander
    assert clock.now_s() == T0 + 1.0


async def test_system_clock():
    clock = SystemClock()
    assert abs(clock.now_s() - time.time()) < 1.0 and abs(clock() - time.time()) < 1.0
    before = clock.monotonic_s()
    await clock.sleep(-1.0)
    await clock.sleep_until_s(before - 10)
    assert clock.monotonic_s() - before < 0.5


# -- PeriodicLoop ----------------------------------------------------------------------------------

class Body:
    """Records the simulated start of every iteration; optional per-iteration behaviour."""

    def __init__(self, clock: VirtualClock, behaviour=None) -> None:
        self.clock = clock
        self.starts: list[float] = []
        self.behaviour = behaviour or {}

    async def __call__(self) -> None:
        index = len(self.starts)
        self.starts.append(self.clock.now_s() - T0)
        action = self.behaviour.get(index)
        if action is not None:
            await action()


async def run_for(clock: VirtualClock, loop: PeriodicLoop, until_s: float) -> None:
    """Run ``loop`` until simulated ``T0 + until_s`` (the test task holds time there), then stop it."""
    with clock.participant():
        loop.start()
        await clock.sleep_until_s(T0 + until_s)
    await loop.stop(grace_s=1.0)


def test_period_must_be_positive():
    with pytest.raises(ValueError, match="period_s"):
        PeriodicLoop("x", 0.0, Body(VirtualClock(T0)), VirtualClock(T0))


async def test_loop_runs_at_period_multiples():
    clock = VirtualClock(T0)
    body = Body(clock)
    loop = PeriodicLoop("t", 10.0, body, clock)
    await run_for(clock, loop, 35.0)
    assert body.starts == [0.0, 10.0, 20.0, 30.0]
    assert loop.iterations == 4 and loop.overruns == 0 and loop.errors == 0


async def test_start_offset():
    clock = VirtualClock(T0)
    body = Body(clock)
    loop = PeriodicLoop("t", 10.0, body, clock, start_offset_s=2.5)
    await run_for(clock, loop, 35.0)
    assert body.starts == [2.5, 12.5, 22.5, 32.5]


async def test_overrun_is_counted_once_and_the_next_iteration_starts_at_the_next_boundary(caplog):
    clock = VirtualClock(T0)
    overruns: list[tuple[str, int]] = []
    body = Body(clock, {1: lambda: clock.sleep(25.0)})  # iteration 1 runs 10 -> 35: 2.5 periods
    loop = PeriodicLoop("t", 10.0, body, clock, on_overrun=lambda name, n: overruns.append((name, n)))
    with caplog.at_level(logging.WARNING, logger="hems.runtime.loops"):
        await run_for(clock, loop, 65.0)
    assert body.starts == [0.0, 10.0, 40.0, 50.0, 60.0]  # never stacked: 20 and 30 are skipped
    assert loop.overruns == 1 and overruns == [("t", 1)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipping 2 tick(s)" in warnings[0]


async def test_every_iteration_overrunning_never_stacks():
    clock = VirtualClock(T0)
    body = Body(clock, {index: (lambda: clock.sleep(25.0)) for index in range(100)})
    loop = PeriodicLoop("t", 10.0, body, clock)
    await run_for(clock, loop, 100.0)
    assert body.starts == [0.0, 30.0, 60.0, 90.0]
    assert all(b > a for a, b in zip(body.starts, body.starts[1:]))
    assert loop.overruns == loop.iterations == 4  # the iteration at 90 ended at 115 during stop


async def test_an_iteration_of_exactly_one_period_is_no_overrun():
    clock = VirtualClock(T0)
    body = Body(clock, {0: lambda: clock.sleep(10.0)})
    loop = PeriodicLoop("t", 10.0, body, clock)
    await run_for(clock, loop, 25.0)
    assert body.starts == [0.0, 10.0, 20.0] and loop.overruns == 0


async def test_an_iteration_ending_exactly_on_a_boundary_starts_the_next_one_there():
    clock = VirtualClock(T0)
    body = Body(clock, {0: lambda: clock.sleep(20.0)})
    loop = PeriodicLoop("t", 10.0, body, clock)
    await run_for(clock, loop, 35.0)
    assert loop.overruns == 1
    assert body.starts == [0.0, 20.0, 30.0]  # today: [0.0, 30.0]


async def test_exceptions_are_counted_logged_once_per_type_and_the_loop_goes_on(caplog):
    clock = VirtualClock(T0)

    async def fail(error: Exception):
        raise error

    body = Body(clock, {0: lambda: fail(ValueError("a")), 1: lambda: fail(ValueError("b")),
                        2: lambda: fail(KeyError("c"))})
    loop = PeriodicLoop("t", 10.0, body, clock)
    with caplog.at_level(logging.DEBUG, logger="hems.runtime.loops"):
        await run_for(clock, loop, 45.0)
    assert body.starts == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert loop.errors == 3 and loop.iterations == 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].exc_info[0] is ValueError and errors[1].exc_info[0] is KeyError
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG and "again" in r.getMessage()]) == 1


async def test_healthy_goes_false_while_a_body_blocks_longer_than_hang_after():
    clock = VirtualClock(T0)
    release = asyncio.Event()
    started = asyncio.Event()

    async def blocking_body() -> None:
        started.set()
        await release.wait()  # real time: a hung device call

    loop = PeriodicLoop("t", 10.0, blocking_body, clock, hang_after_s=0.1)
    assert loop.healthy
    loop.start()
    await started.wait()
    assert loop.healthy  # busy, but not for long yet
    await asyncio.sleep(0.15)
    assert not loop.healthy
    assert clock.now_s() == T0  # the loop holds simulated time while it works
    release.set()
    await asyncio.sleep(0.01)
    assert loop.healthy
    await loop.stop(grace_s=1.0)


async def test_stop_during_the_sleep_returns_promptly():
    clock = SystemClock()
    ran = asyncio.Event()

    async def body() -> None:
        ran.set()

    loop = PeriodicLoop("t", 3600.0, body, clock)
    task = loop.start()
    await ran.wait()
    await asyncio.sleep(0)  # into the sleep
    started = time.monotonic()
    await loop.stop(grace_s=5.0)
    assert time.monotonic() - started < 0.5
    assert task.done() and not task.cancelled()  # it returned, not cancelled out
    assert loop.iterations == 1


async def test_stop_lets_the_current_iteration_finish_within_the_grace():
    finished: list[bool] = []

    async def body() -> None:
        await asyncio.sleep(0.05)
        finished.append(True)

    loop = PeriodicLoop("t", 3600.0, body, SystemClock())
    loop.start()
    await asyncio.sleep(0.01)
    await loop.stop(grace_s=2.0)
    assert finished == [True] and loop.iterations == 1


async def test_stop_cancels_an_iteration_that_outlasts_the_grace():
    cancelled: list[bool] = []

    async def body() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    loop = PeriodicLoop("t", 3600.0, body, SystemClock())
    task = loop.start()
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await loop.stop(grace_s=0.05)
    assert time.monotonic() - started < 0.5
    assert cancelled == [True] and task.done()
