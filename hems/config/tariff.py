"""The retail tariff: a flat import and export price, optionally with time-of-use periods.

```toml
[tariff]
import_price_per_kwh = 0.30
export_price_per_kwh = 0.08

[[tariff.period]]            # evening peak on weekdays
start = "17:00"
end = "21:00"
days = ["mon", "tue", "wed", "thu", "fri"]
import_price_per_kwh = 0.42
```

Times are local wall-clock times of the home's ``[home] timezone`` (so a period follows
daylight-saving time). A period whose ``end`` is not after its ``start`` wraps midnight; its
``days`` are the days on which it *starts* (``start = "22:00"``, ``end = "06:00"``,
``days = ["fri"]`` covers Friday 22:00 to Saturday 06:00).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from hems.config.base import Section
from hems.config.errors import config_problem, invalid

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: In ``datetime.weekday()`` order (Monday = 0).
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PRICE_LIMIT = 10.0  # currency/kWh; beyond this a price is a typo (cents for euros), not a tariff
_START = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
_END = re.compile(r"^(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)$")
_MINUTES_PER_DAY = 24 * 60


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class TariffPeriod(Section):
    """One ``[[tariff.period]]``: a time-of-use price between two local times on some days."""

    #: Local time "HH:MM" at which the period starts (inclusive).
    start: str
    #: Local time "HH:MM" at which it ends (exclusive); "24:00" is the end of the day.
    end: str
    #: Days on which the period starts; default every day.
    days: tuple[Weekday, ...] = Field(default=WEEKDAYS, min_length=1)
    import_price_per_kwh: float = Field(ge=-_PRICE_LIMIT, le=_PRICE_LIMIT)
    #: None: the flat ``[tariff] export_price_per_kwh`` applies during this period.
    export_price_per_kwh: float | None = Field(default=None, ge=-_PRICE_LIMIT, le=_PRICE_LIMIT)

    @field_validator("start")
    @classmethod
    def _valid_start(cls, value: str) -> str:
        if not isinstance(value, str) or not _START.match(value):
            raise config_problem(("", invalid(value, 'a local time "HH:MM" from "00:00" to "23:59"')))
        return value

    @field_validator("end")
    @classmethod
    def _valid_end(cls, value: str) -> str:
        if not isinstance(value, str) or not _END.match(value):
            raise config_problem(("", invalid(value, 'a local time "HH:MM" from "00:01" to "24:00"')))
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> TariffPeriod:
        if self.start_minute == self.end_minute % _MINUTES_PER_DAY and self.end != "24:00":
            raise config_problem(("end", invalid(self.end, f"a time other than start ({self.start})")))
        return self

    @property
    def start_minute(self) -> int:
        """Minutes after local midnight at which the period starts."""
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        """Minutes after local midnight at which it ends (1440 for "24:00")."""
        return _minutes(self.end)

    @property
    def wraps_midnight(self) -> bool:
        """True when the period ends on the day after it starts."""
        return self.end_minute <= self.start_minute

    def covers(self, local: datetime) -> bool:
        """True when the local wall-clock time ``local`` falls in this period."""
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        start, end = self.start_minute, self.end_minute
        if not self.wraps_midnight:
            return start <= minute < end and WEEKDAYS[local.weekday()] in self.days
        if minute >= start:
            return WEEKDAYS[local.weekday()] in self.days
        # Before the end on the next morning: the period started the day before.
        return minute < end and WEEKDAYS[(local - timedelta(days=1)).weekday()] in self.days


class Tariff(Section):
    """``[tariff]``: the retail prices the home pays and is paid (currency per kWh)."""

    import_price_per_kwh: float = Field(default=0.30, ge=-_PRICE_LIMIT, le=_PRICE_LIMIT)
    export_price_per_kwh: float = Field(default=0.08, ge=-_PRICE_LIMIT, le=_PRICE_LIMIT)
    #: Time-of-use periods, ``[[tariff.period]]``; the first that covers an instant wins.
    period: tuple[TariffPeriod, ...] = ()

    def price_at(self, instant: datetime, timezone: str) -> tuple[float, float]:
        """(import, export) price per kWh at ``instant`` (timezone-aware) in the home's ``timezone``."""
        if instant.tzinfo is None:
            raise ValueError(f"instant {instant.isoformat()} has no time zone: pass an aware datetime (UTC)")
        local = instant.astimezone(ZoneInfo(timezone))
        for period in self.period:
            if period.covers(local):
                export = self.export_price_per_kwh if period.export_price_per_kwh is None \
                    else period.export_price_per_kwh
                return period.import_price_per_kwh, export
        return self.import_price_per_kwh, self.export_price_per_kwh

    def prices(self, instants: Sequence[datetime], timezone: str) -> tuple[list[float], list[float]]:
        """Import and export prices per kWh at each instant: the first covering period, else flat.

        ``instants`` must be timezone-aware (the daemon works in UTC); ``timezone`` is the
        home's IANA zone (``HomeConfig.home.timezone``), in which the periods are written.
        """
        imports: list[float] = []
        exports: list[float] = []
        for instant in instants:
            import_price, export_price = self.price_at(instant, timezone)
            imports.append(import_price)
            exports.append(export_price)
        return imports, exports
