"""What the grid operator publishes ahead of the day, per slot: limits on the community's connection
and a locational fee for local trades (docs/grid.md).

The fee enters the market as (part of) the network fee φ of
:class:`hems.community.mechanisms.base.MarketParameters`: paid by the buyer per kWh traded
home-to-home, never on retailer volume (:func:`with_locational_fee`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from hems.community.grid.feeder import FeederModel
from hems.community.mechanisms.base import MarketParameters


@dataclass(frozen=True)
class GridLimits:
    """The operator's word for one slot; None: no limit of the operator in that direction."""

    import_limit_w: int | None = None  # the community's connection, into the community
    export_limit_w: int | None = None  # out of the community
    locational_fee_micro: int = 0  # µ¤/kWh on home-to-home volume, paid by the buyer

    def __post_init__(self) -> None:
        for name in ("import_limit_w", "export_limit_w"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} = {value!r}: allowed a whole number of W >= 0, or None")
        fee = self.locational_fee_micro
        if not isinstance(fee, int) or isinstance(fee, bool) or fee < 0:
            raise ValueError(f"locational_fee_micro = {fee!r}: allowed a whole number of µ¤/kWh >= 0")


@dataclass(frozen=True)
class SlotLimits:
    """The limits of the slot that starts at ``slot_start`` (aware, UTC on the wire)."""

    slot_start: datetime
    limits: GridLimits


@dataclass(frozen=True)
class DayAheadLimits:
    """The operator's publication for a day: limits per slot, ascending by slot start."""

    slots: tuple[SlotLimits, ...]

    def __post_init__(self) -> None:
        previous: datetime | None = None
        for index, slot in enumerate(self.slots):
            if slot.slot_start.tzinfo is None or slot.slot_start.utcoffset() is None:
                raise ValueError(f"slots[{index}].slot_start = {slot.slot_start.isoformat()}: allowed an aware "
                                 "time (UTC)")
            if previous is not None and slot.slot_start <= previous:
                raise ValueError(f"slots[{index}].slot_start = {slot.slot_start.isoformat()}: allowed a time "
                                 f"after {previous.isoformat()} (slots ascending and distinct)")
            previous = slot.slot_start

    @classmethod
    def from_mapping(cls, limits: Mapping[datetime, GridLimits] | Iterable[tuple[datetime, GridLimits]]
                     ) -> DayAheadLimits:
        """From ``{slot_start: GridLimits}`` or pairs, sorted; a repeated slot start is an error."""
        pairs = list(limits.items()) if isinstance(limits, Mapping) else list(limits)
        return cls(tuple(SlotLimits(start, value) for start, value in sorted(pairs, key=lambda pair: pair[0])))

    def for_slot(self, slot_start: datetime) -> GridLimits:
        """The limits of one slot; a slot the operator said nothing about has no operator limits."""
        for slot in self.slots:
            if slot.slot_start == slot_start:
                return slot.limits
        return GridLimits()


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits a slot's flows must keep: the tighter of the transformer's and the operator's."""

    import_limit_w: float
    export_limit_w: float
    import_set_by: Literal["transformer", "operator"]
    export_set_by: Literal["transformer", "operator"]
    locational_fee_micro: int = 0


def effective_limits(feeder: FeederModel, grid_limits: GridLimits | None) -> EffectiveLimits:
    """Per direction, the tighter of the transformer limit and the operator's limit (the operator's
    is named when both are equal: it is the one that was published for this slot)."""
    grid_limits = grid_limits or GridLimits()

    def tighter(transformer_w: float, operator_w: int | None) -> tuple[float, Literal["transformer", "operator"]]:
        if operator_w is not None and operator_w <= transformer_w:
            return float(operator_w), "operator"
        return float(transformer_w), "transformer"

    import_w, import_by = tighter(feeder.transformer_import_limit_w, grid_limits.import_limit_w)
    export_w, export_by = tighter(feeder.transformer_export_limit_w, grid_limits.export_limit_w)
    return EffectiveLimits(import_w, export_w, import_by, export_by, grid_limits.locational_fee_micro)


def locational_fee_nano(limits: GridLimits | None, traded_wh: int) -> int:
    """The locational fee (n¤) on ``traded_wh`` of home-to-home volume: Wh × µ¤/kWh = n¤, exact."""
    if traded_wh < 0:
        raise ValueError(f"traded_wh = {traded_wh}: allowed >= 0")
    return traded_wh * (limits.locational_fee_micro if limits is not None else 0)


def with_locational_fee(parameters: MarketParameters, limits: GridLimits | None) -> MarketParameters:
    """The slot's market parameters with the operator's locational fee added to the network fee φ.

    The mechanisms then charge it to buyers on home-to-home volume only, and their books balance as
    before (the fee lands in ``HomeAllocation.network_fee_nano``).
    """
    if limits is None or limits.locational_fee_micro == 0:
        return parameters
    return replace(parameters, network_fee_micro=parameters.network_fee_micro + limits.locational_fee_micro)
