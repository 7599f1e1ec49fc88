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
from hems.community.mechanisms.differentiated import ClassedOrder, DifferentiatedInput, Donation
from hems.community.records import utc
from hems.protocol.messages import EnergyClass, Side, SlotBid


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


def classed_orders_of(home: str, bid: Mapping[str, Any]) -> list[ClassedOrder]:
    """A stored bid's orders with their energy class (sells) or premium and partners (buys); a
    curve's preferences go to the orders derived from it."""
    stated = {str(order["order_id"]): order for order in bid.get("orders", ())}
    classed = []
    for order in orders_of(home, bid):
        preferences = stated.get(order.order_id) or bid.get("curve") or {}
        if order.side is Side.SELL:
            energy_class = preferences.get("energy_class")
            classed.append(ClassedOrder(order, None if energy_class is None else EnergyClass(energy_class)))
        else:
            partners = preferences.get("partners")
            classed.append(ClassedOrder(order, None, int(preferences.get("green_premium_micro") or 0),
                                        None if partners is None else frozenset(partners)))
    return classed


def donations_of(home: str, bid: Mapping[str, Any]) -> list[Donation]:
    """A stored bid's donations; the home is their donor."""
    return [Donation(str(item["donation_id"]), home, tuple(item["recipients"]), int(item["energy_wh"]),
                     int(item.get("price_micro", 0))) for item in bid.get("donations", ())]


def clearing_input(kind: InputKind, parameters: MarketParameters, bids: Sequence[tuple[str, int, Mapping[str, Any]]],
                   positions: Mapping[str, tuple[int, int]], *, slot_start_s: int, duration_s: int
                   ) -> ClearingInput | DifferentiatedInput:
    """The book for one slot: ``bids`` are (home, sequence, bid) and ``positions`` metered (import, export)."""
    if kind is InputKind.CLASSED_ORDERS:
        return DifferentiatedInput(parameters, tuple(order for home, _, bid in bids
                                                     for order in classed_orders_of(home, bid)),
                                   tuple(donation for home, _, bid in bids for donation in donations_of(home, bid)),
                                   utc(slot_start_s), duration_s)
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


def preference_problem(home: str, bid: SlotBid, members: frozenset[str], kind: InputKind,
                       retail_price_micro: int) -> str:
    """Why a bid's donations or partners cannot be taken ('' if they can). Classes and premiums are
    preferences other mechanisms simply do not read; a donation moves money, so only a mechanism that
    clears donations accepts one."""
    if bid.donations and kind is not InputKind.CLASSED_ORDERS:
        return "this market does not clear donations (the differentiated mechanism does)"
    for donation in bid.donations:
        if home in donation.recipients:
            return "a home cannot donate to itself"
        strangers = sorted(set(donation.recipients) - members)
        if strangers:
            return f"donation recipients are not members: {', '.join(strangers)}"
        if donation.price_micro > retail_price_micro:
            return f"donation price {donation.price_micro} is above the retail price {retail_price_micro}"
    stated = [bid.curve] if bid.curve is not None else list(bid.orders)
    partners = {partner for item in stated for partner in item.partners or ()}
    strangers = sorted(partners - members)
    if strangers:
        return f"partners are not members: {', '.join(strangers)}"
    return ""
