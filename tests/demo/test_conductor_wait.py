"""The conductor's wait for messages: time-out only when nothing moves."""

from __future__ import annotations

import asyncio
import logging
import time

from hems.demo.community_run import market_moments, until
from hems.demo.settings import DemoSettings


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


def test_the_readings_are_awaited_before_the_meter_deadline_and_the_settlement_after_it():
    """Past its meter deadline the manager settles a slot provisionally: the conductor must hold time
    for the readings before it, for every slot including the run's last."""
    settings = DemoSettings(hours=1)
    deadline_s = 600
    moments = market_moments(settings, deadline_s)
    assert [moment.at_s for moment in moments] == sorted(moment.at_s for moment in moments)
    for slot_start_s in settings.slot_starts_s:
        kinds = {moment.kind: moment.at_s for moment in moments if moment.slot_start_s == slot_start_s}
        deadline_at_s = slot_start_s + settings.runtime.slot_s + deadline_s
        assert kinds["bids"] < kinds["allocations"] < slot_start_s
        assert slot_start_s + settings.runtime.slot_s < kinds["meters"] < deadline_at_s < kinds["settled"]
