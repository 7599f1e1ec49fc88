"""The market calendar, one rule for the manager and the homes: slots, gate closures and the
open trading window.

Slots are aligned to multiples of the slot length in UTC epoch seconds. The gate of the slot
starting at ``s`` closes at ``s - gate_closure_lead_s``; a bid is accepted for the first
``horizon_slots`` slots whose gate is still open.
"""

from __future__ import annotations

from dataclasses import dataclass

from hems.protocol.messages import MarketConfig


@dataclass(frozen=True)
class MarketCalendar:
    """Slot arithmetic in integer UTC seconds."""

    slot_duration_s: int
    gate_closure_lead_s: int
    horizon_slots: int

    @classmethod
    def of(cls, config: MarketConfig) -> MarketCalendar:
        """The calendar a market configuration publishes."""
        return cls(config.slot_duration_s, config.gate_closure_lead_s, config.horizon_slots)

    def slot_start_s(self, instant_s: float) -> int:
        """Start of the slot containing ``instant_s``."""
        return int(instant_s // self.slot_duration_s) * self.slot_duration_s

    def is_aligned(self, slot_start_s: float) -> bool:
        return float(slot_start_s).is_integer() and int(slot_start_s) % self.slot_duration_s == 0

    def gate_closure_s(self, slot_start_s: float) -> float:
        """When the gate of the slot starting at ``slot_start_s`` closes."""
        return slot_start_s - self.gate_closure_lead_s

    def first_open_slot_s(self, now_s: float) -> int:
        """The earliest slot whose gate is still open at ``now_s``."""
        earliest = self.slot_start_s(now_s + self.gate_closure_lead_s)
        return earliest if self.gate_closure_s(earliest) > now_s else earliest + self.slot_duration_s

    def open_slots(self, now_s: float) -> list[int]:
        """The slots a bid may be placed for at ``now_s``."""
        first = self.first_open_slot_s(now_s)
        return [first + index * self.slot_duration_s for index in range(self.horizon_slots)]

    def is_open(self, slot_start_s: int, now_s: float) -> bool:
        """True when a bid for this slot is inside the trading window."""
        if not self.is_aligned(slot_start_s):
            return False
        first = self.first_open_slot_s(now_s)
        return first <= slot_start_s < first + self.horizon_slots * self.slot_duration_s

    def window_reason(self, slot_start_s: int, now_s: float) -> str:
        """Why a slot is outside the window ('' when it is open)."""
        if not self.is_aligned(slot_start_s):
            return f"slot_start is not a multiple of {self.slot_duration_s} s"
        first = self.first_open_slot_s(now_s)
        if slot_start_s < first:
            return "gate closed"
        if slot_start_s >= first + self.horizon_slots * self.slot_duration_s:
            return f"beyond the horizon of {self.horizon_slots} slots"
        return ""

    def submit_at_s(self, slot_start_s: float, submit_lead_s: float) -> float:
        """When a home's bid for the slot is due: ``submit_lead_s`` before its gate closes."""
        return slot_start_s - self.gate_closure_lead_s - submit_lead_s

    def bid_slots_s(self, first_slot_s: float, count: int) -> list[float]:
        """``count`` consecutive slots from ``first_slot_s``, no more than the market accepts."""
        return [first_slot_s + index * self.slot_duration_s for index in range(min(count, self.horizon_slots))]

    def next_gate_closure_s(self, now_s: float) -> int:
        """When the next gate closes (strictly after ``now_s``)."""
        return self.gate_closure_s(self.first_open_slot_s(now_s))
