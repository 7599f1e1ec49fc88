"""Re-dispatch after failures: keeps the others, fills the gap least-cost, never touches opted-out homes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from hems.community.flexibility.dispatch import redispatch, split_request
from hems.community.flexibility.model import Direction, FlexibilityRequest, FlexibilitySegment, HomeFlexibility

from .strategies import SLOTS, communities, prefix_cost_nano, requests

HOMES = [f"home-{index:02d}" for index in range(6)]


def seg(energy_wh: int, price_micro: int) -> FlexibilitySegment:
    return FlexibilitySegment(energy_wh, price_micro)


@settings(max_examples=80, deadline=None)
@given(communities(), requests(), st.frozensets(st.sampled_from(HOMES), max_size=2),
       st.frozensets(st.sampled_from(HOMES), max_size=3), st.frozensets(st.sampled_from(HOMES), max_size=1),
       st.integers(0, 3))
def test_redispatch_fills_the_failed_volume_from_the_others(flexibilities, request, opted_out, failed,
                                                            opting_out_now, seed):
    before = split_request(request, flexibilities, opted_out=opted_out, seed=seed)
    after = redispatch(request, before, flexibilities, failed, opted_out=opting_out_now)
    barred = opted_out | failed | opting_out_now
    assert after.failed_homes == failed and after.excluded_homes == opted_out | opting_out_now
    by_key = {(flex.home, flex.slot_start_s): flex for flex in flexibilities}
    for slot, delta in zip(SLOTS, request.delta_wh):
        old, new = before.slot(slot), after.slot(slot)
        if delta == 0:
            assert new == old
            continue
        direction = Direction.UP if delta > 0 else Direction.DOWN
        for item in new.commitments:
            assert item.home not in barred  # failed and opted-out homes: nothing, ever
            segments = by_key[item.home, slot].segments(direction)
            assert item.cost_nano == prefix_cost_nano(segments, abs(item.energy_wh))
        # Everyone else keeps at least what it had committed.
        for item in old.commitments:
            if item.home not in barred:
                assert abs(new.committed_by(item.home)) >= abs(item.energy_wh)
        # The gap is filled as far as the remaining homes' affordable blocks allow, never beyond the request.
        affordable = sum(segment.energy_wh for flex in flexibilities
                         if flex.slot_start_s == slot and flex.home not in barred
                         for segment in flex.segments(direction) if segment.price_micro <= request.price_micro)
        assert abs(new.committed_wh) == min(abs(delta), affordable)
        assert new.unmet_wh == abs(delta) - abs(new.committed_wh)
        assert new.marginal_price_micro is None or new.marginal_price_micro <= request.price_micro
        # Least cost given what is kept: the LP over the remaining homes with the kept Wh as lower bounds.
        kept = {item.home: abs(item.energy_wh) for item in old.commitments if item.home not in barred}
        optimum = lp_cost_with_kept(flexibilities, slot, direction, barred, request.price_micro, kept,
                                    abs(new.committed_wh))
        assert abs(new.cost_nano - optimum) <= max(1, abs(new.committed_wh))


def lp_cost_with_kept(flexibilities, slot, direction, barred, limit_micro, kept, volume_wh) -> float:
    """The least cost (HiGHS) of ``volume_wh`` from the affordable blocks when each kept home keeps at
    least its kept Wh."""
    homes, blocks = [], []
    for flex in flexibilities:
        if flex.slot_start_s != slot or flex.home in barred:
            continue
        for segment in flex.segments(direction):
            if segment.price_micro <= limit_micro:
                homes.append(flex.home)
                blocks.append(segment)
    if not blocks or volume_wh == 0:
        return 0.0
    a_ub, b_ub = [], []
    for home, wh in kept.items():
        a_ub.append([-1 if owner == home else 0 for owner in homes])
        b_ub.append(-wh)
    result = linprog(c=[block.price_micro for block in blocks], A_ub=a_ub or None, b_ub=b_ub or None,
                     A_eq=[[1] * len(blocks)], b_eq=[volume_wh],
                     bounds=[(0, block.energy_wh) for block in blocks], method="highs")
    assert result.status == 0, result.message
    return float(result.fun)


@settings(max_examples=40, deadline=None)
@given(communities(), requests(), st.integers(0, 3))
def test_redispatch_without_failures_changes_nothing(flexibilities, request, seed):
    dispatch = split_request(request, flexibilities, seed=seed)
    assert redispatch(request, dispatch, flexibilities, frozenset()) == dispatch


def test_hand_checked_redispatch():
    flexibilities = [HomeFlexibility("a", slot, 0, down=(seg(100, 10),)) for slot in (0, 900)] + [
        HomeFlexibility("b", slot, 0, down=(seg(100, 20), seg(100, 30))) for slot in (0, 900)] + [
        HomeFlexibility("c", slot, 0, down=(seg(300, 5),)) for slot in (0, 900)] + [
        HomeFlexibility("d", slot, 0, down=(seg(500, 25),)) for slot in (0, 900)]
    request = FlexibilityRequest("r", (0, 900), (-250, -250), 30, 0)
    dispatch = split_request(request, flexibilities, opted_out=frozenset({"c"}))
    assert {item.home: item.energy_wh for item in dispatch.slot(0).commitments} == {"a": -100, "b": -100,
                                                                                     "d": -50}
    after = redispatch(request, dispatch, flexibilities, {"a"}, from_slot_s=900)
    assert after.slot(0) == dispatch.slot(0)  # a slot under way is left alone
    # a's 100 Wh come from d (0.025 < b's second block at 0.03); the opted-out c, cheapest, stays out.
    assert {item.home: item.energy_wh for item in after.slot(900).commitments} == {"b": -100, "d": -150}
    assert after.slot(900).cost_nano == 100 * 20 + 150 * 25
    again = redispatch(request, after, flexibilities, {"d"})
    assert {item.home: item.energy_wh for item in again.slot(900).commitments} == {"b": -200}
    assert again.slot(900).unmet_wh == 50 and again.failed_homes == {"a", "d"}
    assert {item.home for item in again.slot(0).commitments} == {"b"}


def test_redispatch_checks_its_inputs():
    flexibilities = [HomeFlexibility("a", 0, 0, up=(seg(10, 1),))]
    request = FlexibilityRequest("r", (0,), (10,), 5, 0)
    dispatch = split_request(request, flexibilities)
    with pytest.raises(ValueError, match="not a dispatch"):
        redispatch(FlexibilityRequest("other", (0,), (10,), 5, 0), dispatch, flexibilities, ())
    with pytest.raises(ValueError, match="no flexibility"):
        redispatch(request, dispatch, [], ())
    with pytest.raises(ValueError, match="exceeds"):
        redispatch(request, dispatch, [HomeFlexibility("a", 0, 0, up=(seg(5, 1),))], ())
