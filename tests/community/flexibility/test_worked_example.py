"""The worked example of docs/flexibility.md, figure by figure."""

from __future__ import annotations

from hems.community.flexibility import (Direction, FlexibilityOffer, FlexibilityRequest, FlexibilitySegment,
                                        HomeFlexibility, aggregate_offers, declared_baselines, measure_delivery,
                                        redispatch, settle_request, split_request)

S = FlexibilitySegment
FLEXIBILITIES = [HomeFlexibility("ana", 0, 400, down=(S(100, 10_000), S(100, 40_000))),
                 HomeFlexibility("ben", 0, 300, down=(S(50, 20_000), S(100, 40_000))),
                 HomeFlexibility("cat", 0, 200, down=(S(100, 40_000),)),
                 HomeFlexibility("dan", 0, 100, down=(S(500, 60_000),)),
                 HomeFlexibility("eve", 0, 900, down=(S(1000, 0),))]
REQUEST = FlexibilityRequest("req-42", (0,), (-251,), 50_000, 80_000)
EVE = frozenset({"eve"})


def commitments(dispatch):
    return {item.home: item.energy_wh for item in dispatch.slot(0).commitments}


def test_the_documented_example():
    dispatch = split_request(REQUEST, FLEXIBILITIES, opted_out=EVE, seed=0)
    assert commitments(dispatch) == {"ana": -133, "ben": -84, "cat": -34}
    assert [item.cost_nano for item in dispatch.slot(0).commitments] == [2_320_000, 2_360_000, 1_360_000]
    assert dispatch.slot(0).marginal_price_micro == 40_000 and dispatch.slot(0).unmet_wh == 0
    for seed in (1, 3):
        assert commitments(split_request(REQUEST, FLEXIBILITIES, opted_out=EVE, seed=seed)) == {
            "ana": -134, "ben": -83, "cat": -34}
    assert commitments(redispatch(REQUEST, dispatch, FLEXIBILITIES, {"cat"})) == {"ana": -150, "ben": -101}

    delivery = measure_delivery(REQUEST, dispatch, declared_baselines(FLEXIBILITIES),
                                {0: {"ana": 250, "ben": 260, "cat": 200}})
    slot = delivery.slot(0)
    assert [(item.delivered_wh, item.over_delivery_wh, item.shortfall_wh) for item in slot.homes] == [
        (-150, 17, 0), (-40, 0, 44), (0, 0, 34)]
    assert (slot.delivered_wh, slot.shortfall_wh, slot.penalty_nano) == (-190, 61, 4_880_000)

    expected_revenue = {"pro_rata": {"ana": 7_500_000, "ben": 2_000_000, "cat": 0},
                        "equal": {"ana": 4_750_000, "ben": 4_750_000, "cat": 0},
                        "weighted": {"ana": 6_195_652, "ben": 3_304_348, "cat": 0}}
    for policy, shares in expected_revenue.items():
        settlement = settle_request(REQUEST, dispatch, delivery, policy=policy,
                                    weights={"ana": 1, "ben": 2, "cat": 1})
        assert settlement.revenue_nano == 9_500_000
        assert dict(settlement.slots[0].revenue_shares_nano) == shares
        assert dict(settlement.slots[0].penalty_shares_nano) == {"ana": 0, "ben": 2_752_821, "cat": 2_127_179}
        assert settlement.balance_error_nano() == 0 and settlement.community_nano == 0
    settlement = settle_request(REQUEST, dispatch, delivery, policy="pro_rata")
    assert [item.net_nano for item in settlement.homes] == [7_500_000, -752_821, -2_127_179]

    offers = aggregate_offers(FLEXIBILITIES, minimum_offer_wh=200, opted_out=EVE)
    assert offers.offers == (FlexibilityOffer(0, Direction.DOWN, 450, 1800, 40_000),
                             FlexibilityOffer(0, Direction.DOWN, 500, 2000, 60_000))
    assert offers.unoffered == ()
