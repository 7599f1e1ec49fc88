"""The energy the grid meter counted in each finished slot, for settlement.

Two sources, the better one wins per slot:

- **counters**: the meter's import and export energy registers (``GRID_IMPORT_ENERGY_WH``,
  ``GRID_EXPORT_ENERGY_WH``), read at the slot's boundaries. A poll rarely falls exactly on a
  boundary, so the register value at the boundary is interpolated between the readings around it.
- **integrated**: the grid power the telemetry loop sees, held from one poll to the next (as the
  energy metrics do) and split into import and export.

Both are kept as cumulative Wh; a slot's energy is the difference of the rounded cumulative
values at its boundaries, so consecutive reports add up exactly to the counters' progress. A
slot is reported only when both of its boundaries were seen with no gap longer than
``max_gap_s`` between readings: a slot the daemon did not watch is not guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hems.runtime.snapshot import Quantity, SiteSnapshot

#: Readings of the two registers further apart than this are not one reading.
SAME_READING_S = 1.0


@dataclass(frozen=True)
class MeteredSlot:
    """Metered energy of one finished slot (whole Wh, both >= 0)."""

    slot_start_s: float
    duration_s: int
    import_wh: int
    export_wh: int
    source: str  # "counters" or "integrated"


class _CumulativeTrack:
    """A cumulative (import, export) pair over time and its values at slot boundaries."""

    def __init__(self, slot_s: int, max_gap_s: float) -> None:
        self.slot_s = slot_s
        self.max_gap_s = max_gap_s
        self.last: tuple[float, float, float] | None = None  # (time, import, export)
        self.at_boundary: dict[float, tuple[float, float]] = {}

    def add(self, at_s: float, import_wh: float, export_wh: float) -> None:
        """A new cumulative reading; readings not newer than the last one are ignored."""
        last = self.last
        if last is not None and at_s <= last[0]:
            return
        if last is None or at_s - last[0] > self.max_gap_s:
            self.at_boundary.clear()  # a gap: no boundary before it can be paired across it
            if at_s % self.slot_s == 0:
                self.at_boundary[at_s] = (import_wh, export_wh)
        else:
            boundary = (math.floor(last[0] / self.slot_s) + 1) * self.slot_s
            while boundary <= at_s:
                share = (boundary - last[0]) / (at_s - last[0])
                self.at_boundary[float(boundary)] = (last[1] + share * (import_wh - last[1]),
                                                     last[2] + share * (export_wh - last[2]))
                boundary += self.slot_s
        self.last = (at_s, import_wh, export_wh)

    def slot(self, start_s: float) -> tuple[int, int] | None:
        """Whole Wh imported and exported in the slot from ``start_s``, if both boundaries were seen."""
        begin = self.at_boundary.get(start_s)
        end = self.at_boundary.get(start_s + self.slot_s)
        if begin is None or end is None:
            return None
        return (max(0, round(end[0]) - round(begin[0])), max(0, round(end[1]) - round(begin[1])))

    def forget_before(self, at_s: float) -> None:
        """Drop boundaries before ``at_s``."""
        for boundary in [b for b in self.at_boundary if b < at_s]:
            del self.at_boundary[boundary]


class SlotMeter:
    """Feed it every telemetry snapshot; it returns each slot as soon as the slot is over."""

    def __init__(self, slot_s: int, max_gap_s: float) -> None:
        if slot_s <= 0 or max_gap_s <= 0:
            raise ValueError(f"slot_s = {slot_s!r} and max_gap_s = {max_gap_s!r} must be > 0")
        self.slot_s = slot_s
        self.counters = _CumulativeTrack(slot_s, max_gap_s)
        self.integrated = _CumulativeTrack(slot_s, max_gap_s)
        self.max_gap_s = max_gap_s
        self._power: tuple[float, float] | None = None  # (time, W) of the last grid power used
        self._imported_wh = 0.0
        self._exported_wh = 0.0
        self._next_end_s: float | None = None

    def observe(self, snapshot: SiteSnapshot) -> list[MeteredSlot]:
        """Account for the snapshot's new readings; the slots that ended up to its time."""
        self._add_counters(snapshot)
        self._add_power(snapshot)
        now_s = snapshot.taken_at_s
        if self._next_end_s is None:
            self._next_end_s = (math.floor(now_s / self.slot_s) + 1) * self.slot_s
        finished = []
        while self._next_end_s <= now_s and all(self._decided(track, self._next_end_s, now_s)
                                                for track in (self.counters, self.integrated)):
            start_s = self._next_end_s - self.slot_s
            slot = self.counters.slot(start_s)
            source = "counters"
            if slot is None:
                slot, source = self.integrated.slot(start_s), "integrated"
            if slot is not None:
                finished.append(MeteredSlot(start_s, self.slot_s, slot[0], slot[1], source))
            self._next_end_s += self.slot_s
        for track in (self.counters, self.integrated):
            track.forget_before(self._next_end_s - self.slot_s)
        return finished

    def _decided(self, track: _CumulativeTrack, end_s: float, now_s: float) -> bool:
        """Whether ``track`` can still learn its value at ``end_s``: no while a reading after the
        boundary may yet come within ``max_gap_s`` of the last one."""
        last = track.last
        return last is None or last[0] >= end_s or now_s - last[0] > self.max_gap_s

    def _add_counters(self, snapshot: SiteSnapshot) -> None:
        imported = snapshot.get(Quantity.GRID_IMPORT_ENERGY_WH)
        exported = snapshot.get(Quantity.GRID_EXPORT_ENERGY_WH)
        if imported is None or exported is None:
            return
        if abs(imported.measured_at_s - exported.measured_at_s) > SAME_READING_S:
            return  # one register was rejected this poll: wait for a consistent pair
        self.counters.add(max(imported.measured_at_s, exported.measured_at_s), imported.value, exported.value)

    def _add_power(self, snapshot: SiteSnapshot) -> None:
        grid = snapshot.get(Quantity.GRID_IMPORT_W)
        if grid is None:
            return
        at_s, power_w = grid.measured_at_s, grid.value
        last = self._power
        if last is not None and at_s <= last[0]:
            return
        if last is not None and at_s - last[0] <= self.max_gap_s:
            hours = (at_s - last[0]) / 3600.0
            self._imported_wh += max(power_w, 0.0) * hours
            self._exported_wh += max(-power_w, 0.0) * hours
        self._power = (at_s, power_w)
        self.integrated.add(at_s, self._imported_wh, self._exported_wh)
