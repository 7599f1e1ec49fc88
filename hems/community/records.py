"""Clearing results as ledger bodies and as messages.

A ledger body holds only integers and strings (canonical JSON refuses floats), so a published
result can be recomputed and compared byte for byte. The public slot result carries aggregates
only; each home's allocation goes to that home alone and never names a counterparty.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from fractions import Fraction
from typing import Any
from uuid import UUID

from hems.community.mechanisms.base import ClearingResult, HomeAllocation, OrderFill, Provenance
from hems.protocol import messages
from hems.protocol.messages import Allocation, OrderOutcome, OrderStatus, Side, SlotResult, SlotState


def allocation_to_body(allocation: HomeAllocation) -> dict[str, Any]:
    """One home's allocation as a ledger body (its provenance only where the mechanism reports one)."""
    body = {
        "home": allocation.home, "bought_wh": allocation.bought_wh, "sold_wh": allocation.sold_wh,
        "paid_nano": allocation.paid_nano, "received_nano": allocation.received_nano,
        "network_fee_nano": allocation.network_fee_nano, "community_fee_nano": allocation.community_fee_nano,
        "sequence": allocation.sequence,
        "fills": [{"order_id": fill.order_id, "status": str(fill.status), "filled_wh": fill.filled_wh,
                   "price_micro": fill.price_micro} for fill in allocation.fills],
    }
    if allocation.provenance is not None:
        body["provenance"] = asdict(allocation.provenance)
    return body


def allocation_from_body(body: Mapping[str, Any]) -> HomeAllocation:
    """The inverse of :func:`allocation_to_body`."""
    return HomeAllocation(
        home=body["home"], bought_wh=body["bought_wh"], sold_wh=body["sold_wh"], paid_nano=body["paid_nano"],
        received_nano=body["received_nano"], network_fee_nano=body["network_fee_nano"],
        community_fee_nano=body["community_fee_nano"], sequence=body.get("sequence"),
        fills=tuple(OrderFill(fill["order_id"], OrderStatus(fill["status"]), fill["filled_wh"], fill["price_micro"])
                    for fill in body.get("fills", ())),
        provenance=Provenance(**body["provenance"]) if "provenance" in body else None,
    )


def result_to_body(result: ClearingResult, *, slot_start_s: int, duration_s: int, config_version: int,
                   price_rule_k: Fraction, seed: int, book_hash: str, homes: int,
                   non_responders: int) -> dict[str, Any]:
    """The public part of a clearing, for the CLEARING ledger record and the slot result."""
    prices = list(result.trade_prices_micro) or ([result.price_micro] if result.price_micro is not None
                                                  and result.traded_wh > 0 else [])
    return {
        "slot_start_s": slot_start_s, "duration_s": duration_s, "mechanism": result.mechanism,
        "config_version": config_version, "price_rule_k": _fraction_text(price_rule_k),
        "price_micro": result.price_micro, "buy_price_micro": result.buy_price_micro,
        "sell_price_micro": result.sell_price_micro,
        "min_trade_price_micro": min(prices) if prices else None,
        "median_trade_price_micro": int(statistics.median_low(prices)) if prices else None,
        "max_trade_price_micro": max(prices) if prices else None,
        "traded_wh": result.traded_wh, "grid_import_wh": result.grid_import_wh,
        "grid_export_wh": result.grid_export_wh, "retailer_nano": result.retailer_nano,
        "rounding_nano": result.rounding_nano, "homes": homes, "non_responders": non_responders,
        "tie_break_seed": seed, "book_hash": book_hash,
        "details": _plain(result.details),
    }


def result_from_bodies(body: Mapping[str, Any], allocations: Iterable[Mapping[str, Any]]) -> ClearingResult:
    """A stored clearing (public body and the allocation bodies), as settlement needs it."""
    return ClearingResult(
        mechanism=body["mechanism"], allocations=tuple(allocation_from_body(item) for item in allocations),
        price_micro=body["price_micro"], buy_price_micro=body["buy_price_micro"],
        sell_price_micro=body["sell_price_micro"], traded_wh=body["traded_wh"],
        grid_import_wh=body["grid_import_wh"], grid_export_wh=body["grid_export_wh"],
        retailer_nano=body["retailer_nano"], rounding_nano=body["rounding_nano"],
    )


def slot_result_message(body: Mapping[str, Any], state: SlotState, ledger_head: str) -> SlotResult:
    """The retained public result of a slot."""
    return SlotResult(
        slot_start=utc(body["slot_start_s"]), duration_s=body["duration_s"], state=state,
        mechanism=body["mechanism"], config_version=body["config_version"], price_rule_k=body["price_rule_k"],
        price_micro=body["price_micro"], buy_price_micro=body["buy_price_micro"],
        sell_price_micro=body["sell_price_micro"], min_trade_price_micro=body["min_trade_price_micro"],
        median_trade_price_micro=body["median_trade_price_micro"],
        max_trade_price_micro=body["max_trade_price_micro"], traded_wh=body["traded_wh"],
        grid_import_wh=body["grid_import_wh"], grid_export_wh=body["grid_export_wh"], homes=body["homes"],
        non_responders=body["non_responders"], tie_break_seed=body["tie_break_seed"],
        book_hash=body["book_hash"], rounding_nano=body["rounding_nano"], ledger_head=ledger_head,
        **_grid_summary(body.get("details", {}).get("grid")),
    )


def _grid_summary(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """The public part of a grid review (docs/grid.md): congested or not, and what was curtailed."""
    if report is None:
        return {}
    return {"grid_congested": bool(report["congested"]), "grid_curtailed_wh": int(report.get("curtailed_wh", 0))}


def allocation_message(allocation: HomeAllocation, *, slot_start_s: int, duration_s: int,
                       mechanism: str) -> Allocation:
    """One home's private allocation. Fills of orders the manager derived from a curve carry no
    UUID and are summarised by the totals only."""
    outcomes = []
    for fill in allocation.fills:
        try:
            order_id = UUID(fill.order_id)
        except ValueError:
            continue
        outcomes.append(OrderOutcome(order_id=order_id, status=fill.status, filled_wh=fill.filled_wh,
                                     price_micro=fill.price_micro))
    return Allocation(
        slot_start=utc(slot_start_s), duration_s=duration_s, mechanism=mechanism, sequence=allocation.sequence,
        bought_wh=allocation.bought_wh, sold_wh=allocation.sold_wh,
        buy_price_micro=allocation.average_price_micro(Side.BUY),
        sell_price_micro=allocation.average_price_micro(Side.SELL),
        paid_nano=allocation.paid_nano, received_nano=allocation.received_nano, fees_nano=allocation.fees_nano,
        orders=outcomes,
        provenance=None if allocation.provenance is None else messages.Provenance(**asdict(allocation.provenance)),
    )


def book_hash(bids: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 of the snapshot of the book that was cleared (published, so a home can check its bid
    was in it without seeing anyone else's)."""
    canonical = json.dumps(sorted(bids, key=lambda bid: (bid["home"], bid["sequence"])), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


def _fraction_text(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.12g}"
    return text if Fraction(text) == value else f"{value.numerator}/{value.denominator}"


def _plain(value: Any) -> Any:
    """Details as ledger-safe values: ints, strings, lists and dicts; anything else as text."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value)
