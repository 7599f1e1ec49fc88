"""Periodic loops that never stack: an iteration that overruns is logged and counted, and the
next one starts at the next period boundary after it ends."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from hems.clock import Clock, holding

logger = logging.getLogger(__name__)


class PeriodicLoop:
    """Run ``body`` every ``period_s`` of ``clock`` time until :meth:`stop`, the first time
    ``start_offset_s`` after the start (loops that consume another loop's results run just after it).

    Liveness is judged in real (monotonic) seconds, whatever the clock: a body that has been
    running for longer than ``hang_after_s`` makes :attr:`healthy` false, which withholds the
    systemd watchdog.
    """

    def __init__(self, name: str, period_s: float, body: Callable[[], Awaitable[None]], clock: Clock,
                 on_overrun: Callable[[str, int], None] | None = None, hang_after_s: float = 120.0,
                 start_offset_s: float = 0.0) -> None:
        if period_s <= 0:
            raise ValueError(f"{name}: period_s = {period_s!r} is out of range: allowed > 0")
        self.name = name
        self.period_s = period_s
        self._body = body
        self._clock = clock
        self._on_overrun = on_overrun
        self.hang_after_s = hang_after_s
        self.start_offset_s = start_offset_s
        self.iterations = 0
        self.overruns = 0
        self.errors = 0
        self._busy_since_real_s: float | None = None
        self._sleeping = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._error_logged: set[str] = set()

    @property
    def healthy(self) -> bool:
        """False while one iteration has been running for longer than ``hang_after_s``."""
        busy_since = self._busy_since_real_s
        return busy_since is None or time.monotonic() - busy_since <= self.hang_after_s

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"hems-{self.name}")
        return self._task

    def request_stop(self) -> None:
        """Run no further iteration; a loop asleep until its next tick ends at once."""
        self._stopping = True
        if self._task is not None and not self._task.done() and self._sleeping:
            self._task.cancel()

    async def stop(self, grace_s: float = 3.0) -> None:
        """Stop after the current iteration (cancelled if it takes longer than ``grace_s``)."""
        self.request_stop()
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        with holding(self._clock):
            next_start_s = self._clock.monotonic_s() + self.start_offset_s
            if self.start_offset_s > 0:
                await self._clock.sleep_until_s(next_start_s)
            while not self._stopping:
                await self._iterate()
                next_start_s += self.period_s
                now_s = self._clock.monotonic_s()
                if now_s > next_start_s:
                    missed = math.ceil((now_s - next_start_s) / self.period_s)
                    self.overruns += 1
                    logger.warning("loop %s overran its period of %.1f s by %.1f s; skipping %d tick(s)",
                                   self.name, self.period_s, now_s - next_start_s + self.period_s, missed)
                    if self._on_overrun is not None:
                        self._on_overrun(self.name, 1)
                    next_start_s += missed * self.period_s
                if self._stopping:
                    break
                self._sleeping = True
                try:
                    await self._clock.sleep_until_s(next_start_s)
                except asyncio.CancelledError:
                    if self._stopping:
                        return
                    raise
                finally:
                    self._sleeping = False

    async def _iterate(self) -> None:
        self._busy_since_real_s = time.monotonic()
        try:
            await self._body()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # one bad iteration never ends the loop
            self.errors += 1
            key = type(error).__name__
            if key not in self._error_logged:
                self._error_logged.add(key)
                logger.exception("loop %s: iteration failed", self.name)
            else:
                logger.debug("loop %s: iteration failed again: %s", self.name, error)
        finally:
            self._busy_since_real_s = None
            self.iterations += 1
