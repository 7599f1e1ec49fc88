"""Baselines (X of Y days with a capped same-day adjustment) and measured delivery."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hems.community.flexibility.delivery import baseline_from_history, declared_baselines, measure_delivery
from hems.community.flexibility.dispatch import split_request
from hems.community.flexibility.model import FlexibilityRequest, FlexibilitySegment, HomeFlexibility

#: The same 15-minute slot on the last 12 similar days (Wh net import), most recent last.
HISTORY = (900, 120, 300, 280, 310, 290, 305, 295, 300, 310, 320, 290)


@pytest.mark.parametrize(("kwargs", "expected"), [
    # 10 of 10: the last ten days, 3000 / 10.
    ({}, 300),
    # 5 of 5: the last five days, (295 + 300 + 310 + 320 + 290) / 5 = 303.
    ({"days": 5}, 303),
    # High 4 of 5 (PJM-like): 320, 310, 300, 295 → 306.25 → 306.
    ({"days": 5, "top_days": 4}, 306),
    # Same-day adjustment: today ran +30 Wh above the baselines of the three slots before: 300 + 30.
    ({"adjustment_slots_wh": [(230, 200), (250, 220), (270, 240)]}, 330),
    # A large adjustment (+100 Wh mean) is capped at +20 % of 300 = +60.
    ({"adjustment_slots_wh": [(400, 300), (500, 400)]}, 360),
    # ... and a large negative one at −60.
    ({"adjustment_slots_wh": [(0, 300)]}, 240),
    # Longer than the history: all twelve days, 4020 / 12 = 335.
    ({"days": 30}, 335),
    # 7 of 7: 2110 / 7 = 301.43 → 301.
    ({"days": 7}, 301),
    # The cap is a parameter: 10 % of 300 = 30.
    ({"adjustment_slots_wh": [(400, 300)], "adjustment_cap": Fraction(1, 10)}, 330),
])
def test_baseline_table(kwargs, expected):
    assert baseline_from_history(HISTORY, **kwargs) == expected


def test_baseline_rounds_half_even_and_caps_against_the_magnitude():
    assert baseline_from_history([1, 2]) == 2  # 1.5 → 2
    assert baseline_from_history([2, 3]) == 2  # 2.5 → 2
    # A net exporter (−500 Wh): the cap is 20 % of |−500| = 100 either way.
    assert baseline_from_history([-500] * 10, adjustment_slots_wh=[(-100, -500)]) == -400
    assert baseline_from_history([-500] * 10, adjustment_slots_wh=[(-900, -500)]) == -600
    # A baseline of 0 Wh cannot be adjusted (a cap of 0).
    assert baseline_from_history([0] * 10, adjustment_slots_wh=[(100, 0)]) == 0


def test_baseline_arguments_are_checked():
    with pytest.raises(ValueError):
        baseline_from_history([])
    with pytest.raises(ValueError):
        baseline_from_history([1], days=0)
    with pytest.raises(ValueError):
        baseline_from_history([1, 2], top_days=3)


def seg(energy_wh: int, price_micro: int) -> FlexibilitySegment:
    return FlexibilitySegment(energy_wh, price_micro)


def test_measure_delivery_table():
    flexibilities = [
        HomeFlexibility("over", 0, 500, down=(seg(200, 10),)),
        HomeFlexibility("short", 0, 300, down=(seg(200, 20),)),
        HomeFlexibility("adverse", 0, 100, down=(seg(200, 30),)),
        HomeFlexibility("silent", 0, 100, down=(seg(200, 40),)),
        HomeFlexibility("idle", 0, 100, down=(seg(200, 99),)),  # not dispatched: not measured
        HomeFlexibility("over", 900, 500, up=(seg(50, 10),)),
    ]
    request = FlexibilityRequest("r", (0, 900, 1800), (-800, 50, 0), 50, 7_000)
    dispatch = split_request(request, flexibilities)
    assert [item.energy_wh for item in dispatch.slot(0).commitments] == [-200, -200, -200, -200]
    baselines = declared_baselines(flexibilities)
    metered = {0: {"over": 200, "short": 250, "adverse": 160, "idle": -5000},
               900: {"over": 530}}
    report = measure_delivery(request, dispatch, baselines, metered)
    first = report.slot(0)
    rows = {item.home: (item.delivered_wh, item.over_delivery_wh, item.shortfall_wh, item.adverse_wh)
            for item in first.homes}
    assert rows == {"over": (-300, 100, 0, 0),  # 500 → 200: 300 less import for a commitment of 200
                    "short": (-50, 0, 150, 0),  # 300 → 250
                    "adverse": (0, 0, 200, 60),  # 100 → 160: moved the wrong way, counts 0
                    "silent": (0, 0, 200, 0)}  # no meter reading
    assert first.delivered_wh == -350 and first.shortfall_wh == 450
    assert first.penalty_nano == 450 * 7_000 and first.accepted_wh == 350
    second = report.slot(900)
    assert second.delivered_wh == 30 and second.shortfall_wh == 20 and second.penalty_nano == 140_000
    assert report.slot(1800).homes == () and report.slot(1800).penalty_nano == 0
    assert report.missing_meters == ((0, "silent"),)
    assert report.penalty_nano == 450 * 7_000 + 20 * 7_000
    # Over-delivery above the request is reported, not paid.
    rich = measure_delivery(request, dispatch, baselines, {0: {"over": -1000}, 900: {"over": 600}})
    assert rich.slot(0).accepted_wh == 800 and rich.slot(0).over_delivery_wh == 700
    assert rich.slot(900).over_delivery_wh == 50 and rich.slot(900).shortfall_wh == 0


def test_measure_delivery_needs_every_dispatched_baseline():
    flexibilities = [HomeFlexibility("a", 0, 0, up=(seg(10, 1),))]
    request = FlexibilityRequest("r", (0,), (10,), 5, 0)
    dispatch = split_request(request, flexibilities)
    with pytest.raises(KeyError, match="no baseline"):
        measure_delivery(request, dispatch, {0: {}}, {0: {"a": 10}})
    with pytest.raises(ValueError):
        measure_delivery(FlexibilityRequest("x", (0,), (10,), 5, 0), dispatch, {}, {})
    with pytest.raises(ValueError, match="two flexibilities"):
        declared_baselines(flexibilities * 2)
