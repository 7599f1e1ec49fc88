from hypothesis import given
from hypothesis import strategies as st

from hems.protocol.calendar import MarketCalendar

CALENDAR = MarketCalendar(slot_duration_s=900, gate_closure_lead_s=300, horizon_slots=4)
DAY_S = 1_795_000_000 - 1_795_000_000 % 86_400


def test_the_window_opens_after_the_gate_and_spans_the_horizon():
    now = DAY_S + 3600 - 301  # the 01:00 slot's gate closes at 00:55
    assert CALENDAR.open_slots(now) == [DAY_S + 3600 + 900 * index for index in range(4)]
    assert CALENDAR.next_gate_closure_s(now) == DAY_S + 3600 - 300
    now = DAY_S + 3600 - 300  # the gate closes now: that slot is no longer open
    assert CALENDAR.open_slots(now)[0] == DAY_S + 3600 + 900
    assert CALENDAR.window_reason(DAY_S + 3600, now) == "gate closed"
    assert "horizon" in CALENDAR.window_reason(DAY_S + 3600 + 5 * 900, now)
    assert "multiple" in CALENDAR.window_reason(DAY_S + 3600 + 1, now)


@given(st.floats(min_value=DAY_S, max_value=DAY_S + 10 * 86_400, allow_nan=False))
def test_every_open_slot_has_an_open_gate_and_no_earlier_slot_does(now):
    slots = CALENDAR.open_slots(now)
    assert all(CALENDAR.gate_closure_s(slot) > now for slot in slots)
    assert CALENDAR.gate_closure_s(slots[0] - 900) <= now
    assert all(CALENDAR.is_open(slot, now) for slot in slots)
    assert not CALENDAR.is_open(slots[-1] + 900, now)
    assert CALENDAR.next_gate_closure_s(now) > now
