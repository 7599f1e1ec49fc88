"""The market calendar: which slots are open for bids and when to submit.

Slots are aligned to whole multiples of their length since the epoch (UTC), as the planner's
are. The gate of the slot starting at ``s`` closes at ``s - gate_closure_lead_s``; the manager
accepts bids for the next ``horizon_slots`` slots whose gate is still open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hems.protocol.messages import MarketConfig


@dataclass(frozen=True)
class MarketCalendar:
    """Gate times of one market configuration (seconds, UTC epoch)."""

    slot_s: int
    gate_lead_s: int
    horizon_slots: int

    @classmethod
    def of(cls, config: MarketConfig) -> MarketCalendar:
        """The calendar a market configuration publishes."""
        return cls(config.slot_duration_s, config.gate_closure_lead_s, config.horizon_slots)

    def gate_s(self, slot_start_s: float) -> float:
        """When the gate of the slot starting at ``slot_start_s`` closes."""
        return slot_start_s - self.gate_lead_s

    def first_open_slot_s(self, now_s: float) -> float:
        """The earliest slot whose gate is still open at ``now_s`` (closes strictly later)."""
        index = math.floor((now_s + self.gate_lead_s) / self.slot_s) + 1
        return float(index * self.slot_s)

    def submit_at_s(self, slot_start_s: float, submit_lead_s: float) -> float:
        """When a bid for the slot is due: ``submit_lead_s`` before its gate closes."""
        return self.gate_s(slot_start_s) - submit_lead_s

    def bid_slots_s(self, first_slot_s: float, count: int) -> list[float]:
        """``count`` consecutive slots from ``first_slot_s``, no more than the market accepts."""
        return [first_slot_s + index * self.slot_s for index in range(min(count, self.horizon_slots))]
