"""The market's part of docs/protocol.md: routes, what the models cannot say about their fields,
the meaning of the enumerations, cross-field rules and examples (hems/protocol/docs.py merges them
with the power plant's, hems/protocol/power_plant_docs.py, and renders the page)."""

from __future__ import annotations

from datetime import datetime, timezone
from uuid import UUID

from hems.protocol import messages
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import OrderStatus, Payload
from hems.protocol.topics import slot_token

SLOT_1 = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)
SLOT_2 = datetime(2026, 11, 21, 10, 30, tzinfo=timezone.utc)

#: message type -> (topic key, direction, retained, example sender, carries correlation_id)
ROUTES: dict[str, tuple[str, str, bool, str, bool]] = {
    "market_config": ("market/config", "CM → all", True, "manager", False),
    "orders": ("home/<home>/orders", "home → CM", False, "home-01", False),
    "ack": ("home/<home>/ack", "CM → home", False, "manager", True),
    "allocation": ("home/<home>/allocation", "CM → home (private)", False, "manager", False),
    "meter": ("home/<home>/meter", "home → CM", False, "home-01", False),
    "slot_result": ("market/slot/<start>/result", "CM → all", True, "manager", False),
    "home_status": ("home/<home>/status", "home → all (last will: offline)", True, "home-01", False),
    "negotiation_signal": ("market/signal", "CM → all", False, "manager", False),
    "negotiation_answer": ("home/<home>/negotiation", "home → CM", False, "home-01", False),
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
}


def example_payloads() -> list[Payload]:
    """One realistic payload per message type of the market (fixed values)."""
    grid = [80_000, 135_000, 190_000, 245_000, 300_000]
    buy_id = UUID("00000000-0000-4000-8000-00000000000b")
    sell_id = UUID("00000000-0000-4000-8000-00000000000c")
    orders = [messages.Order(order_id=buy_id, side=messages.Side.BUY, energy_wh=1200, limit_price_micro=250_000),
              messages.Order(order_id=sell_id, side=messages.Side.SELL, energy_wh=300, limit_price_micro=280_000)]
    curve = messages.Curve(prices_micro=grid, net_import_wh=[600, 400, 0, -300, -800])
    filled = [messages.OrderOutcome(order_id=buy_id, status=OrderStatus.FILLED, filled_wh=1200, price_micro=190_000),
              messages.OrderOutcome(order_id=sell_id, status=OrderStatus.UNMATCHED, filled_wh=0)]
    return [
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
    ]
