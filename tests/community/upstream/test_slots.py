"""Our slots against the upstream market's: even splits, overlaps, and whose gate closes first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hems.community.upstream.slots import SlotMapping, gate_problem, mapping_problem, split_wh
from hems.protocol.calendar import MarketCalendar

T = 1_795_046_400  # a multiple of 3600


@pytest.mark.parametrize(("value", "parts", "shares"), [
    (7, 3, [3, 2, 2]), (-7, 3, [-3, -2, -2]), (0, 3, [0, 0, 0]), (2, 3, [1, 1, 0]), (-1, 2, [-1, 0]),
    (9, 1, [9]),
])
def test_split_keeps_whole_wh_and_gives_the_remainder_to_the_first(value, parts, shares):
    assert split_wh(value, parts) == shares


@given(st.integers(-10**7, 10**7), st.integers(-10**7, 10**7), st.integers(1, 12))
def test_split_adds_up_evenly_and_each_share_grows_with_the_value(low, high, parts):
    low, high = min(low, high), max(low, high)
    for value in (low, high):
        shares = split_wh(value, parts)
        assert sum(shares) == value
        assert max(map(abs, shares)) - min(map(abs, shares)) <= 1
        assert all(share * value >= 0 for share in shares)  # never the other way
    # Monotone share by share: a non-increasing curve split point by point stays non-increasing.
    assert all(a <= b for a, b in zip(split_wh(low, parts), split_wh(high, parts)))


def test_a_five_minute_upstream_under_a_fifteen_minute_community():
    mapping = SlotMapping(our_slot_s=900, upstream_slot_s=300)
    assert (mapping.ours_per_upstream, mapping.upstream_per_ours) == (1, 3)
    assert mapping.upstream_slots(T) == [T, T + 300, T + 600]
    assert mapping.our_slots(T + 600) == [T]
    assert [mapping.index_in_ours(T + offset) for offset in (0, 300, 600)] == [0, 1, 2]


def test_a_fifteen_minute_upstream_over_five_minute_communities():
    mapping = SlotMapping(our_slot_s=300, upstream_slot_s=900)
    assert (mapping.ours_per_upstream, mapping.upstream_per_ours) == (3, 1)
    assert mapping.our_slots(T) == [T, T + 300, T + 600]
    assert mapping.upstream_slots(T + 600) == [T]
    assert [mapping.index_in_upstream(T + offset) for offset in (0, 300, 600)] == [0, 1, 2]


def test_other_ratios_are_refused():
    assert "neither is a multiple" in mapping_problem(900, 600)
    with pytest.raises(ValueError, match="neither is a multiple"):
        SlotMapping(900, 600)
    assert mapping_problem(3600, 900) == "" and mapping_problem(900, 900) == ""


@pytest.mark.parametrize(("ours", "upstream", "ok"), [
    ((900, 300), (900, 600), True),
    ((900, 300), (900, 300), False),  # at the same instant: its allocation could not reach us in time
    ((900, 300), (900, 200), False),
    ((900, 60), (300, 660), False),  # the last 5-min slot inside our 15 min closes at t + 600 − 660: too late
    ((900, 60), (300, 661), True),
    ((300, 60), (900, 61), True),  # a long upstream slot: only its first overlap with us matters
])
def test_the_upstream_gate_must_close_before_ours_for_every_overlapping_slot(ours, upstream, ok):
    problem = gate_problem(MarketCalendar(ours[0], ours[1], 4), MarketCalendar(upstream[0], upstream[1], 4))
    assert (problem == "") is ok, problem
