"""What the power plant reads from the community's books: the homes' flexibility from the bids they
sent, the price they expect, and the baselines delivery is measured against.

A home's flexibility is read off its bid for the slot (a curve, or orders read as a step curve on
the price grid) around the community's expected price: the uniform equilibrium of the book as it
stands (the ``bid_curve`` rule). The home never states its devices, only what it would do at
which price, which it already tells the market.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from hems.community.bids import curve_of
from hems.community.flexibility.delivery import baseline_from_history
from hems.community.flexibility.model import HomeFlexibility, flexibility_from_curve
from hems.community.mechanisms.base import Curve, MarketParameters
from hems.community.mechanisms.bid_curve import curve_value_wh, equilibrium_price
from hems.community.state import CommunityState, StoredBid

DAY_S = 86_400


def expected_price_micro(curves: Sequence[Curve], parameters: MarketParameters) -> int:
    """The price the book would clear at now (bid-curve equilibrium on the price grid), whole µ¤/kWh;
    the midpoint of feed-in and retail for an empty book."""
    grid = list(parameters.price_grid_micro)
    if not curves:
        return (parameters.feed_in_price_micro + parameters.retail_price_micro) // 2
    demand = [sum(curve_value_wh(curve, price) for curve in curves) for price in grid]
    price, _ = equilibrium_price(grid, demand, Fraction(parameters.k))
    return round(price)


def slot_flexibility(bids: Iterable[StoredBid], parameters: MarketParameters, slot_start_s: int
                     ) -> tuple[int, list[HomeFlexibility]]:
    """The expected price of one slot and every bidding home's flexibility around it."""
    curves = [curve_of(bid.home, bid.bid, parameters.price_grid_micro, bid.sequence) for bid in bids
              if bid.bid.get("curve") or bid.bid.get("orders")]
    reference = expected_price_micro(curves, parameters)
    return reference, [flexibility_from_curve(curve, reference, slot_start_s=slot_start_s) for curve in curves]


def metered_net_import_wh(state: CommunityState, slot_start_s: int) -> dict[str, int]:
    """Each reporting home's metered net import (import − export) in one slot."""
    return {home: imported - exported for home, (imported, exported) in state.meters_for_slot(slot_start_s).items()}


def baselines_wh(state: CommunityState, slot_start_s: int, declared: Mapping[str, int], *, days: int,
                 min_days: int) -> tuple[dict[str, int], dict[str, str]]:
    """Per home the baseline of one slot and where it came from (``history`` or ``declared``).

    History: the same slot on the previous ``days`` days, from the meter readings, when at least
    ``min_days`` of them have one (the mean; docs/flexibility.md); else the baseline the home declared
    with its bid. Days that had a request of their own are not skipped (the books do not yet say
    which days were event days; a caller can pass fewer days)."""
    past = [metered_net_import_wh(state, slot_start_s - back * DAY_S) for back in range(days, 0, -1)]
    values: dict[str, int] = {}
    sources: dict[str, str] = {}
    for home, declared_wh in declared.items():
        history = [day[home] for day in past if home in day]
        if len(history) >= min_days:
            values[home], sources[home] = baseline_from_history(history, days=days), "history"
        else:
            values[home], sources[home] = declared_wh, "declared"
    return values, sources
