"""One demo home made real: its emulated devices on a loopback Modbus TCP port, its plant fed by
the home's profiles, and the configuration its hems runtime reads (the same as ``hems run``'s).

Devices per home (:class:`~hems.demo.model.DemoHome`): a grid meter (unit 2) for every home;
a hybrid inverter with PV and battery (unit 1) when the home has a battery, a PV inverter
(unit 1) when it has PV only. The plant behind them is :func:`hems.demo.baselines.build_plant`'s
on the run's simulated clock, so the daemon's runs and the offline baselines share one physics. EV and heat pump are loads the meter sees: the runtime does not drive
chargers or heat pumps yet, so the demo does not pretend it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.catalog import resolve_map
from drivers.emulators.modbus_server import EmulatorServer
from hems.config import HomeConfig
from hems.demo.model import DemoHome, HomeProfiles
from hems.demo.settings import RuntimeSettings
from hems.demo.sites import LATITUDE_DEG, LONGITUDE_DEG, TIMEZONE
from hems.runtime.snapshot import Quantity
from hems.runtime.telemetry import HOUSE_LOAD_W, SITE
from hems.store import Store

INVERTER_UNIT_ID = 1
METER_UNIT_ID = 2
#: What the MPC is told of a home without a battery: a token store it cannot use to any effect
#: (the configuration requires a battery; no device carries it, so nothing is ever written).
NO_BATTERY_WH = 100.0
NO_BATTERY_W = 50.0
FUSE_LIMIT_W = 3 * 63 * 230.0  # a 3 x 63 A connection
EXPORT_LIMIT_W = 10_000.0


def bindings(home: DemoHome) -> list[MapBinding]:
    """The register maps the home's emulator serves, at their unit ids."""
    served = [MapBinding(resolve_map(home.meter_map), METER_UNIT_ID)]
    if home.inverter_map is not None:
        served.insert(0, MapBinding(resolve_map(home.inverter_map), INVERTER_UNIT_ID))
    return served


async def start_emulator(home: DemoHome, plant: SitePlant) -> EmulatorServer:
    """The home's devices on 127.0.0.1 at a free port."""
    server = EmulatorServer(bindings(home), plant, tcp=("127.0.0.1", 0))
    await server.start()
    # A map's initial values (nameplate capacity, power limits, PV rating) went into the plant as
    # a fresh device shows them; this home's battery and array are its own, as in the baselines.
    if home.battery is not None:
        plant.battery.capacity_wh = home.battery.capacity_wh
        plant.battery.max_charge_w = plant.battery.max_discharge_w = home.battery.max_power_w
    if home.pv is not None:
        plant.pv.peak_w = home.pv.peak_w
    plant.refresh()
    return server


def home_config(home: DemoHome, port: int, state_directory: Path, settings: RuntimeSettings, *,
                market: dict[str, Any] | None) -> HomeConfig:
    """The configuration the home's runtime reads, as ``hems run`` would from its TOML file."""
    address = f"127.0.0.1:{port}"
    devices: list[dict[str, Any]] = [
        {"name": "meter", "map": home.meter_map, "tcp": address, "unit_id": METER_UNIT_ID,
         "capabilities": ["grid_meter"]}]
    if home.inverter_map is not None:
        kinds = ["pv_inverter", "battery"] if home.battery is not None else ["pv_inverter"]
        devices.insert(0, {"name": "inverter", "map": home.inverter_map, "tcp": address,
                           "unit_id": INVERTER_UNIT_ID, "capabilities": kinds})
    battery = home.battery
    annual_kwh = home.annual_load_kwh + (home.ev.annual_kwh if home.ev else 0.0) \
        + (home.heat_pump.annual_kwh if home.heat_pump else 0.0)
    document: dict[str, Any] = {
        "home": {"id": home.home_id, "state_directory": str(state_directory), "latitude_deg": LATITUDE_DEG,
                 "longitude_deg": LONGITUDE_DEG, "timezone": TIMEZONE},
        "device": devices,
        "battery": {"capacity_wh": battery.capacity_wh if battery else NO_BATTERY_WH,
                    "max_charge_w": battery.max_power_w if battery else NO_BATTERY_W,
                    "max_discharge_w": battery.max_power_w if battery else NO_BATTERY_W,
                    "soc_min": 0.05, "soc_max": 0.95, "soc_initial": 0.5},
        "grid": {"import_limit_w": FUSE_LIMIT_W, "export_limit_w": EXPORT_LIMIT_W},
        "pv": {"curtailable": home.pv is not None,
               "arrays": [] if home.pv is None else [{"peak_power_w": home.pv.peak_w, "tilt_deg": home.pv.tilt_deg,
                                                      "azimuth_deg": home.pv.azimuth_deg}]},
        "mpc": {"step_s": settings.slot_s, "horizon_steps": settings.horizon_steps},
        "tariff": home.tariff.model_dump(mode="json"),
        "loops": {"telemetry_period_s": settings.telemetry_period_s,
                  "control_period_s": settings.control_period_s},
        "control": {"fallback": "self_consumption", "setpoint_timeout_s": 3 * settings.control_period_s},
        "forecast": {"annual_load_kwh": max(annual_kwh, 100.0), "holiday_country": "DE"},
        "metrics": {"enabled": False},
    }
    if market is not None:
        document["market"] = {"enabled": True, "bid_points": settings.bid_points,
                              "submit_lead_s": settings.submit_lead_s, **market}
    return HomeConfig.model_validate(document)


def seed_history(state_directory: Path, profiles: HomeProfiles, until_s: int, bucket_s: int) -> int:
    """Write the home's past (household + EV + heat-pump load and PV, per profile step) into its
    store, as weeks of running would have taught its forecaster: the runtime learns from it at start.

    A running daemon learns once per slot (``PlanningService.observe_slot``): the load at the slot's
    start, PV at its midpoint. At start it restores a stored load bucket at the bucket's start and a
    PV bucket at its midpoint (``HomeRuntime._restore_history``). So each profile step (a slot) gets
    one load reading, in the bucket that starts the step, and one PV reading, in the bucket centred on
    the step's midpoint: the forecaster starts with exactly the observations it would have made live.
    Writing every bucket of a step instead gives it each past slot ``step / bucket`` times, weighs the
    seeded days that much above what it learns during the run, and multiplies its work per plan
    (the load forecast walks the whole history each time; bench/RESULTS.md, session 7).

    The step must be an odd multiple of ``bucket_s`` (a bucket centred on the midpoint). Returns the
    number of readings written.
    """
    step_s = profiles.step_s
    if step_s % bucket_s or (step_s // bucket_s) % 2 == 0:
        raise ValueError(f"the profile step ({step_s} s) must be an odd multiple of the store bucket "
                         f"({bucket_s} s): a bucket centred on the step's midpoint")
    samples: list[tuple[str, str, float, float]] = []
    load_w = profiles.household_w + profiles.ev_w + profiles.heat_pump_w
    for index in range(len(load_w)):
        step_start_s = profiles.start_s + index * step_s
        if step_start_s + step_s > until_s:  # only slots that ended before the daemon starts
            break
        samples.append((SITE, HOUSE_LOAD_W, float(load_w[index]), step_start_s + bucket_s / 2))
        samples.append((SITE, Quantity.PV_POWER_W.value, float(profiles.pv_available_w[index]),
                        step_start_s + step_s / 2))
    # The store prunes by its clock: give it the simulated present, not the machine's.
    with Store.in_directory(state_directory, bucket_s=bucket_s, clock=lambda: float(until_s)) as store:
        return store.add_readings(samples)
