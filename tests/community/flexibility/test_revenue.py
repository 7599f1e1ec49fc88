"""Revenue shares, penalty allocation and the settlement of a request: exact and balanced."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.flexibility.delivery import declared_baselines, measure_delivery
from hems.community.flexibility.dispatch import split_request
from hems.community.flexibility.model import FlexibilityRequest, FlexibilitySegment, HomeFlexibility
from hems.community.flexibility.revenue import RevenuePolicy, allocate_penalty, settle_request, share_revenue

from .strategies import SLOTS, communities, requests

HOMES = [f"home-{index:02d}" for index in range(8)]
deliveries = st.dictionaries(st.sampled_from(HOMES), st.integers(-300, 3000), min_size=1)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**12), deliveries, st.sampled_from(list(RevenuePolicy)),
       st.lists(st.fractions(0, 5, max_denominator=7), min_size=len(HOMES), max_size=len(HOMES)),
       st.integers(0, 3))
def test_shares_are_exact_non_negative_and_follow_the_policy(revenue, delivered, policy, weights, seed):
    weights = dict(zip(HOMES, weights))
    if policy is RevenuePolicy.WEIGHTED:
        parts = {home: weights[home] * max(wh, 0) for home, wh in delivered.items()}
    elif policy is RevenuePolicy.EQUAL:
        parts = {home: 1 if wh > 0 else 0 for home, wh in delivered.items()}
    else:
        parts = {home: max(wh, 0) for home, wh in delivered.items()}
    total = sum(parts.values())
    if revenue and not total:
        with pytest.raises(ValueError):
            share_revenue(revenue, delivered, policy, weights, seed=seed)
        return
    shares = share_revenue(revenue, delivered, policy, weights, seed=seed)
    assert set(shares) == set(delivered)
    assert sum(shares.values()) == revenue
    for home, share in shares.items():
        assert share >= 0
        if delivered[home] <= 0:
            assert share == 0
        if total:
            assert abs(share - Fraction(revenue) * parts[home] / total) < 1  # floor or ceiling of the exact share


def test_hand_checked_shares_and_ties():
    delivered = {"a": 100, "b": 300, "c": 0, "d": -50}
    assert share_revenue(1000, delivered, "pro_rata") == {"a": 250, "b": 750, "c": 0, "d": 0}
    assert share_revenue(1000, delivered, "equal") == {"a": 500, "b": 500, "c": 0, "d": 0}
    assert share_revenue(1000, delivered, "weighted", {"a": 3, "b": 1}) == {"a": 500, "b": 500, "c": 0, "d": 0}
    # 100 n¤ over three equal deliveries: 34 + 33 + 33, the odd n¤ by the seeded rank.
    winners = set()
    for seed in range(10):
        shares = share_revenue(100, {"x": 5, "y": 5, "z": 5}, "pro_rata", seed=seed)
        assert sorted(shares.values()) == [33, 33, 34]
        winners.add(max(shares, key=shares.get))
    assert len(winners) > 1
    assert share_revenue(0, {"a": 0}, "equal") == {"a": 0}
    with pytest.raises(ValueError):
        share_revenue(-1, delivered, "equal")
    with pytest.raises(ValueError):
        share_revenue(10, delivered, "weighted")
    with pytest.raises(ValueError, match="no weight"):
        share_revenue(10, delivered, "weighted", {"a": 1})
    with pytest.raises(ValueError):
        share_revenue(10, delivered, "weighted", {"a": -1, "b": 1})
    with pytest.raises(ValueError):
        share_revenue(10, delivered, "lottery")


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**12), deliveries, st.integers(0, 3))
def test_penalties_are_exact_and_pro_rata_to_own_shortfall(penalty, shortfall, seed):
    total = sum(max(wh, 0) for wh in shortfall.values())
    if penalty and not total:
        with pytest.raises(ValueError):
            allocate_penalty(penalty, shortfall, seed=seed)
        return
    parts = allocate_penalty(penalty, shortfall, seed=seed)
    assert sum(parts.values()) == penalty
    for home, part in parts.items():
        assert part >= 0
        exact = Fraction(penalty * max(shortfall[home], 0), total) if total else 0
        assert abs(part - exact) < 1


def seg(energy_wh: int, price_micro: int) -> FlexibilitySegment:
    return FlexibilitySegment(energy_wh, price_micro)


def test_hand_checked_settlement():
    flexibilities = [HomeFlexibility("a", 0, 400, down=(seg(300, 10_000),)),
                     HomeFlexibility("b", 0, 200, down=(seg(300, 20_000),)),
                     HomeFlexibility("a", 900, 400, down=(seg(100, 10_000),))]
    # Slot 0: 500 Wh asked, a 300 + b 200. Slot 900: 300 asked, only a's 100 can be dispatched.
    request = FlexibilityRequest("r", (0, 900), (-500, -300), 100_000, 150_000)
    dispatch = split_request(request, flexibilities)
    metered = {0: {"a": 0, "b": 150}, 900: {"a": 300}}  # a: 400 (> 300); b: 50 (< 200); slot 900: a 100
    delivery = measure_delivery(request, dispatch, declared_baselines(flexibilities), metered)
    settlement = settle_request(request, dispatch, delivery, policy="pro_rata")
    first, second = settlement.slots
    # Slot 0: delivered 450 of 500: revenue 450 × 0.1; shortfall 50 × 0.15, all b's (it fell 150 short).
    assert first.revenue_nano == 45_000_000 and first.penalty_nano == 7_500_000
    assert dict(first.revenue_shares_nano) == {"a": 40_000_000, "b": 5_000_000}
    assert dict(first.penalty_shares_nano) == {"a": 0, "b": 7_500_000} and first.community_penalty_nano == 0
    # Slot 900: a delivered its 100; the 200 Wh never dispatched are the community's penalty.
    assert second.revenue_nano == 10_000_000 and second.penalty_nano == 30_000_000
    assert second.community_penalty_nano == 30_000_000
    a, b = settlement.homes
    assert (a.home, a.delivered_wh, a.net_nano) == ("a", 500, 50_000_000)
    assert (b.home, b.delivered_wh, b.net_nano) == ("b", 50, 5_000_000 - 7_500_000)
    assert settlement.community_nano == -30_000_000
    assert settlement.revenue_nano == 55_000_000 and settlement.penalty_nano == 37_500_000
    assert settlement.balance_error_nano() == 0
    assert settlement.home("c") is None
    with pytest.raises(ValueError):
        settle_request(FlexibilityRequest("x", (0,), (1,), 1, 1), dispatch, delivery)


@settings(max_examples=60, deadline=None)
@given(communities(max_homes=4), requests(), st.sampled_from(list(RevenuePolicy)), st.data())
def test_settlements_balance_and_penalise_only_own_shortfalls(flexibilities, request, policy, data):
    dispatch = split_request(request, flexibilities)
    baselines = declared_baselines(flexibilities)
    # A deviation per flexibility, or None for a missing meter reading.
    moves = data.draw(st.lists(st.none() | st.integers(-600, 600), min_size=len(flexibilities),
                               max_size=len(flexibilities)))
    metered = {slot: {} for slot in SLOTS}
    for flex, move in zip(flexibilities, moves):
        if move is not None:
            metered[flex.slot_start_s][flex.home] = flex.baseline_wh + move
    delivery = measure_delivery(request, dispatch, baselines, metered)
    weights = {flex.home: 1 + len(flex.home) % 3 for flex in flexibilities}
    settlement = settle_request(request, dispatch, delivery, policy=policy, weights=weights)
    assert settlement.balance_error_nano() == 0
    assert sum(item.net_nano for item in settlement.homes) + settlement.community_nano == (
        settlement.revenue_nano - settlement.penalty_nano)
    for slot_settlement, slot_delivery in zip(settlement.slots, delivery.slots):
        assert slot_settlement.revenue_nano == min(abs(slot_delivery.delivered_wh),
                                                   abs(slot_delivery.requested_wh)) * request.price_micro
        assert slot_settlement.penalty_nano == slot_delivery.shortfall_wh * request.penalty_micro
        assert 0 <= slot_settlement.community_penalty_nano <= (
            dispatch.slot(slot_delivery.slot_start_s).unmet_wh * request.penalty_micro)
        shares, parts = dict(slot_settlement.revenue_shares_nano), dict(slot_settlement.penalty_shares_nano)
        for home in slot_delivery.homes:
            assert shares[home.home] >= 0
            assert 0 <= parts[home.home] <= home.shortfall_wh * request.penalty_micro
            if home.delivered_wh == 0:
                assert shares[home.home] == 0
