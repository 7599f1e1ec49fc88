"""The safety envelope: the last step before any setpoint reaches a device.

Whatever the plan, a community request or the real-time correction asks for, the setpoints
written are clamped here, in this order of priority:

1. the battery's own power limits;
2. the state of charge: no discharge below the floor (``max(soc_min, backup_reserve_soc)``),
   no charge above ``soc_max``, and near a bound only as much power as one control period
   can take without crossing it;
3. the grid connection: the battery never charges the site over the fuse and never
   discharges it into export beyond the export limit (each with ``margin_w`` of headroom);
4. PV curtailment when, after all that, the site would still export more than the limit.

The prediction is linear and instantaneous: changing the battery power by ``d`` W changes the
grid power by ``d`` W (the house and the PV do not react within one control period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hems.mpc.site import SiteConfig

#: SoC margin (fraction of capacity) kept from the floor and the ceiling, so that a SoC reading
#: that lags by one telemetry period cannot carry the battery across a bound.
SOC_GUARD = 0.005
#: How far PV can rise within one control period, as a share of the peak (a cloud edge); the
#: export bound is written only when the PV is this close to it.
PV_RISE_SHARE = 0.2
PV_RISE_UNKNOWN_PEAK_W = 1000.0


@dataclass(frozen=True)
class SafetyLimits:
    """The local limits that always win. Powers in W, SoC as a fraction of capacity."""

    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    soc_min: float
    soc_max: float
    backup_reserve_soc: float
    import_limit_w: float
    export_limit_w: float
    margin_w: float = 100.0
    pv_peak_w: float | None = None

    def __post_init__(self) -> None:
        if 2 * self.margin_w >= self.import_limit_w + self.export_limit_w:
            raise ValueError(f"margin_w = {self.margin_w}: must be < (import_limit_w + export_limit_w) / 2 "
                             f"= {(self.import_limit_w + self.export_limit_w) / 2}")

    @property
    def soc_floor(self) -> float:
        """The lowest SoC the daemon may discharge to."""
        return max(self.soc_min, self.backup_reserve_soc)

    @classmethod
    def from_site(cls, site: SiteConfig, margin_w: float = 100.0) -> SafetyLimits:
        """The limits of a site's configuration."""
        peak = sum(array.peak_power_w for array in site.pv.arrays) or None
        return cls(
            capacity_wh=site.battery.capacity_wh, max_charge_w=site.battery.max_charge_w,
            max_discharge_w=site.battery.max_discharge_w, soc_min=site.battery.soc_min,
            soc_max=site.battery.soc_max, backup_reserve_soc=site.battery.backup_reserve_soc,
            import_limit_w=site.grid.import_limit_w, export_limit_w=site.grid.export_limit_w,
            margin_w=margin_w, pv_peak_w=peak,
        )


@dataclass(frozen=True)
class SiteState:
    """The fresh measurements the envelope needs (W; SoC fraction)."""

    grid_import_w: float  # net: negative while exporting
    battery_charge_w: float  # net: negative while discharging
    battery_soc: float
    pv_power_w: float = 0.0
    pv_limit_w: float | None = None  # the PV limit the inverters hold now (None: none)

    @property
    def grid_without_battery_w(self) -> float:
        """What the grid would show with the battery idle."""
        return self.grid_import_w - self.battery_charge_w


@dataclass(frozen=True)
class Setpoints:
    """What the control wants the devices to do. ``pv_limit_w`` None: no curtailment."""

    battery_charge_w: float
    pv_limit_w: float | None = None


@dataclass(frozen=True)
class EnvelopeResult:
    """The setpoints to write and which limits changed them."""

    setpoints: Setpoints
    clamped_by: tuple[str, ...] = ()


def apply_envelope(desired: Setpoints, state: SiteState, limits: SafetyLimits,
                   control_period_s: float) -> EnvelopeResult:
    """Clamp ``desired`` into the safety envelope for the next ``control_period_s``."""
    reasons: list[str] = []
    charge_w = desired.battery_charge_w if math.isfinite(desired.battery_charge_w) else 0.0

    def clamp(value: float, low: float, high: float, low_reason: str, high_reason: str) -> float:
        if value < low:
            reasons.append(low_reason)
            return low
        if value > high:
            reasons.append(high_reason)
            return high
        return value

    # 1-2: the battery's limits, tightened near the SoC bounds.
    period_h = max(control_period_s, 1.0) / 3600.0
    room_to_floor_wh = max(0.0, state.battery_soc - limits.soc_floor - SOC_GUARD) * limits.capacity_wh
    room_to_ceiling_wh = max(0.0, limits.soc_max - SOC_GUARD - state.battery_soc) * limits.capacity_wh
    discharge_cap_w = min(limits.max_discharge_w, room_to_floor_wh / period_h)
    charge_cap_w = min(limits.max_charge_w, room_to_ceiling_wh / period_h)
    charge_w = clamp(charge_w, -discharge_cap_w, charge_cap_w,
                     "soc_reserve" if discharge_cap_w < limits.max_discharge_w else "max_discharge",
                     "soc_max" if charge_cap_w < limits.max_charge_w else "max_charge")

    # 3: the grid connection, as far as the battery can act within its own limits.
    base_w = state.grid_without_battery_w
    fuse_cap_w = limits.import_limit_w - limits.margin_w - base_w
    export_floor_w = -(limits.export_limit_w - limits.margin_w) - base_w
    if charge_w > fuse_cap_w:
        reasons.append("import_limit")
        charge_w = max(fuse_cap_w, -discharge_cap_w)
    if charge_w < export_floor_w:
        reasons.append("export_limit")
        charge_w = min(export_floor_w, charge_cap_w)

    # 4: PV curtailment for the export the battery cannot take. The bound is the PV power at
    # which the site would reach the export limit. It is written once the PV could reach it
    # before the next cycle (within PV_RISE_SHARE of the peak), and while a limit is held it
    # tracks the site until it is no longer needed, instead of switching on and off.
    pv_limit_w = desired.pv_limit_w if desired.pv_limit_w is None or math.isfinite(desired.pv_limit_w) else None
    export_excess_w = -(base_w + charge_w) - (limits.export_limit_w - limits.margin_w)
    export_bound_w = max(0.0, state.pv_power_w - export_excess_w)
    rise_w = PV_RISE_SHARE * limits.pv_peak_w if limits.pv_peak_w else PV_RISE_UNKNOWN_PEAK_W
    if state.pv_limit_w is not None or export_bound_w < state.pv_power_w + rise_w:
        if pv_limit_w is None or export_bound_w < pv_limit_w:
            if export_excess_w > 0:
                reasons.append("export_limit_pv")
            pv_limit_w = export_bound_w
    if pv_limit_w is not None:
        pv_limit_w = max(0.0, pv_limit_w)
        no_longer_needed = (pv_limit_w >= limits.pv_peak_w if limits.pv_peak_w is not None
                            else pv_limit_w >= state.pv_power_w + 2 * rise_w)
        if no_longer_needed:
            pv_limit_w = None

    # 5: curtailment the plan asked for (negative prices) must not pull the site over the fuse:
    # discharge to cover it, and where the battery cannot, curtail less.
    curtailed_w = 0.0 if pv_limit_w is None else max(0.0, state.pv_power_w - pv_limit_w)
    fuse_excess_w = base_w + charge_w + curtailed_w - (limits.import_limit_w - limits.margin_w)
    if curtailed_w > 0 and fuse_excess_w > 0:
        reasons.append("import_limit")
        charge_w = max(charge_w - fuse_excess_w, min(charge_w, -discharge_cap_w))
        fuse_excess_w = base_w + charge_w + curtailed_w - (limits.import_limit_w - limits.margin_w)
        if fuse_excess_w > 0 and pv_limit_w is not None:
            pv_limit_w = pv_limit_w + min(fuse_excess_w, curtailed_w)
            if pv_limit_w >= state.pv_power_w and state.pv_limit_w is None:
                pv_limit_w = None
    return EnvelopeResult(Setpoints(charge_w, pv_limit_w), tuple(dict.fromkeys(reasons)))


@dataclass
class RampLimiter:
    """Limits how fast a setpoint moves (W per second); the envelope is applied after it, so a
    limit that needs an immediate change is never delayed by the ramp."""

    ramp_w_per_s: float
    last_w: float | None = None
    last_at_s: float | None = None

    def step(self, target_w: float, now_s: float) -> float:
        """The value to command now on the way to ``target_w``."""
        if self.last_w is None or self.last_at_s is None:
            value = target_w
        else:
            allowed = self.ramp_w_per_s * max(0.0, now_s - self.last_at_s)
            value = min(max(target_w, self.last_w - allowed), self.last_w + allowed)
        return value

    def commit(self, value_w: float, now_s: float) -> None:
        """Remember what was actually written."""
        self.last_w, self.last_at_s = value_w, now_s

    def reset(self) -> None:
        """Forget the history (after a fallback to autonomous mode)."""
        self.last_w = self.last_at_s = None
