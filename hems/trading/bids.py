"""From the home's model to what goes on the wire: bid curves on the market's price grid,
as a curve or as step orders, in one :class:`OrderSubmission`.

The MPC works in currency per kWh (floats); the market in integer µ¤/kWh. The grid the curves
are evaluated on is the market's published ``price_grid_micro`` converted to currency per kWh,
and the wire curve carries the published integers themselves, so nothing is rounded twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from hems.community.mechanisms.base import Curve as BookCurve
from hems.community.mechanisms.base import orders_from_curve
from hems.mpc.bid_curve import BidCurve, bid_curves
from hems.mpc.inputs import PlanInputs, PlanTerms
from hems.mpc.planner import Planner
from hems.protocol.messages import (MAX_ENERGY_WH, MAX_ORDERS_PER_SLOT, BidFormat, Curve, Donation, EnergyClass,
                                    MarketConfig, Order, OrderSubmission, Side, SlotBid)
from hems.protocol.units import micro_to_price


@dataclass(frozen=True)
class DonationTerms:
    """Up to ``energy_wh`` of each slot's surplus at ``price_micro`` (0: free) for the recipients only."""

    recipients: tuple[str, ...]
    energy_wh: int
    price_micro: int = 0


@dataclass(frozen=True)
class BidTerms:
    """What the home states with every bid besides its curve (read by differentiated markets, ignored
    by others): the class of the energy it sells, the premium it pays per kWh for green-local energy
    (earned only by ``partners`` when set), and its donations."""

    energy_class: EnergyClass | None = None
    green_premium_micro: int = 0
    partners: tuple[str, ...] | None = None
    donations: tuple[DonationTerms, ...] = ()

    def for_buys(self) -> dict[str, object]:
        """The preference fields of a buy order (or of a curve's buy side)."""
        if not self.green_premium_micro:
            return {}
        return {"green_premium_micro": self.green_premium_micro,
                "partners": None if self.partners is None else list(self.partners)}

    def for_sells(self) -> dict[str, object]:
        """The preference fields of a sell order (or of a curve's sell side)."""
        return {} if self.energy_class is None else {"energy_class": self.energy_class}

    def wire_donations(self) -> list[Donation]:
        """This slot's donations, each with a fresh id."""
        return [Donation(donation_id=uuid.uuid4(), recipients=list(item.recipients), energy_wh=item.energy_wh,
                         price_micro=item.price_micro) for item in self.donations]


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


def wire_curve(curve: BidCurve, grid_micro: Sequence[int], terms: BidTerms = BidTerms()) -> Curve:
    """The protocol's curve: the published grid and the curve's Wh (non-increasing by construction),
    with the home's terms on the sides it has."""
    if len(curve.net_import_wh) != len(grid_micro):
        raise ValueError(f"curve of {len(curve.net_import_wh)} points on a grid of {len(grid_micro)}")
    quantities = [min(max(q, -MAX_ENERGY_WH), MAX_ENERGY_WH) for q in curve.net_import_wh]
    preferences = {**(terms.for_buys() if quantities[0] > 0 else {}),
                   **(terms.for_sells() if quantities[-1] < 0 else {})}
    return Curve(prices_micro=list(grid_micro), net_import_wh=quantities, **preferences)


def step_orders(home: str, curve: Curve, terms: BidTerms = BidTerms()) -> list[Order]:
    """The step orders equivalent to ``curve`` (the community mechanisms' own conversion), each
    with a fresh UUID and the terms of its side. A grid so fine that it would need more orders than
    a slot may carry is thinned (every other inner price) until the orders fit."""
    prices, quantities = list(curve.prices_micro), list(curve.net_import_wh)
    while True:
        book = orders_from_curve(BookCurve(home, tuple(prices), tuple(quantities)))
        if len(book) <= MAX_ORDERS_PER_SLOT or len(prices) <= 2:
            break
        keep = sorted(set(range(0, len(prices), 2)) | {len(prices) - 1})
        prices, quantities = [prices[i] for i in keep], [quantities[i] for i in keep]
    return [Order(order_id=uuid.uuid4(), side=order.side, energy_wh=order.energy_wh,
                  limit_price_micro=order.limit_price_micro,
                  **(terms.for_buys() if order.side is Side.BUY else terms.for_sells()))
            for order in book[:MAX_ORDERS_PER_SLOT]]


def slot_bid(home: str, curve: BidCurve, grid_micro: Sequence[int], bid_format: BidFormat,
             terms: BidTerms = BidTerms()) -> SlotBid:
    """One slot's bid in the format the market asks for (``curve`` or ``orders``); the donations
    only where the bid sells something to give."""
    wire = wire_curve(curve, grid_micro, terms)
    slot_start = curve.slot_start.astimezone(timezone.utc)
    donations = terms.wire_donations() if wire.net_import_wh[-1] < 0 else []
    if bid_format is BidFormat.CURVE:
        return SlotBid(slot_start=slot_start, duration_s=curve.duration_s, curve=wire, donations=donations)
    if bid_format is BidFormat.ORDERS:
        return SlotBid(slot_start=slot_start, duration_s=curve.duration_s, orders=step_orders(home, wire, terms),
                       donations=donations)
    raise ValueError(f"bid format {bid_format} takes no bids")


def submission(home: str, sequence: int, curves: Sequence[BidCurve], grid_micro: Sequence[int],
               bid_format: BidFormat, terms: BidTerms = BidTerms()) -> OrderSubmission:
    """One submission of every curve's slot."""
    return OrderSubmission(sequence=sequence, slots=[slot_bid(home, curve, grid_micro, bid_format, terms)
                                                     for curve in curves])


def with_market_terms(inputs: PlanInputs, terms: PlanTerms) -> PlanInputs:
    """``inputs`` with today's committed trades, price band and net-import bounds (they may be newer
    than the plan)."""
    return terms.applied_to(inputs)


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
