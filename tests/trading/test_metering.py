"""SlotMeter: slot energies from the meter's registers (interpolated at the boundaries) or from
the grid power, never guessed across a gap; consecutive slots add up exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hems.runtime.snapshot import SiteSnapshot
from hems.trading.metering import SlotMeter
from tests.trading.conftest import snapshot

SLOT_S = 900
T0 = 1_750_507_200.0  # a slot boundary


def run(meter: SlotMeter, samples) -> list:
    """Feed (time, grid_w, import_wh, export_wh) samples; all slots reported."""
    reported = []
    for at_s, grid_w, import_wh, export_wh in samples:
        reported += meter.observe(snapshot(at_s, soc=None, grid_w=grid_w, import_wh=import_wh, export_wh=export_wh))
    return reported


def test_counters_read_at_the_boundaries_give_the_slot_exactly():
    meter = SlotMeter(SLOT_S, max_gap_s=120)
    samples = [(T0 + k * 60, 0.0, 1000.0 + 7 * k, 200.0 + 3 * k) for k in range(31)]  # 30 min of polls
    slots = run(meter, samples)
    assert [(s.slot_start_s, s.import_wh, s.export_wh, s.source) for s in slots] == [
        (T0, 105, 45, "counters"), (T0 + SLOT_S, 105, 45, "counters")]


def test_counters_are_interpolated_between_polls_around_a_boundary():
    meter = SlotMeter(SLOT_S, max_gap_s=120)
    # 3.6 Wh per 10 s (1296 W), polled every 70 s from 50 s before the first boundary.
    samples = [(T0 - 50 + k * 70, 0.0, 0.36 * (k * 70 - 50), 0.0) for k in range(30)]
    slots = run(meter, samples)
    assert [s.import_wh for s in slots] == [324, 324]  # 0.36 Wh/s x 900 s


def test_grid_power_is_integrated_when_there_are_no_counters():
    meter = SlotMeter(SLOT_S, max_gap_s=120)
    # Import 2 kW for the first slot, export 1.2 kW for the second, polled every 30 s.
    samples = [(T0 + k * 30, 2000.0 if k * 30 <= SLOT_S else -1200.0, None, None) for k in range(61)]
    slots = run(meter, samples)
    assert [(s.import_wh, s.export_wh, s.source) for s in slots] == [(500, 0, "integrated"), (0, 300, "integrated")]


def test_the_first_partial_slot_and_a_slot_with_a_gap_are_not_reported():
    meter = SlotMeter(SLOT_S, max_gap_s=120)
    start = T0 + 300  # the daemon starts a third into a slot
    samples = [(start + k * 60, 1000.0, None, None) for k in range(11)]  # up to T0 + 900
    samples += [(T0 + 1500 + k * 60, 1000.0, None, None) for k in range(26)]  # a 600-s gap, then on
    slots = run(meter, samples)
    # [T0, T0+900): started late; [T0+900, T0+1800): the gap; [T0+1800, T0+2700): whole.
    assert [s.slot_start_s for s in slots] == [T0 + 2 * SLOT_S]
    assert slots[0].import_wh == 250


def test_a_stale_reading_does_not_count_again():
    meter = SlotMeter(SLOT_S, max_gap_s=120)
    samples = [(T0 + k * 60, 600.0, None, None) for k in range(16)]
    reported = []
    for at_s, grid_w, _, _ in samples:
        # Every poll repeats the previous one's reading first (a device that did not answer).
        reported += meter.observe(snapshot(at_s - 60, soc=None, grid_w=grid_w))
        reported += meter.observe(snapshot(at_s, soc=None, grid_w=grid_w))
    assert [(s.slot_start_s, s.import_wh) for s in reported] == [(T0, 150)]


def test_a_slot_waits_for_the_reading_after_its_boundary():
    meter = SlotMeter(SLOT_S, max_gap_s=120)
    for k in range(15):  # T0 - 900 ... T0 - 60, 1 Wh per minute
        meter.observe(snapshot(T0 - 900 + 60 * k, soc=None, grid_w=60.0, import_wh=100.0 + k, export_wh=0.0))
    # Taken after the boundary, but the meter's values are still those measured before it.
    stale = snapshot(T0 - 60, soc=None, grid_w=60.0, import_wh=114.0, export_wh=0.0)
    assert meter.observe(SiteSnapshot(taken_at_s=T0 + 5, values=stale.values)) == []
    slots = meter.observe(snapshot(T0 + 60, soc=None, grid_w=60.0, import_wh=116.0, export_wh=0.0))
    assert [(s.slot_start_s, s.import_wh, s.source) for s in slots] == [(T0 - SLOT_S, 15, "counters")]


@settings(max_examples=80, deadline=None)
@given(intervals=st.lists(st.floats(min_value=1.0, max_value=119.0), min_size=20, max_size=200),
       rates=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=20, max_size=200))
def test_slots_add_up_to_the_counters_progress(intervals, rates):
    """Whatever the polling, consecutive reports add up exactly to the rounded counter values at
    the first and last reported boundary, and every report is >= 0."""
    meter = SlotMeter(SLOT_S, max_gap_s=120)
    at_s, counter = T0 - 5.0, 12_345.4
    samples = [(at_s, 0.0, counter, 0.0)]
    for interval, rate in zip(intervals * 10, rates * 10):
        at_s += interval
        counter += rate * interval  # Wh per second
        samples.append((at_s, 0.0, counter, 0.0))
    slots = run(meter, samples)
    assert all(s.import_wh >= 0 and s.source == "counters" for s in slots)
    starts = [s.slot_start_s for s in slots]
    assert starts == [T0 + k * SLOT_S for k in range(len(slots))]
    if slots:
        boundaries = meter_boundaries(samples, [T0, T0 + len(slots) * SLOT_S])
        assert sum(s.import_wh for s in slots) == round(boundaries[1]) - round(boundaries[0])


def meter_boundaries(samples, instants):
    """The counter linearly interpolated at ``instants``."""
    values = []
    for instant in instants:
        for (t0, _, c0, _), (t1, _, c1, _) in zip(samples, samples[1:]):
            if t0 < instant <= t1:
                values.append(c0 + (instant - t0) / (t1 - t0) * (c1 - c0))
                break
    return values
