"""Offers toward the grid operator: price blocks of at least the minimum size."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.flexibility.model import Direction, FlexibilitySegment, HomeFlexibility
from hems.community.flexibility.offers import FlexibilityOffer, UnofferedRemainder, aggregate_offers

from .strategies import SLOTS, communities


def seg(energy_wh: int, price_micro: int) -> FlexibilitySegment:
    return FlexibilitySegment(energy_wh, price_micro)


def test_hand_checked_offers():
    flexibilities = [
        HomeFlexibility("a", 0, 0, up=(seg(300, 10), seg(200, 30)), down=(seg(40, 5),)),
        HomeFlexibility("b", 0, 0, up=(seg(300, 10), seg(150, 20), seg(100, 40), seg(90, 50))),
        HomeFlexibility("c", 0, 0, up=(seg(5000, 0),)),  # opted out: never offered
    ]
    result = aggregate_offers(flexibilities, minimum_offer_wh=500, slot_duration_s=900,
                              opted_out=frozenset({"c"}))
    up = result.for_slot(0, "up")
    # 600 Wh at 0.00001 alone; 150 @20 + 200 @30 = 350 < 500, + 100 @40 = 450 < 500, + 90 @50 = 540.
    assert up == [FlexibilityOffer(0, Direction.UP, 600, 2400, 10),
                  FlexibilityOffer(0, Direction.UP, 540, 2160, 50)]
    assert result.for_slot(0, Direction.DOWN) == []
    assert result.unoffered == (UnofferedRemainder(0, Direction.DOWN, 40, 5),)
    assert result.unoffered_wh(0, "down") == 40 and result.unoffered_wh(0, "up") == 0


def test_power_is_floored_and_remainders_are_reported():
    flexibilities = [HomeFlexibility("a", 900, 0, down=(seg(101, 1), seg(50, 2), seg(20, 3)))]
    result = aggregate_offers(flexibilities, minimum_offer_wh=100, slot_duration_s=900)
    assert result.offers == (FlexibilityOffer(900, Direction.DOWN, 101, 404, 1),)
    assert result.unoffered == (UnofferedRemainder(900, Direction.DOWN, 70, 3),)
    hourly = aggregate_offers(flexibilities, minimum_offer_wh=1, slot_duration_s=3600)
    assert [(item.energy_wh, item.power_w) for item in hourly.offers] == [(101, 101), (50, 50), (20, 20)]
    odd = aggregate_offers([HomeFlexibility("a", 0, 0, up=(seg(7, 1),))], minimum_offer_wh=1, slot_duration_s=7)
    assert odd.offers[0].power_w == 3600  # 7 Wh × 3600 / 7 s


def test_offer_arguments_are_checked():
    with pytest.raises(ValueError):
        aggregate_offers([], minimum_offer_wh=0)
    with pytest.raises(ValueError):
        aggregate_offers([], minimum_offer_wh=1, slot_duration_s=0)
    with pytest.raises(ValueError, match="two flexibilities"):
        aggregate_offers([HomeFlexibility("a", 0, 0), HomeFlexibility("a", 0, 0)], minimum_offer_wh=1)


@settings(max_examples=80, deadline=None)
@given(communities(), st.integers(1, 1500), st.sampled_from([300, 900, 3600]))
def test_offers_respect_the_minimum_and_lose_no_energy(flexibilities, minimum, duration):
    result = aggregate_offers(flexibilities, minimum_offer_wh=minimum, slot_duration_s=duration)
    for slot in SLOTS:
        for direction in Direction:
            offers = result.for_slot(slot, direction)
            blocks = sorted(segment.price_micro for flex in flexibilities if flex.slot_start_s == slot
                            for segment in flex.segments(direction))
            total = sum(segment.energy_wh for flex in flexibilities if flex.slot_start_s == slot
                        for segment in flex.segments(direction))
            assert all(item.energy_wh >= minimum for item in offers)
            assert all(item.power_w == item.energy_wh * 3600 // duration for item in offers)
            prices = [item.price_micro for item in offers]
            assert prices == sorted(set(prices))  # cheapest first, one offer per marginal price
            assert set(prices) <= set(blocks)
            left = result.unoffered_wh(slot, direction)
            assert 0 <= left < minimum
            assert sum(item.energy_wh for item in offers) + left == total
            # An offer never contains energy dearer than its price: the energy at or below each offer's
            # price is at least what the offers up to it hold.
            for index, offer in enumerate(offers):
                cheaper = sum(segment.energy_wh for flex in flexibilities if flex.slot_start_s == slot
                              for segment in flex.segments(direction) if segment.price_micro <= offer.price_micro)
                assert sum(item.energy_wh for item in offers[:index + 1]) == cheaper
