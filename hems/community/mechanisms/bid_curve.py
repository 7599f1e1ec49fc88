"""Bid-curve equilibrium (PowerMatcher style, one shot): markets.md §4.

Each home sends its net import d_i(p) (Wh; + buy, − sell), non-increasing in p, on a price grid (normally
the published ``MarketParameters.price_grid_micro``, but any ascending grid is accepted). A curve is read
piecewise-linearly between its points and held flat beyond its ends, so the aggregate
D(p) = Σ_i d_i(p) is exactly piecewise-linear on the union of all curve grids, λ⁻ and λ⁺; evaluating D
there and interpolating between bracketing points is exact.

- D(λ⁺) > 0: p* = λ⁺ and the community imports D(λ⁺) (scarcity);
- D(λ⁻) < 0: p* = λ⁻ and it exports −D(λ⁻) (surplus);
- D zero on an interval [a, b]: the k-rule, p* = k·b + (1 − k)·a (k = 1: the bid end);
- otherwise, for D(p_k) > 0 > D(p_{k+1}): p* = p_k + (p_{k+1} − p_k)·D(p_k)/(D(p_k) − D(p_{k+1})).

p* is kept exact (a Fraction) for the allocation x_i = d_i(p*), whose sum is exactly D(p*) (0 inside);
the money is at p* rounded half-even to µ¤/kWh, for buyers and sellers alike, so price rounding leaves no
residual. Purchases and sales are rounded to whole Wh separately, each to its rounded total by largest
remainder, so home-to-home volume balances; what rounding moves onto the retailer position is reported
in ``details["rounding_to_retailer_wh"]``.

Speed, exactly: curves on one shared grid (the common case) are cleared as a homes × prices int64 array.
Interpolation is linear in the quantities, so D is the curve of the column sums, and the allocation at
p* is integer numerators over one denominator, rounded by integer remainders (:mod:`.rounding`). Curves
on differing grids, or too large for int64, take the general path through :func:`curve_value_wh`.

Fees: curves are cleared at the energy price. Buyers pay ``fee_micro`` per kWh on the volume they get
from other homes (in a scarcity slot, the home-to-home volume is shared among buyers pro rata to what
they bought); a home that wants the fee to shape its demand includes it in its curve.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from operator import attrgetter
from typing import ClassVar

import numpy as np

from hems.community.mechanisms.base import (
    ClearingInput,
    ClearingResult,
    Curve,
    HomeAllocation,
    InputKind,
    MarketParameters,
)
from hems.community.mechanisms.rounding import INT64_SAFE, largest_remainder, round_shares, tie_break_ranks
from hems.protocol.units import round_half_even

__all__ = ["BidCurveEquilibrium", "bid_curve_fallback", "curve_value_wh", "equilibrium_price", "evaluation_grid", "largest_remainder",
           "tie_break_ranks", "validate_curve"]


def validate_curve(curve: Curve) -> None:
    """ValueError unless the curve has points on a strictly ascending grid and never increases."""
    prices, quantities = curve.prices_micro, curve.net_import_wh
    if not prices or len(prices) != len(quantities):
        raise ValueError(f"curve of {curve.home!r}: {len(prices)} prices for {len(quantities)} quantities")
    if any(high <= low for low, high in zip(prices, prices[1:])):
        raise ValueError(f"curve of {curve.home!r}: prices must be strictly ascending")
    if any(later > earlier for earlier, later in zip(quantities, quantities[1:])):
        raise ValueError(f"curve of {curve.home!r}: net import must not increase with the price")


def curve_value_wh(curve: Curve, price_micro: Fraction | int) -> Fraction | int:
    """The curve's net import at a price: linear between its points, flat beyond its ends (an int
    wherever that is exact, which keeps the common case of curves on the published grid fast)."""
    prices, quantities = curve.prices_micro, curve.net_import_wh
    if price_micro <= prices[0]:
        return quantities[0]
    if price_micro >= prices[-1]:
        return quantities[-1]
    upper = bisect.bisect_left(prices, price_micro)
    if prices[upper] == price_micro:
        return quantities[upper]
    low_price, high_price = prices[upper - 1], prices[upper]
    low_wh, high_wh = quantities[upper - 1], quantities[upper]
    return low_wh + (high_wh - low_wh) * Fraction(price_micro - low_price, high_price - low_price)


def evaluation_grid(curves: Sequence[Curve], parameters: MarketParameters) -> list[int]:
    """Every price where some curve bends, inside [λ⁻, λ⁺], plus λ⁻ and λ⁺ themselves."""
    low, high = parameters.feed_in_price_micro, parameters.retail_price_micro
    points = {low, high}
    points.update(price for price in parameters.price_grid_micro if low <= price <= high)
    for prices in {curve.prices_micro for curve in curves}:  # curves mostly share one grid
        points.update(price for price in prices if low <= price <= high)
    return sorted(points)


def equilibrium_price(grid: Sequence[int], demand_wh: Sequence[Fraction | int], k: Fraction) -> tuple[Fraction, str]:
    """p* (exact) of the aggregate D sampled on ``grid`` (non-increasing), and which case decided it."""
    zeros = [index for index, value in enumerate(demand_wh) if value == 0]
    if zeros:
        low, high = grid[zeros[0]], grid[zeros[-1]]
        return k * high + (1 - k) * low, "flat" if high > low else "interior"
    if demand_wh[-1] > 0:
        return Fraction(grid[-1]), "scarcity"
    if demand_wh[0] < 0:
        return Fraction(grid[0]), "surplus"
    upper = next(index for index, value in enumerate(demand_wh) if value < 0)
    above, below = Fraction(demand_wh[upper - 1]), Fraction(demand_wh[upper])
    step = grid[upper] - grid[upper - 1]
    return grid[upper - 1] + step * above / (above - below), "interior"


class BidCurveEquilibrium:
    """Uniform price where the homes' aggregate net-import curve crosses zero (markets.md §4)."""

    name: ClassVar[str] = "bid_curve"
    input_kind: ClassVar[InputKind] = InputKind.CURVES
    description: ClassVar[str] = ("One-shot equilibrium of the homes' net-import curves, interpolated "
                                  "between grid prices; the retailer takes scarcity at λ⁺ and surplus at λ⁻.")

    def clear(self, market: ClearingInput) -> ClearingResult:
        """Clear one slot from its curves."""
        parameters = market.parameters
        if parameters.feed_in_price_micro >= parameters.retail_price_micro:
            raise ValueError("the feed-in price must be below the retail price")
        curves = sorted(market.curves, key=attrgetter("home"))
        quantities = _shared_grid_quantities(curves)
        if quantities is None:
            for curve in curves:
                validate_curve(curve)
        homes = [curve.home for curve in curves]
        if len(set(homes)) != len(homes):
            raise ValueError("more than one curve for a home")
        if not curves:
            return ClearingResult(mechanism=self.name, allocations=())

        grid = evaluation_grid(curves, parameters)
        if quantities is not None:
            # Interpolation is linear in the quantities: the aggregate is the curve of the column sums.
            aggregate = Curve("", curves[0].prices_micro, tuple(quantities.sum(axis=0).tolist()))
            demand = [curve_value_wh(aggregate, price) for price in grid]
        else:
            demand = [sum(curve_value_wh(curve, price) for curve in curves) for price in grid]
        price_exact, case = equilibrium_price(grid, demand, Fraction(parameters.k))
        if quantities is not None:
            numerators, denominator = _shared_grid_allocation(curves[0].prices_micro, quantities, price_exact)
        else:
            numerators, denominator = _common_denominator([curve_value_wh(curve, price_exact) for curve in curves])
        allocated = Fraction(int(numerators.sum()), denominator)
        if case in ("interior", "flat") and allocated != 0:
            raise RuntimeError("bid curve: allocations at an interior equilibrium do not add up to 0")

        bought_wh, sold_wh = _round_sides(numerators, denominator, parameters.seed)
        total_bought, total_sold = int(bought_wh.sum()), int(sold_wh.sum())
        imported_wh = max(total_bought - total_sold, 0)
        exported_wh = max(total_sold - total_bought, 0)
        traded_wh = min(total_bought, total_sold)
        from_homes_wh = _home_to_home_purchases(bought_wh, total_bought, traded_wh, parameters.seed)
        price_micro = round_half_even(price_exact)
        network_fee, community_fee = parameters.network_fee_micro, parameters.community_fee_micro

        allocations = tuple(
            HomeAllocation(curve.home, bought, sold, bought * price_micro, sold * price_micro,
                           from_homes * network_fee, from_homes * community_fee, (), curve.sequence)
            for curve, bought, sold, from_homes
            in zip(curves, bought_wh.tolist(), sold_wh.tolist(), from_homes_wh.tolist())
        )
        return ClearingResult(
            mechanism=self.name,
            allocations=allocations,
            price_micro=price_micro,
            traded_wh=traded_wh,
            grid_import_wh=imported_wh,
            grid_export_wh=exported_wh,
            retailer_nano=(imported_wh - exported_wh) * price_micro,
            trade_prices_micro=(price_micro,) if traded_wh else (),
            details={
                "case": case,
                "k": str(parameters.k),
                "price_exact_micro": str(price_exact),
                "grid_points": len(grid),
                "rounding_to_retailer_wh": str(imported_wh - exported_wh - allocated),
            },
        )


#: Curves whose quantities stay below this (Wh) are cleared in int64 arrays when they share a grid.
_FAST_WH = 2**40


def _shared_grid_quantities(curves: Sequence[Curve]) -> np.ndarray | None:
    """The curves' quantities as a homes × prices int64 array when every curve is valid, on one grid
    and small enough for int64 arithmetic; None otherwise (the general path, which also names an
    invalid curve)."""
    if not curves:
        return None
    prices = curves[0].prices_micro
    if (len(prices) < 1 or any(high <= low for low, high in zip(prices, prices[1:]))
            or any(curve.prices_micro != prices for curve in curves)):
        return None
    try:
        quantities = np.array([curve.net_import_wh for curve in curves], dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        return None
    if quantities.shape != (len(curves), len(prices)) or int(np.abs(quantities).max()) >= _FAST_WH:
        return None
    if np.any(np.diff(quantities, axis=1) > 0):
        return None
    return quantities


def _shared_grid_allocation(prices: Sequence[int], quantities: np.ndarray,
                            price_micro: Fraction) -> tuple[np.ndarray, int]:
    """Every curve's net import at ``price_micro`` as integer numerators over one denominator."""
    if price_micro <= prices[0]:
        return quantities[:, 0], 1
    if price_micro >= prices[-1]:
        return quantities[:, -1], 1
    upper = bisect.bisect_left(prices, price_micro)
    if prices[upper] == price_micro:
        return quantities[:, upper], 1
    share = Fraction(price_micro - prices[upper - 1], prices[upper] - prices[upper - 1])
    low, high = quantities[:, upper - 1], quantities[:, upper]
    largest_wh = int(np.abs(quantities).max())
    if (2 * largest_wh + 1) * share.denominator * len(low) >= INT64_SAFE:
        low, high = low.astype(object), high.astype(object)
    return low * share.denominator + (high - low) * share.numerator, share.denominator


def _common_denominator(values: Sequence[Fraction | int]) -> tuple[np.ndarray, int]:
    """Exact values as integer numerators over their least common denominator."""
    fractions = [Fraction(value) for value in values]
    denominator = math.lcm(*(value.denominator for value in fractions))
    numerators = [value.numerator * (denominator // value.denominator) for value in fractions]
    largest = max((abs(value) for value in numerators), default=0)
    dtype = np.int64 if largest * max(len(numerators), 1) < INT64_SAFE else object
    return np.array(numerators, dtype=dtype), denominator


def _round_sides(numerators: np.ndarray, denominator: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Purchases and sales in whole Wh, each side to its own rounded total (largest remainder)."""
    buys = np.where(numerators > 0, numerators, 0)
    sells = np.where(numerators < 0, -numerators, 0)
    count = len(numerators)
    bought = round_shares(buys, denominator, round_half_even(Fraction(int(buys.sum()), denominator)),
                          tie_break_ranks(count, seed))
    sold = round_shares(sells, denominator, round_half_even(Fraction(int(sells.sum()), denominator)),
                        tie_break_ranks(count, seed + 1))
    return bought, sold


def _home_to_home_purchases(bought_wh: np.ndarray, total_wh: int, traded_wh: int, seed: int) -> np.ndarray:
    """Each buyer's share of the home-to-home volume (all it bought unless the retailer supplied some)."""
    if total_wh == traded_wh:
        return bought_wh
    shares = bought_wh.astype(object) if total_wh * traded_wh >= INT64_SAFE else bought_wh
    return round_shares(shares * traded_wh, total_wh, traded_wh, tie_break_ranks(len(bought_wh), seed))


def bid_curve_fallback(market: ClearingInput, mechanism: str, **details: object) -> ClearingResult:
    """The bid-curve equilibrium of ``market`` booked under ``mechanism``'s name, marked as its
    fallback (``details.fallback``) with any further ``details``."""
    result = BidCurveEquilibrium().clear(market)
    return replace(result, mechanism=mechanism,
                   details={**result.details, "fallback": BidCurveEquilibrium.name, **details})
