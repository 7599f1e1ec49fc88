"""Our slots against the upstream market's: which overlap, how energy is split, whose gate comes first.

Both markets align their slots to multiples of their own length in UTC epoch seconds, so when one
length is a multiple of the other every long slot holds a whole number of short ones, aligned.
Other ratios would cut slots in pieces and are refused (:func:`mapping_problem`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hems.protocol.calendar import MarketCalendar


def split_wh(value_wh: int, parts: int) -> list[int]:
    """``value_wh`` in ``parts`` whole-Wh shares as even as possible, the remainder to the first
    shares; the sign is kept and the magnitudes split (−7 in 3: −3, −2, −2). Each share is a
    non-decreasing function of ``value_wh``, so splitting a non-increasing curve point by point gives
    non-increasing curves."""
    if parts < 1:
        raise ValueError(f"parts = {parts}: at least 1")
    magnitude, sign = abs(value_wh), (1 if value_wh >= 0 else -1)
    base, remainder = divmod(magnitude, parts)
    return [sign * (base + (1 if index < remainder else 0)) for index in range(parts)]


def mapping_problem(our_slot_s: int, upstream_slot_s: int) -> str:
    """Why our slots cannot be mapped onto the upstream's ('' when one length divides the other)."""
    if our_slot_s <= 0 or upstream_slot_s <= 0:
        return "slot lengths must be positive"
    if upstream_slot_s % our_slot_s and our_slot_s % upstream_slot_s:
        return (f"the upstream slot of {upstream_slot_s} s and ours of {our_slot_s} s: neither is a multiple "
                "of the other")
    return ""


def gate_problem(ours: MarketCalendar, upstream: MarketCalendar) -> str:
    """Why the upstream gate does not close before ours ('' when it does).

    Our slot ``t`` can only share the upstream trade of every upstream slot it overlaps if all their
    gates closed before ours: the last such upstream slot starts ``max(0, ours − upstream)`` after
    ``t``, so its gate closes before ours exactly when the upstream lead exceeds our lead by more
    than that."""
    offset_s = max(0, ours.slot_duration_s - upstream.slot_duration_s)
    if upstream.gate_closure_lead_s > ours.gate_closure_lead_s + offset_s:
        return ""
    return (f"the upstream gate closes {upstream.gate_closure_lead_s} s before its slots, ours "
            f"{ours.gate_closure_lead_s} s: it must close before ours for every slot we clear, so the upstream "
            f"lead must exceed {ours.gate_closure_lead_s + offset_s} s")


@dataclass(frozen=True)
class SlotMapping:
    """Our slot length against the upstream's (one a multiple of the other)."""

    our_slot_s: int
    upstream_slot_s: int

    def __post_init__(self) -> None:
        problem = mapping_problem(self.our_slot_s, self.upstream_slot_s)
        if problem:
            raise ValueError(problem)

    @property
    def ours_per_upstream(self) -> int:
        """Our slots in one upstream slot (1 when ours are as long or longer)."""
        return max(self.upstream_slot_s // self.our_slot_s, 1)

    @property
    def upstream_per_ours(self) -> int:
        """Upstream slots in one of ours (1 when the upstream's are as long or longer)."""
        return max(self.our_slot_s // self.upstream_slot_s, 1)

    def our_slots(self, upstream_start_s: int) -> list[int]:
        """Our slots that overlap the upstream slot starting at ``upstream_start_s``."""
        first = upstream_start_s // self.our_slot_s * self.our_slot_s
        return [first + index * self.our_slot_s for index in range(self.ours_per_upstream)]

    def upstream_slots(self, our_start_s: int) -> list[int]:
        """The upstream slots that overlap our slot starting at ``our_start_s``."""
        first = our_start_s // self.upstream_slot_s * self.upstream_slot_s
        return [first + index * self.upstream_slot_s for index in range(self.upstream_per_ours)]

    def index_in_upstream(self, our_start_s: int) -> int:
        """Which of its upstream slot's shares our slot is (0 when ours are as long or longer)."""
        upstream_start_s = our_start_s // self.upstream_slot_s * self.upstream_slot_s
        return (our_start_s - upstream_start_s) // self.our_slot_s if self.ours_per_upstream > 1 else 0

    def index_in_ours(self, upstream_start_s: int) -> int:
        """Which of our slot's shares the upstream slot is (0 when the upstream's are as long or longer)."""
        our_start_s = upstream_start_s // self.our_slot_s * self.our_slot_s
        return (upstream_start_s - our_start_s) // self.upstream_slot_s if self.upstream_per_ours > 1 else 0
