"""From the home's model to what goes on the wire: bid curves on the market's price grid,
as a curve or as step orders, in one :class:`OrderSubmission`.

The MPC works in currency per kWh (floats); the market in integer µ¤/kWh. The grid the curves
are evaluated on is the market's published ``price_grid_micro`` converted to currency per kWh,
and the wire curve carries the published integers themselves, so nothing is rounded twice.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from hems.community.mechanisms.base import Curve as BookCurve
from hems.community.mechanisms.base import orders_from_curve
from hems.mpc.bid_curve import BidCurve, bid_curves
from hems.mpc.inputs import PlanInputs, Trades
from hems.mpc.planner import Planner
from hems.protocol.messages import (MAX_ENERGY_WH, MAX_ORDERS_PER_SLOT, BidFormat, Curve, MarketConfig, Order,
                                    OrderSubmission, SlotBid)
from hems.protocol.units import micro_to_price


def price_grid_micro(config: MarketConfig, points: int) -> tuple[int, ...]:
    """The grid to bid on: the market's published one, else ``points`` integers from the feed-in
    to the retail price."""
    if config.price_grid_micro:
        return tuple(config.price_grid_micro)
    grid = np.linspace(config.feed_in_price_micro, config.retail_price_micro, max(points, 2))
    return tuple(sorted({int(round(price)) for price in grid}))


def slot_indices(inputs: PlanInputs, step_s: int, slot_starts_s: Sequence[float]) -> list[int]:
    """Horizon indices of the slots in ``slot_starts_s`` that lie inside the inputs' horizon."""
    first_s = inputs.start.timestamp()
    horizon = len(inputs.load_w)
    indices = []
    for slot_s in slot_starts_s:
        offset = (slot_s - first_s) / step_s
        index = int(round(offset))
        if abs(offset - index) < 1e-6 and 0 <= index < horizon:
            indices.append(index)
    return indices


def compute_curves(planner: Planner, inputs: PlanInputs, indices: Sequence[int],
                   grid_micro: Sequence[int]) -> list[BidCurve]:
    """The home's net-import curve of each slot on the market's grid (blocking: K re-solves each;
    run it in a worker thread)."""
    prices = [micro_to_price(price) for price in grid_micro]
    return bid_curves(planner, inputs, slots=tuple(indices), prices=prices)


def wire_curve(curve: BidCurve, grid_micro: Sequence[int]) -> Curve:
    """The protocol's curve: the published grid and the curve's Wh (non-increasing by construction)."""
    if len(curve.net_import_wh) != len(grid_micro):
        raise ValueError(f"curve of {len(curve.net_import_wh)} points on a grid of {len(grid_micro)}")
    quantities = [min(max(q, -MAX_ENERGY_WH), MAX_ENERGY_WH) for q in curve.net_import_wh]
    return Curve(prices_micro=list(grid_micro), net_import_wh=quantities)


def step_orders(home: str, curve: Curve) -> list[Order]:
    """The step orders equivalent to ``curve`` (the community mechanisms' own conversion), each
    with a fresh UUID. A grid so fine that it would need more orders than a slot may carry is
    thinned (every other inner price) until the orders fit."""
    prices, quantities = list(curve.prices_micro), list(curve.net_import_wh)
    while True:
        book = orders_from_curve(BookCurve(home, tuple(prices), tuple(quantities)))
        if len(book) <= MAX_ORDERS_PER_SLOT or len(prices) <= 2:
            break
        keep = sorted(set(range(0, len(prices), 2)) | {len(prices) - 1})
        prices, quantities = [prices[i] for i in keep], [quantities[i] for i in keep]
    return [Order(order_id=uuid.uuid4(), side=order.side, energy_wh=order.energy_wh,
                  limit_price_micro=order.limit_price_micro) for order in book[:MAX_ORDERS_PER_SLOT]]


def slot_bid(home: str, curve: BidCurve, grid_micro: Sequence[int], bid_format: BidFormat) -> SlotBid:
    """One slot's bid in the format the market asks for (``curve`` or ``orders``)."""
    wire = wire_curve(curve, grid_micro)
    slot_start = curve.slot_start.astimezone(timezone.utc)
    if bid_format is BidFormat.CURVE:
        return SlotBid(slot_start=slot_start, duration_s=curve.duration_s, curve=wire)
    if bid_format is BidFormat.ORDERS:
        return SlotBid(slot_start=slot_start, duration_s=curve.duration_s, orders=step_orders(home, wire))
    raise ValueError(f"bid format {bid_format} takes no bids")


def submission(home: str, sequence: int, curves: Sequence[BidCurve], grid_micro: Sequence[int],
               bid_format: BidFormat) -> OrderSubmission:
    """One submission of every curve's slot."""
    return OrderSubmission(sequence=sequence, slots=[slot_bid(home, curve, grid_micro, bid_format)
                                                     for curve in curves])


def with_market_terms(inputs: PlanInputs, trades: Trades | None,
                      band: tuple[float, float] | None) -> PlanInputs:
    """``inputs`` with today's committed trades and price band (they may be newer than the plan)."""
    return dataclasses.replace(inputs, trades=trades, community_price_band=band)


class SequenceCounter:
    """The submission's ``sequence``: increasing per home, also across restarts, because it is
    never below the wall clock in milliseconds (a restart takes longer than a millisecond)."""

    def __init__(self) -> None:
        self.last = -1

    def next(self, now_s: float) -> int:
        """The next sequence number at wall time ``now_s``."""
        self.last = max(self.last + 1, int(now_s * 1000))
        return self.last


def utc(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
