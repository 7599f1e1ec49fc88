"""What ``hems grid`` prints: the manager's answers as text tables or as one JSON object a line.

JSON keeps the wire's integers (Wh, W, µ¤/kWh, n¤) and adds the envelope's ``message_id``, ``sent_at``,
``sender`` and ``correlation_id``; text shows kW, currency per kWh and money rounded for reading.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hems.protocol.codec import Message
from hems.protocol.messages import Ack
from hems.protocol.power_plant import FlexibilityCall, FlexibilityOffers, FlexibilityResponse, GridLimitsPublication
from hems.protocol.units import format_money, micro_to_price


def json_line(message: Message) -> str:
    """One message as a JSON object on one line: the envelope's ids and time, then the payload."""
    envelope = message.envelope
    document: dict[str, Any] = {
        "message_type": envelope.message_type, "message_id": str(envelope.message_id),
        "sent_at": _instant(envelope.sent_at), "sender": envelope.sender,
        "correlation_id": None if envelope.correlation_id is None else str(envelope.correlation_id)}
    document.update(message.payload.model_dump(mode="json"))
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _instant(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _slot(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M")


def _kw(watts: int | None) -> str:
    return "-" if watts is None else f"{watts / 1000:g}"


def _price(micro: int) -> str:
    return f"{micro_to_price(micro):.6f}".rstrip("0").rstrip(".") if micro else "0"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    return ["  ".join(cell.rjust(width) if index else cell.ljust(width)
                      for index, (cell, width) in enumerate(zip(line, widths))).rstrip()
            for line in (header, *rows)]


def limits_text(publication: GridLimitsPublication) -> str:
    """The limits being published, one line a slot (UTC)."""
    rows = [(_slot(slot.slot_start), str(slot.duration_s // 60), _kw(slot.import_limit_w), _kw(slot.export_limit_w),
             _price(slot.locational_fee_micro)) for slot in publication.slots]
    return "\n".join(_table(("slot (UTC)", "min", "import kW", "export kW", "fee /kWh"), rows)) + "\n"


def request_text(call: FlexibilityCall, message_id: object) -> str:
    """The request as sent."""
    first, last = call.slots[0], call.slots[-1]
    return (f"request {call.request_id} ({message_id}): {len(call.slots)} slots {_slot(first.slot_start)} … "
            f"{_slot(last.slot_start)} UTC, {_kw(first.delta_w)} kW, price {_price(call.price_micro)}/kWh, "
            f"penalty {_price(call.penalty_micro)}/kWh\n")


def ack_text(message: Message[Ack]) -> str:
    """The manager's ack of a limits publication."""
    ack = message.payload
    lines = [f"ack {ack.status}" + (f": {ack.diagnostic_label}" if ack.diagnostic_label else "")
             + f" (from {message.sender} at {_instant(message.envelope.sent_at)})"]
    lines += [f"  {_slot(slot.slot_start)} {slot.status}" + (f": {slot.reason}" if slot.reason else "")
              for slot in ack.slots]
    return "\n".join(lines) + "\n"


def response_text(message: Message[FlexibilityResponse]) -> str:
    """One response: its state, per slot requested / committed / delivered, and the money."""
    response = message.payload
    head = (f"{response.state} {response.request_id} at {_instant(message.envelope.sent_at)}"
            + (f": {response.reason}" if response.reason else ""))
    lines = [head]
    if response.slots:
        rows = [(_slot(slot.slot_start), str(slot.requested_wh), str(slot.committed_wh), str(slot.homes),
                 "-" if slot.delivered_wh is None else str(slot.delivered_wh)) for slot in response.slots]
        rows.append(("total", str(sum(slot.requested_wh for slot in response.slots)),
                     str(sum(slot.committed_wh for slot in response.slots)), "",
                     "-" if any(slot.delivered_wh is None for slot in response.slots)
                     else str(sum(slot.delivered_wh or 0 for slot in response.slots))))
        lines += ["  " + line for line in _table(
            ("slot (UTC)", "requested Wh", "committed Wh", "homes", "delivered Wh"), rows)]
    money = [f"{name} {format_money(amount)}" for name, amount in
             (("revenue", response.revenue_nano), ("penalty", response.penalty_nano)) if amount is not None]
    if money:
        lines.append("  " + ", ".join(money))
    return "\n".join(lines) + "\n"


def offers_text(message: Message[FlexibilityOffers]) -> str:
    """The community's standing offers, per slot and direction."""
    offers = message.payload.offers
    head = f"offers from {message.sender} at {_instant(message.envelope.sent_at)}: {len(offers)}"
    if not offers:
        return head + "\n"
    rows = [(_slot(offer.slot_start), str(offer.direction), str(offer.energy_wh), _kw(offer.power_w),
             _price(offer.price_micro)) for offer in offers]
    return "\n".join([head, *_table(("slot (UTC)", "direction", "energy Wh", "power kW", "price /kWh"),
                                    rows)]) + "\n"
