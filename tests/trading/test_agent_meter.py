"""Meter reports through the on-disk outbox: one per slot, acked, resent until acked, kept over a
broker outage and a daemon restart, never resent after an INVALID ack (real mosquitto)."""

from __future__ import annotations

import asyncio
from itertools import accumulate

from hems.protocol.envelope import ReceptionStatus
from tests.conftest import wait_for
from tests.trading.conftest import (HOME, SLOT0_S, STEP_S, Harness, ManagerStandIn, SamePortBroker, agent_harness,
                                    market_config, metric, snapshot, utc)

POLL_S = 300
#: Wh the meter's registers advance in each 300-s poll interval from SLOT0 - 300 s on.
IMPORT_STEPS_WH = [40, 25, 0, 10, 75, 5, 0, 30, 60, 12, 8, 0, 44, 1, 7]
EXPORT_STEPS_WH = [0, 90, 120, 60, 0, 0, 33, 14, 0, 0, 51, 18, 0, 2, 9]
IMPORT_WH = [1000.0 + v for v in accumulate([0] + IMPORT_STEPS_WH)]
EXPORT_WH = [500.0 + v for v in accumulate([0] + EXPORT_STEPS_WH)]
FIRST_S = SLOT0_S - POLL_S


def poll_time(index: int) -> float:
    return FIRST_S + index * POLL_S


async def poll(h: Harness, index: int) -> None:
    """The telemetry loop's snapshot at poll ``index``: registers and a grid power the counters beat."""
    at_s = poll_time(index)
    h.advance_to(at_s)
    await h.agent.observe(snapshot(at_s, grid_w=-2000.0, import_wh=IMPORT_WH[index], export_wh=EXPORT_WH[index]),
                          at_s)


def expected_slot(slot: int) -> tuple[int, int]:
    """(import, export) Wh of slot ``slot`` after SLOT0: register differences at its boundaries."""
    begin, end = 1 + 3 * slot, 1 + 3 * (slot + 1)  # poll 1 is at SLOT0, three polls per slot
    return round(IMPORT_WH[end] - IMPORT_WH[begin]), round(EXPORT_WH[end] - EXPORT_WH[begin])


async def test_a_meter_report_per_slot_from_the_energy_counters(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config()).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url, start_s=FIRST_S) as h:
            for index in range(8):  # through SLOT0 + 1800: two slots end
                await poll(h, index)
            await wait_for(lambda: len(manager.meter) == 2)
            reports = [message.payload for message in manager.meter]
            assert [r.slot_start for r in reports] == [utc(SLOT0_S), utc(SLOT0_S + STEP_S)]
            assert all(r.duration_s == STEP_S for r in reports)
            assert [(r.import_wh, r.export_wh) for r in reports] == [expected_slot(0), expected_slot(1)]
            assert all(message.sender == HOME for message in manager.meter)
            for message in manager.meter:  # the manager's acks close them in the store
                await wait_for(lambda: _acked(h, str(message.message_id)))
            await wait_for(lambda: metric(h.metrics, "hems_outbox_pending") == 0)
            assert metric(h.metrics, "hems_market_messages_total", direction="out", message_type="meter") == 2
    finally:
        await manager.stop()


async def _acked(h: Harness, message_id: str) -> bool:
    row = await h.store.outbox_message(message_id)
    return row is not None and row.acked_at_s is not None and row.sent_at_s is not None


async def test_meter_reports_survive_a_broker_outage_in_order(tmp_path):
    broker = SamePortBroker(tmp_path / "broker").start()
    manager = await ManagerStandIn(broker.url, market_config()).start()
    try:
        async with agent_harness(tmp_path / "state", broker.url, start_s=FIRST_S) as h:
            for index in range(5):  # SLOT0's report goes out at once
                await poll(h, index)
            await wait_for(lambda: len(manager.meter) == 1)
            await wait_for(lambda: _acked(h, str(manager.meter[0].message_id)))

            broker.stop()
            await wait_for(lambda: not h.agent.link.connected)
            for index in range(5, 14):  # three more slots end while the broker is away
                await poll(h, index)
            queued = [row.message_id for row in await h.store.pending()]
            assert len(queued) == 3
            await wait_for(lambda: metric(h.metrics, "hems_outbox_pending") == 3)
            assert metric(h.metrics, "hems_market_connected") == 0
            assert h.agent.state == "retail_only"

            broker.restart_on_same_port()
            await wait_for(lambda: manager.meter_ids()[1:] == queued, timeout_s=10)
            assert [m.payload.slot_start for m in manager.meter[1:4]] == [
                utc(SLOT0_S + k * STEP_S) for k in (1, 2, 3)]
            assert [(m.payload.import_wh, m.payload.export_wh) for m in manager.meter[1:4]] == [
                expected_slot(k) for k in (1, 2, 3)]
            for message_id in queued:
                await wait_for(lambda: _acked(h, message_id))
            await wait_for(lambda: metric(h.metrics, "hems_outbox_pending") == 0)
    finally:
        await manager.stop()
        broker.stop()


async def test_a_restarted_agent_sends_what_was_pending(tmp_path):
    broker = SamePortBroker(tmp_path / "broker").start()
    state = tmp_path / "state"
    try:
        async with agent_harness(state, broker.url, start_s=FIRST_S) as h:
            broker.stop()
            await wait_for(lambda: not h.agent.link.connected)
            for index in range(8):
                await poll(h, index)
            queued = [row.message_id for row in await h.store.pending()]
            assert len(queued) == 2
        # The daemon stopped with two reports unsent; it starts again with the broker back.
        broker.restart_on_same_port()
        manager = await ManagerStandIn(broker.url, market_config()).start()
        try:
            async with agent_harness(state, broker.url, start_s=poll_time(8) + 60) as h:
                await wait_for(lambda: manager.meter_ids() == queued)
                assert [m.payload.slot_start for m in manager.meter] == [utc(SLOT0_S), utc(SLOT0_S + STEP_S)]
                for message_id in queued:
                    await wait_for(lambda: _acked(h, message_id))
        finally:
            await manager.stop()
    finally:
        broker.stop()


async def test_an_unacked_report_is_resent_and_an_invalid_ack_stops_it(tmp_path, mosquitto_broker):
    answer: dict[str, ReceptionStatus | None] = {"status": None}  # the manager stays silent at first
    manager = await ManagerStandIn(mosquitto_broker.url, market_config(),
                                   meter_answer=lambda message: answer["status"]).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url, start_s=FIRST_S, resend_after_s=30) as h:
            for index in range(5):
                await poll(h, index)
            await wait_for(lambda: len(manager.meter) == 1)
            message_id = str(manager.meter[0].message_id)
            h.clock.advance(29)
            await asyncio.sleep(0.2)
            assert len(manager.meter) == 1  # not yet due
            h.clock.advance(2)
            await wait_for(lambda: len(manager.meter) == 2)
            assert manager.meter_ids() == [message_id]  # the same message, its original id
            assert manager.meter[1].payload == manager.meter[0].payload

            answer["status"] = ReceptionStatus.INVALID_CONTENT
            h.clock.advance(31)
            await wait_for(lambda: len(manager.meter) == 3)
            await wait_for(lambda: _acked(h, message_id))  # refused for good: closed, not retried
            await wait_for(lambda: metric(h.metrics, "hems_market_rejections_total",
                                          status="INVALID_CONTENT") == 1)
            h.clock.advance(200)
            await asyncio.sleep(0.3)
            assert len(manager.meter) == 3
            assert metric(h.metrics, "hems_outbox_pending") == 0
    finally:
        await manager.stop()


async def test_a_temporary_error_is_retried(tmp_path, mosquitto_broker):
    answers = iter([ReceptionStatus.TEMPORARY_ERROR, ReceptionStatus.OK])
    manager = await ManagerStandIn(mosquitto_broker.url, market_config(),
                                   meter_answer=lambda message: next(answers)).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url, start_s=FIRST_S, resend_after_s=30) as h:
            for index in range(5):
                await poll(h, index)
            await wait_for(lambda: len(manager.meter) == 1)
            await asyncio.sleep(0.1)
            assert not await _acked(h, str(manager.meter[0].message_id))
            h.clock.advance(31)
            await wait_for(lambda: len(manager.meter) == 2)
            await wait_for(lambda: _acked(h, str(manager.meter[0].message_id)))
    finally:
        await manager.stop()
