"""``hems grid simulate`` on a virtual clock over a real mosquitto: limits and requests leave at the
configured instants (their envelopes' ``sent_at`` is the simulated time they were sent), and the
manager's answers are logged. The test and the operator both hold the clock, so simulated time only
moves while both sleep on it, and stands still while the test waits in real time for messages."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import date, datetime, timezone

from hems.clock import VirtualClock
from hems.grid_operator.config import parse_simulation_config
from hems.grid_operator.simulation import SimulatedOperator, schedule
from hems.protocol.mqtt import BrokerSettings
from hems.protocol.power_plant import FlexibilityResponse, RequestState, ResponseSlot
from hems.protocol.topics import GridTopic
from tests.conftest import wait_for
from tests.grid_operator.conftest import COMMUNITY, retained

GRID_TOML = """
timezone = "Europe/Berlin"

[limits]
publish_at = "12:00"
publish_on_start = {on_start}

[limits.default]
import_limit_kw = 250
export_limit_kw = 150

[[limits.period]]
from = "17:00"
to = "20:00"
import_limit_kw = 120
fee = 0.015

[[request]]
name = "peak"
at = "17:00"
slots = 4
delta_kw = -20
price = 0.25
penalty = 0.1
notice_minutes = 60
"""


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def epoch(*parts: int) -> float:
    return utc(*parts).timestamp()


def operator_on(url: str, clock: VirtualClock, on_start: bool) -> SimulatedOperator:
    config = parse_simulation_config(GRID_TOML.format(on_start="true" if on_start else "false"))
    settings = BrokerSettings(url=url, client_id="grid-sim", persistent_session=False)
    return SimulatedOperator(config, settings, COMMUNITY, clock)


async def test_limits_and_requests_leave_at_the_configured_instants(mosquitto_broker, manager, caplog):
    caplog.set_level(logging.INFO, logger="hems.grid_operator")
    manager.answer_request = lambda message: [FlexibilityResponse(
        request_id=message.payload.request_id, state=RequestState.DISPATCHED, slots=[
            ResponseSlot(slot_start=slot.slot_start, duration_s=900, requested_wh=-5000, committed_wh=-4800, homes=5)
            for slot in message.payload.slots])]
    clock = VirtualClock(epoch(2026, 11, 20, 10, 0))  # 11:00 in Berlin: before the day's 12:00
    operator = operator_on(mosquitto_broker.url, clock, on_start=False)
    stop = asyncio.Event()
    with clock.participant():
        task = asyncio.create_task(operator.run(stop))
        await asyncio.wait_for(operator.ready.wait(), 10)

        await clock.sleep_until_s(epoch(2026, 11, 20, 11, 0, 1))  # 12:00:01 in Berlin
        await wait_for(lambda: len(manager.limits) == 1)
        limits = manager.limits[0]
        assert limits.envelope.sent_at == utc(2026, 11, 20, 11, 0)
        slots = limits.payload.slots
        assert len(slots) == 96 and slots[0].slot_start == utc(2026, 11, 20, 23, 0)  # all of the 21st in Berlin
        evening = [slot for slot in slots if slot.import_limit_w == 120_000]
        assert (evening[0].slot_start, len(evening)) == (utc(2026, 11, 21, 16, 0), 12)
        assert {(slot.export_limit_w, slot.locational_fee_micro) for slot in evening} == {(None, 15_000)}
        assert manager.raw_limits[0].retain is False  # a live message; the broker keeps it retained:
        (kept,) = await retained(mosquitto_broker.url, manager.topics.grid(GridTopic.LIMITS))
        assert kept.retain and kept.payload == manager.raw_limits[0].payload
        assert manager.requests == []

        await clock.sleep_until_s(epoch(2026, 11, 20, 15, 0, 1))  # 16:00:01 in Berlin: an hour before 17:00
        await wait_for(lambda: len(manager.requests) == 1)
        request = manager.requests[0]
        assert request.envelope.sent_at == utc(2026, 11, 20, 15, 0)
        call = request.payload
        assert (call.request_id, call.price_micro, call.penalty_micro) == ("peak-20261120", 250_000, 100_000)
        assert [(slot.slot_start, slot.delta_w) for slot in call.slots] == [
            (utc(2026, 11, 20, 16, minute), -20_000) for minute in (0, 15, 30, 45)]
        await wait_for(lambda: len(operator.responses) == 1)
        assert operator.responses[0].envelope.correlation_id == request.message_id
        assert "request peak-20261120 DISPATCHED: committed -19200 of -20000 Wh" in caplog.text

        await clock.sleep_until_s(epoch(2026, 11, 21, 15, 0, 1))  # the next day, the same again
        await wait_for(lambda: len(manager.requests) == 2 and len(manager.limits) == 2)
        assert manager.limits[1].envelope.sent_at == utc(2026, 11, 21, 11, 0)
        assert manager.limits[1].payload.slots[0].slot_start == utc(2026, 11, 21, 23, 0)
        assert manager.requests[1].payload.request_id == "peak-20261121"
        assert manager.requests[1].envelope.sent_at == utc(2026, 11, 21, 15, 0)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [(sent.kind, sent.at_s) for sent in operator.sent] == [
        ("limits", epoch(2026, 11, 20, 11, 0)), ("request", epoch(2026, 11, 20, 15, 0)),
        ("limits", epoch(2026, 11, 21, 11, 0)), ("request", epoch(2026, 11, 21, 15, 0))]


async def test_on_start_it_publishes_the_limits_of_the_day_last_spoken_for(mosquitto_broker, manager):
    clock = VirtualClock(epoch(2026, 11, 20, 13, 30))  # 14:30 in Berlin: today's 12:00 has passed
    operator = operator_on(mosquitto_broker.url, clock, on_start=True)
    with clock.participant():
        task = asyncio.create_task(operator.run())
        await wait_for(lambda: len(manager.limits) == 1)
        assert manager.limits[0].envelope.sent_at == utc(2026, 11, 20, 13, 30)
        assert manager.limits[0].payload.slots[0].slot_start == utc(2026, 11, 20, 23, 0)  # tomorrow, the 21st
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not operator.client.connected


def test_the_schedule_keeps_local_times_across_the_change_of_clocks():
    config = parse_simulation_config(GRID_TOML.format(on_start="false"))
    events = schedule(config, int(epoch(2026, 10, 24, 0, 0)), int(epoch(2026, 10, 26, 0, 0)))
    # Berlin leaves summer time in the night to 25 October 2026: 12:00 and 16:00 local move by an hour in UTC.
    assert [(datetime.fromtimestamp(event.at_s, timezone.utc), event.kind, event.day) for event in events] == [
        (utc(2026, 10, 24, 10, 0), "limits", date(2026, 10, 25)),
        (utc(2026, 10, 24, 14, 0), "request", date(2026, 10, 24)),
        (utc(2026, 10, 25, 11, 0), "limits", date(2026, 10, 26)),
        (utc(2026, 10, 25, 15, 0), "request", date(2026, 10, 25))]
    autumn = config.limits.publication(date(2026, 10, 25), config.zone, config.slot_minutes)
    spring = config.limits.publication(date(2026, 3, 29), config.zone, config.slot_minutes)
    assert (len(autumn.slots), len(spring.slots)) == (100, 92)  # 25 and 23 hours
    assert [slot.slot_start for slot in autumn.slots if slot.import_limit_w == 120_000][0] == utc(2026, 10, 25, 16, 0)
    assert [slot.slot_start for slot in spring.slots if slot.import_limit_w == 120_000][0] == utc(2026, 3, 29, 15, 0)


async def test_the_command_publishes_on_start_and_stops_on_sigterm(tmp_path, mosquitto_broker, manager):
    path = tmp_path / "grid.toml"
    path.write_text(GRID_TOML.format(on_start="true"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hems", "grid", "simulate", "--broker", mosquitto_broker.url, "--community", COMMUNITY,
        "--config", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: len(manager.limits) == 1, timeout_s=20)
        assert manager.limits[0].sender == "grid-operator"
        assert len(manager.limits[0].payload.slots) in (92, 96, 100)  # a whole day in Berlin
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert b"published the limits of" in stderr and b"SIGTERM received: stopping" in stderr
