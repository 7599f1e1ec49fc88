"""The two offline baselines of the demo: no control, and the battery's own self-consumption rule.

Both run the emulators' physics (:class:`drivers.emulators.plant.SitePlant`) on a manual clock,
fed with the same profiles as the hems runs, so the four scenarios differ only in how the
battery is driven:

- **no control** (:attr:`Scenario.NO_CONTROL`): PV and household meet at the meter; the battery,
  if any, is not used (its power limits are 0 W, so it neither charges nor discharges and its
  counters stay 0).
- **self-consumption rule** (:attr:`Scenario.SELF_CONSUMPTION`): the plant's autonomous rule,
  what a hybrid inverter does out of the box: charge from surplus, discharge to cover demand,
  within its power and state-of-charge limits.

The battery starts at :data:`INITIAL_SOC_PCT` and is kept between :data:`SOC_MIN_PCT` and
:data:`SOC_MAX_PCT`, the runtime's default limits (``hems.mpc.site.BatteryConfig``); the plant's
default efficiencies (0.95 each way) apply. A home without a battery gets a plant battery of
:data:`NO_BATTERY_CAPACITY_WH` and 0 W, which does nothing. Profiles are step functions on their
grid (W held over each step); EV and heat pump are uncontrolled loads in every scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from drivers.emulators.plant import Battery, ElectricVehicle, HeatPump, PvArray, SitePlant
from drivers.emulators.profiles import ManualClock
from hems.demo.model import DemoHome, HomeOutcome, HomeProfiles, RunOutcome, Scenario, SlotEnergy

#: The battery's state of charge when a run starts (%).
INITIAL_SOC_PCT = 50.0
#: The runtime's default SoC limits (``BatteryConfig.soc_min`` / ``soc_max``), in %.
SOC_MIN_PCT = 5.0
SOC_MAX_PCT = 95.0
#: The stand-in battery of a home without one: tiny and powerless, so it never moves energy.
NO_BATTERY_CAPACITY_WH = 1.0
#: The plant's integration step (s): the emulators' default.
PLANT_STEP_S = 60.0

BASELINE_SCENARIOS = (Scenario.NO_CONTROL, Scenario.SELF_CONSUMPTION)


def step_profile(profiles: HomeProfiles, values_w: np.ndarray) -> Callable[[float], float]:
    """``values_w`` on the profile grid as a function of UTC seconds (held over each step)."""
    values = [float(value) for value in values_w]
    start_s, step_s, last = profiles.start_s, profiles.step_s, len(values) - 1

    def power_w(time_s: float) -> float:
        index = int((time_s - start_s) // step_s)
        return values[0 if index < 0 else last if index > last else index]

    return power_w


def build_plant(home: DemoHome, profiles: HomeProfiles, start_s: float,
                clock: Callable[[], float] | None = None, *, battery_enabled: bool = True) -> SitePlant:
    """The emulated physics of ``home`` from ``start_s``, driven by ``profiles``.

    ``battery_enabled`` False holds the battery idle (0 W limits), as the no-control baseline does.
    """
    clock = clock if clock is not None else ManualClock(float(start_s))
    if home.battery is not None:
        power_w = home.battery.max_power_w if battery_enabled else 0.0
        battery = Battery(capacity_wh=home.battery.capacity_wh, soc_pct=INITIAL_SOC_PCT, max_charge_w=power_w,
                          max_discharge_w=power_w, soc_min_pct=SOC_MIN_PCT, soc_max_pct=SOC_MAX_PCT)
    else:
        battery = Battery(capacity_wh=NO_BATTERY_CAPACITY_WH, soc_pct=INITIAL_SOC_PCT, max_charge_w=0.0,
                          max_discharge_w=0.0, soc_min_pct=SOC_MIN_PCT, soc_max_pct=SOC_MAX_PCT)
    pv_values = profiles.pv_available_w if home.pv is not None else np.zeros_like(profiles.pv_available_w)
    return SitePlant(
        pv=PvArray(peak_w=home.pv.peak_w if home.pv is not None else 0.0,
                   profile=step_profile(profiles, pv_values)),
        battery=battery,
        ev=ElectricVehicle(profile=step_profile(profiles, profiles.ev_w)),
        heat_pump=HeatPump(profile=step_profile(profiles, profiles.heat_pump_w)),
        load_profile=step_profile(profiles, profiles.household_w),
        clock=clock, max_step_s=PLANT_STEP_S, time_s=float(start_s),
    )


_COUNTERS = ("grid_import_wh", "grid_export_wh", "pv_wh", "load_wh", "ev_wh", "heat_pump_wh",
             "battery_charge_wh", "battery_discharge_wh")


def run_baseline(scenario: Scenario, home: DemoHome, profiles: HomeProfiles, slot_starts_s: Sequence[int],
                 slot_s: int) -> HomeOutcome:
    """One home under a baseline scenario: the plant's counters per slot (Wh)."""
    if scenario not in BASELINE_SCENARIOS:
        raise ValueError(f"{scenario.value} is not an offline baseline; choose one of "
                         f"{', '.join(item.value for item in BASELINE_SCENARIOS)}")
    slots = len(slot_starts_s)
    per_slot = {name: np.zeros(slots) for name in _COUNTERS}
    if slots:
        plant = build_plant(home, profiles, slot_starts_s[0],
                            battery_enabled=scenario is Scenario.SELF_CONSUMPTION)
        for index, slot_start_s in enumerate(slot_starts_s):
            plant.advance(float(slot_start_s))  # a gap between slots is integrated but not counted
            before = [getattr(plant.energy, name) for name in _COUNTERS]
            plant.advance(float(slot_start_s + slot_s))
            for name, start_wh in zip(_COUNTERS, before):
                per_slot[name][index] = getattr(plant.energy, name) - start_wh
    energy = SlotEnergy(
        import_wh=per_slot["grid_import_wh"], export_wh=per_slot["grid_export_wh"], pv_wh=per_slot["pv_wh"],
        household_wh=per_slot["load_wh"], ev_wh=per_slot["ev_wh"], heat_pump_wh=per_slot["heat_pump_wh"],
        battery_charge_wh=per_slot["battery_charge_wh"],
        battery_discharge_wh=per_slot["battery_discharge_wh"])
    return HomeOutcome(home_id=home.home_id, energy=energy)


def run_baselines(homes: Sequence[DemoHome], profiles_by_home: Mapping[str, HomeProfiles],
                  slot_starts_s: Sequence[int], slot_s: int) -> dict[Scenario, RunOutcome]:
    """Both baselines for every home, as runs of the community."""
    runs = {}
    for scenario in BASELINE_SCENARIOS:
        outcomes = {home.home_id: run_baseline(scenario, home, profiles_by_home[home.home_id], slot_starts_s,
                                               slot_s) for home in homes}
        runs[scenario] = RunOutcome(scenario=scenario, mechanism=None, slot_starts_s=list(slot_starts_s),
                                    slot_s=slot_s, homes=outcomes)
    return runs
