"""State estimation: the devices' readings -> one consistent :class:`SiteSnapshot`.

After each telemetry poll the runtime calls :func:`readings_from_devices` (site quantities in
their units and signs, per source device) and :meth:`StateEstimator.update`, which combines the
sources of each quantity, rejects and counts implausible values (:mod:`hems.runtime.plausibility`)
and keeps, for every quantity, the last plausible value with the instant it was measured. A
quantity whose device stops answering keeps its old value and old timestamp, so its age grows:
that age is how the control notices stale data and falls back to self-consumption.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drivers.devices import Battery, EvCharger, GridMeter, HeatPump, PvInverter
from drivers.readings import Quality, Reading
from hems.runtime.plausibility import (
    COUNTER_QUANTITIES,
    DEVICE_IMPLAUSIBLE,
    FLAG_QUANTITIES,
    REANCHORED,
    Anchor,
    PlausibilityLimits,
    check_absolute,
    check_relative,
)
from hems.runtime.snapshot import Measurement, Quantity, SiteSnapshot

if TYPE_CHECKING:
    from drivers.p1.reader import P1Reader
    from hems.runtime.site_devices import SiteDevices

__all__ = ["P1_DEVICE", "PlausibilityLimits", "SourceReading", "StateEstimator", "availability",
           "readings_from_devices"]

logger = logging.getLogger(__name__)

#: The device name of the P1 smart meter in :class:`SourceReading` and ``devices_available``.
P1_DEVICE = "p1"


@dataclass(frozen=True, slots=True)
class SourceReading:
    """One device's reading of a site quantity, already in the quantity's unit and sign.

    ``capacity_wh`` is the battery's own capacity where it reports one: it weights the SoC average
    of several batteries.
    """

    device: str
    reading: Reading
    capacity_wh: float | None = None


def readings_from_devices(devices: SiteDevices,
                          p1: P1Reader | None = None) -> dict[Quantity, list[SourceReading]]:
    """Map the capability views' last-poll states (and the P1 meter's last telegram) to site
    quantities. Polls nothing: the caller polls first.

    With a P1 meter, the grid quantities come from it alone and the Modbus grid meters are left
    out: several meters at the one connection point measure the same flow, so adding them would
    double it, and the utility's meter is the one that bills. The choice is static (not "P1 while
    it answers"): switching between meters would make the energy counters leap.
    """
    out: dict[Quantity, list[SourceReading]] = {}

    def add(quantity: Quantity, device: str, reading: Reading | None, capacity_wh: float | None = None) -> None:
        if reading is not None:
            out.setdefault(quantity, []).append(SourceReading(device, reading, capacity_wh))

    for name, views in devices.capabilities.items():
        for view in views:
            if isinstance(view, GridMeter):
                if p1 is None:
                    grid = view.state()
                    add(Quantity.GRID_IMPORT_W, name, grid.power_w)
                    add(Quantity.GRID_IMPORT_ENERGY_WH, name, grid.import_energy_wh)
                    add(Quantity.GRID_EXPORT_ENERGY_WH, name, grid.export_energy_wh)
            elif isinstance(view, PvInverter):
                pv = view.state()
                add(Quantity.PV_POWER_W, name, pv.power_w)
                add(Quantity.PV_ENERGY_WH, name, pv.energy_wh)
            elif isinstance(view, Battery):
                battery = view.state()
                add(Quantity.BATTERY_CHARGE_W, name, battery.power_w)
                add(Quantity.BATTERY_SOC, name, _percent_to_fraction(battery.soc_pct),
                    _positive_value(battery.capacity_wh))
            elif isinstance(view, EvCharger):
                ev = view.state()
                add(Quantity.EV_POWER_W, name, ev.power_w)
                add(Quantity.EV_CONNECTED, name, _flag(ev.connected))
            elif isinstance(view, HeatPump):
                add(Quantity.HEAT_PUMP_POWER_W, name, view.state().power_w)
    if p1 is not None:
        telegram = p1.readings()
        add(Quantity.GRID_IMPORT_W, P1_DEVICE, _p1_grid_power(telegram))
        add(Quantity.GRID_IMPORT_ENERGY_WH, P1_DEVICE, telegram.get("import_energy_wh"))
        add(Quantity.GRID_EXPORT_ENERGY_WH, P1_DEVICE, telegram.get("export_energy_wh"))
    return out


def quantities_provided(devices: SiteDevices, with_p1: bool = False) -> set[Quantity]:
    """The site quantities the configured devices (and a P1 meter) provide, before any poll:
    what :func:`readings_from_devices` will fill in."""
    by_kind: dict[type, tuple[Quantity, ...]] = {
        GridMeter: (Quantity.GRID_IMPORT_W, Quantity.GRID_IMPORT_ENERGY_WH, Quantity.GRID_EXPORT_ENERGY_WH),
        PvInverter: (Quantity.PV_POWER_W, Quantity.PV_ENERGY_WH),
        Battery: (Quantity.BATTERY_CHARGE_W, Quantity.BATTERY_SOC),
        EvCharger: (Quantity.EV_POWER_W, Quantity.EV_CONNECTED),
        HeatPump: (Quantity.HEAT_PUMP_POWER_W,),
    }
    provided = {quantity for kind, quantities in by_kind.items() if devices.of_kind(kind) for quantity in quantities}
    if with_p1:
        provided.update(by_kind[GridMeter])
    return provided


def availability(devices: SiteDevices, p1: P1Reader | None = None) -> dict[str, bool]:
    """Device name -> available, from each client's health (and the P1 reader's, as ``p1``)."""
    available = {name: client.health.available for name, client in devices.clients.items()}
    if p1 is not None:
        available[P1_DEVICE] = p1.health.available
    return available


def _numeric(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _converted(reading: Reading, value: float | None, unit: str) -> Reading:
    """``reading`` with a new value and unit; a value that is not a number is IMPLAUSIBLE."""
    if value is None and reading.value is not None and reading.quality is Quality.GOOD:
        return Reading(reading.name, None, unit, reading.timestamp_s, Quality.IMPLAUSIBLE)
    return Reading(reading.name, value, unit, reading.timestamp_s, reading.quality)


def _percent_to_fraction(reading: Reading | None) -> Reading | None:
    if reading is None:
        return None
    value = _numeric(reading.value)
    return _converted(reading, None if value is None else value / 100.0, "1")


def _flag(reading: Reading | None) -> Reading | None:
    if reading is None:
        return None
    value = _numeric(reading.value)
    return _converted(reading, None if value is None else (1.0 if value != 0 else 0.0), "1")


def _positive_value(reading: Reading | None) -> float | None:
    value = None if reading is None or not reading.usable else _numeric(reading.value)
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _p1_grid_power(telegram: Mapping[str, Reading]) -> Reading | None:
    """Net grid power from a P1 telegram: its own difference, or import minus export built here
    when a part was flagged (the telegram then leaves the difference out), or import alone."""
    if "grid_power_w" in telegram:
        return telegram["grid_power_w"]
    imported, exported = telegram.get("grid_import_w"), telegram.get("grid_export_w")
    if imported is None or exported is None:
        return imported
    parts = (imported, exported)
    flawed = [part.quality for part in parts if not part.usable]
    if flawed:
        return Reading("grid_power_w", None, "W", min(p.timestamp_s for p in parts), flawed[0])
    value = float(imported.value) - float(exported.value)  # type: ignore[arg-type]
    return Reading("grid_power_w", value, "W", min(p.timestamp_s for p in parts))


@dataclass
class _QuantityState:
    """What the estimator remembers of one quantity between updates."""

    anchor: Anchor | None = None
    #: Device -> timestamp of its last reading evaluated: a P1 meter hands out the same telegram
    #: until the next one arrives, and a failed device repeats its last reading (STALE, or still
    #: IMPLAUSIBLE); a repeated reading must be neither re-checked nor re-counted.
    seen_s: dict[str, float] = field(default_factory=dict)
    #: Consecutive rejected values that are consistent with each other (re-anchoring).
    candidates: list[Anchor] = field(default_factory=list)


class StateEstimator:
    """Keeps one home's site state: the last plausible value of each quantity and the rejections.

    Several sources of one quantity are combined: powers and energies are summed (two PV
    inverters), SoC is averaged (weighted by capacity when every battery reports one), EV
    connected is "any". A combination is formed only when every source has a usable reading of
    the same poll; when one is stale or flawed the previous combined value stays (its age grows)
    instead of a partial sum, which would look like a power step, an energy counter running
    backwards or a SoC jump. A combined measurement carries the oldest of its sources' timestamps.

    ``on_rejected(reason)`` is called once per rejection and once per re-anchoring (reason
    ``reanchored``); the runtime wires it to ``HomeMetrics.reading_rejected``. Each instance keeps
    its own state: one per home.
    """

    def __init__(self, limits: PlausibilityLimits, on_rejected: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self._on_rejected = on_rejected
        self._states: dict[Quantity, _QuantityState] = {}
        self._rejected: dict[str, int] = {}
        self._logged: set[tuple[Quantity, str]] = set()

    @property
    def rejected(self) -> dict[str, int]:
        """Rejections by reason since start (a copy)."""
        return dict(self._rejected)

    def update(self, readings: Mapping[Quantity, Sequence[SourceReading]], devices_available: Mapping[str, bool],
               now_s: float) -> SiteSnapshot:
        """Take one poll's readings and return the site as of ``now_s``.

        Quantities absent from ``readings`` keep their previous measurement.
        """
        for quantity, sources in readings.items():
            if sources:
                self._update_quantity(Quantity(quantity), sources)
        values = {quantity: Measurement(state.anchor.value, state.anchor.measured_at_s)
                  for quantity, state in self._states.items() if state.anchor is not None}
        return SiteSnapshot(taken_at_s=now_s, values=values, devices_available=dict(devices_available),
                            rejected=dict(self._rejected))

    # -- one quantity --------------------------------------------------------------------------

    def _update_quantity(self, quantity: Quantity, sources: Sequence[SourceReading]) -> None:
        state = self._states.setdefault(quantity, _QuantityState())
        fresh = [source.reading.timestamp_s != state.seen_s.get(source.device) for source in sources]
        if not any(fresh):
            return
        state.seen_s = {source.device: source.reading.timestamp_s for source in sources}
        values: list[float] = []
        complete = True
        for source, is_fresh in zip(sources, fresh, strict=True):
            reading = source.reading
            value = _numeric(reading.value) if reading.usable else None
            if reading.usable and value is not None and math.isfinite(value):
                values.append(value)
                continue
            complete = False
            if reading.quality is Quality.IMPLAUSIBLE or reading.usable:  # flagged, or not a number
                if is_fresh:
                    self._reject(quantity, DEVICE_IMPLAUSIBLE, reading.value, source.device)
                    state.candidates.clear()
            # STALE or NOT_IMPLEMENTED: nothing new, and not a rejection.
        if not complete:
            return
        value = self._combine(quantity, values, sources)
        measured_at_s = min(source.reading.timestamp_s for source in sources)
        self._evaluate(quantity, state, value, measured_at_s, sources)

    @staticmethod
    def _combine(quantity: Quantity, values: list[float], sources: Sequence[SourceReading]) -> float:
        if quantity is Quantity.BATTERY_SOC:
            weights = [source.capacity_wh for source in sources]
            if all(weight is not None and weight > 0 for weight in weights):
                total = sum(weights)  # type: ignore[arg-type]
                return sum(v * w for v, w in zip(values, weights, strict=True)) / total  # type: ignore[operator]
            return sum(values) / len(values)
        if quantity in FLAG_QUANTITIES:
            return 1.0 if any(value != 0 for value in values) else 0.0
        return math.fsum(values)

    def _evaluate(self, quantity: Quantity, state: _QuantityState, value: float, measured_at_s: float,
                  sources: Sequence[SourceReading]) -> None:
        devices = ",".join(source.device for source in sources)
        reason = check_absolute(quantity, value, self.limits)
        if reason is not None:
            # Never re-anchored: an impossible value does not become possible by repetition.
            self._reject(quantity, reason, value, devices)
            state.candidates.clear()
            return
        reason = check_relative(quantity, value, measured_at_s, state.anchor, self.limits)
        if reason is None:
            if quantity in COUNTER_QUANTITIES and state.anchor is not None:
                # Within the backwards tolerance (float rounding): hold the level, refresh the time.
                value = max(value, state.anchor.value)
            state.anchor = (Anchor(value, measured_at_s, measured_at_s) if state.anchor is None
                            else state.anchor.moved_to(value, measured_at_s))
            state.candidates.clear()
            return
        self._reject(quantity, reason, value, devices)
        self._consider_reanchor(quantity, state, value, measured_at_s, devices)

    def _consider_reanchor(self, quantity: Quantity, state: _QuantityState, value: float, measured_at_s: float,
                           devices: str) -> None:
        """A BMS recalibration or a meter replacement moves a quantity to a new level for good:
        after ``reanchor_after`` rejected values that are consistent with each other (each passes
        the relative check against the one before), the new level is accepted."""
        previous = state.candidates[-1] if state.candidates else None
        if previous is not None and check_relative(quantity, value, measured_at_s, previous, self.limits) is None:
            state.candidates.append(previous.moved_to(value, measured_at_s))
        else:
            state.candidates = [Anchor(value, measured_at_s, measured_at_s)]
        if len(state.candidates) < self.limits.reanchor_after:
            return
        old = None if state.anchor is None else state.anchor.value
        state.anchor = state.candidates[-1]
        state.candidates = []
        self._count(REANCHORED)
        logger.warning("%s re-anchored from %s to %s after %d consistent rejected readings (%s): "
                       "recalibration or replaced device?", quantity.value, old, value,
                       self.limits.reanchor_after, devices)

    # -- counting --------------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self._rejected[reason] = self._rejected.get(reason, 0) + 1
        if self._on_rejected is not None:
            self._on_rejected(reason)

    def _reject(self, quantity: Quantity, reason: str, value: object, devices: str) -> None:
        self._count(reason)
        key = (quantity, reason)
        # The first of each kind is worth a line; a device that keeps sending nonsense is not.
        level = logging.DEBUG if key in self._logged else logging.WARNING
        self._logged.add(key)
        logger.log(level, "%s rejected (%s): %r from %s%s", quantity.value, reason, value, devices,
                   "" if level == logging.DEBUG else "; further ones are logged at DEBUG")
