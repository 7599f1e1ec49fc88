"""The grid operator's files (docs/grid.md, "The grid operator: hems grid"): a limits file for
``hems grid limits --file`` and the simulated operator's GRID.toml for ``hems grid simulate``.

Both describe a day's limits the same way, in times of day of their ``timezone``::

    [default]                      # every slot of the day that no entry below names
    import_limit_kw = 250
    export_limit_kw = 150

    [[period]]                     # from <= slot start < to
    from = "17:00"
    to = "20:00"
    import_limit_kw = 60
    fee = 0.015                    # locational fee, currency per kWh

    [[slot]]                       # one slot
    at = "18:15"
    export_limit_kw = 0

A slot takes the first entry that names it: ``[[slot]]``, then ``[[period]]``, then ``[default]``.
Every entry is complete: a limit it leaves out is no limit, a fee it leaves out is 0. Numbers are read
as decimals (the TOML text) and must be exact on the wire: whole W, whole µ¤/kWh.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StrictBool, field_validator, model_validator

from hems.config.base import Section
from hems.config.errors import config_problem, invalid, out_of_range, read_config_file, validate_toml
from hems.grid_operator.quantities import (
    MAX_POWER_KW,
    MAX_PRICE_PER_KWH,
    MINUTES_PER_DAY,
    exact_price_micro,
    kw_to_w,
    local_instant_s,
    parse_time_of_day,
    utc_from_s,
)
from hems.protocol.messages import MAX_SLOTS_PER_MESSAGE
from hems.protocol.power_plant import GridLimitsPublication, LimitSlot

SLOT_MINUTES_ALLOWED = "a divisor of 60: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60"
#: A day on which the clocks go back has 25 hours.
LONGEST_DAY_MINUTES = MINUTES_PER_DAY + 60


def _whole_watts(value: Decimal | None) -> Decimal | None:
    if value is not None:
        try:
            kw_to_w(value)
        except ValueError:
            raise config_problem(("", invalid(value, "a whole number of W (at most 3 decimals of kW)"))) from None
    return value


def _exact_price(value: Decimal) -> Decimal:
    try:
        exact_price_micro(value)
    except ValueError:
        raise config_problem(("", invalid(value, "a whole number of µ¤/kWh (at most 6 decimals)"))) from None
    return value


def _time_of_day(value: str, allow_end_of_day: bool = False) -> str:
    try:
        parse_time_of_day(value, allow_end_of_day=allow_end_of_day)
    except ValueError as error:
        raise config_problem(("", invalid(value, str(error)))) from None
    return value


class LimitValues(Section):
    """``[default]`` and the values of every entry: the connection's limits (kW) and the fee (¤/kWh)."""

    #: Most power into the community; left out: no limit.
    import_limit_kw: Decimal | None = Field(default=None, ge=0, le=MAX_POWER_KW)
    #: Most power out of the community; left out: no limit.
    export_limit_kw: Decimal | None = Field(default=None, ge=0, le=MAX_POWER_KW)
    #: Locational fee per kWh traded home to home, paid by the buyer.
    fee: Decimal = Field(default=Decimal(0), ge=0, le=MAX_PRICE_PER_KWH)

    _watts = field_validator("import_limit_kw", "export_limit_kw")(_whole_watts)
    _price = field_validator("fee")(_exact_price)

    def limit_slot(self, slot_start: datetime, duration_s: int) -> LimitSlot:
        """The wire form of these values for one slot."""
        return LimitSlot(slot_start=slot_start, duration_s=duration_s,
                         import_limit_w=None if self.import_limit_kw is None else kw_to_w(self.import_limit_kw),
                         export_limit_w=None if self.export_limit_kw is None else kw_to_w(self.export_limit_kw),
                         locational_fee_micro=exact_price_micro(self.fee))


class PeriodEntry(LimitValues):
    """``[[period]]``: the slots that start at or after ``from`` and before ``to``."""

    start: str = Field(alias="from")
    end: str = Field(alias="to")

    _start = field_validator("start")(_time_of_day)
    _end = field_validator("end")(lambda value: _time_of_day(value, allow_end_of_day=True))

    @property
    def start_minute(self) -> int:
        return parse_time_of_day(self.start)

    @property
    def end_minute(self) -> int:
        return parse_time_of_day(self.end, allow_end_of_day=True)


class SlotEntry(LimitValues):
    """``[[slot]]``: the one slot that starts at ``at``."""

    at: str

    _at = field_validator("at")(_time_of_day)

    @property
    def minute(self) -> int:
        return parse_time_of_day(self.at)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise config_problem(("", invalid(value, "an IANA time zone such as \"UTC\" or \"Europe/Berlin\""))) from None
    return value


def _check_slot_minutes(value: int) -> int:
    if 60 % value:
        raise config_problem(("", invalid(value, SLOT_MINUTES_ALLOWED)))
    return value


class DayLimits(Section):
    """A day's limits: ``[default]``, ``[[period]]`` and ``[[slot]]`` entries in times of day."""

    default: LimitValues | None = None
    period: list[PeriodEntry] = []
    slot: list[SlotEntry] = []

    def values_at(self, minute: int) -> LimitValues | None:
        """The entry that speaks for the slot starting ``minute`` after local midnight, or None."""
        for entry in self.slot:
            if entry.minute == minute:
                return entry
        for period in self.period:
            if period.start_minute <= minute < period.end_minute:
                return period
        return self.default

    def publication(self, day: date, zone: ZoneInfo, slot_minutes: int) -> GridLimitsPublication:
        """The ``grid_limits`` publication of ``day`` (local midnight to midnight in ``zone``).

        ValueError when the zone's midnight is not on a slot boundary in UTC (the market's slots are
        multiples of their length in UTC epoch seconds), or when no slot or too many are named."""
        slot_s = slot_minutes * 60
        start_s, end_s = local_instant_s(day, 0, zone), local_instant_s(day, MINUTES_PER_DAY, zone)
        if start_s % slot_s:
            raise ValueError(f"midnight of {day} in {zone.key} is {utc_from_s(start_s):%H:%M}Z, not on a "
                             f"{slot_minutes}-minute slot boundary in UTC: use a shorter slot_minutes")
        slots = []
        for slot_start_s in range(start_s, end_s, slot_s):
            local = datetime.fromtimestamp(slot_start_s, zone)
            values = self.values_at(local.hour * 60 + local.minute)
            if values is not None:
                slots.append(values.limit_slot(utc_from_s(slot_start_s), slot_s))
        if not slots:
            raise ValueError(f"no slot of {day} in {zone.key} is named (the times the clocks skip?)")
        if len(slots) > MAX_SLOTS_PER_MESSAGE:
            raise ValueError(f"{day} has {len(slots)} slots with limits; one publication carries at most "
                             f"{MAX_SLOTS_PER_MESSAGE}")
        return GridLimitsPublication(slots=slots)

    def entry_problems(self, slot_minutes: int, prefix: str = "") -> list[tuple[str, str]]:
        """What is wrong with the entries given the slot length, as ``(key, tail)`` of :func:`config_problem`."""
        problems: list[tuple[str, str]] = []
        boundary = f"a time of day on a {slot_minutes}-minute slot boundary"
        for index, period in enumerate(self.period):
            key = f"{prefix}period[{index}]"
            for name, minute, text in (("from", period.start_minute, period.start),
                                       ("to", period.end_minute, period.end)):
                if minute % slot_minutes:
                    problems.append((f"{key}.{name}", invalid(text, boundary)))
            if period.end_minute <= period.start_minute:
                problems.append((f"{key}.to", out_of_range(period.end, f"after from ({period.start}), at most "
                                                                       "\"24:00\"")))
        ordered = sorted(enumerate(self.period), key=lambda item: item[1].start_minute)
        for (earlier_index, earlier), (index, later) in zip(ordered, ordered[1:]):
            if later.start_minute < earlier.end_minute:
                problems.append((f"{prefix}period[{index}].from", out_of_range(
                    later.start, f">= \"{earlier.end}\", the end of period[{earlier_index}] (periods must not "
                                 "overlap)")))
        seen: dict[int, int] = {}
        for index, entry in enumerate(self.slot):
            key = f"{prefix}slot[{index}].at"
            if entry.minute % slot_minutes:
                problems.append((key, invalid(entry.at, boundary)))
            if entry.minute in seen:
                problems.append((key, invalid(entry.at, f"a time not named by slot[{seen[entry.minute]}] already")))
            seen.setdefault(entry.minute, index)
        if self.default is None and not self.period and not self.slot:
            problems.append((prefix.rstrip(".") or "(top level)",
                             ": names no slot: give [default], [[period]] or [[slot]] entries"))
        covered = (LONGEST_DAY_MINUTES if self.default is not None else
                   len({minute for period in self.period for minute in range(period.start_minute, period.end_minute)}
                       | {entry.minute + offset for entry in self.slot for offset in range(slot_minutes)}))
        if covered // slot_minutes > MAX_SLOTS_PER_MESSAGE:
            problems.append(("slot_minutes", out_of_range(
                slot_minutes, f"a length that names at most {MAX_SLOTS_PER_MESSAGE} slots a day "
                              f"(these entries name {covered // slot_minutes}; one publication carries them all)")))
        return problems


class LimitsFile(DayLimits):
    """LIMITS.toml of ``hems grid limits --file``: one day's limits."""

    #: The time zone of every time of day in the file.
    timezone: str = "UTC"
    slot_minutes: int = Field(default=15, ge=1, le=60)
    #: The day the entries speak for; unset: the day after today in ``timezone`` (or ``--day``).
    day: date | None = None

    _zone = field_validator("timezone")(_check_timezone)
    _slot = field_validator("slot_minutes")(_check_slot_minutes)

    @model_validator(mode="after")
    def _entries(self) -> LimitsFile:
        problems = self.entry_problems(self.slot_minutes)
        if problems:
            raise config_problem(*problems)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ScheduledLimits(DayLimits):
    """``[limits]`` of GRID.toml: the entries of a limits file, published every day for the next."""

    #: Each day at this time of day, the next day's limits are published.
    publish_at: str = "12:00"
    #: On start, publish the limits of the day after the last ``publish_at`` that has passed.
    publish_on_start: StrictBool = True

    _publish_at = field_validator("publish_at")(_time_of_day)

    @property
    def publish_minute(self) -> int:
        return parse_time_of_day(self.publish_at)


class RequestSchedule(Section):
    """``[[request]]`` of GRID.toml: a flexibility request sent every day."""

    #: The start of the first requested slot, each day (a time of day).
    at: str
    slots: int = Field(ge=1, le=MAX_SLOTS_PER_MESSAGE)
    #: The change of the community's net import per slot: + more, − less.
    delta_kw: Decimal = Field(ge=-MAX_POWER_KW, le=MAX_POWER_KW)
    #: Paid per kWh delivered (currency per kWh).
    price: Decimal = Field(ge=0, le=MAX_PRICE_PER_KWH)
    #: Owed per kWh requested and not delivered.
    penalty: Decimal = Field(default=Decimal(0), ge=0, le=MAX_PRICE_PER_KWH)
    #: The request is sent this long before ``at``.
    notice_minutes: int = Field(default=60, ge=0, le=MINUTES_PER_DAY)
    #: The request id is ``<name>-<YYYYMMDD>`` (the day of ``at``); unset: ``r<HHMM>``.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,50}$")

    _at = field_validator("at")(_time_of_day)
    _watts = field_validator("delta_kw")(_whole_watts)
    _prices = field_validator("price", "penalty")(_exact_price)

    @field_validator("delta_kw")
    @classmethod
    def _not_zero(cls, value: Decimal) -> Decimal:
        if value == 0:
            raise config_problem(("", invalid(value, "a change other than 0 (+ more import, − less)")))
        return value

    @property
    def minute(self) -> int:
        return parse_time_of_day(self.at)

    def request_id(self, day: date) -> str:
        """The id of this request on ``day``: unique per day and request."""
        return f"{self.name or 'r' + self.at.replace(':', '')}-{day:%Y%m%d}"


class SimulationConfig(Section):
    """GRID.toml of ``hems grid simulate``."""

    #: The time zone of every time of day in the file.
    timezone: str = "UTC"
    slot_minutes: int = Field(default=15, ge=1, le=60)
    limits: ScheduledLimits | None = None
    request: list[RequestSchedule] = []

    _zone = field_validator("timezone")(_check_timezone)
    _slot = field_validator("slot_minutes")(_check_slot_minutes)

    @model_validator(mode="after")
    def _consistent(self) -> SimulationConfig:
        problems = [] if self.limits is None else self.limits.entry_problems(self.slot_minutes, "limits.")
        names: dict[str, int] = {}
        for index, request in enumerate(self.request):
            if request.minute % self.slot_minutes:
                problems.append((f"request[{index}].at", invalid(
                    request.at, f"a time of day on a {self.slot_minutes}-minute slot boundary")))
            name = request.request_id(date(2000, 1, 1))
            if name in names:
                problems.append((f"request[{index}].name", invalid(
                    request.name, f"a name other than request[{names[name]}]'s (request ids must differ)"))
                    if request.name is not None else
                    (f"request[{index}]", f": same time as request[{names[name]}]: give each a distinct name"))
            names.setdefault(name, index)
        if self.limits is None and not self.request:
            problems.append(("(top level)", ": nothing to do: give a [limits] table or [[request]] entries"))
        if problems:
            raise config_problem(*problems)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def parse_limits_file(text: str, source: str = "<limits>") -> LimitsFile:
    """A limits file from its TOML text; :class:`hems.config.errors.ConfigError` naming every bad key."""
    return validate_toml(text, source, LimitsFile, decimals=True)


def load_limits_file(path: str | Path) -> LimitsFile:
    """A limits file from disk (see :func:`parse_limits_file`)."""
    return parse_limits_file(read_config_file(path), str(path))


def parse_simulation_config(text: str, source: str = "<grid>") -> SimulationConfig:
    """GRID.toml from its TOML text; :class:`hems.config.errors.ConfigError` naming every bad key."""
    return validate_toml(text, source, SimulationConfig, decimals=True)


def load_simulation_config(path: str | Path) -> SimulationConfig:
    """GRID.toml from disk (see :func:`parse_simulation_config`)."""
    return parse_simulation_config(read_config_file(path), str(path))
