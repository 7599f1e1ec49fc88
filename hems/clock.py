"""Wall clock and simulated clock behind one interface.

Every part of the daemon that reads the time or waits takes a :class:`Clock`, so the same code
runs in real time under systemd and in accelerated simulation in the tests and the demo.

- :class:`SystemClock`: UTC wall time and the monotonic clock of the machine.
- :class:`VirtualClock`: discrete-event time for hardware-in-the-loop runs. Time stands still
  while any participating task is working (polling a device over a real socket, solving a plan
  in a thread) and jumps to the next wake-up as soon as every participant is asleep on the
  clock. A simulated day then takes as long as the work done in it, and the result does not
  depend on the speed of the machine.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol


class Clock(Protocol):
    """What a component needs of time."""

    def now_s(self) -> float:
        """UTC seconds since the epoch (wall time: timestamps, slot boundaries)."""

    def monotonic_s(self) -> float:
        """Seconds that never go backwards (timeouts, periods, ages)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""

    async def sleep_until_s(self, monotonic_s: float) -> None:
        """Wait until ``monotonic_s()`` reaches the given value."""


class SystemClock:
    """The machine's clocks."""

    def now_s(self) -> float:
        """UTC seconds since the epoch."""
        return time.time()

    def monotonic_s(self) -> float:
        """The machine's monotonic clock."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until_s(self, monotonic_s: float) -> None:
        """Sleep until the monotonic clock reaches ``monotonic_s``."""
        await asyncio.sleep(max(0.0, monotonic_s - time.monotonic()))

    def __call__(self) -> float:
        """A plain ``() -> float`` wall clock, for the drivers' ``wall_clock`` arguments."""
        return self.now_s()


class VirtualClock:
    """Simulated time that advances only when every participant sleeps on it.

    A task counts as a participant inside ``with clock.participant():``. While at least one
    participant is not sleeping on this clock (it awaits a socket, a thread, a lock), time stands
    still. When the last one goes to sleep, time jumps to the earliest wake-up and that sleeper
    is woken. Non-participants may sleep on the clock too; they are woken as time passes but
    never hold it back. With no participant, sleeping jumps straight to the wake-up time.

    Monotonic and wall time are the same number here: ``start_s`` is the UTC start instant.
    """

    def __init__(self, start_s: float) -> None:
        self._now_s = float(start_s)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()
        self._participant_tasks: set[asyncio.Task] = set()
        self._participants_asleep = 0
        self._advance_scheduled = False

    def now_s(self) -> float:
        """Simulated UTC seconds."""
        return self._now_s

    def monotonic_s(self) -> float:
        """The same simulated seconds (they never go backwards)."""
        return self._now_s

    def __call__(self) -> float:
        """A plain ``() -> float`` wall clock (the emulators' plant takes one)."""
        return self._now_s

    @contextmanager
    def participant(self) -> Iterator[None]:
        """Mark the current task as one whose work holds simulated time back."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("VirtualClock.participant() needs a running task")
        self._participant_tasks.add(task)
        try:
            yield
        finally:
            self._participant_tasks.discard(task)
            self._schedule_advance()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time."""
        await self.sleep_until_s(self._now_s + max(0.0, seconds))

    async def sleep_until_s(self, monotonic_s: float) -> None:
        """Wait until simulated time reaches ``monotonic_s`` (at least one event-loop turn)."""
        if monotonic_s <= self._now_s:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (monotonic_s, next(self._sequence), future))
        participant = asyncio.current_task() in self._participant_tasks
        if participant:
            self._participants_asleep += 1
        self._schedule_advance()
        try:
            await future
        finally:
            if participant:
                self._participants_asleep -= 1

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (tests without participants), waking due sleepers."""
        self._now_s += max(0.0, seconds)
        self._wake_due()

    def _schedule_advance(self) -> None:
        # Advance from a fresh event-loop turn, so that a task that has just been woken gets to
        # run (and perhaps start new work) before time can move on.
        if self._advance_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._advance_scheduled = True
        loop.call_soon(self._advance_if_idle)

    def _advance_if_idle(self) -> None:
        self._advance_scheduled = False
        self._drop_cancelled()
        if not self._sleepers or self._participants_asleep < len(self._participant_tasks):
            return
        self._now_s = max(self._now_s, self._sleepers[0][0])
        self._wake_due()
        # The woken may all be bystanders that do not hold time: look again once they have run.
        if self._sleepers:
            self._schedule_advance()

    def _wake_due(self) -> None:
        self._drop_cancelled()
        while self._sleepers and self._sleepers[0][0] <= self._now_s:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)



def holding(clock: Clock) -> AbstractContextManager[None]:
    """While inside, the current task holds simulated time back (a no-op for real clocks)."""
    return clock.participant() if isinstance(clock, VirtualClock) else nullcontext()
