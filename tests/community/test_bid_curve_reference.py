"""The array clearing of bid curves gives exactly what the plain Fraction reading of markets.md §4 gives."""

from __future__ import annotations

import random
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.mechanisms.base import ClearingInput, ClearingResult, Curve, HomeAllocation, MarketParameters
from hems.community.mechanisms.bid_curve import BidCurveEquilibrium, curve_value_wh, equilibrium_price, evaluation_grid
from hems.protocol.units import round_half_even

GRID = (80_000, 102_000, 124_000, 146_000, 168_000, 190_000, 212_000, 234_000, 256_000, 278_000, 300_000)


def reference_ranks(count: int, seed: int) -> list[int]:
    order = list(range(count))
    random.Random(seed).shuffle(order)
    ranks = [0] * count
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def reference_round(values: list[Fraction], total: int, seed: int) -> list[int]:
    floors = [value.numerator // value.denominator for value in values]
    remainders = [value - floor for value, floor in zip(values, floors)]
    ranks = reference_ranks(len(values), seed)
    candidates = sorted((index for index, remainder in enumerate(remainders) if remainder > 0),
                        key=lambda index: (-remainders[index], ranks[index]))
    for index in candidates[:total - sum(floors)]:
        floors[index] += 1
    return floors


def reference_clear(market: ClearingInput) -> ClearingResult:
    """Every value a Fraction, every curve evaluated on its own, rounding by sorting Fractions."""
    parameters = market.parameters
    curves = sorted(market.curves, key=lambda curve: curve.home)
    grid = evaluation_grid(curves, parameters)
    demand = [sum(curve_value_wh(curve, price) for curve in curves) for price in grid]
    price_exact, case = equilibrium_price(grid, demand, Fraction(parameters.k))
    allocation = [Fraction(curve_value_wh(curve, price_exact)) for curve in curves]
    buys = [max(value, Fraction(0)) for value in allocation]
    sells = [max(-value, Fraction(0)) for value in allocation]
    bought = reference_round(buys, round_half_even(sum(buys, Fraction(0))), parameters.seed)
    sold = reference_round(sells, round_half_even(sum(sells, Fraction(0))), parameters.seed + 1)
    imported, exported = max(sum(bought) - sum(sold), 0), max(sum(sold) - sum(bought), 0)
    traded = min(sum(bought), sum(sold))
    from_homes = bought if sum(bought) == traded else reference_round(
        [Fraction(value * traded, sum(bought)) for value in bought], traded, parameters.seed)
    price = round_half_even(price_exact)
    allocations = tuple(
        HomeAllocation(curve.home, wh_in, wh_out, wh_in * price, wh_out * price, shared * parameters.network_fee_micro,
                       shared * parameters.community_fee_micro, sequence=curve.sequence)
        for curve, wh_in, wh_out, shared in zip(curves, bought, sold, from_homes))
    return ClearingResult(
        mechanism="bid_curve", allocations=allocations, price_micro=price, traded_wh=traded,
        grid_import_wh=imported, grid_export_wh=exported, retailer_nano=(imported - exported) * price,
        trade_prices_micro=(price,) if traded else (),
        details={"case": case, "k": str(parameters.k), "price_exact_micro": str(price_exact),
                 "grid_points": len(grid), "rounding_to_retailer_wh": str(imported - exported - sum(allocation))})


@st.composite
def curves(draw, shared_grid: bool) -> list[Curve]:
    count = draw(st.integers(1, 12))
    result = []
    for index in range(count):
        prices = GRID if shared_grid else tuple(sorted(draw(st.sets(st.integers(50_000, 350_000), min_size=1,
                                                                     max_size=6))))
        start = draw(st.integers(-3_000, 3_000))
        steps = draw(st.lists(st.integers(0, 1_500), min_size=len(prices) - 1, max_size=len(prices) - 1))
        quantities = [start]
        for step in steps:
            quantities.append(quantities[-1] - step)
        result.append(Curve(f"h{index:02d}", prices, tuple(quantities), index))
    return result


@settings(max_examples=150, deadline=None)
@given(data=st.data(), shared_grid=st.booleans(), seed=st.integers(0, 1_000),
       k=st.sampled_from([Fraction(0), Fraction(1, 3), Fraction(1, 2), Fraction(1)]),
       fee=st.integers(0, 20_000))
def test_fast_clearing_equals_the_fraction_reference(data, shared_grid, seed, k, fee):
    parameters = MarketParameters(300_000, 80_000, k=k, network_fee_micro=fee, community_fee_micro=fee // 2,
                                  seed=seed, price_grid_micro=GRID)
    market = ClearingInput(parameters, curves=tuple(data.draw(curves(shared_grid))))
    result = BidCurveEquilibrium().clear(market)
    assert result == reference_clear(market)
    assert result.balance_error_nano() == 0


def test_one_thousand_homes_on_the_grid_match_the_reference():
    rng = random.Random(5)
    homes = []
    for index in range(1_000):
        start, quantities = rng.randint(-3_000, 3_000), []
        for _ in GRID:
            quantities.append(start)
            start -= rng.randint(0, 400)
        homes.append(Curve(f"home{index:04d}", GRID, tuple(quantities)))
    market = ClearingInput(MarketParameters(300_000, 80_000, seed=3, price_grid_micro=GRID), curves=tuple(homes))
    result = BidCurveEquilibrium().clear(market)
    assert result == reference_clear(market)
    assert result.details["case"] == "interior"
