"""Static quantities of one site's MPC problem, shared by the model, the plan realisation and
the fallback. No cvxpy here: the rule-based fallback must work without it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hems.mpc.site import SiteConfig

W_PER_KW = 1000.0


@dataclass(frozen=True)
class ModelShape:
    """Static quantities derived from the site, shared by the model and the plan realisation."""

    n_steps: int
    step_s: int
    dt_h: float
    capacity_kwh: float
    e_min_kwh: float
    e_max_kwh: float
    eta_charge: float
    eta_discharge: float
    has_ev: bool
    has_heat_pump: bool
    pv_curtailable: bool
    market: bool
    demand_charge: bool
    # Thermal store: T[t+1] = a*T[t] + (1-a)*(T_amb[t] + (cop[t]*P[t] - Q_demand[t]) / H)
    thermal_a: float = 1.0
    heat_loss_kw_per_k: float = 1.0

    @classmethod
    def from_site(cls, site: SiteConfig, n_steps: int, step_s: int) -> ModelShape:
        """Derive the shape of the problem for ``site`` and a horizon."""
        battery = site.battery
        capacity = battery.capacity_wh / W_PER_KW
        heat = site.heat_pump
        thermal_a, loss = 1.0, 1.0
        if heat is not None:
            loss = heat.heat_loss_w_per_k / W_PER_KW
            # Exact discretisation of C dT/dt = -H (T - T_amb) + Q over one step.
            thermal_a = math.exp(-(step_s / 3600.0) * heat.heat_loss_w_per_k / heat.thermal_capacity_wh_per_k)
        return cls(
            n_steps=n_steps, step_s=step_s, dt_h=step_s / 3600.0, capacity_kwh=capacity,
            e_min_kwh=battery.soc_min * capacity, e_max_kwh=battery.soc_max * capacity,
            eta_charge=battery.charge_efficiency, eta_discharge=battery.discharge_efficiency,
            has_ev=site.ev is not None, has_heat_pump=heat is not None,
            pv_curtailable=site.pv.curtailable, market=site.mpc.market_enabled,
            demand_charge=site.grid.demand_charge_per_kw > 0,
            thermal_a=thermal_a, heat_loss_kw_per_k=loss,
        )

    @property
    def round_trip(self) -> float:
        """Round-trip efficiency of the battery."""
        return self.eta_charge * self.eta_discharge


def anti_burn_surcharge(import_price: np.ndarray, export_price: np.ndarray, round_trip: float) -> np.ndarray:
    """Per-slot throughput surcharge (currency/kWh) that makes burning energy in conversion
    losses by charging and discharging at once never pay, even at negative prices.

    Netting an overlap of delta kWh of charge saves (1 + rt) * delta of throughput and frees
    (1 - rt) * delta of bus energy, worth at most max(0, -import, -export) per kWh. A surcharge
    above that ratio (5 % margin) makes the overlap strictly worse than the netted schedule.
    """
    worst = np.maximum(0.0, np.maximum(-import_price, -export_price))
    return worst * (1.0 - round_trip) / (1.0 + round_trip) * 1.05
