"""The home's decision on a power-plant commitment (hems/trading/power_plant.py): the rules in order,
and a property: whatever it accepts lies within the site's limits and the owner's own."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from hems.protocol.power_plant import Commitment, CommitmentState, CommittedSlot
from hems.trading.power_plant import OPT_OUT_REASON, FlexibilityLimits, SlotTarget, decide, slot_targets

SLOT_S = 900
START = datetime(2025, 6, 21, 12, tzinfo=timezone.utc)
LIMITS = FlexibilityLimits(max_change_w=2_000, import_limit_w=17_000, export_limit_w=4_000)


def commitment(*slots: tuple[int, int], start: datetime = START, duration_s: int = SLOT_S,
               state: CommitmentState = CommitmentState.PROPOSED) -> Commitment:
    """One commitment of ``(baseline_wh, change_wh)`` slots from ``start``."""
    return Commitment(request_id="req-1", revision=1, state=state, compensation_nano=0, slots=[
        CommittedSlot(slot_start=start + timedelta(seconds=duration_s * index), duration_s=duration_s,
                      baseline_wh=baseline, change_wh=change) for index, (baseline, change) in enumerate(slots)])


def test_within_every_limit_is_accepted():
    assert decide(commitment((-500, -250), (200, 400)), LIMITS, SLOT_S).accepted


def test_the_owners_opt_out_wins_over_everything_else():
    opted_out = FlexibilityLimits(opt_out=True, max_change_w=10, import_limit_w=1, export_limit_w=1)
    decision = decide(commitment((-500, -250), start=START + timedelta(seconds=7)), opted_out, SLOT_S)
    assert not decision.accepted and decision.reason == OPT_OUT_REASON == "owner opt-out"
    assert decide(commitment(), opted_out, SLOT_S).reason == OPT_OUT_REASON  # even an empty proposal


def test_slots_that_are_not_the_markets_are_declined():
    shifted = decide(commitment((0, -100), start=START + timedelta(seconds=300)), LIMITS, SLOT_S)
    longer = decide(commitment((0, -100), duration_s=1800), LIMITS, SLOT_S)
    assert not shifted.accepted and "not a market slot of 900 s" in shifted.reason
    assert not longer.accepted and "(1800 s)" in longer.reason


def test_targets_beyond_the_site_limits_are_declined():
    # 4,000 W of export is 1,000 Wh in 15 min: allowed; one Wh more is not.
    assert decide(commitment((-500, -500)), FlexibilityLimits(export_limit_w=4_000), SLOT_S).accepted
    export = decide(commitment((-500, -501)), FlexibilityLimits(export_limit_w=4_000), SLOT_S)
    assert not export.accepted and "export limit of 4000 W" in export.reason
    imports = decide(commitment((3_000, 1_500)), FlexibilityLimits(import_limit_w=17_000), SLOT_S)
    assert not imports.accepted and "18000 W exceeds the import limit" in imports.reason


def test_a_change_beyond_the_owners_limit_is_declined():
    decision = decide(commitment((0, 100), (0, -501)), FlexibilityLimits(max_change_w=2_000), SLOT_S)
    assert not decision.accepted and "2004 W exceeds the owner's limit of 2000 W" in decision.reason


def test_confirmed_slots_become_caps_and_floors():
    targets = slot_targets(commitment((-500, -250), (300, 0), (100, 400), state=CommitmentState.CONFIRMED))
    start_s = START.timestamp()
    assert targets == (SlotTarget(start_s, SLOT_S, -750, -250), SlotTarget(start_s + 2 * SLOT_S, SLOT_S, 500, 400))


slots = st.lists(st.tuples(st.integers(-3_000, 3_000), st.integers(-3_000, 3_000)), max_size=6)
limits = st.builds(FlexibilityLimits, opt_out=st.booleans(),
                   max_change_w=st.none() | st.floats(0, 10_000, allow_nan=False),
                   import_limit_w=st.none() | st.floats(1, 20_000, allow_nan=False),
                   export_limit_w=st.none() | st.floats(0, 10_000, allow_nan=False))


@given(slots, limits)
def test_an_accepted_commitment_is_within_every_limit(pairs, limits):
    decision = decide(commitment(*pairs), limits, SLOT_S)
    hours = SLOT_S / 3600
    if limits.opt_out:
        assert not decision.accepted and decision.reason == OPT_OUT_REASON
        return
    within = all(
        (limits.max_change_w is None or abs(change) / hours <= limits.max_change_w)
        and (limits.import_limit_w is None or (baseline + change) / hours <= limits.import_limit_w)
        and (limits.export_limit_w is None or -(baseline + change) / hours <= limits.export_limit_w)
        for baseline, change in pairs)
    assert decision.accepted == within
    assert decision.accepted == (decision.reason == "")
