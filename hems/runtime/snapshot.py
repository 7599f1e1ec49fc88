"""One consistent picture of the site: every quantity the decisions use, with its age.

The state estimator (``hems/runtime/estimation.py``) builds a :class:`SiteSnapshot` from the
devices' readings after each telemetry poll; the control loop, the planner, the metrics and
Home Assistant read it and nothing else. A quantity is ``None`` when the site has no device for
it or when no plausible value has been seen yet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Quantity(str, enum.Enum):
    """Site quantities, each in its unit and positive in the direction its name says."""

    GRID_IMPORT_W = "grid_import_w"  # net: negative while exporting
    GRID_IMPORT_ENERGY_WH = "grid_import_energy_wh"
    GRID_EXPORT_ENERGY_WH = "grid_export_energy_wh"
    PV_POWER_W = "pv_power_w"
    PV_ENERGY_WH = "pv_energy_wh"
    BATTERY_CHARGE_W = "battery_charge_w"  # net: negative while discharging
    BATTERY_SOC = "battery_soc"  # fraction 0..1
    EV_POWER_W = "ev_power_w"
    EV_CONNECTED = "ev_connected"  # 1.0 or 0.0
    HEAT_PUMP_POWER_W = "heat_pump_power_w"


@dataclass(frozen=True, slots=True)
class Measurement:
    """A plausible value and the instant (clock UTC seconds) it was measured."""

    value: float
    measured_at_s: float

    def age_s(self, now_s: float) -> float:
        """Seconds since the value was measured."""
        return max(0.0, now_s - self.measured_at_s)


@dataclass(frozen=True)
class SiteSnapshot:
    """The site at ``taken_at_s``. Values that failed a plausibility check are left out (the
    previous plausible value stays, with its older timestamp) and counted in ``rejected``."""

    taken_at_s: float
    values: dict[Quantity, Measurement] = field(default_factory=dict)
    #: Device name -> available (DeviceHealth, or the P1 reader's health).
    devices_available: dict[str, bool] = field(default_factory=dict)
    #: Rejections by reason since start (``soc_jump``, ``beyond_nameplate``, ``counter_backwards``,
    #: ``device_implausible``), for the metric hems_readings_rejected_total.
    rejected: dict[str, int] = field(default_factory=dict)

    def get(self, quantity: Quantity) -> Measurement | None:
        """The measurement of ``quantity``, or None."""
        return self.values.get(quantity)

    def value(self, quantity: Quantity, max_age_s: float | None = None, at_s: float | None = None) -> float | None:
        """The value of ``quantity`` if it is known and, at ``at_s`` (default: when the snapshot
        was taken), not older than ``max_age_s``."""
        measurement = self.values.get(quantity)
        if measurement is None:
            return None
        if max_age_s is not None and measurement.age_s(self.taken_at_s if at_s is None else at_s) > max_age_s:
            return None
        return measurement.value

    def age_s(self, quantity: Quantity, at_s: float | None = None) -> float | None:
        """Age of ``quantity`` at ``at_s`` (default: when the snapshot was taken), None when unknown."""
        measurement = self.values.get(quantity)
        return None if measurement is None else measurement.age_s(self.taken_at_s if at_s is None else at_s)

    def house_load_w(self, max_age_s: float | None = None) -> float | None:
        """The household's own demand, from the balance at the meter:
        ``grid + pv - battery - ev - heat_pump`` (absent devices count as 0; None without a grid
        value)."""
        grid = self.value(Quantity.GRID_IMPORT_W, max_age_s)
        if grid is None:
            return None
        pv = self.value(Quantity.PV_POWER_W, max_age_s) or 0.0
        battery = self.value(Quantity.BATTERY_CHARGE_W, max_age_s) or 0.0
        ev = self.value(Quantity.EV_POWER_W, max_age_s) or 0.0
        heat_pump = self.value(Quantity.HEAT_PUMP_POWER_W, max_age_s) or 0.0
        return max(0.0, grid + pv - battery - ev - heat_pump)
