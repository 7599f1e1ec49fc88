"""Mapping a parsed DSMR telegram to typed readings.

Works on the objects dsmr-parser returns (duck-typed: ``.value``, ``.unit``,
``.datetime``) without importing dsmr-parser, so it stays cheap to import.

Reading names (all positive in the direction they name, DESIGN.md conventions):

======================  ====  ======================================================
name                    unit  source
======================  ====  ======================================================
grid_import_w           W     1-0:1.7.0 (kW -> W)
grid_export_w           W     1-0:2.7.0
grid_power_w            W     import minus export (only when both are sent)
import_energy_wh        Wh    1-0:1.8.0 if sent, else the sum of 1-0:1.8.1..4
export_energy_wh        Wh    1-0:2.8.0 if sent, else the sum of 1-0:2.8.1..4
tariff                  -     0-0:96.14.0 (1 = low, 2 = normal in NL)
voltage_l1_v .. l3      V     1-0:32.7.0 / 52.7.0 / 72.7.0
current_l1_a .. l3      A     1-0:31.7.0 / 51.7.0 / 71.7.0 (magnitude, unsigned)
grid_import_l1_w ..     W     1-0:21.7.0 / 41.7.0 / 61.7.0
grid_export_l1_w ..     W     1-0:22.7.0 / 42.7.0 / 62.7.0
grid_power_l1_w ..      W     per-phase import minus export
gas_m3                  m3    M-Bus gas meter (device type 3), with its own timestamp
======================  ====  ======================================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from drivers.readings import Quality, Reading

logger = logging.getLogger(__name__)

#: Unit as sent by the meter (lower-cased) -> (our unit, factor). Meters differ:
#: NL/BE send kW/kWh, some Sagemcom and EasyMeter profiles send W/Wh.
_POWER_UNITS: Mapping[str, Decimal] = {"kw": Decimal(1000), "w": Decimal(1)}
_ENERGY_UNITS: Mapping[str, Decimal] = {"kwh": Decimal(1000), "wh": Decimal(1)}
_VOLTAGE_UNITS: Mapping[str, Decimal] = {"v": Decimal(1)}
_CURRENT_UNITS: Mapping[str, Decimal] = {"a": Decimal(1)}
_GAS_UNITS: Mapping[str, Decimal] = {"m3": Decimal(1)}

#: EN 13757-3 device type of a gas meter on the M-Bus.
_MBUS_GAS_DEVICE_TYPE = 3
_GAS_READING_NAMES = ("MBUS_METER_READING", "HOURLY_GAS_METER_READING", "GAS_METER_READING")


@dataclass(frozen=True, slots=True)
class P1Telegram:
    """One good telegram turned into readings.

    ``timestamp_s`` is the instant the electricity readings refer to: the
    meter's own timestamp when it sends one (and the reader trusts it), else the
    clock's time at reception.
    """

    readings: Mapping[str, Reading]
    timestamp_s: float
    received_s: float
    meter_time_s: float | None = None
    equipment_id: str | None = None

    def __getitem__(self, name: str) -> Reading:
        return self.readings[name]

    def __contains__(self, name: object) -> bool:
        return name in self.readings

    def value(self, name: str) -> float | int | str | None:
        """The value of reading ``name``, or None when the meter did not send it."""
        reading = self.readings.get(name)
        return None if reading is None else reading.value


def _attr(obj: Any, name: str) -> Any:
    """``obj.name`` or None; dsmr-parser only sets attributes for lines it saw."""
    return getattr(obj, name, None)


def _scaled(obj: Any, units: Mapping[str, Decimal], default_unit: str) -> tuple[Decimal | None, bool]:
    """(value scaled to our unit, unit known) for a COSEM/M-Bus object.

    Scaling happens in Decimal so that "1.193 kW" becomes exactly 1193.0 W.
    A missing unit means the DSMR default for that object (older meters omit it).
    """
    raw = _attr(obj, "value")
    if raw is None:
        return None, True
    try:
        value = raw if isinstance(raw, Decimal) else Decimal(str(raw))
    except (InvalidOperation, ValueError):
        return None, False
    unit = (_attr(obj, "unit") or default_unit).strip().lower()
    factor = units.get(unit)
    if factor is None:
        return value, False
    return value * factor, True


class _Builder:
    """Accumulates readings for one telegram; keeps the mapping code flat."""

    def __init__(self, timestamp_s: float) -> None:
        self.timestamp_s = timestamp_s
        self.readings: dict[str, Reading] = {}
        self.values: dict[str, Decimal] = {}

    def add(self, name: str, obj: Any, units: Mapping[str, Decimal], default_unit: str, unit: str,
            timestamp_s: float | None = None) -> None:
        if obj is None:
            return
        stamp_s = self.timestamp_s if timestamp_s is None else timestamp_s
        value, unit_known = _scaled(obj, units, default_unit)
        if not unit_known:
            # A unit we cannot convert: keep the raw number visible but never usable.
            logger.debug("P1 %s: unexpected unit %r", name, _attr(obj, "unit"))
            self.readings[name] = Reading(name, None if value is None else float(value), unit,
                                          stamp_s, Quality.IMPLAUSIBLE)
            return
        if value is None:
            return  # empty "()" value: the meter does not fill this object
        self.values[name] = value
        self.readings[name] = Reading(name, float(value), unit, stamp_s)

    def add_sum(self, name: str, objs: Iterable[Any], units: Mapping[str, Decimal], default_unit: str,
                unit: str) -> None:
        total = Decimal(0)
        seen = False
        for obj in objs:
            if obj is None:
                continue
            value, unit_known = _scaled(obj, units, default_unit)
            if not unit_known:
                self.readings[name] = Reading(name, None, unit, self.timestamp_s, Quality.IMPLAUSIBLE)
                return
            if value is not None:
                total += value
                seen = True
        if seen:
            self.values[name] = total
            self.readings[name] = Reading(name, float(total), unit, self.timestamp_s)

    def add_difference(self, name: str, plus: str, minus: str, unit: str) -> None:
        if plus in self.values and minus in self.values:
            value = self.values[plus] - self.values[minus]
            self.values[name] = value
            self.readings[name] = Reading(name, float(value), unit, self.timestamp_s)


def _datetime_s(value: Any) -> float | None:
    """Seconds since the epoch of an aware datetime (dsmr-parser returns UTC), else None."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.timestamp()
    return None


def _gas_reading(telegram: Any) -> Any:
    """The gas meter's reading object from the M-Bus devices, or None.

    Several M-Bus devices may be attached (gas, water, heat); only device type 3
    is gas. A device without a type line is accepted when its unit is m3, as
    DSMR 2.2 meters sometimes omit the type.
    """
    devices = _attr(telegram, "MBUS_DEVICES") or ()
    for device in sorted(devices, key=lambda d: d.channel_id):
        type_obj = _attr(device, "MBUS_DEVICE_TYPE") or _attr(device, "DEVICE_TYPE")
        device_type = _attr(type_obj, "value")
        try:
            is_gas = device_type is None or int(str(device_type)) == _MBUS_GAS_DEVICE_TYPE
        except ValueError:
            is_gas = False
        if not is_gas:
            continue
        for name in _GAS_READING_NAMES:
            reading = _attr(device, name)
            if reading is not None and str(_attr(reading, "unit") or "m3").lower() == "m3":
                return reading
    return None


def telegram_to_readings(telegram: Any, received_s: float, *, trust_meter_clock: bool = True) -> P1Telegram:
    """Turn a dsmr-parser ``Telegram`` into a :class:`P1Telegram` of typed readings.

    ``received_s`` is the caller's clock (wall-clock UTC seconds) when the
    telegram arrived; it stamps the readings when the meter sends no timestamp
    or ``trust_meter_clock`` is False (meter clocks drift and some are never set).
    """
    meter_time_s = _datetime_s(_attr(_attr(telegram, "P1_MESSAGE_TIMESTAMP"), "value"))
    timestamp_s = meter_time_s if (trust_meter_clock and meter_time_s is not None) else received_s
    b = _Builder(timestamp_s)

    b.add("grid_import_w", _attr(telegram, "CURRENT_ELECTRICITY_USAGE"), _POWER_UNITS, "kW", "W")
    b.add("grid_export_w", _attr(telegram, "CURRENT_ELECTRICITY_DELIVERY"), _POWER_UNITS, "kW", "W")
    b.add_difference("grid_power_w", "grid_import_w", "grid_export_w", "W")

    # A total register, where sent, already includes every tariff (also ones the
    # specification does not list), so it wins over the sum of tariff registers.
    for name, total, tariffs in (
        ("import_energy_wh", "ELECTRICITY_IMPORTED_TOTAL", "ELECTRICITY_USED_TARIFF_"),
        ("export_energy_wh", "ELECTRICITY_EXPORTED_TOTAL", "ELECTRICITY_DELIVERED_TARIFF_"),
    ):
        if _attr(_attr(telegram, total), "value") is not None:
            b.add(name, _attr(telegram, total), _ENERGY_UNITS, "kWh", "Wh")
        else:
            b.add_sum(name, (_attr(telegram, f"{tariffs}{i}") for i in range(1, 5)),
                      _ENERGY_UNITS, "kWh", "Wh")

    tariff = _attr(_attr(telegram, "ELECTRICITY_ACTIVE_TARIFF"), "value")
    if tariff is not None:
        try:
            b.readings["tariff"] = Reading("tariff", int(str(tariff)), "", timestamp_s)
        except ValueError:
            b.readings["tariff"] = Reading("tariff", str(tariff), "", timestamp_s, Quality.IMPLAUSIBLE)

    for phase in (1, 2, 3):
        b.add(f"voltage_l{phase}_v", _attr(telegram, f"INSTANTANEOUS_VOLTAGE_L{phase}"), _VOLTAGE_UNITS, "V", "V")
        b.add(f"current_l{phase}_a", _attr(telegram, f"INSTANTANEOUS_CURRENT_L{phase}"), _CURRENT_UNITS, "A", "A")
        b.add(f"grid_import_l{phase}_w", _attr(telegram, f"INSTANTANEOUS_ACTIVE_POWER_L{phase}_POSITIVE"),
              _POWER_UNITS, "kW", "W")
        b.add(f"grid_export_l{phase}_w", _attr(telegram, f"INSTANTANEOUS_ACTIVE_POWER_L{phase}_NEGATIVE"),
              _POWER_UNITS, "kW", "W")
        b.add_difference(f"grid_power_l{phase}_w", f"grid_import_l{phase}_w", f"grid_export_l{phase}_w", "W")

    gas = _gas_reading(telegram)
    if gas is not None:
        # The gas meter reports hourly (DSMR 4) or every 5 min (DSMR 5): its value
        # belongs to its own capture time, not the telegram's.
        gas_time_s = _datetime_s(_attr(gas, "datetime")) if trust_meter_clock else None
        b.add("gas_m3", gas, _GAS_UNITS, "m3", "m3", timestamp_s=gas_time_s)

    equipment = _attr(telegram, "EQUIPMENT_IDENTIFIER") or _attr(telegram, "BELGIUM_EQUIPMENT_IDENTIFIER")
    equipment_id = _attr(equipment, "value")
    return P1Telegram(
        readings=b.readings,
        timestamp_s=timestamp_s,
        received_s=received_s,
        meter_time_s=meter_time_s,
        equipment_id=None if equipment_id is None else str(equipment_id),
    )
