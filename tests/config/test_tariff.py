"""[tariff]: flat prices, time-of-use periods in local time, midnight wrap, day filter, validation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hems.config import Tariff, TariffPeriod
from tests.config.helpers import MINIMAL, load, problems

BERLIN = "Europe/Berlin"
TARIFF = MINIMAL + """
[tariff]
import_price_per_kwh = 0.30
export_price_per_kwh = 0.08

[[tariff.period]]
start = "17:00"
end = "21:00"
days = ["mon", "tue", "wed", "thu", "fri"]
import_price_per_kwh = 0.45
export_price_per_kwh = 0.10

[[tariff.period]]
start = "22:00"
end = "06:00"
days = ["fri"]
import_price_per_kwh = 0.20

[[tariff.period]]
start = "16:00"
end = "24:00"
import_price_per_kwh = 0.35
"""


def utc(local_text: str, zone: str = BERLIN) -> datetime:
    """A local wall-clock time in ``zone`` as a UTC instant."""
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(local_text).replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


@pytest.fixture(scope="module")
def tariff() -> Tariff:
    return load(TARIFF).tariff


@pytest.mark.parametrize("local, expected", [
    ("2026-05-04 12:00", (0.30, 0.08)),  # Monday noon: flat
    ("2026-05-04 17:00", (0.45, 0.10)),  # Monday peak starts (inclusive)
    ("2026-05-04 20:59", (0.45, 0.10)),
    ("2026-05-04 21:00", (0.35, 0.08)),  # peak ends (exclusive); the 16-24 period takes over
    ("2026-05-04 16:30", (0.35, 0.08)),  # first matching period wins: 16-24 covers, peak does not yet
    ("2026-05-09 18:00", (0.35, 0.08)),  # Saturday: no weekday peak, 16-24 every day
    ("2026-05-08 23:30", (0.20, 0.08)),  # Friday night: the wrapping period, listed before 16-24
    ("2026-05-09 03:00", (0.20, 0.08)),  # Saturday morning: still Friday's night period
    ("2026-05-09 06:00", (0.30, 0.08)),  # it ends at 06:00
    ("2026-05-05 03:00", (0.30, 0.08)),  # Tuesday morning: Monday is not in the night period's days
    ("2026-05-09 23:30", (0.35, 0.08)),  # Saturday night: the night period starts only on Fridays
])
def test_prices_by_local_time_and_day(tariff, local, expected):
    imports, exports = tariff.prices([utc(local)], BERLIN)
    assert (imports[0], exports[0]) == pytest.approx(expected)


def test_period_order_decides_overlaps(tariff):
    # Friday 23:30 is covered by the 22-06 night period (second) and by 16-24 (third): second wins.
    assert tariff.price_at(utc("2026-05-08 23:30"), BERLIN) == (0.20, 0.08)


def test_prices_follow_daylight_saving_time(tariff):
    # 17:00 local is 15:00 UTC in summer and 16:00 UTC in winter.
    summer = datetime(2026, 7, 6, 15, 0, tzinfo=timezone.utc)  # Monday
    winter = datetime(2026, 1, 5, 16, 0, tzinfo=timezone.utc)  # Monday
    imports, _ = tariff.prices([summer, winter, summer - timedelta(minutes=1)], BERLIN)
    assert imports == [0.45, 0.45, 0.35]


def test_prices_of_a_horizon_and_other_zones(tariff):
    start = utc("2026-05-04 00:00")
    instants = [start + timedelta(minutes=15 * step) for step in range(96)]
    imports, exports = tariff.prices(instants, BERLIN)
    assert len(imports) == len(exports) == 96
    assert imports.count(0.45) == 16 and imports.count(0.35) == 4 + 12  # 16-17 and 21-24
    # The same UTC instant is Monday 17:00 in Berlin but Monday 11:00 in New York.
    assert tariff.price_at(utc("2026-05-04 17:00"), "America/New_York") == (0.30, 0.08)


def test_flat_tariff_and_naive_instants():
    flat = Tariff()
    assert flat.prices([datetime(2026, 1, 1, tzinfo=timezone.utc)], BERLIN) == ([0.30], [0.08])
    with pytest.raises(ValueError, match="no time zone"):
        flat.prices([datetime(2026, 1, 1)], BERLIN)


def test_whole_day_period_and_properties():
    period = TariffPeriod(start="00:00", end="24:00", import_price_per_kwh=0.25)
    assert (period.start_minute, period.end_minute, period.wraps_midnight) == (0, 1440, False)
    assert period.days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert TariffPeriod(start="22:00", end="06:00", import_price_per_kwh=0.2).wraps_midnight


@pytest.mark.parametrize("body, expected", [
    ('start = "17:00"\nend = "17:00"', 'tariff.period[0].end = "17:00" is invalid: allowed a time other than start'),
    ('start = "7:00"\nend = "09:00"', 'tariff.period[0].start = "7:00" is invalid: allowed a local time "HH:MM"'),
    ('start = "24:00"\nend = "09:00"', 'tariff.period[0].start = "24:00" is invalid'),
    ('start = "07:00"\nend = "25:00"', 'tariff.period[0].end = "25:00" is invalid'),
    ('start = "07:00"\nend = "09:60"', 'tariff.period[0].end = "09:60" is invalid'),
    ('start = "07:00"\nend = "09:00"\ndays = ["monday"]',
     'tariff.period[0].days[0] = "monday" is invalid: allowed "mon"'),
    ('start = "07:00"\nend = "09:00"\ndays = []', "tariff.period[0].days"),
    ('start = "07:00"', "tariff.period[0].end: required key is missing"),
])
def test_period_validation_names_the_key(body, expected):
    price = "\nimport_price_per_kwh = 0.3" if "import_price" not in body else ""
    lines = problems(f"{MINIMAL}\n[[tariff.period]]\n{body}{price}\n")
    assert any(line.startswith(expected) for line in lines), lines


def test_period_price_range_and_second_period_index():
    text = f"{MINIMAL}\n[[tariff.period]]\nstart = \"01:00\"\nend = \"02:00\"\nimport_price_per_kwh = 0.1\n" \
           f"[[tariff.period]]\nstart = \"03:00\"\nend = \"04:00\"\nimport_price_per_kwh = 12\n"
    assert problems(text) == ["tariff.period[1].import_price_per_kwh = 12 is out of range: allowed [-10, 10]"]
