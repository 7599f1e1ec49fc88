"""The generated street of ``hems demo``: deterministic, varied from three homes on, realistic."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from hems.demo.model import BatterySpec, DemoHome, EvSpec, PvSpec
from hems.demo.sites import (FEED_IN_PRICE_PER_KWH, HOUSEHOLDS, INVERTER_MAPS, METER_MAPS, PV_INVERTER_MAP,
                             RETAIL_PRICE_PER_KWH, TIMEZONE, describe_home, flat_tariff, generate_homes,
                             time_of_use_tariff)


def _kind(home: DemoHome) -> str:
    if home.consumer_only:
        return "consumer"
    return "pv+battery" if home.battery is not None else "pv"


def _day_average_import_price(home: DemoHome) -> float:
    local_midnight = datetime(2025, 6, 2, tzinfo=timezone.utc) - timedelta(hours=2)
    instants = [local_midnight + timedelta(minutes=15 * index) for index in range(96)]
    imports, _ = home.tariff.prices(instants, TIMEZONE)
    return sum(imports) / len(imports)


def test_the_same_count_and_seed_give_the_same_homes_and_another_seed_others() -> None:
    assert generate_homes(10) == generate_homes(10)
    assert generate_homes(10, seed=7) == generate_homes(10, seed=7)
    assert generate_homes(10, seed=7) != generate_homes(10)


def test_a_larger_community_keeps_the_homes_of_a_smaller_one() -> None:
    assert generate_homes(50)[:10] == generate_homes(10)


@pytest.mark.parametrize(("count", "first", "last"), [(3, "home-01", "home-03"), (10, "home-01", "home-10"),
                                                      (100, "home-001", "home-100")])
def test_ids_are_numbered_and_zero_padded(count: int, first: str, last: str) -> None:
    ids = [home.home_id for home in generate_homes(count)]
    assert (ids[0], ids[-1], len(set(ids))) == (first, last, count)


def test_three_homes_are_pv_with_battery_pv_only_and_consumer_only() -> None:
    assert [_kind(home) for home in generate_homes(3)] == ["pv+battery", "pv", "consumer"]


def test_ten_homes_hold_every_kind_device_tariff_and_household_type() -> None:
    homes = generate_homes(10)
    assert set(Counter(_kind(home) for home in homes)) == {"pv+battery", "pv", "consumer"}
    assert any(home.ev is not None for home in homes)
    assert any(home.heat_pump is not None for home in homes)
    assert {home.tariff_name for home in homes} == {"flat", "time-of-use"}
    assert {home.household for home in homes} == set(HOUSEHOLDS)
    assert len({home.pv.azimuth_deg for home in homes if home.pv is not None}) >= 4


@pytest.mark.parametrize("count", [3, 10, 50])
def test_about_a_quarter_are_consumers_only(count: int) -> None:
    consumers = sum(home.consumer_only for home in generate_homes(count))
    assert consumers >= 1
    assert 0.15 <= consumers / count <= 0.35


def test_fifty_homes_are_within_their_ranges_and_wired_to_the_right_maps() -> None:
    homes = generate_homes(50)
    battery_homes = [home for home in homes if home.battery is not None]
    assert battery_homes and all(home.pv is not None for home in battery_homes)
    for home in homes:
        low_kwh, high_kwh = HOUSEHOLDS[home.household][1]
        assert low_kwh <= home.annual_load_kwh <= high_kwh
        if home.pv is not None:
            assert 3000 <= home.pv.peak_w <= 10000 and 15 <= home.pv.tilt_deg <= 45
            assert home.pv.azimuth_deg in (90.0, 135.0, 180.0, 225.0, 270.0)
        if home.battery is not None:
            assert 5000 <= home.battery.capacity_wh <= 15000
            assert home.battery.max_power_w == pytest.approx(0.5 * home.battery.capacity_wh, abs=100)
            assert home.inverter_map in INVERTER_MAPS
        elif home.pv is not None:
            assert home.inverter_map == PV_INVERTER_MAP
        else:
            assert home.inverter_map is None
        if home.ev is not None:
            assert 1500 <= home.ev.annual_kwh <= 3000
        if home.heat_pump is not None:
            assert 2500 <= home.heat_pump.annual_kwh <= 5000
        assert home.meter_map in METER_MAPS
    assert {home.meter_map for home in homes} == set(METER_MAPS)
    assert 0.2 <= sum(home.tariff_name == "time-of-use" for home in homes) / len(homes) <= 0.45


def test_flat_homes_pay_the_community_prices_and_time_of_use_averages_close_to_flat() -> None:
    homes = generate_homes(10)
    flat = [home for home in homes if home.tariff_name == "flat"]
    time_of_use = [home for home in homes if home.tariff_name == "time-of-use"]
    assert all(home.tariff == flat_tariff() for home in flat)
    assert flat[0].tariff.import_price_per_kwh == RETAIL_PRICE_PER_KWH
    assert flat[0].tariff.export_price_per_kwh == FEED_IN_PRICE_PER_KWH
    assert all(home.tariff == time_of_use_tariff() for home in time_of_use)
    assert _day_average_import_price(flat[0]) == pytest.approx(RETAIL_PRICE_PER_KWH)
    assert _day_average_import_price(time_of_use[0]) == pytest.approx(RETAIL_PRICE_PER_KWH, rel=0.1)


def test_time_of_use_is_dear_in_the_evening_and_cheap_at_night_and_midday() -> None:
    tariff = time_of_use_tariff()

    def import_price(local_hour: int) -> float:  # a June day: local time is UTC+2
        return tariff.price_at(datetime(2025, 6, 2, local_hour - 2, tzinfo=timezone.utc), TIMEZONE)[0]

    assert import_price(19) > RETAIL_PRICE_PER_KWH > import_price(3)
    assert import_price(13) < RETAIL_PRICE_PER_KWH == import_price(9)


def test_describe_home_says_what_the_home_has_in_one_line() -> None:
    home = DemoHome(home_id="home-01", household="family", annual_load_kwh=4000.0,
                    pv=PvSpec(peak_w=6000.0, tilt_deg=30.0, azimuth_deg=225.0),
                    battery=BatterySpec(capacity_wh=10000.0, max_power_w=5000.0),
                    ev=EvSpec(annual_kwh=2000.0), heat_pump=None, tariff=flat_tariff(), tariff_name="flat",
                    inverter_map=INVERTER_MAPS[0], meter_map=METER_MAPS[0])
    assert describe_home(home) == "PV 6.0 kWp SW 30°, battery 10 kWh, EV, flat tariff; family"
    consumer = generate_homes(3)[2]
    assert describe_home(consumer).startswith("no PV, ")
    assert "\n" not in describe_home(consumer)
