"""Wire validation of the power plant's and the grid operator's messages: bad input names the rule."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from hems.protocol.codec import ProtocolError, decode, encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.power_plant import (
    Commitment,
    CommitmentState,
    CommittedSlot,
    FlexibilityCall,
    GridLimitsPublication,
    LimitSlot,
    RequestedSlot,
)

T0 = datetime(2026, 11, 21, 17, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 11, 21, 17, 15, tzinfo=timezone.utc)


def test_a_requested_slot_must_ask_for_a_change():
    with pytest.raises(ValidationError, match="delta_w must not be 0"):
        RequestedSlot(slot_start=T0, duration_s=900, delta_w=0)


@pytest.mark.parametrize("starts", [(T1, T0), (T0, T0)])
def test_slots_must_be_strictly_ascending(starts):
    with pytest.raises(ValidationError, match="strictly ascending"):
        FlexibilityCall(request_id="r1", price_micro=1, slots=[
            RequestedSlot(slot_start=start, duration_s=900, delta_w=-1000) for start in starts])
    with pytest.raises(ValidationError, match="strictly ascending"):
        GridLimitsPublication(slots=[LimitSlot(slot_start=start, duration_s=900) for start in starts])
    with pytest.raises(ValidationError, match="strictly ascending"):
        Commitment(request_id="r1", revision=1, state=CommitmentState.PROPOSED, compensation_nano=0, slots=[
            CommittedSlot(slot_start=start, duration_s=900, baseline_wh=0, change_wh=-1) for start in starts])


def test_a_request_round_trips_and_a_negative_price_is_invalid_data():
    call = FlexibilityCall(request_id="peak", price_micro=250_000, penalty_micro=10,
                           slots=[RequestedSlot(slot_start=T0, duration_s=900, delta_w=-20_000)])
    raw = encode(call, sender="dso", sent_at=T0)
    assert decode(raw, (FlexibilityCall,)).payload == call
    broken = raw.replace(b'"price_micro":250000', b'"price_micro":-1')
    with pytest.raises(ProtocolError) as caught:
        decode(broken, (FlexibilityCall,))
    assert caught.value.status is ReceptionStatus.INVALID_DATA and "price_micro" in caught.value.label


def test_limits_are_whole_watts_within_bounds():
    with pytest.raises(ValidationError):
        LimitSlot(slot_start=T0, duration_s=900, import_limit_w=-1)
    with pytest.raises(ValidationError):
        LimitSlot(slot_start=T0, duration_s=900, import_limit_w=1.5)
