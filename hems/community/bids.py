"""The stored book of a slot as the input of whichever mechanism is configured.

Homes send orders or a net-import curve per slot; a mechanism clears from orders, curves or
metered positions (:class:`InputKind`). The manager converts between the first two, so every
bidding mechanism works with either bid format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hems.community.mechanisms.base import (
    ClearingInput,
    Curve,
    InputKind,
    MarketParameters,
    Order,
    Position,
    curve_from_orders,
    orders_from_curve,
)
from hems.community.records import utc
from hems.protocol.messages import Side


def orders_of(home: str, bid: Mapping[str, Any]) -> list[Order]:
    """A stored bid's orders (curves converted to step orders)."""
    if bid.get("curve"):
        return orders_from_curve(curve_of(home, bid))
    return [Order(str(order["order_id"]), home, Side(order["side"]), int(order["energy_wh"]),
                  int(order["limit_price_micro"])) for order in bid.get("orders", ())]


def curve_of(home: str, bid: Mapping[str, Any], grid_micro: Sequence[int] = (), sequence: int = 0) -> Curve:
    """A stored bid's curve (orders converted to a step curve on ``grid_micro``)."""
    curve = bid.get("curve")
    if curve:
        return Curve(home, tuple(curve["prices_micro"]), tuple(curve["net_import_wh"]), sequence)
    return curve_from_orders(home, orders_of(home, bid), tuple(grid_micro), sequence)


def clearing_input(kind: InputKind, parameters: MarketParameters, bids: Sequence[tuple[str, int, Mapping[str, Any]]],
                   positions: Mapping[str, tuple[int, int]], *, slot_start_s: int, duration_s: int) -> ClearingInput:
    """The book for one slot: ``bids`` are (home, sequence, bid) and ``positions`` metered (import, export)."""
    if kind is InputKind.POSITIONS:
        return ClearingInput(parameters, positions=tuple(Position(home, imported, exported)
                                                         for home, (imported, exported) in sorted(positions.items())),
                             slot_start=utc(slot_start_s), duration_s=duration_s)
    if kind is InputKind.CURVES:
        curves = tuple(curve_of(home, bid, parameters.price_grid_micro, sequence) for home, sequence, bid in bids)
        return ClearingInput(parameters, curves=curves, slot_start=utc(slot_start_s), duration_s=duration_s)
    orders = tuple(order for home, _, bid in bids for order in orders_of(home, bid))
    return ClearingInput(parameters, orders=orders, slot_start=utc(slot_start_s), duration_s=duration_s)


def crossing_reason(orders: Sequence[Order]) -> str:
    """Why a home's own orders cross ('' if they do not): a buy limit at or above its own sell limit
    would trade the home with itself."""
    buys = [order.limit_price_micro for order in orders if order.side is Side.BUY]
    sells = [order.limit_price_micro for order in orders if order.side is Side.SELL]
    if buys and sells and max(buys) >= min(sells):
        return f"own orders cross: buy limit {max(buys)} >= sell limit {min(sells)}"
    return ""
