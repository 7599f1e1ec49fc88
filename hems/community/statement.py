"""A home's monthly statement, summed from the ledger's settlement records.

A slot belongs to the UTC month its start falls in: the slot starting 23:45 on the last day is in
that month, the one at 00:00 in the next. Corrections count in the month of the slot they correct,
whenever they were appended.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from hems.community.ledger import Ledger, RecordKind
from hems.community.mechanisms.base import Provenance
from hems.community.settlement import settlement_from_body
from hems.protocol.units import format_money, nano_to_decimal

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Statement:
    """One home's month: energy in Wh, money in n¤ (bill > 0: the home pays)."""

    home: str
    month: str  # "YYYY-MM", UTC
    slots: int  # slots settled
    estimated_slots: int  # of which still settled at the cleared position (no reading yet)
    import_wh: int
    export_wh: int
    bought_wh: int
    sold_wh: int
    energy_paid_nano: int
    energy_received_nano: int
    fees_nano: int
    imbalance_charge_nano: int
    imbalance_credit_nano: int
    bill_nano: int
    retail_only_bill_nano: int
    savings_nano: int
    #: Where the energy bought in the community came from, slot by slot (differentiated markets;
    #: None elsewhere): the cleared Wh per class, and premiums.
    provenance: Provenance | None = None
    #: The federated power plant (requests settled in the month, by their first slot): None when
    #: the home delivered nothing for one.
    flexibility: FlexibilityEarnings | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: counts and Wh as integers, money as exact decimal strings in currency
        units under the field name without ``_nano`` (``"bill": "12.345678900"``)."""
        result: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("provenance", "flexibility"):
                if value is not None:
                    result[item.name] = {name.removesuffix("_nano"): _decimal_string(amount)
                                         if name.endswith("_nano") else amount for name, amount in asdict(value).items()}
            elif item.name.endswith("_nano"):
                result[item.name.removesuffix("_nano")] = _decimal_string(value)
            else:
                result[item.name] = value
        return result

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class FlexibilityEarnings:
    """What a home did for the community's power plant in a month: Wh and n¤."""

    requests: int
    committed_wh: int
    delivered_wh: int
    revenue_nano: int
    penalty_nano: int


_SUMMED = tuple(item.name for item in fields(Statement)
                if item.name not in ("home", "month", "slots", "estimated_slots", "provenance", "flexibility"))


_PROVENANCE = tuple(item.name for item in fields(Provenance))
_FLEXIBILITY = tuple(item.name for item in fields(FlexibilityEarnings))  # "requests" first


def month_bounds_s(month: str) -> tuple[int, int]:
    """The UTC epoch seconds [start, end) of a "YYYY-MM" month; ValueError for anything else."""
    match = _MONTH.match(month) if isinstance(month, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise ValueError(f"month = {month!r}: expected 'YYYY-MM', e.g. '2026-03'")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=timezone.utc)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=timezone.utc)
    return int(start.timestamp()), int(end.timestamp())


def monthly_statement(ledger: Ledger, home: str, month: str) -> Statement:
    """Sum the home's SETTLEMENT and SETTLEMENT_CORRECTION records whose slot starts in ``month``.

    A slot counts as estimated while its latest record (settlement or correction) is estimated.
    """
    since_s, until_s = month_bounds_s(month)
    totals = dict.fromkeys(_SUMMED, 0)
    estimated_by_slot: dict[int, bool] = {}
    provenance: dict[str, int] | None = None
    flexibility: dict[str, int] | None = None
    for record in ledger.records(home=home, since_slot_s=since_s, until_slot_s=until_s):
        if record.kind is RecordKind.FLEXIBILITY_SETTLEMENT:
            flexibility = flexibility or dict.fromkeys(_FLEXIBILITY, 0)
            flexibility["requests"] += 1
            for name in _FLEXIBILITY[1:]:
                flexibility[name] += record.body[name]
        if record.kind is RecordKind.ALLOCATION and "provenance" in record.body:
            provenance = provenance or dict.fromkeys(_PROVENANCE, 0)
            for name in _PROVENANCE:
                provenance[name] += record.body["provenance"][name]
        if record.kind not in (RecordKind.SETTLEMENT, RecordKind.SETTLEMENT_CORRECTION):
            continue
        settlement = settlement_from_body(record.body)
        for name in _SUMMED:
            totals[name] += getattr(settlement, name)
        estimated_by_slot[settlement.slot_start_s] = settlement.estimated  # ledger order: last wins
    return Statement(home=home, month=month, slots=len(estimated_by_slot),
                     estimated_slots=sum(estimated_by_slot.values()), **totals,
                     provenance=None if provenance is None else Provenance(**provenance),
                     flexibility=None if flexibility is None else FlexibilityEarnings(**flexibility))


def render_statement(statement: Statement, currency: str = "EUR") -> str:
    """The statement as text for a person: energy in kWh, money rounded to cents."""
    s = statement

    def money(amount_nano: int) -> str:
        return f"{format_money(amount_nano):>12} {currency}"

    def energy(amount_wh: int) -> str:
        return f"{Decimal(amount_wh).scaleb(-3):>12.3f} kWh"

    lines = [
        f"Statement of {s.home} for {s.month} (UTC)",
        f"  Slots settled              {s.slots:>12d}"
        + (f"  ({s.estimated_slots} provisional, awaiting meter data)" if s.estimated_slots else ""),
        "Energy",
        f"  Imported from the grid     {energy(s.import_wh)}",
        f"  Exported to the grid       {energy(s.export_wh)}",
        f"  Bought in the community    {energy(s.bought_wh)}",
        f"  Sold in the community      {energy(s.sold_wh)}",
        "Money",
        f"  Energy bought              {money(s.energy_paid_nano)}",
        f"  Fees                       {money(s.fees_nano)}",
        f"  Imbalance charged          {money(s.imbalance_charge_nano)}",
        f"  Energy sold                {money(-s.energy_received_nano)}",
        f"  Imbalance credited         {money(-s.imbalance_credit_nano)}",
        f"  Bill                       {money(s.bill_nano)}",
        f"  Retail-only bill           {money(s.retail_only_bill_nano)}",
        f"  Savings                    {money(s.savings_nano)}",
    ]
    origin = s.provenance
    if origin is not None:
        lines += [
            "Origin of the energy, matched per slot in the community",
            f"  Received as a gift         {energy(origin.donated_wh)}",
            f"  Green-local, bought        {energy(origin.green_local_wh)}",
            f"  Local, bought              {energy(origin.local_wh)}",
            f"  From the retailer          {energy(origin.grid_wh)}",
            f"  Given away                 {energy(origin.given_wh)}",
            f"  Green-local, sold to homes {energy(origin.sold_green_local_wh)}",
            f"  Local, sold to homes       {energy(origin.sold_local_wh)}",
            f"  Sold to the retailer       {energy(origin.sold_grid_wh)}",
            f"  Green premiums paid        {money(origin.premium_paid_nano)}",
            f"  Green premiums received    {money(-origin.premium_received_nano)}",
        ]
    power_plant = s.flexibility
    if power_plant is not None:
        lines += [
            "Flexibility for the grid operator (federated power plant)",
            f"  Requests taken part in     {power_plant.requests:>12d}",
            f"  Committed                  {energy(power_plant.committed_wh)}",
            f"  Delivered                  {energy(power_plant.delivered_wh)}",
            f"  Revenue share              {money(-power_plant.revenue_nano)}",
            f"  Penalties                  {money(power_plant.penalty_nano)}",
        ]
    return "\n".join(lines) + "\n"


def _decimal_string(amount_nano: int) -> str:
    return format(nano_to_decimal(amount_nano), "f")
