"""The codec as a receiver meets it: every payload type round-trips, every way a message can be wrong
becomes a ProtocolError with the right reception status and a label naming the problem, and no input
at all (random bytes, random JSON, mutated valid messages) makes decode() raise anything else."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems.protocol.codec import MAX_MESSAGE_BYTES, Message, ProtocolError, decode, encode
from hems.protocol.docs import example_payloads
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.payloads import PAYLOAD_TYPES
from hems.protocol.messages import (
    MAX_ENERGY_WH,
    MAX_PRICE_MICRO,
    Ack,
    Allocation,
    Curve,
    Donation,
    EnergyClass,
    HomeStatus,
    MarketConfig,
    MeterReport,
    NegotiationAnswer,
    NegotiationSignal,
    Order,
    OrderStatus,
    OrderSubmission,
    Payload,
    Provenance,
    Side,
    SlotBid,
    SlotResult,
    SlotState,
)

SENT_AT = datetime(2026, 11, 21, 10, 2, 5, tzinfo=timezone.utc)
MESSAGE_ID = UUID("12345678-1234-4234-8234-123456789abc")
EXAMPLES = example_payloads()
ALL_TYPES = tuple(PAYLOAD_TYPES.values())
#: What each receiver accepts: one type per topic, the manager's home topics, everything.
ACCEPTED_SETS = [(model,) for model in ALL_TYPES] + [(OrderSubmission, MeterReport), ALL_TYPES]
INVALID_MESSAGE, INVALID_DATA = ReceptionStatus.INVALID_MESSAGE, ReceptionStatus.INVALID_DATA
LABEL_LIMIT = 500  # Ack.diagnostic_label's max_length: a label must fit into the ack that carries it


def _variants() -> list[Payload]:
    """Payloads beyond the documented examples: optional fields unset, the other branches set."""
    slot = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)
    green_buy = Order(order_id=UUID(int=1, version=4), side=Side.BUY, energy_wh=500, limit_price_micro=250_000,
                      green_premium_micro=20_000, partners=["home-02", "home-03"])
    green_sell = Order(order_id=UUID(int=2, version=4), side=Side.SELL, energy_wh=400, limit_price_micro=90_000,
                       energy_class=EnergyClass.GREEN_LOCAL)
    gift = Donation(donation_id=UUID(int=3, version=4), recipients=["home-07"], energy_wh=300)
    return [
        OrderSubmission(sequence=7, slots=[
            SlotBid(slot_start=slot, duration_s=900, orders=[green_buy, green_sell], donations=[gift]),
            SlotBid(slot_start=slot + timedelta(minutes=15), duration_s=900, curve=Curve(
                prices_micro=[80_000, 300_000], net_import_wh=[200, -600], energy_class=EnergyClass.LOCAL,
                green_premium_micro=5_000))]),
        Allocation(slot_start=slot, duration_s=900, mechanism="differentiated", bought_wh=500, sold_wh=400,
                   buy_price_micro=210_000, paid_nano=500 * 210_000, received_nano=300 * 110_000, fees_nano=0,
                   provenance=Provenance(green_local_wh=300, grid_wh=200, given_wh=100, sold_green_local_wh=300,
                                         premium_paid_nano=300 * 20_000, premium_received_nano=300 * 20_000)),
        Ack(status=ReceptionStatus.INVALID_DATA, diagnostic_label="slots.0.duration_s: too small"),
        Allocation(slot_start=slot, duration_s=900, mechanism="supply_demand_ratio", bought_wh=0, sold_wh=700,
                   sell_price_micro=164_384, paid_nano=0, received_nano=700 * 164_384, fees_nano=0),
        SlotResult(slot_start=slot, duration_s=900, state=SlotState.SETTLED, mechanism="mid_market_rate",
                   config_version=1, price_rule_k="1", buy_price_micro=267_000, sell_price_micro=190_000,
                   traded_wh=0, grid_import_wh=7000, grid_export_wh=0, homes=3, non_responders=0,
                   book_hash="0" * 64, rounding_nano=-3, ledger_head="f" * 64),
        OrderSubmission(sequence=0, slots=[SlotBid(slot_start=slot, duration_s=900)]),
        HomeStatus(state="offline"),
    ]


def wire(payload: Payload, **envelope: Any) -> bytes:
    return encode(payload, sender=envelope.pop("sender", "home-01"), sent_at=envelope.pop("sent_at", SENT_AT),
                  message_id=envelope.pop("message_id", MESSAGE_ID), **envelope)


def document(kind: str) -> dict[str, Any]:
    """The documented example of ``kind`` as a mutable JSON document."""
    return json.loads(wire(EXAMPLES[kind]))


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def rejected(data: bytes, accepted: tuple[type[Payload], ...], status: ReceptionStatus, *words: str) -> ProtocolError:
    """decode() must refuse ``data`` with ``status`` and a label containing every one of ``words``."""
    with pytest.raises(ProtocolError) as caught:
        decode(data, accepted)
    error = caught.value
    assert error.status is status, error.label
    for word in words:
        assert word.lower() in error.label.lower(), error.label
    assert 0 < len(error.label) <= LABEL_LIMIT
    return error


# -- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [*EXAMPLES.values(), *_variants()], ids=lambda p: type(p).__name__)
def test_every_payload_type_round_trips(payload):
    correlation = UUID("00000000-0000-4000-8000-0000000000aa")
    message = decode(wire(payload, correlation_id=correlation, sender="manager"), (type(payload),))
    assert message.payload == payload
    assert (message.message_id, message.sender, message.envelope.sent_at) == (MESSAGE_ID, "manager", SENT_AT)
    assert message.envelope.correlation_id == correlation
    assert message.envelope.message_type == payload.MESSAGE_TYPE


def test_every_message_type_has_an_example():
    assert set(EXAMPLES) == set(PAYLOAD_TYPES)


def test_null_fields_are_left_out_on_the_wire():
    body = json.loads(wire(HomeStatus(state="online")))
    assert "correlation_id" not in body
    assert b"null" not in wire(EXAMPLES["allocation"])


orders_strategy = st.lists(st.builds(
    Order, order_id=st.uuids(), side=st.sampled_from(Side), energy_wh=st.integers(1, MAX_ENERGY_WH),
    limit_price_micro=st.integers(0, MAX_PRICE_MICRO)), max_size=5, unique_by=lambda order: order.order_id)


@given(orders=orders_strategy, sequence=st.integers(0, 2**63), minutes=st.integers(0, 10**6))
def test_any_valid_submission_round_trips_exactly(orders, sequence, minutes):
    slot = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=15 * minutes)
    submission = OrderSubmission(sequence=sequence, slots=[SlotBid(slot_start=slot, duration_s=900, orders=orders)])
    assert decode(wire(submission), (OrderSubmission,)).payload == submission


# -- refusals: not a message ------------------------------------------------------------------------

def test_a_message_of_exactly_the_limit_is_read_and_one_byte_more_is_not():
    data = wire(EXAMPLES["meter"])
    padded = data + b" " * (MAX_MESSAGE_BYTES - len(data))
    assert decode(padded, (MeterReport,)).payload == EXAMPLES["meter"]
    rejected(padded + b" ", (MeterReport,), INVALID_MESSAGE, "exceeds", str(MAX_MESSAGE_BYTES))


def test_not_utf8():
    rejected(wire(EXAMPLES["meter"]).replace(b"home-01", b"home-\xff1"), (MeterReport,), INVALID_MESSAGE, "utf-8")


@pytest.mark.parametrize("data", [b"", b"{", b"{not json}", b"\x00\x01", b'{"a": 1,}'])
def test_not_json(data):
    rejected(data, ALL_TYPES, INVALID_MESSAGE, "JSON")


@pytest.mark.parametrize("data", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_json_but_not_an_object(data):
    rejected(data, ALL_TYPES, INVALID_MESSAGE, "envelope", "object")


@pytest.mark.parametrize("key", ["message_id", "message_type", "schema_version", "sent_at", "sender", "payload"])
def test_missing_envelope_key(key):
    doc = document("meter")
    del doc[key]
    rejected(raw(doc), (MeterReport,), INVALID_MESSAGE, key, "required")


def test_the_message_id_is_reported_when_the_envelope_is_broken_but_the_id_is_readable():
    doc = document("meter")
    del doc["sent_at"]
    assert rejected(raw(doc), (MeterReport,), INVALID_MESSAGE, "sent_at").message_id == MESSAGE_ID


def test_unknown_message_type():
    doc = document("meter")
    doc["message_type"] = "gossip"
    error = rejected(raw(doc), (MeterReport,), INVALID_MESSAGE, "'gossip'", "unknown", "meter")
    assert (error.message_id, error.message_type) == (MESSAGE_ID, "gossip")


def test_a_type_the_topic_does_not_accept():
    rejected(wire(EXAMPLES["meter"]), (OrderSubmission,), INVALID_MESSAGE, "'meter'", "not accepted", "orders")


@pytest.mark.parametrize("version", [2, 99])
def test_unsupported_schema_version(version):
    doc = document("orders")
    doc["schema_version"] = version
    rejected(raw(doc), (OrderSubmission,), INVALID_MESSAGE, f"schema_version {version}", "speaks 1")


@pytest.mark.parametrize("version", [0, 1.0, "1", None])
def test_malformed_schema_version(version):
    doc = document("orders")
    doc["schema_version"] = version
    rejected(raw(doc), (OrderSubmission,), INVALID_MESSAGE, "schema_version")


@pytest.mark.parametrize("key", ["message_id", "correlation_id"])
def test_ids_must_be_uuids(key):
    doc = document("ack")
    doc[key] = "not-a-uuid"
    rejected(raw(doc), (Ack,), INVALID_MESSAGE, key)


def test_extra_envelope_key():
    doc = document("meter")
    doc["priority"] = "high"
    rejected(raw(doc), (MeterReport,), INVALID_MESSAGE, "priority", "extra")


# -- refusals: the payload --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1.0, "1", 1.5, True, None, [1]])
def test_energy_must_be_an_integer(value):
    doc = document("orders")
    doc["payload"]["slots"][0]["orders"][0]["energy_wh"] = value
    rejected(raw(doc), (OrderSubmission,), INVALID_DATA, "slots.0.orders.0.energy_wh")


@pytest.mark.parametrize(("key", "value"), [("import_wh", 1.0), ("import_wh", "1"), ("export_wh", 2.5e3),
                                            ("duration_s", "900")])
def test_meter_quantities_must_be_integers(key, value):
    doc = document("meter")
    doc["payload"][key] = value
    rejected(raw(doc), (MeterReport,), INVALID_DATA, key)


@pytest.mark.parametrize(("key", "value"), [("import_wh", -1), ("import_wh", MAX_ENERGY_WH + 1),
                                            ("duration_s", 59), ("export_wh", 10**30)])
def test_meter_quantities_out_of_range(key, value):
    doc = document("meter")
    doc["payload"][key] = value
    rejected(raw(doc), (MeterReport,), INVALID_DATA, key)


@pytest.mark.parametrize("stamp", ["2026-11-21T10:02:05", "2026-11-21T11:02:05+01:00", "2026-11-21",
                                   "yesterday", 1763719325])
def test_sent_at_must_be_utc_with_an_offset(stamp):
    doc = document("meter")
    doc["sent_at"] = stamp
    rejected(raw(doc), (MeterReport,), INVALID_MESSAGE, "sent_at")


@pytest.mark.parametrize("stamp", ["2026-11-21T10:15:00", "2026-11-21T05:15:00-05:00"])
def test_slot_start_must_be_utc_with_an_offset(stamp):
    doc = document("meter")
    doc["payload"]["slot_start"] = stamp
    rejected(raw(doc), (MeterReport,), INVALID_DATA, "slot_start", "UTC")


def test_an_explicit_zero_offset_is_utc():
    doc = document("meter")
    doc["sent_at"] = "2026-11-21T10:02:05+00:00"
    doc["payload"]["slot_start"] = "2026-11-21T10:15:00.000+00:00"
    message = decode(raw(doc), (MeterReport,))
    assert message.envelope.sent_at == SENT_AT
    assert message.payload.slot_start == EXAMPLES["meter"].slot_start


@pytest.mark.parametrize(("prices", "quantities", "words"), [
    ([80_000, 135_000, 190_000, 245_000, 300_000], [600, 400, 500, -300, -800], ("non-increasing",)),
    ([80_000, 80_000, 190_000, 245_000, 300_000], [600, 400, 0, -300, -800], ("prices_micro", "ascending")),
    ([80_000, 135_000, 190_000], [600, 400, 0, -300], ("same length",)),
])
def test_malformed_curves(prices, quantities, words):
    doc = document("orders")
    doc["payload"]["slots"][1]["curve"] = {"prices_micro": prices, "net_import_wh": quantities}
    rejected(raw(doc), (OrderSubmission,), INVALID_DATA, "slots.1.curve", *words)


def test_orders_and_a_curve_in_one_slot():
    doc = document("orders")
    doc["payload"]["slots"][1]["orders"] = doc["payload"]["slots"][0]["orders"]
    rejected(raw(doc), (OrderSubmission,), INVALID_DATA, "slots.1", "not both")


def test_duplicate_order_ids():
    doc = document("orders")
    orders = doc["payload"]["slots"][0]["orders"]
    orders[1]["order_id"] = orders[0]["order_id"]
    rejected(raw(doc), (OrderSubmission,), INVALID_DATA, "slots.0", "order_id", "unique")


def test_duplicate_slots():
    doc = document("orders")
    doc["payload"]["slots"][1]["slot_start"] = doc["payload"]["slots"][0]["slot_start"]
    rejected(raw(doc), (OrderSubmission,), INVALID_DATA, "slot_start", "once")


def test_the_same_slot_written_with_another_zero_offset_is_still_a_duplicate():
    doc = document("orders")
    doc["payload"]["slots"][1]["slot_start"] = doc["payload"]["slots"][0]["slot_start"].replace("Z", "+00:00")
    rejected(raw(doc), (OrderSubmission,), INVALID_DATA, "once")


@pytest.mark.parametrize(("k", "words"), [("1.5", ("[0, 1]",)), ("-0.1", ("[0, 1]",)), ("NaN", ("[0, 1]",)),
                                          ("Infinity", ("[0, 1]",)), ("half", ("decimal",)), (0.5, ("string",))])
def test_price_rule_k_outside_the_unit_interval(k, words):
    doc = document("market_config")
    doc["payload"]["price_rule_k"] = k
    rejected(raw(doc), (MarketConfig,), INVALID_DATA, "price_rule_k", *words)


@pytest.mark.parametrize("k", ["0", "1", "0.25", "1.000"])
def test_price_rule_k_inside_the_unit_interval(k):
    doc = document("market_config")
    doc["payload"]["price_rule_k"] = k
    assert decode(raw(doc), (MarketConfig,)).payload.price_rule_k == k


@pytest.mark.parametrize("feed_in", [300_000, 300_001])
def test_feed_in_at_or_above_retail(feed_in):
    doc = document("market_config")
    doc["payload"]["feed_in_price_micro"] = feed_in
    rejected(raw(doc), (MarketConfig,), INVALID_DATA, "feed_in_price_micro must be below")


def test_a_price_grid_that_does_not_span_feed_in_to_retail():
    doc = document("market_config")
    doc["payload"]["price_grid_micro"] = [80_000, 190_000, 290_000]
    rejected(raw(doc), (MarketConfig,), INVALID_DATA, "price_grid_micro", "retail")


@pytest.mark.parametrize(("path", "key"), [((), "note"), (("slots", 0), "comment"),
                                           (("slots", 0, "orders", 0), "good_till")])
def test_extra_payload_keys(path, key):
    doc = document("orders")
    target = doc["payload"]
    for step in path:
        target = target[step]
    target[key] = 1
    rejected(raw(doc), (OrderSubmission,), INVALID_DATA, key, "extra")


def test_the_label_lists_at_most_three_problems():
    doc = document("market_config")
    for key in ("horizon_slots", "slot_duration_s", "gate_closure_lead_s", "meter_deadline_s", "config_version"):
        doc["payload"][key] = -5
    assert rejected(raw(doc), (MarketConfig,), INVALID_DATA, "and 2 more").label.count(":") == 3


def test_an_ack_status_outside_the_reception_statuses():
    doc = document("ack")
    doc["payload"]["status"] = "MAYBE"
    rejected(raw(doc), (Ack,), INVALID_DATA, "status")


def test_a_slot_ack_may_only_accept_or_reject():
    doc = document("ack")
    doc["payload"]["slots"][0]["status"] = OrderStatus.FILLED.value
    rejected(raw(doc), (Ack,), INVALID_DATA, "slots.0.status")


# -- inputs a fuzzer found worth pinning ------------------------------------------------------------

def test_an_integer_with_more_digits_than_python_parses_is_an_invalid_message():
    """json.loads raises a plain ValueError (not JSONDecodeError) past sys.get_int_max_str_digits()."""
    doc = document("meter")
    data = raw(doc).replace(b'"import_wh": 1250', b'"import_wh": 1' + b"0" * 5000)
    rejected(data, (MeterReport,), INVALID_MESSAGE)


@pytest.mark.parametrize("where", ["envelope", "payload"])
def test_a_long_unknown_key_does_not_make_a_label_longer_than_an_ack_carries(where):
    doc = document("meter")
    (doc if where == "envelope" else doc["payload"])["k" * 3000] = 1
    with pytest.raises(ProtocolError) as caught:
        decode(raw(doc), (MeterReport,))
    assert 0 < len(caught.value.label) <= LABEL_LIMIT


def test_a_lone_surrogate_escape_is_refused():
    rejected(raw(document("home_status")).replace(b'"online"', b'"\\ud800"'), (HomeStatus,), INVALID_MESSAGE)


def test_an_utf16_message_is_refused():
    rejected(wire(EXAMPLES["meter"]).decode().encode("utf-16"), (MeterReport,), INVALID_MESSAGE)


# -- fuzzing ------------------------------------------------------------------------------------------

def decode_everywhere(data: bytes) -> list[Message]:
    """decode() with every accepted set: a Message, or a ProtocolError fit for an ack; nothing else."""
    decoded = []
    for accepted in ACCEPTED_SETS:
        try:
            message = decode(data, accepted)
        except ProtocolError as error:
            assert isinstance(error.status, ReceptionStatus) and error.status is not ReceptionStatus.OK
            assert 0 < len(error.label) <= LABEL_LIMIT, error.label
        else:
            assert isinstance(message.payload, accepted)
            decoded.append(message)
    return decoded


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
keys = st.text(max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data):
    decode_everywhere(data)


@FUZZ
@given(json_values)
def test_arbitrary_json(document_value):
    assert decode_everywhere(json.dumps(document_value).encode()) == []


@FUZZ
@given(message_type=st.sampled_from(sorted(PAYLOAD_TYPES)), payload=st.dictionaries(keys, json_values, max_size=6),
       message_id=st.uuids(), version=st.sampled_from([1, 1, 2, 0, -1]))
def test_arbitrary_payloads_in_a_valid_envelope(message_type, payload, message_id, version):
    envelope = {"message_id": str(message_id), "message_type": message_type, "schema_version": version,
                "sent_at": "2026-11-21T10:02:05Z", "sender": "home-01", "payload": payload}
    decode_everywhere(json.dumps(envelope).encode())


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


REPLACEMENTS = [None, True, "", "x", "1", 1, 0, -1, 1.0, 0.5, 10**30, -(10**30), 2**63, [], {}, [1], {"a": 1},
                "2026-11-21T10:15:00", "NaN"]
OPERATIONS = ["drop", "replace", "negate", "huge", "float", "stringify", "duplicate", "extra"]
SAMPLES = [json.loads(wire(payload)) for payload in [*EXAMPLES.values(), *_variants()]]


def mutate(doc: Any, path: tuple, operation: str, replacement: Any) -> Any:
    """``doc`` with one change at ``path`` (a deep copy; the samples stay valid)."""
    doc = copy.deepcopy(doc)
    if not path:
        return replacement
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    key, value = path[-1], parent[path[-1]]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if operation == "drop":
        del parent[key]
    elif operation == "negate" and is_int:
        parent[key] = -value
    elif operation == "huge" and is_int:
        parent[key] = value + 10**20 if value >= 0 else value - 10**20
    elif operation == "float" and is_int:
        parent[key] = float(value)
    elif operation == "stringify":
        parent[key] = value if isinstance(value, (dict, list)) else str(value)
    elif operation == "duplicate" and isinstance(value, list) and value:
        value.append(copy.deepcopy(value[0]))
    elif operation == "extra" and isinstance(value, dict):
        value["unexpected"] = 1
    else:
        parent[key] = replacement
    return doc


@FUZZ
@given(data=st.data(), operations=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=3))
def test_mutated_valid_messages(data, operations):
    doc = data.draw(st.sampled_from(SAMPLES))
    for operation in operations:
        path = data.draw(st.sampled_from(_paths(doc)))
        doc = mutate(doc, path, operation, data.draw(st.sampled_from(REPLACEMENTS)))
    for message in decode_everywhere(json.dumps(doc).encode()):
        # Whatever was accepted is a valid payload that encodes and decodes to itself.
        again = decode(wire(message.payload), (type(message.payload),))
        assert again.payload == message.payload


def test_negotiation_signal_needs_one_mean_and_one_price_per_slot():
    doc = document("negotiation_signal")
    doc["payload"]["price_micro"] = [131_500]
    rejected(raw(doc), (NegotiationSignal,), ReceptionStatus.INVALID_DATA, "one value per slot")


def test_negotiation_prices_may_be_negative_between_rounds_but_energy_stays_bounded():
    doc = document("negotiation_signal")
    doc["payload"]["price_micro"] = [-40_000, 80_400]
    message = decode(raw(doc), (NegotiationSignal,))
    assert message.payload.price_micro == [-40_000, 80_400]
    answer = document("negotiation_answer")
    answer["payload"]["net_import_wh"] = [10_000_001]
    rejected(raw(answer), (NegotiationAnswer,), ReceptionStatus.INVALID_DATA, "net_import_wh")


@pytest.mark.parametrize(("change", "words"), [
    (lambda order: order.update(energy_class="grid"), ("never grid",)),
    (lambda order: order.update(green_premium_micro=20_000), ("sell order", "premiums")),
    (lambda order: order.update(side="buy"), ("buy order", "energy_class")),
])
def test_an_order_states_the_preferences_of_its_side(change, words):
    doc = json.loads(wire(_variants()[0]))
    change(doc["payload"]["slots"][0]["orders"][1])  # the green sell
    rejected(raw(doc), (OrderSubmission,), ReceptionStatus.INVALID_DATA, *words)


@pytest.mark.parametrize(("change", "words"), [
    (lambda bid: bid["orders"][0].pop("green_premium_micro"), ("partners", "green_premium_micro > 0")),
    (lambda bid: bid["orders"][0].update(partners=["home-02", "home-02"]), ("partners", "distinct")),
    (lambda bid: bid["donations"][0].update(recipients=["home-07", "home-07"]), ("recipients", "distinct")),
    (lambda bid: bid["donations"].append(dict(bid["donations"][0])), ("donation_id", "unique")),
    (lambda bid: bid.update(orders=[]), ("donations", "gives nothing")),
    (lambda bid: bid["donations"][0].update(energy_wh=0), ("energy_wh",)),
])
def test_partners_and_donations_are_checked(change, words):
    doc = json.loads(wire(_variants()[0]))
    change(doc["payload"]["slots"][0])
    rejected(raw(doc), (OrderSubmission,), ReceptionStatus.INVALID_DATA, *words)
