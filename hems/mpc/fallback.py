"""Rule-based self-consumption plan: what the home does when no solver delivers in time.

It needs no solver and no cvxpy: the battery absorbs PV surplus and covers deficits down to
the backup reserve, the EV charges at full power from arrival until its energy is delivered,
and the heat pump keeps the thermal store just above the lower comfort bound. The powers then
go through the same :func:`~hems.mpc.realise.realise` as a solver's, so the plan is
physically consistent (limits, SoC bounds, energy balance, export-limit curtailment).
"""

from __future__ import annotations

import numpy as np

from hems.mpc.inputs import PreparedInputs, heat_pump_cop
from hems.mpc.realise import DevicePowers
from hems.mpc.shape import ModelShape
from hems.mpc.site import SiteConfig


def _heat_pump_thermostat(site: SiteConfig, shape: ModelShape, prepared: PreparedInputs) -> np.ndarray:
    heat = site.heat_pump
    n = shape.n_steps
    power = np.zeros(n)
    cop = heat_pump_cop(site, prepared.outdoor_temp_c)
    ambient = prepared.outdoor_temp_c if heat.kind == "space" else np.full(n, heat.tank_ambient_c)
    a, loss = shape.thermal_a, heat.heat_loss_w_per_k
    temp = prepared.indoor_temp_c
    for t in range(n):
        # Aim a quarter into the band: above the bound without pre-heating.
        target = prepared.comfort_min_c[t] + 0.25 * (prepared.comfort_max_c[t] - prepared.comfort_min_c[t])
        needed_heat = ((target - a * temp) / (1 - a) - ambient[t]) * loss + prepared.heat_demand_w[t]
        power[t] = min(max(needed_heat / cop[t], 0.0), heat.max_electric_w)
        temp = a * temp + (1 - a) * (ambient[t] + (cop[t] * power[t] - prepared.heat_demand_w[t]) / loss)
    return power


def _ev_immediate(site: SiteConfig, shape: ModelShape, prepared: PreparedInputs) -> np.ndarray:
    ev = site.ev
    power = np.zeros(shape.n_steps)
    remaining = prepared.ev_energy_needed_wh
    for t in range(shape.n_steps):
        if remaining <= 0:
            break
        power[t] = min(ev.max_charge_w * prepared.ev_available[t], remaining / (shape.dt_h * ev.charge_efficiency))
        remaining -= power[t] * shape.dt_h * ev.charge_efficiency
    return power


def self_consumption(site: SiteConfig, shape: ModelShape, prepared: PreparedInputs) -> DevicePowers:
    """Device powers of the rule-based self-consumption strategy."""
    n, dt = shape.n_steps, shape.dt_h
    battery = site.battery
    eta_c, eta_d = battery.charge_efficiency, battery.discharge_efficiency
    ev = _ev_immediate(site, shape, prepared) if site.ev is not None else np.zeros(n)
    heat_pump = _heat_pump_thermostat(site, shape, prepared) if site.heat_pump is not None else np.zeros(n)
    capacity = battery.capacity_wh
    floor = max(battery.soc_min, battery.backup_reserve_soc) * capacity
    ceiling = battery.soc_max * capacity
    level = prepared.soc_initial * capacity
    charge, discharge = np.zeros(n), np.zeros(n)
    for t in range(n):
        balance = prepared.load_w[t] + ev[t] + heat_pump[t] - prepared.pv_w[t]
        if balance < 0:
            charge[t] = min(-balance, battery.max_charge_w, max(ceiling - level, 0.0) / (dt * eta_c))
        else:
            discharge[t] = min(balance, battery.max_discharge_w, max(level - floor, 0.0) / dt * eta_d)
        level += dt * (eta_c * charge[t] - discharge[t] / eta_d)
    return DevicePowers(charge_w=charge, discharge_w=discharge, pv_used_w=None, ev_w=ev, heat_pump_w=heat_pump)
