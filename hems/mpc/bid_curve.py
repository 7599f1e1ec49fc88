"""Bid curves for the local market, derived from the home's own model.

For a slot t the curve gives the home's net import in that slot (Wh; + buy, - sell) as a
function of a single local price p, on a grid from the feed-in price (p_0) to the retail price
(p_K), clipped to the community's price band when one is given. Each point is a re-solve of
the full model with the slot's import and export prices both set to p (a one-price local
market), everything else unchanged, so the curve reflects the battery, EV, heat pump and every
other slot. The community manager can then clear without knowing the home's devices.

For an exact optimum the net import is non-increasing in its own price (the optimal value is
concave in p and the net import is its derivative); a solver's tolerance can break that by a
few Wh, so monotonicity is enforced by construction with a running minimum from low to high
prices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from hems.mpc.inputs import PlanInputs, PreparedInputs
from hems.mpc.planner import Planner


@dataclass(frozen=True)
class BidCurve:
    """Net import of one slot at each price of an ascending grid (non-increasing)."""

    slot_start: datetime
    duration_s: int
    prices: tuple[float, ...]  # currency per kWh, ascending
    net_import_wh: tuple[int, ...]  # + buy, - sell; non-increasing in price

    def quantity_at(self, price: float) -> int:
        """Net import at ``price``: the step function's value at the highest grid price <= price."""
        index = int(np.searchsorted(np.asarray(self.prices), price, side="right")) - 1
        return self.net_import_wh[max(index, 0)]


def price_grid(feed_in: float, retail: float, points: int, band: tuple[float, float] | None = None) -> np.ndarray:
    """Ascending price grid from ``feed_in`` to ``retail`` (inside ``band`` if given)."""
    low, high = min(feed_in, retail), max(feed_in, retail)
    if band is not None:
        low, high = max(low, band[0]), min(high, band[1])
        if low > high:  # the band lies outside [feed-in, retail]: bid at the band edge only
            low = high = min(max(band[0], min(feed_in, retail)), max(feed_in, retail))
    if high - low < 1e-9:
        return np.array([low])
    return np.linspace(low, high, max(points, 2))


def _with_slot_price(prepared: PreparedInputs, slot: int, price: float) -> PreparedInputs:
    import_price, export_price = prepared.import_price.copy(), prepared.export_price.copy()
    import_price[slot] = export_price[slot] = price
    return dataclasses.replace(prepared, import_price=import_price, export_price=export_price)


def bid_curves(planner: Planner, inputs: PlanInputs, slots: Sequence[int] = (0,), points: int = 11,
               prices: Sequence[float] | None = None) -> list[BidCurve]:
    """One curve per requested slot index, from ``points`` re-solves each.

    ``prices`` (currency per kWh, strictly ascending): evaluate every curve on exactly this grid
    (a market's published grid) instead of one derived from the slot's tariff; ``points`` is then
    unused.
    """
    explicit = None
    if prices is not None:
        explicit = np.asarray(prices, dtype=float)
        if explicit.ndim != 1 or explicit.size == 0 or not np.all(np.isfinite(explicit)) \
                or np.any(np.diff(explicit) <= 0):
            raise ValueError("prices must be a non-empty, finite, strictly ascending grid")
    prepared = planner.prepare(inputs)
    hours = planner.step_s / 3600.0
    curves = []
    for slot in slots:
        if not 0 <= slot < planner.n_steps:
            raise ValueError(f"slot {slot} outside the horizon of {planner.n_steps} slots")
        grid = explicit if explicit is not None else price_grid(
            float(prepared.export_price[slot]), float(prepared.import_price[slot]), points,
            prepared.community_price_band)
        quantities = []
        for price in grid:
            plan = planner.plan_prepared(_with_slot_price(prepared, slot, float(price)))
            step = plan.steps[slot]
            quantities.append((step.grid_import_w - step.grid_export_w) * hours)
        monotone = np.minimum.accumulate(np.asarray(quantities))
        curves.append(BidCurve(
            slot_start=prepared.slot_start(slot), duration_s=planner.step_s,
            prices=tuple(float(p) for p in grid), net_import_wh=tuple(int(round(q)) for q in monotone),
        ))
    return curves
