"""``hems grid limits|request|offers`` in-process (in a thread: the command runs its own event loop)
against a real mosquitto, the test playing the community manager."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import pytest

from hems.cli import main
from hems.protocol.codec import decode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import Ack, OrderStatus, SlotAck
from hems.protocol.power_plant import (
    FlexibilityOffers,
    FlexibilityResponse,
    GridLimitsPublication,
    OfferDirection,
    OfferItem,
    RequestState,
    ResponseSlot,
)
from hems.protocol.topics import GridTopic
from tests.conftest import wait_for
from tests.grid_operator.conftest import COMMUNITY, retained
from tests.mosquitto import free_tcp_port

SLOT_1 = datetime(2026, 11, 21, 16, 0, tzinfo=timezone.utc)
NOWHERE = "mqtt://127.0.0.1:1"  # never reached: the input is refused before connecting


async def hems(capsys, *arguments: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, ["--log-level", "WARNING", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def grid(command: str, url: str, *arguments: str) -> list[str]:
    return ["grid", command, "--broker", url, "--community", COMMUNITY, *arguments]


def response(message, state: RequestState, delivered: bool = False, **extra) -> FlexibilityResponse:
    call = message.payload
    return FlexibilityResponse(request_id=call.request_id, state=state, slots=[
        ResponseSlot(slot_start=slot.slot_start, duration_s=slot.duration_s, requested_wh=slot.delta_w // 4,
                     committed_wh=slot.delta_w // 4 + 100, homes=3,
                     delivered_wh=slot.delta_w // 4 + 300 if delivered else None)
        for slot in call.slots], **extra)


# -- limits ---------------------------------------------------------------------------------------

async def test_inline_limits_are_retained_as_exact_integers(capsys, mosquitto_broker, manager):
    code, out, err = await hems(capsys, *grid("limits", mosquitto_broker.url, "--from", "2026-11-21T17:00+01:00",
                                              "--slots", "4", "--import-limit-kw", "60.5", "--export-limit-kw", "40",
                                              "--fee", "0.015", "--wait", "0"))
    assert code == 0, err
    assert "published grid_limits" in out and "4 slots 2026-11-21 16:00 … 2026-11-21 16:45 UTC" in out
    late = await retained(mosquitto_broker.url, manager.topics.grid(GridTopic.LIMITS))
    assert len(late) == 1 and late[0].retain
    assert b'"import_limit_w":60500' in late[0].payload and b'"locational_fee_micro":15000' in late[0].payload
    message = decode(late[0].payload, (GridLimitsPublication,))
    assert message.sender == "grid-operator"
    assert [slot.slot_start.isoformat() for slot in message.payload.slots] == [
        "2026-11-21T16:00:00+00:00", "2026-11-21T16:15:00+00:00", "2026-11-21T16:30:00+00:00",
        "2026-11-21T16:45:00+00:00"]
    assert {(slot.duration_s, slot.import_limit_w, slot.export_limit_w, slot.locational_fee_micro)
            for slot in message.payload.slots} == {(900, 60_500, 40_000, 15_000)}


async def test_a_limit_left_out_is_no_limit(capsys, mosquitto_broker, manager):
    code, _, err = await hems(capsys, *grid("limits", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                            "--slots", "1", "--slot-minutes", "60", "--export-limit-kw", "0",
                                            "--wait", "0"))
    assert code == 0, err
    await wait_for(lambda: bool(manager.limits))
    (slot,) = manager.limits[0].payload.slots
    assert (slot.duration_s, slot.import_limit_w, slot.export_limit_w, slot.locational_fee_micro) == (3600, None, 0, 0)


@pytest.mark.parametrize("status, expected", [(ReceptionStatus.OK, 0), (ReceptionStatus.INVALID_CONTENT, 2)])
async def test_limits_print_the_managers_ack(capsys, mosquitto_broker, manager, status, expected):
    manager.answer_limits = lambda message: Ack(
        status=status, diagnostic_label="" if status == ReceptionStatus.OK else "slot in the past",
        acked_message_type="grid_limits",
        slots=[SlotAck(slot_start=SLOT_1, status=OrderStatus.ACCEPTED if expected == 0 else OrderStatus.REJECTED)])
    code, out, err = await hems(capsys, *grid("limits", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "2", "--import-limit-kw", "60", "--wait", "5"))
    assert code == expected, err
    assert f"ack {status}" in out
    assert ("2026-11-21 16:00 ACCEPTED" in out) if expected == 0 else ("slot in the past" in out and "REJECTED" in out)


async def test_limits_ack_as_json_carries_the_correlation(capsys, mosquitto_broker, manager):
    manager.answer_limits = lambda message: Ack(status=ReceptionStatus.OK, acked_message_type="grid_limits")
    code, out, err = await hems(capsys, *grid("limits", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "2", "--fee", "0.01", "--wait", "5", "--json"))
    assert code == 0, err
    (line,) = out.splitlines()
    ack = json.loads(line)
    assert ack["message_type"] == "ack" and ack["status"] == "OK"
    assert ack["correlation_id"] == str(manager.limits[0].message_id)
    assert "published grid_limits" in err  # stdout carries only the JSON lines


async def test_limits_without_an_ack_exit_3_and_stay_retained(capsys, mosquitto_broker, manager):
    code, out, err = await hems(capsys, *grid("limits", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "1", "--fee", "0.02", "--wait", "0.5"))
    assert code == 3
    assert "no ack within 0.5 s" in err
    assert len(await retained(mosquitto_broker.url, manager.topics.grid(GridTopic.LIMITS))) == 1


async def test_limits_from_a_file_in_local_time(capsys, tmp_path, mosquitto_broker, manager):
    path = tmp_path / "limits.toml"
    path.write_text('timezone = "Europe/Berlin"\nday = 2026-11-21\n[default]\nimport_limit_kw = 250\n'
                    '[[period]]\nfrom = "17:00"\nto = "18:00"\nimport_limit_kw = 60\nfee = 0.015\n')
    code, _, err = await hems(capsys, *grid("limits", mosquitto_broker.url, "--file", str(path), "--wait", "0"))
    assert code == 0, err
    await wait_for(lambda: bool(manager.limits))
    slots = manager.limits[0].payload.slots
    assert len(slots) == 96 and slots[0].slot_start == datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)
    peak = [slot for slot in slots if slot.import_limit_w == 60_000]
    assert [slot.slot_start.hour for slot in peak] == [16] * 4  # 17:00 in Berlin is 16:00 UTC in November
    assert {slot.locational_fee_micro for slot in peak} == {15_000}
    assert {slot.export_limit_w for slot in slots} == {None}
    code, _, err = await hems(capsys, *grid("limits", mosquitto_broker.url, "--file", str(path), "--day",
                                            "2026-11-23", "--wait", "0"))
    assert code == 0, err
    await wait_for(lambda: len(manager.limits) == 2)
    assert manager.limits[1].payload.slots[0].slot_start == datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)


async def test_a_bad_limits_file_names_every_key_and_publishes_nothing(capsys, tmp_path):
    path = tmp_path / "limits.toml"
    path.write_text('slot_minutes = 15\nwhen = 1\n[default]\nimport_limit_kw = 20000\nexport_limit_kw = 1.0001\n'
                    'fee = -0.1\n[[period]]\nfrom = "17:00"\nto = "25:00"\n')
    code, out, err = await hems(capsys, *grid("limits", NOWHERE, "--file", str(path)))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"{path}: default.import_limit_kw = 20000 is out of range: allowed [0, 10000]",
        f"{path}: default.export_limit_kw = 1.0001 is invalid: allowed a whole number of W (at most 3 decimals of kW)",
        f"{path}: default.fee = -0.1 is out of range: allowed [0, 100]",
        f'{path}: period[0].to = "25:00" is invalid: allowed a time of day 00:00 … 23:59 or 24:00',
        f"{path}: when: unknown key"]


@pytest.mark.parametrize("arguments, message", [
    (["limits", "--from", "2026-11-21T16:05Z", "--slots", "1"], "--from: 2026-11-21T16:05Z is not on a 15-minute"),
    (["limits", "--from", "2026-11-21T16:00", "--slots", "1"], "has no offset"),
    (["limits", "--from", "2026-11-21T16:00Z", "--slots", "193"], "--slots: 193 slots: allowed 1 … 192"),
    (["limits", "--from", "2026-11-21T16:00Z", "--slots", "1", "--fee", "0.0000001"], "--fee: 0.0000001 per kWh"),
    (["limits", "--from", "2026-11-21T16:00Z", "--slots", "1", "--import-limit-kw", "20000"],
     "--import-limit-kw: 20000 kW is out of range: allowed [0, 10000] kW"),
    (["limits", "--from", "2026-11-21T16:00Z", "--slots", "1", "--export-limit-kw", "0.0005"],
     "is not a whole number of W"),
    (["limits", "--from", "2026-11-21T16:00Z", "--slots", "1", "--slot-minutes", "0"],
     "--slot-minutes: 0-minute slots: allowed 1 … 1440 minutes"),
    (["request", "--from", "2026-11-21T16:00Z", "--slots", "1", "--slot-minutes", "2000", "--delta-kw", "1",
      "--price", "0.1"], "--slot-minutes: 2000-minute slots"),
    (["limits", "--from", "2026-11-21T16:00Z", "--slots", "1", "--wait", "-1"], "--wait -1: allowed >= 0 seconds"),
    (["limits", "--file", "x.toml", "--slots", "2", "--fee", "0.1"], "--file and --slots, --fee exclude each other"),
    (["limits", "--slots", "2"], "give --file LIMITS.toml, or --from ISO and --slots N"),
    (["request", "--from", "2026-11-21T16:00Z", "--slots", "4", "--delta-kw", "0", "--price", "0.2"],
     "--delta-kw: 0 kW asks for nothing"),
    (["request", "--from", "2026-11-21T16:00Z", "--slots", "4", "--delta-kw", "-20", "--price", "-0.2"],
     "--price: -0.2 per kWh is out of range: allowed [0, 100]"),
    (["request", "--from", "2026-11-21T16:00Z", "--slots", "4", "--delta-kw", "-20", "--price", "abc"],
     "--price: 'abc' is not a number"),
    (["request", "--from", "2026-11-21T16:00Z", "--slots", "4", "--delta-kw", "-20", "--price", "0.2",
      "--id", "a/b"], "--id 'a/b': use 1-64 letters"),
])
async def test_bad_options_are_refused_with_exit_2_naming_the_option(capsys, arguments, message):
    code, out, err = await hems(capsys, *grid(arguments[0], NOWHERE, *arguments[1:]))
    assert code == 2 and out == ""
    assert message in err


@pytest.mark.parametrize("broker, community, message", [
    ("http://127.0.0.1", COMMUNITY, "--broker: the scheme must be mqtt:// or mqtts://"),
    ("mqtt://127.0.0.1:1", "a/b", "--community: community id 'a/b'"),
])
async def test_bad_broker_or_community(capsys, broker, community, message):
    code, _, err = await hems(capsys, "grid", "offers", "--broker", broker, "--community", community)
    assert code == 2 and message in err


async def test_an_unreachable_broker_exits_1(capsys):
    code, out, err = await hems(capsys, *grid("offers", f"mqtt://127.0.0.1:{free_tcp_port()}", "--connect-timeout",
                                              "1"))
    assert code == 1 and out == ""
    assert "no CONNACK" in err


# -- request --------------------------------------------------------------------------------------

async def test_a_request_reaches_the_manager_and_prints_dispatched_then_settled(capsys, mosquitto_broker, manager):
    manager.answer_request = lambda message: [
        response(message, RequestState.DISPATCHED),
        response(message, RequestState.SETTLED, delivered=True, revenue_nano=1_150_000_000, penalty_nano=0)]
    code, out, err = await hems(capsys, *grid("request", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "4", "--delta-kw", "-20", "--price", "0.25", "--penalty",
                                              "0.1", "--id", "peak-1", "--wait", "10"))
    assert code == 0, err
    (request,) = manager.requests
    call = request.payload
    assert (call.request_id, call.price_micro, call.penalty_micro) == ("peak-1", 250_000, 100_000)
    assert [(slot.slot_start.minute, slot.duration_s, slot.delta_w) for slot in call.slots] == [
        (0, 900, -20_000), (15, 900, -20_000), (30, 900, -20_000), (45, 900, -20_000)]
    assert request.sender == "grid-operator" and request.envelope.correlation_id is None
    assert out.index("DISPATCHED peak-1") < out.index("SETTLED peak-1")
    assert "total" in out and "-20000" in out and "-19600" in out and "-18800" in out
    assert "revenue 1.15, penalty 0.00" in out


async def test_request_answers_as_json_lines(capsys, mosquitto_broker, manager):
    manager.answer_request = lambda message: [
        response(message, RequestState.DISPATCHED),
        response(message, RequestState.SETTLED, delivered=True, revenue_nano=1_150_000_000, penalty_nano=7)]
    code, out, err = await hems(capsys, *grid("request", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "2", "--delta-kw", "12.5", "--price", "0.3", "--json"))
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["state"] for line in lines] == ["DISPATCHED", "SETTLED"]
    assert {line["correlation_id"] for line in lines} == {str(manager.requests[0].message_id)}
    assert lines[1]["revenue_nano"] == 1_150_000_000 and lines[1]["penalty_nano"] == 7
    assert lines[1]["slots"][0]["delivered_wh"] == 12_500 // 4 + 300
    assert manager.requests[0].payload.request_id.startswith("req-")  # a fresh id when none is given
    assert "request req-" in err


async def test_a_refused_request_exits_2(capsys, mosquitto_broker, manager):
    manager.answer_request = lambda message: [FlexibilityResponse(
        request_id=message.payload.request_id, state=RequestState.REFUSED, reason="no flexibility left")]
    code, out, err = await hems(capsys, *grid("request", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "4", "--delta-kw", "-20", "--price", "0.25", "--id", "r1"))
    assert code == 2, err
    assert "REFUSED r1" in out and "no flexibility left" in out


async def test_dispatched_alone_exits_0_once_the_wait_is_over(capsys, mosquitto_broker, manager):
    manager.answer_request = lambda message: [response(message, RequestState.DISPATCHED)]
    started = asyncio.get_running_loop().time()
    code, out, err = await hems(capsys, *grid("request", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "1", "--delta-kw", "5", "--price", "0.1", "--wait", "1.5"))
    assert code == 0, err
    assert out.count("DISPATCHED") == 1
    assert asyncio.get_running_loop().time() - started >= 1.5  # it waited for a SETTLED that did not come


async def test_answers_to_other_requests_and_invalid_answers_are_ignored(capsys, mosquitto_broker, manager):
    async def answer_wrongly(message) -> None:
        other = FlexibilityResponse(request_id=message.payload.request_id, state=RequestState.REFUSED)
        await manager.publish(GridTopic.RESPONSE, other, correlation_id=uuid.uuid4())
        await manager.publish(GridTopic.RESPONSE, other)  # no correlation at all
        assert await manager.link.publish(manager.topics.grid(GridTopic.RESPONSE), b'{"not": "a message"}')

    manager.answer_request = lambda message: (asyncio.ensure_future(answer_wrongly(message)), [])[1]
    code, out, err = await hems(capsys, *grid("request", mosquitto_broker.url, "--from", "2026-11-21T16:00Z",
                                              "--slots", "1", "--delta-kw", "5", "--price", "0.1", "--id", "lonely",
                                              "--wait", "1"))
    assert code == 3
    assert "REFUSED" not in out
    assert "no response to lonely within 1 s" in err


# -- offers ---------------------------------------------------------------------------------------

async def test_offers_prints_the_retained_offers(capsys, mosquitto_broker, manager):
    offers = FlexibilityOffers(offers=[
        OfferItem(slot_start=SLOT_1, duration_s=900, direction=OfferDirection.DOWN, energy_wh=2500, power_w=10_000,
                  price_micro=55_000),
        OfferItem(slot_start=SLOT_1, duration_s=900, direction=OfferDirection.UP, energy_wh=1000, power_w=4000,
                  price_micro=120_500)])
    await manager.publish(GridTopic.OFFERS, offers, retain=True)
    code, out, err = await hems(capsys, *grid("offers", mosquitto_broker.url))
    assert code == 0, err
    assert "offers from manager" in out and ": 2" in out
    down = next(line for line in out.splitlines() if "down" in line).split()
    assert down[-3:] == ["2500", "10", "0.055"]
    code, out, err = await hems(capsys, *grid("offers", mosquitto_broker.url, "--json"))
    assert code == 0, err
    document = json.loads(out)
    assert document["offers"][1] == {"slot_start": "2026-11-21T16:00:00Z", "duration_s": 900, "direction": "up",
                                          "energy_wh": 1000, "power_w": 4000, "price_micro": 120_500}


async def test_no_offers_exits_3(capsys, mosquitto_broker):
    code, out, err = await hems(capsys, *grid("offers", mosquitto_broker.url, "--wait", "0.5"))
    assert code == 3 and out == ""
    assert f"none retained on hems/v1/{COMMUNITY}/grid/offers" in err
