"""The community's residual: what it would import from (+) or export to (−) the upstream market at
each upstream price, as one bid for one upstream slot.

Inside the community the homes' net imports cancel, so what the community as a whole wants from
outside at a price p is the sum D(p) of its homes' curves, each read as our own mechanism will read
it at our gate (the desk builds them: :meth:`~hems.community.upstream.desk.UpstreamDesk._curves_of`)
and evaluated as the bid-curve mechanism evaluates curves (:func:`curve_value_wh`). Outside our own
price band the homes have the retailer: above our retail price the community buys nothing upstream
(its homes buy from the retailer for less) and below our feed-in price it sells nothing upstream (the
retailer pays more), so the residual is ``min(D(p), 0)`` above the band and ``max(D(p), 0)`` below it.
Sums are rounded half-even to whole Wh once per point; rounding and that clipping are both
non-decreasing maps, so the residual of non-increasing curves stays non-increasing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from hems.community.mechanisms.base import Curve, orders_from_curve
from hems.community.mechanisms.bid_curve import curve_value_wh
from hems.community.records import utc
from hems.community.upstream.slots import SlotMapping, split_wh
from hems.protocol import messages
from hems.protocol.messages import MAX_ENERGY_WH, MAX_ORDERS_PER_SLOT, BidFormat, SlotBid
from hems.protocol.units import round_half_even


@dataclass(frozen=True)
class PriceBand:
    """Our own retailer's prices (µ¤/kWh): the community's alternative to the upstream market."""

    feed_in_price_micro: int
    retail_price_micro: int


def residual_wh(curves: Sequence[Curve], price_micro: int, band: PriceBand) -> int:
    """The community's net import from outside at one price: Σ curves, whole Wh, clipped by the band."""
    total = sum((Fraction(curve_value_wh(curve, price_micro)) for curve in curves), Fraction(0))
    value = round_half_even(total)
    if price_micro > band.retail_price_micro:
        value = min(value, 0)
    elif price_micro < band.feed_in_price_micro:
        value = max(value, 0)
    return max(-MAX_ENERGY_WH, min(MAX_ENERGY_WH, value))


def residual_curve(curves: Sequence[Curve], grid_micro: Sequence[int], band: PriceBand) -> tuple[int, ...]:
    """:func:`residual_wh` at every price of ``grid_micro`` (non-increasing)."""
    return tuple(residual_wh(curves, price, band) for price in grid_micro)


def upstream_quantities(mapping: SlotMapping, upstream_start_s: int, curves_of: Callable[[int], Sequence[Curve]],
                        grid_micro: Sequence[int], band: PriceBand) -> tuple[int, ...]:
    """The residual of one upstream slot on the upstream grid. ``curves_of(our_slot_s)`` gives the
    homes' curves of one of our slots. When the upstream slot holds several of ours their curves are
    summed (and rounded once); when ours holds several upstream slots our residual is split evenly
    over them, whole Wh, the remainder to the first (:func:`split_wh`)."""
    if mapping.upstream_per_ours > 1:
        our_start_s = upstream_start_s // mapping.our_slot_s * mapping.our_slot_s
        whole = residual_curve(curves_of(our_start_s), grid_micro, band)
        index, parts = mapping.index_in_ours(upstream_start_s), mapping.upstream_per_ours
        return tuple(split_wh(quantity, parts)[index] for quantity in whole)
    curves = [curve for slot_s in mapping.our_slots(upstream_start_s) for curve in curves_of(slot_s)]
    return residual_curve(curves, grid_micro, band)


def residual_bid(upstream_start_s: int, duration_s: int, grid_micro: Sequence[int], quantities: Sequence[int],
                 bid_format: BidFormat) -> SlotBid:
    """One upstream slot's bid in the format the upstream market asks for: the curve, or its step
    orders (a grid so fine that it needs more orders than a slot carries is thinned, every other
    inner price, until they fit)."""
    if bid_format is BidFormat.CURVE:
        return SlotBid(slot_start=utc(upstream_start_s), duration_s=duration_s,
                       curve=messages.Curve(prices_micro=list(grid_micro), net_import_wh=list(quantities)))
    if bid_format is not BidFormat.ORDERS:
        raise ValueError(f"the upstream market takes no bids (bid format {bid_format})")
    prices, points = list(grid_micro), list(quantities)
    while True:
        book = orders_from_curve(Curve("residual", tuple(prices), tuple(points)))
        if len(book) <= MAX_ORDERS_PER_SLOT or len(prices) <= 2:
            break
        keep = sorted(set(range(0, len(prices), 2)) | {len(prices) - 1})
        prices, points = [prices[index] for index in keep], [points[index] for index in keep]
    orders = [messages.Order(order_id=uuid.uuid4(), side=order.side, energy_wh=order.energy_wh,
                             limit_price_micro=order.limit_price_micro) for order in book[:MAX_ORDERS_PER_SLOT]]
    return SlotBid(slot_start=utc(upstream_start_s), duration_s=duration_s, orders=orders)
