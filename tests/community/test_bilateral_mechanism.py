"""The ``bilateral`` mechanism on the homes' curves: without preferences it reaches the bid-curve
equilibrium (the same positions, every pair at the one price); zone costs keep trades inside a zone
and give pairs their own prices; the books balance to the n¤; an impatient cap falls back to the bid
curve and says so; the manager hands it [market.bilateral] and the members' zones."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hems.community.config import parse_community_config
from hems.community.mechanisms.base import ClearingInput, Curve, MarketParameters
from hems.community.mechanisms.bid_curve import BidCurveEquilibrium, curve_value_wh
from hems.community.mechanisms.bilateral import BilateralSettings, BilateralTrading
from hems.community.mechanisms.registry import create_mechanism

RETAIL, FEED_IN = 300_000, 80_000
GRID = tuple(range(FEED_IN, RETAIL + 1, 22_000))


def market(rng: np.random.Generator, homes: int, seed: int = 3, fee_micro: int = 0) -> ClearingInput:
    """Random decreasing curves: a position at the feed-in price and a price response."""
    curves = []
    for index in range(homes):
        at_feed_in, response = int(rng.integers(-1500, 1500)), int(rng.integers(0, 1500))
        quantities = tuple(int(at_feed_in - response * (price - FEED_IN) / (RETAIL - FEED_IN)) for price in GRID)
        curves.append(Curve(f"h{index:02d}", GRID, quantities, sequence=index))
    return ClearingInput(MarketParameters(RETAIL, FEED_IN, network_fee_micro=fee_micro, seed=seed,
                                          price_grid_micro=GRID), curves=tuple(curves))


def check_books(result, slot: ClearingInput) -> None:
    assert result.balance_error_nano() == 0
    for price in result.trade_prices_micro:
        assert FEED_IN <= price <= RETAIL
    curves = {curve.home: curve for curve in slot.curves}
    for allocation in result.allocations:  # never beyond what the home's curve offers
        curve = curves[allocation.home]
        assert curve.net_import_wh[-1] - 1 <= allocation.net_import_wh <= curve.net_import_wh[0] + 1
        assert allocation.sequence == curve.sequence


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), homes=st.integers(2, 14))
@example(seed=1461, homes=2)  # nearly inelastic curves: 0.46 Wh of residual is 440 µ¤/kWh of price
def test_without_preferences_every_pair_reaches_the_bid_curve_equilibrium(seed, homes):
    slot = market(np.random.default_rng(seed), homes, seed=seed)
    result = BilateralTrading(BilateralSettings(zone_cost_micro=0, partners_per_home=3)).clear(slot)
    reference = BidCurveEquilibrium().clear(slot)
    check_books(result, slot)
    assert result.details.get("fallback") is None, result.details
    positions = {item.home: item.net_import_wh for item in reference.allocations}
    for allocation in result.allocations:
        assert abs(allocation.net_import_wh - positions[allocation.home]) <= 2, (allocation, positions)
    for price in result.trade_prices_micro:  # one price, as in a uniform market
        # Close to the reference price, or, where the curves are nearly flat in price and a Wh of
        # residual moves the price a lot, a price at which the market still clears within 2 Wh.
        aggregate_wh = sum(curve_value_wh(curve, price) for curve in slot.curves)
        assert abs(price - reference.price_micro) <= 0.002 * reference.price_micro + 2 or abs(aggregate_wh) <= 2, \
            (price, reference.price_micro, float(aggregate_wh))


def test_zone_costs_keep_trades_at_home_and_price_pairs_apart():
    rng = np.random.default_rng(7)
    slot = market(rng, 12)
    zones = {f"h{index:02d}": "north" if index < 6 else "south" for index in range(12)}
    free = BilateralTrading(BilateralSettings(zone_cost_micro=0, zones=zones, partners_per_home=11)).clear(slot)
    costly = BilateralTrading(BilateralSettings(zone_cost_micro=40_000, zones=zones, partners_per_home=11)).clear(slot)
    for result in (free, costly):
        check_books(result, slot)
        assert result.details.get("fallback") is None
    spread = lambda result: max(result.trade_prices_micro) - min(result.trade_prices_micro)  # noqa: E731
    assert spread(free) <= 0.001 * max(free.trade_prices_micro)  # one community price (to ADMM's tolerance)
    assert spread(costly) >= 10_000  # pairs at their own prices
    assert costly.grid_import_wh + costly.grid_export_wh >= free.grid_import_wh + free.grid_export_wh
    assert costly.traded_wh > 0


def test_fees_make_home_to_home_energy_dearer_and_are_booked():
    slot = market(np.random.default_rng(11), 8, fee_micro=15_000)
    result = BilateralTrading(BilateralSettings(zone_cost_micro=0, partners_per_home=7)).clear(slot)
    check_books(result, slot)
    assert result.network_fees_nano > 0
    bought_from_homes = sum(item.network_fee_nano for item in result.allocations) // 15_000
    assert bought_from_homes == result.traded_wh


def test_no_agreement_in_the_round_cap_falls_back_to_the_bid_curve():
    slot = market(np.random.default_rng(5), 10)
    result = BilateralTrading(BilateralSettings(max_rounds=1)).clear(slot)
    assert result.details["fallback"] == "bid_curve" and "no agreement in 1 rounds" in result.details["reason"]
    assert result.mechanism == "bilateral" and result.balance_error_nano() == 0
    lonely = ClearingInput(slot.parameters, curves=slot.curves[:1])
    assert BilateralTrading().clear(lonely).details["reason"] == "fewer than two homes"


def test_the_manager_hands_over_its_settings_and_the_members_zones():
    config = parse_community_config("""
[community]
id = "street"
[market]
mechanism = "bilateral"
retail_price = 0.30
feed_in_price = 0.08
[market.bilateral]
partners_per_home = 3
zone_cost = 0.02
[[member]]
id = "a"
zone = "north"
[[member]]
id = "b"
""")
    mechanism = create_mechanism("bilateral", config)
    assert isinstance(mechanism, BilateralTrading)
    assert mechanism.settings.partners_per_home == 3 and mechanism.settings.zone_cost_micro == 20_000
    assert mechanism.settings.zones == {"a": "north", "b": ""}
