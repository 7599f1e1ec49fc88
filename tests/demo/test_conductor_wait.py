"""The conductor's wait for messages: time-out only when nothing moves."""

from __future__ import annotations

import asyncio
import logging
import time

from hems.demo.community_run import until


async def test_a_wait_that_keeps_progressing_outlasts_the_time_out():
    started = time.monotonic()
    remaining = [3]

    async def arrive() -> None:
        while remaining[0]:
            await asyncio.sleep(0.4)  # each arrival well inside the time-out, even on a loaded machine
            remaining[0] -= 1

    arrivals = asyncio.ensure_future(arrive())
    assert await until(lambda: remaining[0], 1.0, "three messages")
    await arrivals
    assert time.monotonic() - started >= 1.1  # longer than the time-out: progress extended it


async def test_a_stuck_wait_gives_up_and_says_how_many_are_missing(caplog):
    caplog.set_level(logging.WARNING, logger="hems.demo.community_run")
    started = time.monotonic()
    assert not await until(lambda: 2, 0.1, "two messages")
    assert 0.1 <= time.monotonic() - started < 1.0
    assert "two messages did not happen within 0 s (2 missing)" in caplog.text


async def test_nothing_missing_returns_at_once():
    assert await until(lambda: 0, 0.0, "nothing")
