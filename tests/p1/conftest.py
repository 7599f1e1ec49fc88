"""Fixtures for the P1 tests: pseudo-terminals, a fixed clock and running readers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tty
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from drivers.p1 import P1Reader, P1Telegram

#: 2025-06-15 15:06:40 UTC, a Sunday in Dutch summer time.
T0 = 1_750_000_000.0


class FixedClock:
    """A wall clock the test sets by hand."""

    def __init__(self, now_s: float = T0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


class Pty:
    """One pseudo-terminal: the test writes to ``master``, the reader opens ``path`` (the slave)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.closed = False

    async def write(self, data: bytes, timeout_s: float = 3.0) -> None:
        """Write without blocking the loop: the reader runs on the same loop and must drain the pty."""
        os.set_blocking(self.master, False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                if loop.time() > deadline:
                    raise AssertionError("nobody drains the pty") from None
                await asyncio.sleep(0.002)

    def close(self) -> None:
        """Hang up: the reader's next read fails, like an unplugged USB adapter."""
        if not self.closed:
            self.closed = True
            for fd in (self.master, self.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)


@pytest.fixture
def make_pty() -> Iterator[Callable[[], Pty]]:
    ptys: list[Pty] = []

    def make() -> Pty:
        ptys.append(Pty())
        return ptys[-1]

    yield make
    for p in ptys:
        p.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


class RunningReader:
    """A reader task plus the telegrams it delivered."""

    def __init__(self, reader: P1Reader, task: asyncio.Task[None], telegrams: list[P1Telegram]) -> None:
        self.reader = reader
        self.task = task
        self.telegrams = telegrams


@pytest.fixture
async def start_reader(clock: FixedClock) -> AsyncIterator[Callable[..., RunningReader]]:
    running: list[RunningReader] = []

    def start(port: str, version: str = "5", **kwargs: Any) -> RunningReader:
        telegrams: list[P1Telegram] = []
        kwargs.setdefault("backoff_initial_s", 0.02)
        kwargs.setdefault("backoff_max_s", 0.1)
        kwargs.setdefault("rng", random.Random(7))
        reader = P1Reader(port, version, telegrams.append, clock, **kwargs)
        run = RunningReader(reader, asyncio.create_task(reader.run()), telegrams)
        running.append(run)
        return run

    yield start
    for run in running:
        run.reader.stop()
        await asyncio.wait_for(run.task, 2.0)
