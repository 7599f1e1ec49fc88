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

Fees: curves are cleared at the energy price. Buyers pay ``fee_micro`` per kWh on the volume they get
from other homes (in a scarcity slot, the home-to-home volume is shared among buyers pro rata to what
they bought); a home that wants the fee to shape its demand includes it in its curve.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from fractions import Fraction
from typing import ClassVar

from hems.community.mechanisms.base import (
    ClearingInput,
    ClearingResult,
    Curve,
    HomeAllocation,
    InputKind,
    MarketParameters,
)
from hems.protocol.units import round_half_even


def tie_break_ranks(count: int, seed: int) -> list[int]:
    """A seeded permutation rank for each of ``count`` items: who wins an exact tie (never arrival)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    ranks = [0] * count
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def largest_remainder(values: Sequence[Fraction], total: int, seed: int = 0) -> list[int]:
    """Whole numbers, each the floor or ceiling of its value, that add up to ``total``.

    The units above the floors go to the largest fractional parts; exact ties by a seeded permutation.
    ``total`` must lie between the sum of the floors and the sum of the ceilings.
    """
    floors = [value.numerator // value.denominator for value in values]
    extra = total - sum(floors)
    remainders = [value - floor for value, floor in zip(values, floors)]
    candidates = [index for index, remainder in enumerate(remainders) if remainder > 0]
    if not 0 <= extra <= len(candidates):
        raise ValueError(f"cannot round {len(values)} values to total {total}")
    ranks = tie_break_ranks(len(values), seed)
    candidates.sort(key=lambda index: (-remainders[index], ranks[index]))
    for index in candidates[:extra]:
        floors[index] += 1
    return floors


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
    for curve in curves:
        points.update(price for price in curve.prices_micro if low <= price <= high)
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
        curves = sorted(market.curves, key=lambda curve: curve.home)
        for curve in curves:
            validate_curve(curve)
        homes = [curve.home for curve in curves]
        if len(set(homes)) != len(homes):
            raise ValueError("more than one curve for a home")
        if not curves:
            return ClearingResult(mechanism=self.name, allocations=())

        grid = evaluation_grid(curves, parameters)
        demand = [sum(curve_value_wh(curve, price) for curve in curves) for price in grid]
        price_exact, case = equilibrium_price(grid, demand, Fraction(parameters.k))
        allocation_wh = [Fraction(curve_value_wh(curve, price_exact)) for curve in curves]
        if case in ("interior", "flat") and sum(allocation_wh) != 0:
            raise RuntimeError("bid curve: allocations at an interior equilibrium do not add up to 0")

        bought_wh, sold_wh = self._round(allocation_wh, parameters.seed)
        imported_wh = max(sum(bought_wh) - sum(sold_wh), 0)
        exported_wh = max(sum(sold_wh) - sum(bought_wh), 0)
        traded_wh = min(sum(bought_wh), sum(sold_wh))
        from_homes_wh = self._home_to_home_purchases(bought_wh, traded_wh, parameters.seed)
        price_micro = round_half_even(price_exact)

        allocations = tuple(
            HomeAllocation(
                home=curve.home,
                bought_wh=bought,
                sold_wh=sold,
                paid_nano=bought * price_micro,
                received_nano=sold * price_micro,
                network_fee_nano=from_homes * parameters.network_fee_micro,
                community_fee_nano=from_homes * parameters.community_fee_micro,
                sequence=curve.sequence,
            )
            for curve, bought, sold, from_homes in zip(curves, bought_wh, sold_wh, from_homes_wh)
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
                "rounding_to_retailer_wh": str(imported_wh - exported_wh - sum(allocation_wh)),
            },
        )

    @staticmethod
    def _round(allocation_wh: Sequence[Fraction], seed: int) -> tuple[list[int], list[int]]:
        """Purchases and sales in whole Wh, each side to its own rounded total (largest remainder)."""
        buys = [max(value, Fraction(0)) for value in allocation_wh]
        sells = [max(-value, Fraction(0)) for value in allocation_wh]
        bought = largest_remainder(buys, round_half_even(sum(buys, Fraction(0))), seed)
        sold = largest_remainder(sells, round_half_even(sum(sells, Fraction(0))), seed + 1)
        return bought, sold

    @staticmethod
    def _home_to_home_purchases(bought_wh: Sequence[int], traded_wh: int, seed: int) -> list[int]:
        """Each buyer's share of the home-to-home volume (all it bought unless the retailer supplied some)."""
        total = sum(bought_wh)
        if total == traded_wh:
            return list(bought_wh)
        return largest_remainder([Fraction(bought * traded_wh, total) for bought in bought_wh], traded_wh, seed)
