"""Plausibility limits of one site, and the checks a site quantity must pass.

The checks are pure functions of a candidate value, the limits and the last accepted value (the
*anchor*); the :class:`~hems.runtime.estimation.StateEstimator` keeps the anchors and counts the
rejections. Two kinds of check:

- **absolute** (``beyond_nameplate``): the value is impossible for this site whatever came before
  (a power beyond margin x nameplate, a state of charge outside [0, 1], a negative counter).
- **relative** (``soc_jump``, ``counter_backwards``, ``counter_jump``): the value cannot follow the
  anchor in the elapsed time. Only these may be re-anchored, because a BMS recalibration or a meter
  replacement legitimately breaks continuity, while an absolute violation never becomes possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hems.runtime.snapshot import Quantity

if TYPE_CHECKING:
    from hems.mpc.site import SiteConfig

#: Rejection reasons (the ``reason`` label of hems_readings_rejected_total).
DEVICE_IMPLAUSIBLE = "device_implausible"
BEYOND_NAMEPLATE = "beyond_nameplate"
SOC_JUMP = "soc_jump"
COUNTER_BACKWARDS = "counter_backwards"
COUNTER_JUMP = "counter_jump"
#: Not a rejection but counted alongside them: a new level accepted after agreeing rejections.
REANCHORED = "reanchored"

#: Net powers (W), summed over sources.
POWER_QUANTITIES = frozenset({
    Quantity.GRID_IMPORT_W, Quantity.PV_POWER_W, Quantity.BATTERY_CHARGE_W, Quantity.EV_POWER_W,
    Quantity.HEAT_PUMP_POWER_W,
})
#: Energy counters (Wh), summed over sources; they only move forward.
COUNTER_QUANTITIES = frozenset({
    Quantity.GRID_IMPORT_ENERGY_WH, Quantity.GRID_EXPORT_ENERGY_WH, Quantity.PV_ENERGY_WH,
})
#: 0.0 / 1.0 quantities, combined with "any".
FLAG_QUANTITIES = frozenset({Quantity.EV_CONNECTED})

_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Anchor:
    """The last accepted value of a quantity, what relative checks compare against."""

    value: float
    measured_at_s: float
    #: When the value first showed its current level: a coarse counter register stands still
    #: for a while and then steps, and the step is what the whole interval produced.
    level_since_s: float

    def moved_to(self, value: float, measured_at_s: float) -> Anchor:
        """The anchor after accepting ``value`` measured at ``measured_at_s``."""
        since = self.level_since_s if value == self.value else measured_at_s
        return Anchor(value, measured_at_s, since)


@dataclass(frozen=True)
class PlausibilityLimits:
    """What the site's nameplates allow; ``None`` means unknown and disables that bound.

    A power beyond ``power_margin`` x its nameplate is implausible (the margin absorbs meter error,
    short overloads and nameplates that understate the hardware). The grid's export side is bounded
    by the larger of the export limit and the import limit (the fuse limits current both ways): an
    export limit is a control target, possibly 0 W, and the control must see an overshoot to
    correct it, so it must not be rejected.
    """

    battery_capacity_wh: float | None = None
    battery_max_charge_w: float | None = None
    battery_max_discharge_w: float | None = None
    #: Sum of the PV arrays' peak powers.
    pv_peak_w: float | None = None
    grid_import_limit_w: float | None = None
    grid_export_limit_w: float | None = None
    ev_max_charge_w: float | None = None
    heat_pump_max_w: float | None = None
    power_margin: float = 1.5
    #: Fraction of capacity added to what the battery's power could move in the elapsed time.
    soc_jump_tolerance: float = 0.02
    counter_backwards_tolerance_wh: float = 1.0
    #: The coarsest counter register step expected (a uint32 in 0.1 kWh steps is 100 Wh); added to
    #: the forward allowance so that one register step after a short poll is not a ``counter_jump``.
    counter_step_tolerance_wh: float = 100.0
    #: Consumption a generator or load reports with the "wrong" sign while idle (inverter standby
    #: at night, wallbox electronics); below minus this a PV/EV/heat-pump power is implausible.
    standby_tolerance_w: float = 50.0
    #: Consecutive, mutually consistent rejections after which a new level is accepted.
    reanchor_after: int = 3

    def __post_init__(self) -> None:
        for name in ("battery_capacity_wh", "battery_max_charge_w", "battery_max_discharge_w", "pv_peak_w",
                     "grid_import_limit_w", "grid_export_limit_w", "ev_max_charge_w", "heat_pump_max_w"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite value >= 0 or None, got {value!r}")
        if self.battery_capacity_wh == 0:
            raise ValueError("battery_capacity_wh: must be > 0 or None")
        if not (math.isfinite(self.power_margin) and self.power_margin >= 1.0):
            raise ValueError(f"power_margin: must be >= 1, got {self.power_margin!r}")
        for name in ("soc_jump_tolerance", "counter_backwards_tolerance_wh", "counter_step_tolerance_wh",
                     "standby_tolerance_w"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite value >= 0, got {value!r}")
        if self.reanchor_after < 1:
            raise ValueError(f"reanchor_after: must be >= 1, got {self.reanchor_after!r}")

    @classmethod
    def from_site(cls, site: SiteConfig, **overrides: float | int) -> PlausibilityLimits:
        """Limits from the MPC site config (battery, PV arrays, grid, EV, heat pump);
        ``overrides`` set the tolerances (``power_margin=2.0``)."""
        peaks = [array.peak_power_w for array in site.pv.arrays]
        return cls(
            battery_capacity_wh=site.battery.capacity_wh,
            battery_max_charge_w=site.battery.max_charge_w,
            battery_max_discharge_w=site.battery.max_discharge_w,
            pv_peak_w=sum(peaks) if peaks else None,
            grid_import_limit_w=site.grid.import_limit_w,
            grid_export_limit_w=site.grid.export_limit_w,
            ev_max_charge_w=None if site.ev is None else site.ev.max_charge_w,
            heat_pump_max_w=None if site.heat_pump is None else site.heat_pump.max_electric_w,
            **overrides,  # type: ignore[arg-type]
        )

    def _scaled(self, nameplate_w: float | None) -> float:
        return math.inf if nameplate_w is None else self.power_margin * nameplate_w

    def _grid_export_w(self) -> float | None:
        known = [w for w in (self.grid_export_limit_w, self.grid_import_limit_w) if w is not None]
        return max(known) if known else None

    def power_bounds_w(self, quantity: Quantity) -> tuple[float, float]:
        """(lowest, highest) plausible value of a power quantity; infinite where unknown."""
        if quantity is Quantity.GRID_IMPORT_W:
            return -self._scaled(self._grid_export_w()), self._scaled(self.grid_import_limit_w)
        if quantity is Quantity.BATTERY_CHARGE_W:
            return -self._scaled(self.battery_max_discharge_w), self._scaled(self.battery_max_charge_w)
        nameplate = {Quantity.PV_POWER_W: self.pv_peak_w, Quantity.EV_POWER_W: self.ev_max_charge_w,
                     Quantity.HEAT_PUMP_POWER_W: self.heat_pump_max_w}[quantity]
        return -self.standby_tolerance_w, self._scaled(nameplate)

    def counter_rate_w(self, quantity: Quantity) -> float | None:
        """The highest plausible rate of an energy counter (W, margin included), None if unknown."""
        nameplate = {Quantity.GRID_IMPORT_ENERGY_WH: self.grid_import_limit_w,
                     Quantity.GRID_EXPORT_ENERGY_WH: self._grid_export_w(),
                     Quantity.PV_ENERGY_WH: self.pv_peak_w}[quantity]
        return None if nameplate is None else self.power_margin * nameplate

    def soc_rate_per_s(self) -> float | None:
        """The fastest the state of charge can move (fraction per second), None if unknown."""
        powers = [w for w in (self.battery_max_charge_w, self.battery_max_discharge_w) if w is not None]
        if not powers or self.battery_capacity_wh is None:
            return None
        return max(powers) / self.battery_capacity_wh / _SECONDS_PER_HOUR

    def soc_allowance(self, elapsed_s: float) -> float | None:
        """The largest plausible SoC change over ``elapsed_s``, None when the battery is unknown."""
        rate = self.soc_rate_per_s()
        return None if rate is None else rate * max(0.0, elapsed_s) + self.soc_jump_tolerance

    def counter_allowance_wh(self, quantity: Quantity, elapsed_s: float) -> float | None:
        """The largest plausible forward step of a counter over ``elapsed_s``, None if unknown."""
        rate = self.counter_rate_w(quantity)
        if rate is None:
            return None
        return rate * max(0.0, elapsed_s) / _SECONDS_PER_HOUR + self.counter_step_tolerance_wh


def check_absolute(quantity: Quantity, value: float, limits: PlausibilityLimits) -> str | None:
    """``beyond_nameplate`` when ``value`` is impossible for the site, else None."""
    if quantity in POWER_QUANTITIES:
        low, high = limits.power_bounds_w(quantity)
        ok = low <= value <= high
    elif quantity is Quantity.BATTERY_SOC:
        ok = 0.0 <= value <= 1.0
    elif quantity in COUNTER_QUANTITIES:
        ok = value >= 0.0
    else:  # a flag
        ok = value in (0.0, 1.0)
    return None if ok else BEYOND_NAMEPLATE


def check_relative(quantity: Quantity, value: float, measured_at_s: float, anchor: Anchor | None,
                   limits: PlausibilityLimits) -> str | None:
    """The reason ``value`` cannot follow ``anchor`` (``soc_jump``, ``counter_backwards``,
    ``counter_jump``), or None. Without an anchor anything passes."""
    if anchor is None:
        return None
    if quantity is Quantity.BATTERY_SOC:
        allowance = limits.soc_allowance(measured_at_s - anchor.measured_at_s)
        if allowance is not None and abs(value - anchor.value) > allowance:
            return SOC_JUMP
    elif quantity in COUNTER_QUANTITIES:
        if value < anchor.value - limits.counter_backwards_tolerance_wh:
            return COUNTER_BACKWARDS
        allowance_wh = limits.counter_allowance_wh(quantity, measured_at_s - anchor.level_since_s)
        if allowance_wh is not None and value - anchor.value > allowance_wh:
            return COUNTER_JUMP
    return None
