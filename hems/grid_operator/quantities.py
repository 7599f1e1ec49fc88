"""Exact conversions from what an operator types (kW, currency per kWh, ISO times, times of day) to what
travels on the wire (whole W, integer µ¤/kWh, aligned UTC instants).

A value that has no exact integer form is refused rather than rounded: an operator who types a fee of
0.0150001 ¤/kWh should learn that the wire carries µ¤/kWh, not find 0.015 in the manager's books.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from hems.protocol.messages import MAX_PRICE_MICRO
from hems.protocol.power_plant import MAX_POWER_W
from hems.protocol.units import MICRO_PER_UNIT, price_to_micro

W_PER_KW = 1000
#: The largest power on the wire, in kW (10 MW).
MAX_POWER_KW = Decimal(MAX_POWER_W) / W_PER_KW
#: The largest price on the wire, in currency per kWh.
MAX_PRICE_PER_KWH = Decimal(MAX_PRICE_MICRO) / MICRO_PER_UNIT
MINUTES_PER_DAY = 24 * 60


def to_decimal(value: Decimal | int | str) -> Decimal:
    """A finite Decimal from TOML (int or Decimal) or a command-line string; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def kw_to_w(value: Decimal | int | str) -> int:
    """kW -> whole W, exactly; ValueError when it is not a whole number of W (more than 3 decimals)."""
    watts = to_decimal(value) * W_PER_KW
    if watts != watts.to_integral_value():
        raise ValueError(f"{value} kW is not a whole number of W (at most 3 decimals)")
    return int(watts)


def exact_price_micro(value: Decimal | int | str) -> int:
    """Currency per kWh -> integer µ¤/kWh (:func:`hems.protocol.units.price_to_micro`); ValueError when
    the price has more than 6 decimals, which the wire cannot carry."""
    price = to_decimal(value)
    micro = price_to_micro(price)
    if Decimal(micro) != price * MICRO_PER_UNIT:
        raise ValueError(f"{value} per kWh is not a whole number of µ¤/kWh (at most 6 decimals)")
    return micro


def parse_time_of_day(text: str, *, allow_end_of_day: bool = False) -> int:
    """``"HH:MM"`` -> minutes after midnight; ``"24:00"`` (1440) only with ``allow_end_of_day``."""
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" \
            or not (text[:2].isdigit() and text[3:].isdigit()):
        raise ValueError("a time of day HH:MM")
    hours, minutes = int(text[:2]), int(text[3:])
    if allow_end_of_day and (hours, minutes) == (24, 0):
        return MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        raise ValueError("a time of day 00:00 … 23:59" + (" or 24:00" if allow_end_of_day else ""))
    return hours * 60 + minutes


def format_time_of_day(minutes: int) -> str:
    """Minutes after midnight -> ``"HH:MM"`` (1440 -> ``"24:00"``)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def local_instant_s(day: date, minutes: int, zone: ZoneInfo) -> int:
    """UTC epoch seconds of ``minutes`` after midnight of ``day`` in ``zone``; 1440 is the next midnight.

    Wall-clock arithmetic: on a day the clocks change, 17:00 is still 17:00 local time. A time the
    change skips (02:30 in spring) is read with the offset before the change (Python's ``fold=0``)."""
    day_offset, minutes = divmod(minutes, MINUTES_PER_DAY)
    local = datetime.combine(date.fromordinal(day.toordinal() + day_offset), time(minutes // 60, minutes % 60),
                             tzinfo=zone)
    return int(local.timestamp())


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with an explicit offset (``2026-11-21T17:00Z``, ``…+01:00``), as UTC."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2026-11-21T17:00Z") from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{text!r} has no offset: write Z for UTC or +HH:MM")
    return instant.astimezone(timezone.utc)


def utc_from_s(epoch_s: float) -> datetime:
    """Epoch seconds -> an aware UTC datetime (whole seconds keep the wire's instants exact)."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


def is_aligned(instant: datetime, slot_s: int) -> bool:
    """True when ``instant`` is a multiple of ``slot_s`` in UTC epoch seconds (the market calendar's rule)."""
    epoch = instant.timestamp()
    return float(epoch).is_integer() and int(epoch) % slot_s == 0
