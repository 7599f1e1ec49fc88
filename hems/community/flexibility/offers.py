"""The community's flexibility as offers toward the grid operator: one merit order per slot and
direction, cut into price blocks of at least a minimum size (issue 8).

Every home's blocks of one slot and direction are pooled and summed per price, cheapest first. A
price block smaller than ``minimum_offer_wh`` is merged with the next dearer one(s) until the offer
reaches the minimum; the offer's price is the highest marginal price it contains (the community
never offers energy below what its dearest block asks). What is left at the dear end below the
minimum is not offered and is reported. Power is the offer's energy spread over the slot, floored to
whole W: energy_wh × 3600 // slot_duration_s (15-minute offers: × 4).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from hems.community.flexibility.model import Direction, HomeFlexibility

__all__ = ["AggregatedOffers", "FlexibilityOffer", "UnofferedRemainder", "aggregate_offers"]


@dataclass(frozen=True)
class FlexibilityOffer:
    """One block the community offers: ``energy_wh`` in ``direction`` in one slot at ``price_micro``."""

    slot_start_s: int
    direction: Direction  # a StrEnum: equal to "up" / "down"
    energy_wh: int
    power_w: int  # energy over the slot, floored
    price_micro: int  # the highest marginal price in the block


@dataclass(frozen=True)
class UnofferedRemainder:
    """The dear end of a merit order left below the minimum offer size."""

    slot_start_s: int
    direction: Direction
    energy_wh: int
    price_micro: int  # the highest price in the remainder


@dataclass(frozen=True)
class AggregatedOffers:
    """All offers, by slot then direction (up before down) then ascending price, and the remainders."""

    offers: tuple[FlexibilityOffer, ...]
    unoffered: tuple[UnofferedRemainder, ...]

    def for_slot(self, slot_start_s: int, direction: Direction | str) -> list[FlexibilityOffer]:
        """The offers of one slot and direction, cheapest first."""
        return [item for item in self.offers if item.slot_start_s == slot_start_s and item.direction == direction]

    def unoffered_wh(self, slot_start_s: int, direction: Direction | str) -> int:
        """What one slot and direction leaves unoffered."""
        return sum(item.energy_wh for item in self.unoffered
                   if item.slot_start_s == slot_start_s and item.direction == direction)


def aggregate_offers(flexibilities: Iterable[HomeFlexibility], *, minimum_offer_wh: int,
                     slot_duration_s: int = 900, opted_out: frozenset[str] = frozenset()) -> AggregatedOffers:
    """The community's offers per slot and direction from the homes' flexibility (opted-out homes
    left out). ``minimum_offer_wh`` ≥ 1; ``slot_duration_s`` > 0 (900 for 15-minute offers)."""
    if minimum_offer_wh < 1:
        raise ValueError(f"the minimum offer must be at least 1 Wh, got {minimum_offer_wh}")
    if slot_duration_s <= 0:
        raise ValueError(f"the slot duration must be positive, got {slot_duration_s} s")
    # (slot, direction) -> price -> Wh; a plain dict sum: a community has a few thousand blocks per slot.
    pooled: dict[tuple[int, Direction], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    seen: set[tuple[str, int]] = set()
    for flex in flexibilities:
        if (flex.home, flex.slot_start_s) in seen:
            raise ValueError(f"two flexibilities of {flex.home!r} for slot {flex.slot_start_s}")
        seen.add((flex.home, flex.slot_start_s))
        if flex.home in opted_out:
            continue
        for direction in Direction:
            for segment in flex.segments(direction):
                pooled[flex.slot_start_s, direction][segment.price_micro] += segment.energy_wh
    offers: list[FlexibilityOffer] = []
    unoffered: list[UnofferedRemainder] = []
    for slot_start_s, direction in sorted(pooled, key=lambda key: (key[0], list(Direction).index(key[1]))):
        energy_wh = 0
        for price_micro, block_wh in sorted(pooled[slot_start_s, direction].items()):
            energy_wh += block_wh
            if energy_wh >= minimum_offer_wh:
                offers.append(FlexibilityOffer(slot_start_s, direction, energy_wh,
                                               energy_wh * 3600 // slot_duration_s, price_micro))
                energy_wh = 0
        if energy_wh:
            unoffered.append(UnofferedRemainder(slot_start_s, direction, energy_wh, price_micro))
    return AggregatedOffers(tuple(offers), tuple(unoffered))
