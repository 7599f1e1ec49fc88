"""Generate docs/protocol.md from the protocol models: ``python -m hems.protocol.docs > docs/protocol.md``.

Types, constraints, defaults and schemas come from the pydantic models (their JSON Schema), topics from
:class:`~hems.protocol.topics.Topics`, examples from :func:`~hems.protocol.codec.encode`. What the models
cannot say (a field's meaning, cross-field rules, routing) is in the notes below; generation fails when
a field, enum value or message type has no note or a note names nothing, so the page cannot drift from
the code (tests/protocol/test_protocol_docs.py compares it with the committed file).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from hems.protocol import codec, messages, power_plant_docs, units
from hems.protocol.envelope import Envelope, ReceptionStatus
from hems.protocol.messages import OrderStatus, Payload
from hems.protocol.payloads import PAYLOAD_TYPES
from hems.protocol.topics import GridTopic, HomeTopic, Topics, slot_token

#: Unit of a field by the suffix of its name (see hems.protocol.units).
UNIT_SUFFIXES = (("_wh", "Wh"), ("_micro", "µ¤/kWh"), ("_nano", "n¤"), ("_s", "s"))

_PLACEHOLDER_COMMUNITY, _PLACEHOLDER_HOME = "COMMUNITYX", "HOMEX"


class DocsError(RuntimeError):
    """The notes and the models disagree: the page would be incomplete or stale."""


FIXED_MESSAGE_ID = UUID("00000000-0000-4000-8000-000000000001")  # the examples' message_id
REPLIED_MESSAGE_ID = UUID("00000000-0000-4000-8000-000000000002")  # the example ack's correlation_id
SENT_AT = datetime(2026, 11, 21, 10, 2, 5, tzinfo=timezone.utc)
SLOT_1 = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)
SLOT_2 = datetime(2026, 11, 21, 10, 30, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Route:
    """Where a message type travels (keys of :func:`topic_templates`)."""

    topic: str
    direction: str
    retained: bool
    example_sender: str
    reply: bool = False  # carries the answered message's id in correlation_id


ROUTES = {
    "market_config": Route("market/config", "CM → all", True, "manager"),
    "orders": Route("home/<home>/orders", "home → CM", False, "home-01"),
    "ack": Route("home/<home>/ack", "CM → home", False, "manager", reply=True),
    "allocation": Route("home/<home>/allocation", "CM → home (private)", False, "manager"),
    "meter": Route("home/<home>/meter", "home → CM", False, "home-01"),
    "slot_result": Route("market/slot/<start>/result", "CM → all", True, "manager"),
    "home_status": Route("home/<home>/status", "home → all (last will: offline)", True, "home-01"),
    "negotiation_signal": Route("market/signal", "CM → all", False, "manager"),
    "negotiation_answer": Route("home/<home>/negotiation", "home → CM", False, "home-01"),
    **{kind: Route(*route) for kind, route in power_plant_docs.ROUTES.items()},
}


def _notes(text: str) -> dict[str, str]:
    """``Owner.field: description`` lines -> a dict."""
    pairs = (line.split(": ", 1) for line in text.strip().splitlines())
    return {key.strip(): value.strip() for key, value in pairs}


FIELD_NOTES = _notes("""
Envelope.message_id: Unique per message; receivers process a repeated id once (QoS 1 delivers at least once).
Envelope.message_type: Which payload follows (see the message types).
Envelope.schema_version: The version of that payload's schema.
Envelope.sent_at: When the sender sent the message.
Envelope.sender: The publishing home's id, or the manager's.
Envelope.correlation_id: On replies: the message_id of the message answered.
Envelope.payload: The payload object of message_type.
MarketConfig.community: The community id: the `<community>` of every topic.
MarketConfig.config_version: Increases with every change of the configuration; echoed in slot results.
MarketConfig.mechanism: The clearing mechanism, e.g. `bid_curve`, `uniform_auction`, `supply_demand_ratio`.
MarketConfig.bid_format: What the homes submit before gate closure.
MarketConfig.slot_duration_s: The length of every slot; slots start at multiples of it (UTC epoch seconds).
MarketConfig.gate_closure_lead_s: The gate of the slot starting at s closes at s − gate_closure_lead_s.
MarketConfig.horizon_slots: Bids are taken for this many slots whose gate is still open.
MarketConfig.retail_price_micro: λ⁺: the retailer sells to the community at this price.
MarketConfig.feed_in_price_micro: λ⁻: the retailer buys from the community at this price.
MarketConfig.network_fee_micro: Per kWh traded home-to-home, paid by the buyer on top of the price.
MarketConfig.community_fee_micro: Per kWh traded home-to-home, paid by the buyer on top of the price.
MarketConfig.price_rule_k: Price rule p* = k·bid + (1 − k)·ask, a decimal string in [0, 1].
MarketConfig.price_grid_micro: The prices at which homes state their curves, feed-in … retail.
MarketConfig.imbalance_import_price_micro: Metered import beyond the allocation is charged at this price.
MarketConfig.imbalance_export_price_micro: Metered export beyond the allocation is credited at this price.
MarketConfig.meter_deadline_s: Meter reports are awaited this long after a slot ends; then it settles provisionally.
Order.order_id: Chosen by the home; unique within the slot.
Order.side: Buy or sell.
Order.energy_wh: The most energy to trade.
Order.limit_price_micro: The highest price a buyer pays, the lowest a seller takes (energy only, before fees).
Order.energy_class: A sell's energy class (`local` when absent); read by the `differentiated` mechanism.
Order.green_premium_micro: A buy's premium per kWh for green-local energy, on top of the price (`differentiated`).
Order.partners: With a premium: only these homes' green-local energy earns it (any home when absent).
Curve.prices_micro: The published price grid (price_grid_micro of the market config).
Curve.net_import_wh: What the home would buy (+) or sell (−) at each price.
Curve.energy_class: The class of what the curve sells (`local` when absent); read by `differentiated`.
Curve.green_premium_micro: The premium per kWh the curve's purchases pay for green-local energy.
Curve.partners: With a premium: only these homes' green-local energy earns it (any home when absent).
Donation.donation_id: Chosen by the home; unique within the slot.
Donation.recipients: The member homes the energy may go to, and no one else.
Donation.energy_wh: At most this much of the slot's sells is given.
Donation.price_micro: What the recipients pay per kWh (0: free); never above retail.
SlotBid.slot_start: The slot's start.
SlotBid.duration_s: The slot's length: the market's slot_duration_s.
SlotBid.orders: Limit orders (bid_format `orders`); empty together with no curve: cancel.
SlotBid.curve: A net-import curve (bid_format `curve`).
SlotBid.donations: Energy given to designated households from this slot's sells (`differentiated` only).
OrderSubmission.sequence: The home's submission number, increasing; echoed in its allocations.
OrderSubmission.slots: One bid per slot; slots not listed keep their earlier bid.
SlotAck.slot_start: The slot this line is about.
SlotAck.status: Whether the slot's bid was taken.
SlotAck.reason: Why not, e.g. `gate closed`.
Ack.status: How the message was taken.
Ack.diagnostic_label: Why, when it was not OK (which key, which rule).
Ack.acked_message_type: The message_type of the acked message, when its envelope could be read.
Ack.slots: For an `orders` message: the status of each slot.
OrderOutcome.order_id: The order's id from the submission.
OrderOutcome.status: The order's final status.
OrderOutcome.filled_wh: How much of it was traded.
OrderOutcome.price_micro: The energy price of the fill (before fees), when filled.
Allocation.slot_start: The slot's start.
Allocation.duration_s: The slot's length.
Allocation.mechanism: The mechanism that cleared the slot.
Allocation.sequence: The sequence of the submission that was cleared.
Allocation.bought_wh: Energy the home bought in the clearing.
Allocation.sold_wh: Energy the home sold in the clearing.
Allocation.buy_price_micro: The price the home paid per kWh (average where prices differ).
Allocation.sell_price_micro: The price the home got per kWh (average where prices differ).
Allocation.paid_nano: Money for energy bought.
Allocation.received_nano: Money for energy sold.
Allocation.fees_nano: Network and community fees, paid on top by the buyer.
Allocation.orders: The final status of each order of the home in this slot.
Allocation.provenance: Where the energy bought came from and the energy sold went, per class (`differentiated`).
Provenance.donated_wh: Received as a gift (a donation to this home).
Provenance.green_local_wh: Bought from homes' green-local sells.
Provenance.local_wh: Bought from homes' local sells.
Provenance.grid_wh: Bought from the retailer in the clearing.
Provenance.given_wh: Given to designated households (this home's donations).
Provenance.sold_green_local_wh: Sold to homes as green-local energy.
Provenance.sold_local_wh: Sold to homes as local energy.
Provenance.sold_grid_wh: Sold to the retailer in the clearing.
Provenance.premium_paid_nano: Green premiums paid (inside paid_nano).
Provenance.premium_received_nano: Green premiums received (inside received_nano).
MeterReport.slot_start: The slot's start.
MeterReport.duration_s: The slot's length.
MeterReport.import_wh: Energy the grid meter counted into the home during the slot.
MeterReport.export_wh: Energy the grid meter counted out of the home during the slot.
SlotResult.slot_start: The slot's start.
SlotResult.duration_s: The slot's length.
SlotResult.state: Where the slot is in its life.
SlotResult.mechanism: The mechanism that cleared it.
SlotResult.config_version: The market config it cleared under.
SlotResult.price_rule_k: k of the price rule, echoed.
SlotResult.price_micro: The uniform clearing price, where there is one.
SlotResult.buy_price_micro: Sharing rules: what buyers pay.
SlotResult.sell_price_micro: Sharing rules: what sellers get.
SlotResult.min_trade_price_micro: The lowest price of a home-to-home trade.
SlotResult.median_trade_price_micro: The median price of the home-to-home trades.
SlotResult.max_trade_price_micro: The highest price of a home-to-home trade.
SlotResult.traded_wh: Energy traded home-to-home.
SlotResult.grid_import_wh: Energy the community bought from the retailer in the clearing.
SlotResult.grid_export_wh: Energy the community sold to the retailer in the clearing.
SlotResult.homes: Homes that took part.
SlotResult.non_responders: Members that sent no bid in time.
SlotResult.tie_break_seed: The seed of the tie-break permutation, for audit.
SlotResult.book_hash: Hash of the book snapshot that was cleared.
SlotResult.rounding_nano: What rule-derived rounded prices left over.
SlotResult.ledger_head: The ledger's head hash after this slot (`hems community verify-ledger --expect-head`).
SlotResult.grid_congested: With a feeder model: whether the clearing would have exceeded a grid limit (docs/grid.md).
SlotResult.grid_curtailed_wh: Energy the grid review took off the homes' positions to keep every limit.
HomeStatus.state: `offline` is the broker-published last will.
HomeStatus.market: Whether the home trades, buys at retail only, or has the market switched off.
NegotiationSignal.negotiation_id: Names the negotiation (the token of its first slot); answers repeat it.
NegotiationSignal.round: The round to answer; an answer to any other round is stale and ignored.
NegotiationSignal.state: `round`: answer it; `converged` or `abandoned`: the negotiation is over.
NegotiationSignal.slot_start: The first negotiated slot.
NegotiationSignal.duration_s: The length of each negotiated slot.
NegotiationSignal.rho_micro_per_kwh2: ADMM's penalty weight ρ, in µ¤ per kWh².
NegotiationSignal.mean_wh: x̄ per slot: the community's imbalance divided by the parties (homes and retailer copies).
NegotiationSignal.price_micro: The current price per slot (ρ times the scaled price); may be negative between rounds.
NegotiationAnswer.negotiation_id: The negotiation_id of the signal answered.
NegotiationAnswer.round: The round answered.
NegotiationAnswer.net_import_wh: The home's best net import (+ import, − export) per negotiated slot.
""")

ENUM_NOTES: dict[str, dict[str, str]] = {
    "ReceptionStatus": {
        "OK": "Taken.",
        "INVALID_DATA": "The payload does not match its schema.",
        "INVALID_MESSAGE": "Not a message: size, encoding, JSON, envelope, type or version.",
        "INVALID_CONTENT": "Well-formed but not acceptable now: window, sequence, sender.",
        "TEMPORARY_ERROR": "The receiver cannot take it now; try again later.",
        "PERMANENT_ERROR": "It will never be accepted.",
    },
    "OrderStatus": {
        "ACCEPTED": "In the book (a slot line of an ack).", "REJECTED": "Not taken; the reason says why.",
        "FILLED": "Traded in full.", "PARTIALLY_FILLED": "Traded in part: filled_wh says how much.",
        "UNMATCHED": "Not traded; the home's energy goes to or comes from the retailer.",
        "EXPIRED": "Arrived after gate closure.",
    },
    "BidFormat": {"orders": "Limit orders.", "curve": "A net-import curve per slot on the price grid.",
                  "none": "Nothing: the sharing rules work from metered positions."},
    "Side": {"buy": "The home buys.", "sell": "The home sells."},
    "EnergyClass": {"grid": "The retailer's (never a home's).", "local": "A home's energy (the default).",
                    "green_local": "A home's renewable energy."},
    "SlotState": {"OPEN": "The gate is open.", "CLOSED": "The gate closed; clearing is under way.",
                  "CLEARED": "Prices and allocations are known.", "SETTLED": "Metered and booked."},
    "NegotiationState": {"round": "Answer this round.", "converged": "Over: the positions stand.",
                         "abandoned": "Over without agreement: the slot clears with the fallback mechanism."},
    **power_plant_docs.ENUM_NOTES,
}

RULES: dict[str, tuple[str, ...]] = {
    "MarketConfig": ("feed_in_price_micro < retail_price_micro.",
                     "price_grid_micro is strictly ascending from feed_in_price_micro to retail_price_micro.",
                     "price_rule_k is a finite decimal in [0, 1]."),
    "Curve": ("prices_micro and net_import_wh have the same length.", "prices_micro is strictly ascending.",
              "net_import_wh is non-increasing: at a higher price a home buys less or sells more."),
    "SlotBid": ("orders or a curve, not both.", "order_id is unique within the slot.",
                "donation_id is unique within the slot; donations need orders or a curve to give from."),
    "Order": ("A sell may state energy_class; a buy green_premium_micro and partners.",
              "energy_class is never grid; partners need green_premium_micro > 0 and are distinct."),
    "Donation": ("recipients are distinct.",),
    "OrderSubmission": ("Each slot_start appears once.",),
    "NegotiationSignal": ("mean_wh and price_micro have one value per slot.",),
    **power_plant_docs.RULES,
}


def example_payloads() -> dict[str, Payload]:
    """One realistic payload per message type (fixed values, so the page is deterministic)."""
    grid = [80_000, 135_000, 190_000, 245_000, 300_000]
    buy_id = UUID("00000000-0000-4000-8000-00000000000b")
    sell_id = UUID("00000000-0000-4000-8000-00000000000c")
    orders = [messages.Order(order_id=buy_id, side=messages.Side.BUY, energy_wh=1200, limit_price_micro=250_000),
              messages.Order(order_id=sell_id, side=messages.Side.SELL, energy_wh=300, limit_price_micro=280_000)]
    curve = messages.Curve(prices_micro=grid, net_import_wh=[600, 400, 0, -300, -800])
    filled = [messages.OrderOutcome(order_id=buy_id, status=OrderStatus.FILLED, filled_wh=1200, price_micro=190_000),
              messages.OrderOutcome(order_id=sell_id, status=OrderStatus.UNMATCHED, filled_wh=0)]
    examples: list[Payload] = [
        messages.MarketConfig(
            community="sunny-street", config_version=3, mechanism="uniform_auction",
            bid_format=messages.BidFormat.ORDERS, slot_duration_s=900, gate_closure_lead_s=300, horizon_slots=4,
            retail_price_micro=300_000, feed_in_price_micro=80_000, network_fee_micro=10_000,
            price_rule_k="0.5", price_grid_micro=grid, imbalance_import_price_micro=300_000,
            imbalance_export_price_micro=80_000, meter_deadline_s=600),
        messages.OrderSubmission(sequence=42, slots=[
            messages.SlotBid(slot_start=SLOT_1, duration_s=900, orders=orders),
            messages.SlotBid(slot_start=SLOT_2, duration_s=900, curve=curve)]),
        messages.Ack(status=ReceptionStatus.OK, acked_message_type="orders", slots=[
            messages.SlotAck(slot_start=SLOT_1, status=OrderStatus.ACCEPTED),
            messages.SlotAck(slot_start=SLOT_2, status=OrderStatus.REJECTED, reason="gate closed")]),
        messages.Allocation(
            slot_start=SLOT_1, duration_s=900, mechanism="uniform_auction", sequence=42, bought_wh=1200,
            sold_wh=0, buy_price_micro=190_000, paid_nano=1200 * 190_000, received_nano=0,
            fees_nano=1200 * 10_000, orders=filled),
        messages.MeterReport(slot_start=SLOT_1, duration_s=900, import_wh=1250, export_wh=0),
        messages.SlotResult(
            slot_start=SLOT_1, duration_s=900, state=messages.SlotState.CLEARED, mechanism="uniform_auction",
            config_version=3, price_rule_k="0.5", price_micro=190_000, min_trade_price_micro=190_000,
            median_trade_price_micro=190_000, max_trade_price_micro=190_000, traded_wh=5400,
            grid_import_wh=1200, grid_export_wh=0, homes=12, non_responders=1, tie_break_seed=123456789,
            book_hash="924e2622871e78f193e5d0c02348b14ea921aa4efd5459ac769bf407fcb110ae", rounding_nano=0,
            ledger_head="ce245d5952e4639d87ec3c81a42ffa51e5e99160fc7848c65abb178e22d8c993"),
        messages.HomeStatus(state="online", market="trading"),
        messages.NegotiationSignal(
            negotiation_id=slot_token(SLOT_1), round=7, state=messages.NegotiationState.ROUND, slot_start=SLOT_1,
            duration_s=900, rho_micro_per_kwh2=200_000, mean_wh=[12, -3], price_micro=[131_500, 80_400]),
        messages.NegotiationAnswer(negotiation_id=slot_token(SLOT_1), round=7, net_import_wh=[640, -1210]),
        *power_plant_docs.example_payloads(),
    ]
    return {payload.MESSAGE_TYPE: payload for payload in examples}


def prose(*, topics: list[str], summary: list[str], units: list[str], limits: list[str],
          envelope: list[str]) -> list[str]:
    """The hand-written parts of the page around the generated tables."""
    ok, data, invalid_message, content = (ReceptionStatus.OK, ReceptionStatus.INVALID_DATA,
                                          ReceptionStatus.INVALID_MESSAGE, ReceptionStatus.INVALID_CONTENT)
    return [
        "# MQTT protocol v1",
        "",
        "<!-- Generated by `python -m hems.protocol.docs > docs/protocol.md` from hems/protocol; do not edit:",
        "     tests/protocol/test_protocol_docs.py fails when this page and the models differ. -->",
        "",
        "The home daemons and the community manager (CM) talk over MQTT 3.1.1 (QoS 1, retained messages,",
        "last will, persistent sessions). Every message is one JSON object, UTF-8, in an envelope; every",
        "quantity is an integer (Wh, µ¤/kWh, n¤). The pydantic models in hems/protocol/messages.py and",
        "envelope.py are the definition; this page is generated from them.",
        "",
        "## Topics",
        "",
        "One community per prefix `hems/v1/<community>/`. `<community>` and `<home>` are 1-64 letters, digits,",
        f"`-` or `_`. `<start>` is the slot's UTC start in ISO 8601 basic form (`{slot_token(SLOT_1)}`): no `:`",
        "and no `+`, which some tools treat specially in topic names. The broker ACL lets a home publish only",
        "under its own `home/<home>/` and read only its own subtree plus `market/` and `vpp/`. The grid",
        "operator (GO; `hems grid` simulates one) publishes under `grid/limits` and `grid/request` and reads",
        "`grid/`. The power plant's messages are defined in hems/protocol/power_plant.py (docs/flexibility.md).",
        "",
        *topics,
        "",
        "## Message types",
        "",
        *summary,
        "",
        "## Envelope",
        "",
        "Every payload travels in this object (S2 / EN 50491-12-2 style). Fields whose value is null are left",
        "out on the wire. Unknown keys are errors at every level, and types are strict: `1.0` and `\"1\"` are",
        "not integers. Times are RFC 3339 with an explicit UTC offset (`Z` or `+00:00`); naive or other",
        "offsets are refused.",
        "",
        *envelope,
        "",
        "## Integer units",
        "",
        "A field's name says its unit. Wh × µ¤/kWh = 10⁻³ kWh × 10⁻⁶ ¤/kWh = 10⁻⁹ ¤, so every amount of money",
        "is an exact integer in n¤ and the books balance without binary floating point. Prices a rule derives",
        "(a midpoint, a ratio) are rounded half-even to whole µ¤/kWh; what that leaves over is reported as",
        "`rounding_nano`. The price rule `k` is a decimal string, never a float.",
        "",
        *units,
        "",
        "## Limits",
        "",
        *limits,
        "",
        "## Receiving: validation and acks",
        "",
        "A receiver checks, in this order, and stops at the first failure:",
        "",
        "1. size ≤ `MAX_MESSAGE_BYTES`, valid UTF-8, JSON, a JSON object, a valid envelope, a known",
        f"   message_type that the topic accepts, a supported schema_version: else `{invalid_message}`;",
        f"2. the payload against its model (every field, bound and rule below): else `{data}`;",
        "3. the content against the market's state (trading window, sequence, sender, membership): else",
        f"   `{content}`.",
        "",
        "The CM answers every message on `home/<home>/orders` and `home/<home>/meter` with an `ack` whose",
        f"correlation_id is the message's message_id (when it could be read) and whose status is `{ok}` or",
        "the first problem, with a diagnostic_label of at most 500 characters naming the key and the rule.",
        "Nothing invalid reaches a market or the ledger.",
        "",
        "**Dedupe by message_id.** QoS 1 delivers at least once, so the same message may arrive twice. The",
        "CM remembers the message_ids it has answered: a repeated one gets the same ack again and changes",
        "nothing. A sender that repeats a message keeps its message_id; a new message gets a new one.",
        "",
        "## Bids: replace semantics, sequence numbers, trading window",
        "",
        "- **Replace semantics.** A slot's bid in an `orders` message replaces the home's earlier bid for that",
        "  slot; slots not listed keep theirs. An empty `orders` list without a curve cancels the home's bid",
        "  for the slot. A slot bid carries orders or a curve, never both: the market config's `bid_format`",
        "  says which, and a curve is stated at the prices of its `price_grid_micro`.",
        "- **Sequence numbers.** `sequence` increases with every `orders` message of a home (PowerMatcher's bid",
        "  number). A message whose sequence is not above the last one taken from that home is refused",
        f"  (`{content}`). The allocation echoes the sequence of the submission that was cleared.",
        "- **Trading window.** Slots start at multiples of `slot_duration_s` in UTC epoch seconds and last",
        "  `slot_duration_s`. The gate of the slot starting at s closes at s − `gate_closure_lead_s`; a bid is",
        "  taken for the first `horizon_slots` slots whose gate is still open. A slot outside the window is",
        "  `REJECTED` in the ack's `slots` with the reason (`gate closed`, `beyond the horizon of N slots`,",
        "  `slot_start is not a multiple of 900 s`); the other slots are still taken. When no slot is taken,",
        f"  the ack's status is `{content}`.",
        "- **Outcomes.** After clearing, the private `allocation` reports each order's final status",
        "  (`FILLED`, `PARTIALLY_FILLED` with the filled Wh, `UNMATCHED`); the public, retained slot result",
        "  carries aggregates only, never who traded with whom.",
        "",
        "The examples below are produced by `hems.protocol.codec.encode` with a fixed message_id and sent_at,",
        "pretty-printed; on the wire they are compact.",
    ]


def unit_of(field_name: str) -> str:
    """The unit a field name's suffix stands for ('' when none)."""
    return next((unit for suffix, unit in UNIT_SUFFIXES if field_name.endswith(suffix)), "")


def topic_templates() -> dict[str, str]:
    """Every topic of the tree with ``<community>``, ``<home>`` and ``<start>`` placeholders, by key."""
    topics = Topics(_PLACEHOLDER_COMMUNITY)
    raw = {"market/config": topics.market_config(),
           "market/slot/<start>/result": topics.slot_result(SLOT_1).replace(slot_token(SLOT_1), "<start>"),
           "market/signal": topics.market_signal(), "vpp/request": topics.vpp_request()}
    for leaf in HomeTopic:
        raw[f"home/<home>/{leaf}"] = topics.home(_PLACEHOLDER_HOME, leaf)
    for grid_leaf in GridTopic:
        raw[f"grid/{grid_leaf}"] = topics.grid(grid_leaf)
    return {key: value.replace(_PLACEHOLDER_COMMUNITY, "<community>").replace(_PLACEHOLDER_HOME, "<home>")
            for key, value in raw.items()}


def _anchor(name: str) -> str:
    return name.lower()


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in prop:
        branches = [_type_of(branch) for branch in prop["anyOf"] if branch != {"type": "null"}]
        return " or ".join(branches) + " or null"
    if "enum" in prop:
        return " or ".join(f"`{json.dumps(value)}`" for value in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type_of(prop['items'])}"
    if kind == "string" and prop.get("format") == "uuid":
        return "UUID string"
    if kind == "string" and prop.get("format") == "date-time":
        return "UTC time string"
    return str(kind)


def _bounds(prop: dict[str, Any]) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None and high is not None:
        return f"{low} … {high}"
    if low is not None:
        return f"≥ {low}"
    return f"≤ {high}" if high is not None else ""


def _constraints(prop: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for branch in prop.get("anyOf", []):
        if branch != {"type": "null"}:
            found += _constraints(branch)
    if bounds := _bounds(prop):
        found.append(bounds)
    if "pattern" in prop:
        found.append(f"pattern `{prop['pattern']}`")
    if "maxLength" in prop:
        found.append(f"at most {prop['maxLength']} characters")
    if "minItems" in prop or "maxItems" in prop:
        found.append(f"{prop.get('minItems', 0)} … {prop['maxItems']} items" if "maxItems" in prop
                     else f"≥ {prop['minItems']} items")
    if prop.get("type") == "array" and (each := _bounds(prop["items"])):
        found.append(f"each {each}")
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _described(owner: str, name: str, prop: dict[str, Any]) -> str:
    note = prop.get("description") or FIELD_NOTES.get(f"{owner}.{name}")
    if not note:
        raise DocsError(f"{owner}.{name} has no description: add it to FIELD_NOTES")
    return note


def field_table(schema: dict[str, Any]) -> list[str]:
    """The Markdown table of one object schema's fields."""
    owner, required = schema["title"], set(schema.get("required", ()))
    lines = ["| Field | Type | Unit | Required | Constraints | Description |",
             "|---|---|---|---|---|---|"]
    for name, prop in schema["properties"].items():
        needed = "yes" if name in required else f"no, default `{json.dumps(prop.get('default'))}`"
        lines.append(f"| `{name}` | {_cell(_type_of(prop))} | {unit_of(name)} | {needed} | "
                     f"{_cell('; '.join(_constraints(prop)))} | {_cell(_described(owner, name, prop))} |")
    if rules := RULES.get(owner):
        lines += ["", "Rules:", ""] + [f"- {rule}" for rule in rules]
    return lines


def _docstring(schema: dict[str, Any]) -> str:
    return " ".join(schema.get("description", "").split()).replace("``", "`")


def collect_definitions() -> dict[str, dict[str, Any]]:
    """Every nested object and enum the payloads and the envelope use, by name."""
    definitions: dict[str, dict[str, Any]] = {}
    for model in (Envelope, *PAYLOAD_TYPES.values()):
        definitions.update(model.model_json_schema().get("$defs", {}))
    return dict(sorted(definitions.items()))


def check_notes(definitions: dict[str, dict[str, Any]]) -> None:
    """Refuse notes that name no field, enum value, model or message type (stale documentation)."""
    objects = {model.__name__: model.model_json_schema() for model in (Envelope, *PAYLOAD_TYPES.values())}
    objects.update({name: schema for name, schema in definitions.items() if "properties" in schema})
    known_fields = {f"{name}.{field}" for name, schema in objects.items() for field in schema["properties"]}
    problems = [f"FIELD_NOTES[{key!r}] names no field" for key in FIELD_NOTES if key not in known_fields]
    problems += [f"RULES[{key!r}] names no model" for key in RULES if key not in objects]
    for name, notes in ENUM_NOTES.items():
        values = set(definitions.get(name, {}).get("enum", ()))
        problems += [f"ENUM_NOTES[{name!r}] lacks {value!r}" for value in sorted(values - set(notes))]
        problems += [f"ENUM_NOTES[{name!r}][{value!r}] is not a value" for value in sorted(set(notes) - values)]
    enums = {name for name, schema in definitions.items() if "enum" in schema}
    problems += [f"enum {name} has no ENUM_NOTES entry" for name in sorted(enums - set(ENUM_NOTES))]
    problems += [f"message type {kind!r} has no route" for kind in PAYLOAD_TYPES if kind not in ROUTES]
    problems += [f"ROUTES[{kind!r}] is not a message type" for kind in ROUTES if kind not in PAYLOAD_TYPES]
    if problems:
        raise DocsError("; ".join(problems))


def example_json(payload: Payload) -> str:
    """``payload`` encoded by the codec with the fixed id and time, decoded back, pretty-printed."""
    correlation = REPLIED_MESSAGE_ID if ROUTES[payload.MESSAGE_TYPE].reply else None
    raw = codec.encode(payload, sender=ROUTES[payload.MESSAGE_TYPE].example_sender, sent_at=SENT_AT,
                       message_id=FIXED_MESSAGE_ID, correlation_id=correlation)
    decoded = codec.decode(raw, (type(payload),))
    if decoded.payload != payload:
        raise DocsError(f"the {payload.MESSAGE_TYPE} example does not survive a round trip")
    return _pretty(json.loads(raw))


def _pretty(value: Any, indent: str = "") -> str:
    """JSON with one key per line but lists of plain values on one line (shorter examples)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {_pretty(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return "[\n" + ",\n".join(inner + _pretty(item, inner) for item in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _schema_block(model: type[BaseModel]) -> list[str]:
    return ["<details><summary>JSON Schema</summary>", "", "```json",
            _pretty(model.model_json_schema()), "```", "", "</details>"]


def message_sections(templates: dict[str, str]) -> list[str]:
    """One section per message type: route, fields, rules, example, schema."""
    examples = example_payloads()
    lines: list[str] = []
    for kind, model in PAYLOAD_TYPES.items():
        route = ROUTES[kind]
        schema = model.model_json_schema()
        lines += ["", f'<a id="{_anchor(model.__name__)}"></a>', "", f"### `{kind}`: {model.__name__}", "",
                  _docstring(schema), "",
                  f"- Topic: `{templates[route.topic]}`",
                  f"- Direction: {route.direction}",
                  f"- Retained: {'yes' if route.retained else 'no'}",
                  f"- schema_version: {model.SCHEMA_VERSION}", ""]
        lines += field_table(schema)
        if kind not in examples:
            raise DocsError(f"message type {kind!r} has no example")
        lines += ["", "Example:", "", "```json", example_json(examples[kind]), "```", ""]
        lines += _schema_block(model)
    return lines


def definition_sections(definitions: dict[str, dict[str, Any]]) -> list[str]:
    """The nested objects (with field tables) and the enumerations (with the meaning of each value)."""
    lines: list[str] = ["", "## Nested objects"]
    for name, schema in definitions.items():
        if "properties" in schema:
            lines += ["", f'<a id="{_anchor(name)}"></a>', "", f"### {name}", "", _docstring(schema), ""]
            lines += field_table(schema)
    lines += ["", "## Enumerations"]
    for name, schema in definitions.items():
        if "enum" in schema:
            lines += ["", f'<a id="{_anchor(name)}"></a>', "", f"### {name}", ""]
            if doc := _docstring(schema):
                lines += [doc, ""]
            lines += ["| Value | Meaning |", "|---|---|"]
            lines += [f"| `{value}` | {_cell(ENUM_NOTES[name][value])} |" for value in schema["enum"]]
    return lines


def topic_section(templates: dict[str, str]) -> list[str]:
    """The topic tree as a table: who publishes, retained or not, which message types."""
    lines = ["| Topic | Direction | Retained | Message types |", "|---|---|---|---|"]
    for key, topic in templates.items():
        kinds = [kind for kind, route in ROUTES.items() if route.topic == key]
        if kinds:
            route = ROUTES[kinds[0]]
            names = ", ".join(f"[`{kind}`](#{_anchor(PAYLOAD_TYPES[kind].__name__)})" for kind in kinds)
            lines.append(f"| `{topic}` | {route.direction} | {'yes' if route.retained else 'no'} | {names} |")
        else:
            lines.append(f"| `{topic}` | {power_plant_docs.SHARED_TOPICS[key]} | no | [`ack`](#ack) |")
    return lines


def summary_table() -> list[str]:
    """Every message type with its payload model, topic and version."""
    lines = ["| message_type | Payload | Topic | Direction | Retained | schema_version |",
             "|---|---|---|---|---|---|"]
    for kind, model in PAYLOAD_TYPES.items():
        route = ROUTES[kind]
        lines.append(f"| `{kind}` | [{model.__name__}](#{_anchor(model.__name__)}) | `{route.topic}` | "
                     f"{route.direction} | {'yes' if route.retained else 'no'} | {model.SCHEMA_VERSION} |")
    return lines


def limits_table() -> list[str]:
    """The size limits a receiver enforces."""
    rows = [("MAX_MESSAGE_BYTES", codec.MAX_MESSAGE_BYTES, "bytes of one message"),
            ("MAX_ENERGY_WH", messages.MAX_ENERGY_WH, "Wh of any energy field"),
            ("MAX_PRICE_MICRO", messages.MAX_PRICE_MICRO, "µ¤/kWh of any price field"),
            ("MAX_SLOTS_PER_MESSAGE", messages.MAX_SLOTS_PER_MESSAGE, "slots in one submission or ack"),
            ("MAX_ORDERS_PER_SLOT", messages.MAX_ORDERS_PER_SLOT, "orders of one home in one slot"),
            ("MAX_CURVE_POINTS", messages.MAX_CURVE_POINTS, "points of a curve or the price grid")]
    return ["| Limit | Value | Bounds |", "|---|---|---|"] + [f"| `{name}` | {value} | {what} |"
                                                           for name, value, what in rows]


def units_table() -> list[str]:
    """The integer unit conventions, with worked values computed by hems.protocol.units."""
    price = units.price_to_micro("0.30")
    amount = units.money_nano(1500, price)
    return ["| Suffix | Unit | Quantity | Example |", "|---|---|---|---|",
            "| `_wh` | Wh | energy, whole watt-hours | `1500` = 1.5 kWh |",
            f"| `_micro` | µ¤/kWh | price, millionths of the currency per kWh | `{price}` = 0.30 ¤/kWh |",
            f"| `_nano` | n¤ | money, billionths of the currency | `{amount}` = {units.format_money(amount)} ¤ "
            f"(1500 Wh × {price} µ¤/kWh) |",
            "| `_s` | s | duration in seconds | `900` = 15 min |"]


def render() -> str:
    """The whole of docs/protocol.md."""
    definitions = collect_definitions()
    check_notes(definitions)
    templates = topic_templates()
    sections = prose(topics=topic_section(templates), summary=summary_table(), units=units_table(),
                     limits=limits_table(), envelope=field_table(Envelope.model_json_schema()))
    lines = sections + ["", "## Messages"] + message_sections(templates) + definition_sections(definitions)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Print the page to stdout."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
