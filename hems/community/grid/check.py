"""Checking one cleared slot against the feeder and the operator's limits: the congestion report.

The homes' cleared net imports (Wh over the slot) become average powers, W = Wh · 3600 / duration_s.
The transformer (connection) flow is their sum, + import; the voltage of each feeder home follows
the linear model of :mod:`hems.community.grid.feeder`. Every constraint gets a margin (how far
inside its limit the slot stays, in W or V); a negative margin is a violation, by ``excess``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from hems.community.grid.feeder import FeederModel
from hems.community.grid.limits import EffectiveLimits, GridLimits, effective_limits


class ConstraintKind(StrEnum):
    TRANSFORMER_IMPORT = "transformer_import"  # flow into the community ≤ import limit
    TRANSFORMER_EXPORT = "transformer_export"  # flow out of the community ≤ export limit
    OVERVOLTAGE = "overvoltage"  # a home's voltage ≤ V_nom · (1 + band)
    UNDERVOLTAGE = "undervoltage"  # a home's voltage ≥ V_nom · (1 − band)


@dataclass(frozen=True)
class ConstraintMargin:
    """One constraint of one slot: its limit, the slot's value, and the margin between them."""

    kind: ConstraintKind
    home: str | None  # the home whose voltage it is; None for the transformer
    limit: float  # W (transformer: import or export limit) or V (band edge)
    value: float  # W (the flow in the constraint's direction) or V (the home's voltage)
    margin: float  # ≥ 0 inside the limit; < 0 a violation
    unit: str  # "W" or "V"
    set_by: str  # "transformer" or "operator" (flows), "band" (voltages)

    @property
    def violated(self) -> bool:
        return self.margin < 0

    @property
    def excess(self) -> float:
        """By how much the limit is exceeded (0 when it is kept)."""
        return max(0.0, -self.margin)

    def describe(self) -> str:
        """One line for a log or a report."""
        where = f" at {self.home}" if self.home is not None else ""
        state = f"exceeded by {self.excess:.6g} {self.unit}" if self.violated else \
            f"margin {self.margin:.6g} {self.unit}"
        return f"{self.kind.value}{where}: {self.value:.6g} {self.unit} against {self.limit:.6g} {self.unit} " \
               f"({self.set_by}), {state}"


@dataclass(frozen=True)
class GridCheck:
    """One slot, checked: the flow, the voltages, every constraint's margin."""

    flow_w: float  # through the transformer (connection), + import into the community
    voltages_v: Mapping[str, float]  # every feeder home
    constraints: tuple[ConstraintMargin, ...]
    limits: EffectiveLimits
    duration_s: int
    #: Homes with a non-zero position that are not on the feeder: counted at the transformer.
    at_transformer: tuple[str, ...] = ()

    @property
    def violations(self) -> tuple[ConstraintMargin, ...]:
        """The congestion report: every exceeded limit, by how much."""
        return tuple(item for item in self.constraints if item.violated)

    @property
    def congested(self) -> bool:
        return any(item.violated for item in self.constraints)

    def margin(self, kind: ConstraintKind, home: str | None = None) -> ConstraintMargin:
        """The constraint of ``kind`` (at ``home`` for voltages)."""
        for item in self.constraints:
            if item.kind is kind and item.home == home:
                return item
        raise KeyError(f"no {kind.value} constraint" + (f" at {home}" if home else ""))

    def report(self) -> list[str]:
        """The violations, one line each (empty when the slot keeps every limit)."""
        return [item.describe() for item in self.violations]


def watts_per_wh(duration_s: int) -> float:
    """The average power (W) of 1 Wh over a slot of ``duration_s``."""
    if duration_s <= 0:
        raise ValueError(f"duration_s = {duration_s}: allowed > 0")
    return 3600.0 / duration_s


def placed_positions(feeder: FeederModel, net_import_wh: Mapping[str, int]) -> tuple[np.ndarray, float, list[str]]:
    """The positions of the feeder homes (Wh, in ``feeder.homes`` order; absent: 0), the sum over
    all homes (Wh), and the homes with a non-zero position that are not on the feeder."""
    placed = np.zeros(len(feeder.homes))
    total = 0
    elsewhere = []
    for home, wh in net_import_wh.items():
        total += wh
        index = feeder.index(home)
        if index is not None:
            placed[index] = wh
        elif wh != 0:
            elsewhere.append(home)
    return placed, float(total), sorted(elsewhere)


def flow_and_voltages(feeder: FeederModel, placed_wh: np.ndarray, total_wh: float,
                      duration_s: int) -> tuple[float, np.ndarray]:
    """The transformer flow (W, + import) and the feeder homes' voltages (V) of positions in Wh."""
    w_per_wh = watts_per_wh(duration_s)
    injection_kw = -placed_wh * (w_per_wh / 1000.0)
    return total_wh * w_per_wh, feeder.nominal_voltage_v + feeder.voltage_rise_v(injection_kw)


@dataclass(frozen=True)
class Margins:
    """The margins of one slot as numbers and arrays (what :class:`GridCheck` is built from)."""

    flow_w: float
    voltages_v: np.ndarray  # feeder homes, in ``feeder.homes`` order
    import_margin_w: float
    export_margin_w: float
    over_margin_v: np.ndarray  # V_max − V per feeder home
    under_margin_v: np.ndarray  # V − V_min per feeder home
    at_transformer: tuple[str, ...]

    @property
    def kept(self) -> bool:
        """Every limit kept (no margin below 0)."""
        return (self.import_margin_w >= 0 and self.export_margin_w >= 0
                and bool(np.all(self.over_margin_v >= 0)) and bool(np.all(self.under_margin_v >= 0)))


def margins(feeder: FeederModel, effective: EffectiveLimits, net_import_wh: Mapping[str, int],
            duration_s: int) -> Margins:
    """Every margin of one slot, without building a report (the approval re-checks with this)."""
    placed, total, elsewhere = placed_positions(feeder, net_import_wh)
    flow_w, voltages = flow_and_voltages(feeder, placed, total, duration_s)
    return Margins(flow_w, voltages, effective.import_limit_w - flow_w, effective.export_limit_w + flow_w,
                   feeder.max_voltage_v - voltages, voltages - feeder.min_voltage_v, tuple(elsewhere))


def check(feeder: FeederModel, limits: GridLimits | EffectiveLimits | None, net_import_wh: Mapping[str, int],
          duration_s: int) -> GridCheck:
    """Check one slot's cleared net imports (Wh, + import) against the feeder and the limits.

    ``limits`` are the operator's for this slot (None: none published) or already effective ones.
    A home not on the feeder counts at the transformer; a feeder home without a position is at 0
    but its voltage is still watched.
    """
    effective = limits if isinstance(limits, EffectiveLimits) else effective_limits(feeder, limits)
    found = margins(feeder, effective, net_import_wh, duration_s)
    high, low = feeder.max_voltage_v, feeder.min_voltage_v
    flow_w = found.flow_w
    constraints = [
        ConstraintMargin(ConstraintKind.TRANSFORMER_IMPORT, None, effective.import_limit_w, flow_w,
                         found.import_margin_w, "W", effective.import_set_by),
        ConstraintMargin(ConstraintKind.TRANSFORMER_EXPORT, None, effective.export_limit_w, -flow_w,
                         found.export_margin_w, "W", effective.export_set_by),
    ]
    voltages = found.voltages_v.tolist()
    for home, voltage, over, under in zip(feeder.homes, voltages, found.over_margin_v.tolist(),
                                          found.under_margin_v.tolist()):
        constraints.append(ConstraintMargin(ConstraintKind.OVERVOLTAGE, home, high, voltage, over, "V", "band"))
        constraints.append(ConstraintMargin(ConstraintKind.UNDERVOLTAGE, home, low, voltage, under, "V", "band"))
    return GridCheck(flow_w=flow_w, voltages_v=dict(zip(feeder.homes, voltages)), constraints=tuple(constraints),
                     limits=effective, duration_s=duration_s, at_transformer=found.at_transformer)
