"""Bid-curve equilibrium (markets.md §4): hand-worked slots, degenerate books, invariants."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.mechanisms.base import ClearingInput, Curve, InputKind, MarketParameters
from hems.community.mechanisms.bid_curve import BidCurveEquilibrium
from hems.community.mechanisms.registry import create_mechanism
from hems.community.mechanisms.rounding import largest_remainder

RETAIL, FEED_IN = 300_000, 80_000
GRID = (80_000, 120_000, 160_000, 200_000, 240_000, 300_000)


# a buys 2 kWh up to 200k, b sells 2 kWh from 120k: D = 0 on [120k, 200k]
FLAT_PAIR = (Curve("a", GRID, (2000, 2000, 2000, 2000, 0, 0)), Curve("b", GRID, (0, -2000, -2000, -2000, -2000, -2000)))


def parameters(**changes) -> MarketParameters:
    values = dict(retail_price_micro=RETAIL, feed_in_price_micro=FEED_IN, price_grid_micro=GRID)
    return MarketParameters(**(values | changes))


def clear(*curves: Curve, market: MarketParameters | None = None):
    return create_mechanism("bid_curve").clear(ClearingInput(market or parameters(), curves=curves))


def test_registered():
    mechanism = create_mechanism("bid_curve")
    assert isinstance(mechanism, BidCurveEquilibrium) and mechanism.input_kind is InputKind.CURVES


def test_interior_crossing_interpolates_and_rounds():
    """D = (2000, −1000) at (80k, 190k): p* = 80k + 110k·2/3; x_a = 5000/3 Wh = −x_b."""
    grid = (80_000, 190_000, 300_000)
    result = clear(Curve("a", grid, (3000, 1000, 0), sequence=7), Curve("b", grid, (-1000, -2000, -3000), sequence=9),
                   market=parameters(price_grid_micro=grid))
    assert result.details["price_exact_micro"] == str(Fraction(460_000, 3))
    assert result.price_micro == 153_333
    a, b = result.allocations
    assert (a.bought_wh, b.sold_wh, result.traded_wh) == (1667, 1667, 1667)  # 1666.67 rounds up on both sides
    assert a.paid_nano == b.received_nano == 1667 * 153_333
    assert (a.sequence, b.sequence) == (7, 9)
    assert result.grid_import_wh == result.grid_export_wh == result.retailer_nano == 0
    assert result.trade_prices_micro == (153_333,) and result.balance_error_nano() == 0


@pytest.mark.parametrize("k, price", [(Fraction(0), 120_000), (Fraction(1, 2), 160_000), (Fraction(1), 200_000)])
def test_flat_interval_uses_the_k_rule(k, price):
    result = clear(*FLAT_PAIR, market=parameters(k=k))
    assert result.details["case"] == "flat"
    assert result.price_micro == price
    assert result.allocation("a").bought_wh == result.allocation("b").sold_wh == result.traded_wh == 2000


def test_scarcity_clears_at_retail_and_imports():
    result = clear(Curve("a", GRID, (3000,) * 6), Curve("c", GRID, (1000,) * 6), Curve("b", GRID, (-1000,) * 6),
                   market=parameters(network_fee_micro=4000, community_fee_micro=1000))
    assert result.details["case"] == "scarcity" and result.price_micro == RETAIL
    assert (result.traded_wh, result.grid_import_wh, result.grid_export_wh) == (1000, 3000, 0)
    assert result.retailer_nano == 3000 * RETAIL
    # the 1 kWh from home b is shared 3:1 and only it carries the fee
    assert result.allocation("a").network_fee_nano == 750 * 4000
    assert result.allocation("c").community_fee_nano == 250 * 1000
    assert result.allocation("b").fees_nano == 0
    assert result.balance_error_nano() == 0


def test_surplus_clears_at_feed_in_and_exports():
    result = clear(Curve("a", GRID, (500, 500, 400, 300, 0, 0)), Curve("b", GRID, (-2000,) * 6))
    assert result.details["case"] == "surplus" and result.price_micro == FEED_IN
    assert (result.allocation("a").bought_wh, result.allocation("b").sold_wh) == (500, 2000)
    assert (result.traded_wh, result.grid_export_wh, result.grid_import_wh) == (500, 1500, 0)
    assert result.retailer_nano == -1500 * FEED_IN and result.balance_error_nano() == 0


def test_only_sellers_export_at_feed_in():
    result = clear(Curve("a", GRID, (-500,) * 6), Curve("b", GRID, (-1000, -1000, -2000, -2000, -3000, -3000)))
    assert result.details["case"] == "surplus" and result.price_micro == FEED_IN
    assert (result.allocation("a").sold_wh, result.allocation("b").sold_wh) == (500, 1000)
    assert (result.traded_wh, result.grid_export_wh, result.retailer_nano) == (0, 1500, -1500 * FEED_IN)
    assert result.trade_prices_micro == () and result.balance_error_nano() == 0


def test_only_buyers_import_at_retail():
    result = clear(Curve("a", GRID, (900, 800, 700, 600, 500, 400)))
    assert result.price_micro == RETAIL and result.allocation("a").bought_wh == 400
    assert result.grid_import_wh == 400 and result.retailer_nano == 400 * RETAIL and result.traded_wh == 0


def test_no_curves():
    result = clear()
    assert result.allocations == () and result.price_micro is None and result.balance_error_nano() == 0


def test_all_zero_curves_trade_nothing_at_the_k_price():
    result = clear(Curve("a", GRID, (0,) * 6, sequence=3), Curve("b", GRID, (0,) * 6))
    assert result.price_micro == (FEED_IN + RETAIL) // 2
    assert all(item.bought_wh == item.sold_wh == 0 for item in result.allocations)
    assert result.allocation("a").sequence == 3 and result.traded_wh == 0


def test_one_home_clears_where_its_curve_crosses_zero():
    result = clear(Curve("a", (FEED_IN, RETAIL), (100, -100)))
    assert result.price_micro == 190_000 and result.allocation("a").net_import_wh == 0


def test_curves_on_different_grids():
    """a on (λ⁻, λ⁺) alone, b on a third grid: D = (2200, 100, −1000) at (80k, 190k, 300k) → p* = 200k."""
    result = clear(Curve("a", (FEED_IN, RETAIL), (2200, 0)), Curve("b", (FEED_IN, 190_000, RETAIL), (0, -1000, -1000)),
                   market=parameters(price_grid_micro=()))
    assert result.price_micro == 200_000 and result.details["price_exact_micro"] == "200000"
    assert result.allocation("a").bought_wh == result.allocation("b").sold_wh == 1000


def test_curve_points_outside_the_band_interpolate_and_hold_flat():
    """a: 4000·(1 − p/400k) from a grid (0, 400k); b: −2000 everywhere from one point: p* = 200k."""
    result = clear(Curve("a", (0, 400_000), (4000, 0)), Curve("b", (150_000,), (-2000,)))
    assert result.price_micro == 200_000
    assert result.allocation("a").bought_wh == result.allocation("b").sold_wh == 2000


def test_fee_on_home_to_home_purchases_only_energy_price_clears():
    result = clear(*FLAT_PAIR, market=parameters(network_fee_micro=10_000))
    assert result.price_micro == 160_000  # the fee does not move the equilibrium
    assert result.allocation("a").paid_nano == 2000 * 160_000
    assert result.allocation("a").network_fee_nano == 2000 * 10_000 and result.balance_error_nano() == 0


def test_input_order_does_not_matter():
    curves = [Curve("a", GRID, (3000, 2500, 1000, 0, 0, 0)), Curve("b", GRID, (0, -700, -1400, -2000, -2000, -2000)),
              Curve("c", GRID, (333, 333, 0, -333, -333, -333))]
    assert clear(*curves) == clear(*reversed(curves))


@pytest.mark.parametrize("curves, message", [
    ((Curve("a", GRID, (0, 1, 1, 1, 1, 1)),), "not increase"),
    ((Curve("a", GRID, (0, 0)),), "prices for"),
    ((Curve("a", (), ()),), "prices for"),
    ((Curve("a", (2, 1), (0, 0)),), "ascending"),
    ((Curve("a", GRID, (0,) * 6), Curve("a", GRID, (0,) * 6)), "more than one"),
])
def test_invalid_curves(curves, message):
    with pytest.raises(ValueError, match=message):
        clear(*curves)


def test_largest_remainder_keeps_totals_and_bounds():
    values = [Fraction(5, 3), Fraction(5, 3), Fraction(5, 3)]
    rounded = largest_remainder(values, 5, seed=1)
    assert sum(rounded) == 5 and sorted(rounded) == [1, 2, 2]
    assert largest_remainder(values, 5, seed=1) == rounded  # seeded, so reproducible
    with pytest.raises(ValueError):
        largest_remainder(values, 7)


@st.composite
def books(draw):
    low = draw(st.integers(0, 200_000))
    high = draw(st.integers(low + 1, 600_000))
    inner = draw(st.lists(st.integers(low + 1, high - 1), max_size=20, unique=True)) if high - low > 1 else []
    grid = tuple(sorted({low, high, *inner}))
    curves = []
    for index in range(draw(st.integers(0, 8))):
        points = sorted(draw(st.lists(st.sampled_from(grid + (max(low - 50_000, 0), high + 50_000)),
                                      min_size=1, max_size=len(grid) + 2, unique=True)))
        start = draw(st.integers(-5000, 5000))
        steps = draw(st.lists(st.integers(0, 3000), min_size=len(points) - 1, max_size=len(points) - 1))
        values = tuple(int(value) for value in start - np.cumsum([0, *steps]))
        curves.append(Curve(f"h{index}", tuple(points), values, sequence=draw(st.integers(0, 10**6))))
    market = MarketParameters(retail_price_micro=high, feed_in_price_micro=low, price_grid_micro=grid,
                              k=draw(st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1), Fraction(1, 3)])),
                              network_fee_micro=draw(st.integers(0, 20_000)), seed=draw(st.integers(0, 99)))
    return market, tuple(curves)


def value_at(curve: Curve, price: float) -> float:
    """An independent reading of a curve: numpy's linear interpolation, flat beyond the ends."""
    return float(np.interp(price, curve.prices_micro, curve.net_import_wh))


@settings(max_examples=200, deadline=None)
@given(book=books())
def test_invariants(book):
    market, curves = book
    result = clear(*curves, market=market)
    assert result.balance_error_nano() == 0
    if not curves:
        return
    low, high = market.feed_in_price_micro, market.retail_price_micro
    assert low <= result.price_micro <= high
    bought = sum(item.bought_wh for item in result.allocations)
    sold = sum(item.sold_wh for item in result.allocations)
    assert result.traded_wh == min(bought, sold)
    assert bought - sold == result.grid_import_wh - result.grid_export_wh
    assert result.grid_import_wh == 0 or result.grid_export_wh == 0
    assert result.retailer_nano == (result.grid_import_wh - result.grid_export_wh) * result.price_micro
    assert result.network_fees_nano == result.traded_wh * market.network_fee_micro

    exact = Fraction(result.details["price_exact_micro"])
    total = sum(value_at(curve, float(exact)) for curve in curves)
    case = result.details["case"]
    if case == "scarcity":
        assert exact == high and total > 0
    elif case == "surplus":
        assert exact == low and total < 0
    else:  # an equilibrium inside the band: nothing goes to the retailer
        assert abs(total) < 1e-6 * (1 + sum(abs(value) for curve in curves for value in curve.net_import_wh))
        assert bought == sold and result.grid_import_wh == 0

    # each home gets its own curve at p*, between its values at the grid points around p*
    below = max(price for price in market.price_grid_micro if price <= exact)
    above = min(price for price in market.price_grid_micro if price >= exact)
    for curve in curves:
        home = result.allocation(curve.home)
        assert home.sequence == curve.sequence
        assert home.bought_wh == 0 or home.sold_wh == 0
        assert home.paid_nano == home.bought_wh * result.price_micro
        assert home.received_nano == home.sold_wh * result.price_micro
        least, most = value_at(curve, above), value_at(curve, below)
        assert math.floor(least - 1e-9) <= home.net_import_wh <= math.ceil(most + 1e-9)
        assert abs(home.net_import_wh - value_at(curve, float(exact))) < 1 + 1e-6
