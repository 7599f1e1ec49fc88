"""What a home can deviate, at what price, and what the grid operator asks for (issue 8).

A home's flexibility in one slot is a baseline (its expected net import, Wh) and two merit orders of
blocks: ``up`` (import more / export less) and ``down`` (import less / export more), each block a
volume at the marginal compensation the home asks for it (µ¤/kWh, ≥ 0). A request of the grid
operator asks the community for signed deviations per slot at one price, with a penalty per kWh not
delivered. Every energy is whole Wh, every price whole µ¤/kWh, every amount n¤ (Wh × µ¤/kWh).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import StrEnum

from hems.community.mechanisms.base import Curve
from hems.community.mechanisms.bid_curve import validate_curve

__all__ = ["Direction", "FlexibilityRequest", "FlexibilitySegment", "HomeFlexibility", "direction_of",
           "flexibility_from_curve"]


class Direction(StrEnum):
    """Which way a deviation moves a home's net import."""

    UP = "up"  # more import / less export
    DOWN = "down"  # less import / more export


def direction_of(delta_wh: int) -> Direction | None:
    """The direction of a signed deviation (+ more import), None for 0."""
    if delta_wh > 0:
        return Direction.UP
    if delta_wh < 0:
        return Direction.DOWN
    return None


def _require_int(name: str, value: object) -> None:
    # bool is an int subclass; a True in an energy field is always a bug upstream.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")


@dataclass(frozen=True)
class FlexibilitySegment:
    """A block of deviation: up to ``energy_wh`` (> 0) at a marginal compensation ``price_micro`` (≥ 0)."""

    energy_wh: int
    price_micro: int

    def __post_init__(self) -> None:
        _require_int("energy_wh", self.energy_wh)
        _require_int("price_micro", self.price_micro)
        if self.energy_wh <= 0:
            raise ValueError(f"a segment's energy must be positive, got {self.energy_wh} Wh")
        if self.price_micro < 0:
            raise ValueError(f"a segment's price must not be negative, got {self.price_micro} µ¤/kWh")


def _check_merit_order(home: str, name: str, segments: tuple[FlexibilitySegment, ...]) -> None:
    if not isinstance(segments, tuple) or not all(isinstance(item, FlexibilitySegment) for item in segments):
        raise TypeError(f"flexibility of {home!r}: {name} must be a tuple of FlexibilitySegment")
    # Strictly ascending: one block per price keeps the merit order canonical (and a home never has two
    # blocks at the margin, which the pro-rata rationing of dispatch relies on). Merge equal prices.
    if any(later.price_micro <= earlier.price_micro for earlier, later in zip(segments, segments[1:])):
        raise ValueError(f"flexibility of {home!r}: {name} prices must be strictly ascending")


@dataclass(frozen=True)
class HomeFlexibility:
    """One home's flexibility in one slot.

    ``baseline_wh`` is the net import the home expects without a request. It can raise its net import
    by up to Σ ``up`` or lower it by up to Σ ``down``; each tuple is a merit order of strictly
    ascending compensation prices, and the n-th block is only available once the cheaper ones are used.
    """

    home: str
    slot_start_s: int
    baseline_wh: int
    up: tuple[FlexibilitySegment, ...] = ()
    down: tuple[FlexibilitySegment, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.home, str) or not self.home:
            raise ValueError("a flexibility needs a non-empty home id")
        _require_int("slot_start_s", self.slot_start_s)
        _require_int("baseline_wh", self.baseline_wh)
        _check_merit_order(self.home, "up", self.up)
        _check_merit_order(self.home, "down", self.down)

    def segments(self, direction: Direction | str) -> tuple[FlexibilitySegment, ...]:
        """The merit order in ``direction`` ("up" or "down"; ValueError otherwise)."""
        return self.up if Direction(direction) is Direction.UP else self.down

    @property
    def up_wh(self) -> int:
        """The most the home can raise its net import."""
        return sum(item.energy_wh for item in self.up)

    @property
    def down_wh(self) -> int:
        """The most the home can lower its net import."""
        return sum(item.energy_wh for item in self.down)


def flexibility_from_curve(curve: Curve, reference_price_micro: int, *, slot_start_s: int = 0) -> HomeFlexibility:
    """A home's flexibility read off its net-import bid curve around the price it expects.

    The curve is read as a step function: at a price p the home imports the curve's value at the
    largest grid price ≤ p (so between two grid points it keeps the lower point's quantity). Hence:

    - baseline = the value at the largest grid price ≤ ``reference_price_micro``, which must lie on
      or inside the grid (ValueError otherwise);
    - down: for each grid price p above the reference, the import the curve drops between the previous
      point and p, at compensation p − reference (the home acts as if the price were reference + it);
    - up: for each grid price p' below that baseline point, the import the curve gains between the next
      point and p', at compensation reference − p' (it must be paid to take energy it values below the
      reference).

    Flat steps give no block. The curve carries no slot, so ``slot_start_s`` says which slot it is for.
    The mechanisms' :func:`~hems.community.mechanisms.bid_curve.curve_value_wh` interpolates linearly
    instead; both agree on the grid points, which is where a reference price usually lies (λ⁺ or λ⁻).
    """
    validate_curve(curve)
    prices, quantities = curve.prices_micro, curve.net_import_wh
    _require_int("reference_price_micro", reference_price_micro)
    if not prices[0] <= reference_price_micro <= prices[-1]:
        raise ValueError(f"reference price {reference_price_micro} µ¤/kWh lies outside the curve's grid "
                         f"[{prices[0]}, {prices[-1]}]")
    base = bisect.bisect_right(prices, reference_price_micro) - 1
    down = tuple(FlexibilitySegment(quantities[index - 1] - quantities[index], prices[index] - reference_price_micro)
                 for index in range(base + 1, len(prices)) if quantities[index - 1] > quantities[index])
    up = tuple(FlexibilitySegment(quantities[index] - quantities[index + 1], reference_price_micro - prices[index])
               for index in range(base - 1, -1, -1) if quantities[index] > quantities[index + 1])
    return HomeFlexibility(curve.home, slot_start_s, quantities[base], up, down)


@dataclass(frozen=True)
class FlexibilityRequest:
    """The grid operator's request: a signed deviation per slot (+ more import, − less import).

    The requester pays ``price_micro`` per kWh delivered (up to the request) and charges
    ``penalty_micro`` per kWh of the request not delivered.
    """

    request_id: str
    slot_starts_s: tuple[int, ...]
    delta_wh: tuple[int, ...]
    price_micro: int
    penalty_micro: int

    def __post_init__(self) -> None:
        if not isinstance(self.request_id, str) or not self.request_id:
            raise ValueError("a request needs a non-empty request_id")
        if not isinstance(self.slot_starts_s, tuple) or not isinstance(self.delta_wh, tuple):
            raise TypeError("slot_starts_s and delta_wh must be tuples")
        if not self.slot_starts_s or len(self.slot_starts_s) != len(self.delta_wh):
            raise ValueError(f"request {self.request_id!r}: {len(self.slot_starts_s)} slots for "
                             f"{len(self.delta_wh)} deltas (at least one slot, one delta each)")
        for value in self.slot_starts_s:
            _require_int("slot_starts_s", value)
        for value in self.delta_wh:
            _require_int("delta_wh", value)
        if any(later <= earlier for earlier, later in zip(self.slot_starts_s, self.slot_starts_s[1:])):
            raise ValueError(f"request {self.request_id!r}: slot starts must be strictly ascending")
        _require_int("price_micro", self.price_micro)
        _require_int("penalty_micro", self.penalty_micro)
        if self.price_micro < 0 or self.penalty_micro < 0:
            raise ValueError(f"request {self.request_id!r}: price and penalty must not be negative")

    def delta_for(self, slot_start_s: int) -> int:
        """The signed deviation asked for in one slot (KeyError if the slot is not requested)."""
        try:
            return self.delta_wh[self.slot_starts_s.index(slot_start_s)]
        except ValueError:
            raise KeyError(slot_start_s) from None
