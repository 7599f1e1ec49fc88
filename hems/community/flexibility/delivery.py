"""Baselines and delivery: what each home would have imported, and what it did (issue 8).

A home's delivery in a slot is its metered net import minus its baseline, counted only in the
requested direction: a home asked to import less that imported more delivered 0 (its adverse move is
reported, not subtracted). Delivery is not capped at the commitment; what exceeds it is reported as
over-delivery. The slot's shortfall is what the request asked for beyond the homes' total delivery,
and its penalty is shortfall × the request's penalty (Wh × µ¤/kWh = n¤).

The history baseline is the demand-response programmes' "X of Y days with a same-day adjustment"
(docs/flexibility.md cites which): the mean of the same slot on the last ``days`` similar days,
optionally only the ``top_days`` highest of them, plus an additive adjustment (the mean difference
between today's metered energy and the baselines of the slots before the event) capped at ±20 % of
the unadjusted baseline. The mean is exact (a fraction) and rounded half-even to whole Wh once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from hems.community.flexibility.dispatch import Dispatch
from hems.community.flexibility.model import FlexibilityRequest, HomeFlexibility
from hems.protocol.units import round_half_even

__all__ = ["DeliveryReport", "HomeDelivery", "SlotDelivery", "baseline_from_history", "declared_baselines",
           "measure_delivery"]

#: The usual cap of a same-day adjustment: ±20 % of the unadjusted baseline.
ADJUSTMENT_CAP = Fraction(1, 5)


def baseline_from_history(history_wh: Sequence[int], *, days: int = 10, top_days: int | None = None,
                          adjustment_slots_wh: Sequence[tuple[int, int]] | None = None,
                          adjustment_cap: Fraction = ADJUSTMENT_CAP) -> int:
    """A home's baseline (Wh) for one slot from the same slot on previous similar days.

    ``history_wh``: that slot's metered net import on the previous similar days (non-event days of
    the same kind, which the caller selects), most recent last; the last ``days`` are used (fewer if
    the history is shorter, at least one). ``top_days``: use only the highest that many of them (the
    "high X of Y" variant). ``adjustment_slots_wh``: (metered today, baseline) of each slot of the
    adjustment window before the event; their mean difference is added, capped at ±``adjustment_cap``
    × |unadjusted baseline| (a baseline of 0 therefore gets no adjustment).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if not history_wh:
        raise ValueError("a history baseline needs at least one previous day")
    window = [int(value) for value in history_wh[-days:]]
    if top_days is not None:
        if not 1 <= top_days <= len(window):
            raise ValueError(f"top_days must lie in [1, {len(window)}], got {top_days}")
        window = sorted(window)[-top_days:]
    baseline = Fraction(sum(window), len(window))
    if adjustment_slots_wh:
        if adjustment_cap < 0:
            raise ValueError("the adjustment cap must not be negative")
        adjustment = Fraction(sum(int(metered) - int(base) for metered, base in adjustment_slots_wh),
                              len(adjustment_slots_wh))
        cap = adjustment_cap * abs(baseline)
        baseline += max(-cap, min(cap, adjustment))
    return round_half_even(baseline)


def declared_baselines(flexibilities: Iterable[HomeFlexibility]) -> dict[int, dict[str, int]]:
    """The baselines the homes declared with their flexibility: slot -> home -> Wh."""
    result: dict[int, dict[str, int]] = {}
    for flex in flexibilities:
        homes = result.setdefault(flex.slot_start_s, {})
        if flex.home in homes:
            raise ValueError(f"two flexibilities of {flex.home!r} for slot {flex.slot_start_s}")
        homes[flex.home] = flex.baseline_wh
    return result


@dataclass(frozen=True)
class HomeDelivery:
    """One dispatched home in one slot. Energies signed like the request unless said ≥ 0."""

    home: str
    committed_wh: int
    baseline_wh: int
    metered_wh: int | None  # None: no meter reading (delivers nothing)
    delivered_wh: int  # metered − baseline in the requested direction; 0 if it moved the other way
    over_delivery_wh: int  # ≥ 0: delivered beyond the commitment
    shortfall_wh: int  # ≥ 0: the commitment not delivered
    adverse_wh: int  # ≥ 0: how far it moved against the request


@dataclass(frozen=True)
class SlotDelivery:
    """One slot's delivery against the request."""

    slot_start_s: int
    requested_wh: int  # signed
    homes: tuple[HomeDelivery, ...]  # the dispatched homes, by id
    delivered_wh: int  # signed total of the homes' deliveries
    shortfall_wh: int  # ≥ 0: |requested| − |delivered| where positive
    penalty_nano: int  # shortfall × penalty_micro

    @property
    def accepted_wh(self) -> int:
        """The delivered energy the requester pays for (≥ 0): up to the request."""
        return min(abs(self.delivered_wh), abs(self.requested_wh))

    @property
    def over_delivery_wh(self) -> int:
        """Delivery beyond the request (≥ 0), which the requester does not pay for."""
        return max(0, abs(self.delivered_wh) - abs(self.requested_wh))


@dataclass(frozen=True)
class DeliveryReport:
    """A request's delivery, slot by slot."""

    request_id: str
    slots: tuple[SlotDelivery, ...]
    missing_meters: tuple[tuple[int, str], ...] = ()  # (slot, home) dispatched without a meter reading

    @property
    def penalty_nano(self) -> int:
        return sum(item.penalty_nano for item in self.slots)

    def slot(self, slot_start_s: int) -> SlotDelivery:
        """One slot's delivery (KeyError if the request has no such slot)."""
        for item in self.slots:
            if item.slot_start_s == slot_start_s:
                return item
        raise KeyError(slot_start_s)


def measure_delivery(request: FlexibilityRequest, dispatch: Dispatch, baselines_wh: Mapping[int, Mapping[str, int]],
                     metered_net_import_wh: Mapping[int, Mapping[str, int]]) -> DeliveryReport:
    """Each dispatched home's delivery per slot, the slots' totals, shortfalls and penalties.

    ``baselines_wh`` and ``metered_net_import_wh`` map slot -> home -> Wh. Every dispatched home needs
    a baseline (KeyError otherwise); one without a meter reading delivered nothing and is listed in
    ``missing_meters``. Homes that were not dispatched are not measured.
    """
    if request.request_id != dispatch.request_id:
        raise ValueError(f"dispatch {dispatch.request_id!r} is not a dispatch of request {request.request_id!r}")
    slots, missing = [], []
    for slot_start_s, requested_wh in zip(request.slot_starts_s, request.delta_wh):
        sign = 1 if requested_wh > 0 else -1
        committed = dispatch.slot(slot_start_s).commitments if requested_wh else ()
        metered_slot = metered_net_import_wh.get(slot_start_s, {})
        homes = []
        for commitment in committed:
            try:
                baseline = int(baselines_wh[slot_start_s][commitment.home])
            except KeyError:
                raise KeyError(f"no baseline for {commitment.home!r} in slot {slot_start_s}") from None
            metered = metered_slot.get(commitment.home)
            if metered is None:
                missing.append((slot_start_s, commitment.home))
                moved = 0
            else:
                moved = sign * (int(metered) - baseline)  # > 0: in the requested direction
            delivered, owed = max(moved, 0), abs(commitment.energy_wh)
            homes.append(HomeDelivery(commitment.home, commitment.energy_wh, baseline, metered, sign * delivered,
                                      max(delivered - owed, 0), max(owed - delivered, 0), max(-moved, 0)))
        total = sum(abs(item.delivered_wh) for item in homes)
        shortfall = max(abs(requested_wh) - total, 0)
        slots.append(SlotDelivery(slot_start_s, requested_wh, tuple(homes), sign * total, shortfall,
                                  shortfall * request.penalty_micro))
    return DeliveryReport(request.request_id, tuple(slots), tuple(missing))
