"""Plant physics: energy balance, SoC limits, efficiencies, setpoint expiry, curtailment."""

from __future__ import annotations

import pytest

from drivers.devices.battery_control import PowerWindow
from drivers.emulators import Battery, ElectricVehicle, HeatPump, ManualClock, PvArray, SitePlant
from drivers.maps import Role
from tests.emulators.helpers import NOON_S


def _balance_error_wh(plant: SitePlant) -> float:
    e = plant.energy
    return (e.grid_import_wh - e.grid_export_wh) - (
        e.load_wh + e.battery_charge_wh - e.battery_discharge_wh + e.ev_wh + e.heat_pump_wh - e.pv_wh)


def test_energy_balance_holds_at_every_step_over_a_day() -> None:
    clock = ManualClock(NOON_S - 12 * 3600)
    plant = SitePlant(clock=clock, ev=ElectricVehicle(connected=True, demand_w=3000),
                      heat_pump=HeatPump(demand_w=800))
    for _ in range(24 * 12):
        plant.advance(clock.advance(300))
        flows = plant.flows
        assert flows.grid_w == pytest.approx(
            flows.load_w + flows.battery_charge_w + flows.ev_w + flows.heat_pump_w - flows.pv_w)
        assert abs(_balance_error_wh(plant)) < 1e-6
        assert plant.battery.soc_min_pct - 1e-9 <= plant.battery.soc_pct <= plant.battery.soc_max_pct + 1e-9
    assert plant.energy.pv_wh > 10_000  # a summer day of a 6 kWp array
    assert plant.energy.grid_import_wh > 0 and plant.energy.grid_export_wh > 0


def test_soc_stays_within_limits_under_forced_charge_and_discharge() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock, battery=Battery(capacity_wh=2000, soc_pct=90, soc_min_pct=10, soc_max_pct=95))
    plant.set_battery_window(PowerWindow(5000, 5000), timeout_s=10_000)
    plant.advance(clock.advance(3600))
    assert plant.battery.soc_pct == pytest.approx(95.0)
    assert plant.flows.battery_charge_w == 0.0  # full: the command cannot be followed
    plant.set_battery_window(PowerWindow(-5000, -5000), timeout_s=10_000)
    plant.advance(clock.advance(3600))
    assert plant.battery.soc_pct == pytest.approx(10.0)
    assert plant.flows.battery_charge_w == 0.0


def test_round_trip_efficiency_loses_energy() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock, battery=Battery(capacity_wh=10_000, soc_pct=50,
                                                   charge_efficiency=0.9, discharge_efficiency=0.8))
    plant.set_battery_window(PowerWindow(1000, 1000), timeout_s=7200)
    plant.advance(clock.advance(3600))  # 1000 Wh in, 900 Wh stored
    assert plant.battery.soc_pct == pytest.approx(59.0)
    plant.set_battery_window(PowerWindow(-800, -800), timeout_s=7200)
    plant.advance(clock.advance(3600))  # 800 Wh out, 1000 Wh taken from the cells
    assert plant.battery.soc_pct == pytest.approx(49.0)
    assert plant.energy.battery_charge_wh == pytest.approx(1000.0)
    assert plant.energy.battery_discharge_wh == pytest.approx(800.0)


def test_setpoint_expires_back_to_self_consumption() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock, load_profile=lambda t: 500.0, pv=PvArray(profile=lambda t: 3000.0))
    plant.set_battery_window(PowerWindow(-2000, -2000), timeout_s=60)
    assert plant.flows.battery_charge_w == -2000
    assert plant.remote_active()
    plant.advance(clock.advance(59))
    assert plant.flows.battery_charge_w == -2000
    plant.advance(clock.advance(2))
    assert not plant.remote_active()
    assert plant.flows.battery_charge_w == pytest.approx(2500.0)  # surplus goes into the battery again
    assert plant.flows.grid_w == pytest.approx(0.0)
    # The energy integrated in the expiring step is split exactly at the expiry.
    assert plant.energy.battery_discharge_wh == pytest.approx(2000 * 60 / 3600)
    assert plant.energy.battery_charge_wh == pytest.approx(2500 * 1 / 3600)


def test_refresh_keeps_the_setpoint_alive() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock)
    for _ in range(5):
        plant.set_battery_window(PowerWindow(-1000, -1000), timeout_s=60)
        plant.advance(clock.advance(50))
        assert plant.flows.battery_charge_w == -1000


def test_window_clamps_self_consumption() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock, load_profile=lambda t: 500.0, pv=PvArray(profile=lambda t: 4000.0))
    plant.set_battery_window(PowerWindow(-5000, 1000))  # "charge at most 1 kW"
    assert plant.flows.battery_charge_w == 1000
    assert plant.flows.grid_w == pytest.approx(-2500.0)


def test_pv_limit_curtails() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock, pv=PvArray(peak_w=6000, profile=lambda t: 5000.0))
    assert plant.flows.pv_w == 5000
    plant.apply_role(Role.PV_POWER_LIMIT_PCT, 50)
    assert plant.flows.pv_w == 3000
    plant.apply_role(Role.PV_POWER_LIMIT_W, 2000)
    assert plant.flows.pv_w == 2000
    plant.apply_role(Role.PV_POWER_LIMIT_ENABLED, 0)
    assert plant.flows.pv_w == 5000
    assert plant.flows.pv_available_w == 5000


def test_night_has_no_pv_and_battery_covers_load() -> None:
    clock = ManualClock(NOON_S + 12 * 3600)  # midnight UTC
    plant = SitePlant(clock=clock)
    assert plant.flows.pv_w == 0
    assert plant.flows.battery_charge_w == pytest.approx(-plant.flows.load_w)
    assert plant.flows.grid_w == pytest.approx(0.0)


def test_result_hardly_depends_on_advance_cadence() -> None:
    coarse_clock, fine_clock = ManualClock(NOON_S), ManualClock(NOON_S)
    coarse, fine = SitePlant(clock=coarse_clock), SitePlant(clock=fine_clock)
    coarse.advance(coarse_clock.advance(3600))  # split internally into 60 s steps
    for _ in range(360):
        fine.advance(fine_clock.advance(10))
    assert coarse.battery.soc_pct == pytest.approx(fine.battery.soc_pct, abs=0.5)
    assert coarse.energy.pv_wh == pytest.approx(fine.energy.pv_wh, rel=0.01)


def test_time_never_runs_backwards() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock)
    plant.advance(NOON_S - 3600)
    assert plant.time_s == NOON_S and plant.energy.pv_wh == 0


def test_ev_current_limit_and_heat_pump_limit() -> None:
    clock = ManualClock(NOON_S)
    plant = SitePlant(clock=clock, ev=ElectricVehicle(connected=True, demand_w=11_000),
                      heat_pump=HeatPump(demand_w=2000))
    assert plant.flows.ev_w == 11_000
    plant.apply_role(Role.EV_CURRENT_LIMIT_A, 6)
    assert plant.flows.ev_w == pytest.approx(6 * 3 * 230)
    plant.apply_role(Role.EV_CHARGING_ENABLED, 0)
    assert plant.flows.ev_w == 0
    plant.apply_role(Role.HEAT_PUMP_POWER_LIMIT_W, 500)
    assert plant.flows.heat_pump_w == 500
    assert plant.role_values()[Role.HEAT_PUMP_POWER_W] == 500
