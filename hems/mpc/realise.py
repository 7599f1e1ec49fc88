"""Turn device powers (from a solver or the rule-based fallback) into a physically consistent plan.

A solver returns a solution only up to its tolerance, and a convex model may in corner cases
prefer charging and discharging at once (see docs/mpc.md). Everything reported in a
:class:`~hems.mpc.plan.Plan` is therefore *derived* here from the device setpoints alone:

1. powers are clipped to the device limits;
2. an EV power between zero and the charger's minimum is moved to the nearer of the two
   (:func:`hems.mpc.ev_minimum.round_to_minimum`; the planner's re-solve normally leaves none);
3. any charge/discharge overlap is netted: the slot keeps the same stored-energy change, with
   only one of the two powers non-zero (so no plan ever charges and discharges at once);
4. the SoC is re-simulated from the measured SoC and the powers trimmed where a bound would be
   crossed, so the SoC trajectory satisfies its bounds exactly;
5. the thermal store is re-simulated with the heat pump's powers;
6. grid import and export follow from the energy balance of every slot, curtailing PV (where
   the inverter allows it) to respect the export limit;
7. slack, costs and penalties are measured on the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hems.mpc.ev_minimum import minimum_per_slot, round_to_minimum
from hems.mpc.inputs import PreparedInputs, heat_pump_cop
from hems.mpc.plan import CostBreakdown, PlanStep, SlackReport
from hems.mpc.shape import ModelShape
from hems.mpc.site import SiteConfig

# Overlaps below this are solver tolerance (OSQP eps 3e-4 on 5 kW is ~1.5 W), not a decision;
# they are netted all the same but not counted.
NETTING_THRESHOLD_W = 10.0


@dataclass
class DevicePowers:
    """Setpoints per slot in W; ``pv_used_w`` None means all available PV."""

    charge_w: np.ndarray
    discharge_w: np.ndarray
    pv_used_w: np.ndarray | None = None
    ev_w: np.ndarray | None = None
    heat_pump_w: np.ndarray | None = None


@dataclass(frozen=True)
class Realised:
    """A consistent plan body plus what had to be changed to get it."""

    steps: tuple[PlanStep, ...]
    cost: CostBreakdown
    slack: SlackReport
    netted_slots: int
    ev_rounded_slots: int = 0


def _net_overlap(charge: np.ndarray, discharge: np.ndarray, eta_c: float, eta_d: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Replace simultaneous charge and discharge by the single power with the same SoC change."""
    overlap = np.minimum(charge, discharge) > 0
    netted = int((np.minimum(charge, discharge) > NETTING_THRESHOLD_W).sum())
    stored = eta_c * charge - discharge / eta_d  # W into the cells
    new_charge = np.where(overlap, np.maximum(stored, 0.0) / eta_c, charge)
    new_discharge = np.where(overlap, np.maximum(-stored, 0.0) * eta_d, discharge)
    return new_charge, new_discharge, netted


def realise(site: SiteConfig, shape: ModelShape, prepared: PreparedInputs, powers: DevicePowers) -> Realised:
    """Derive the consistent plan for ``powers``; see the module docstring for the steps."""
    n, dt = shape.n_steps, shape.dt_h
    battery = site.battery
    eta_c, eta_d = battery.charge_efficiency, battery.discharge_efficiency
    charge = np.clip(np.nan_to_num(powers.charge_w), 0.0, battery.max_charge_w)
    discharge = np.clip(np.nan_to_num(powers.discharge_w), 0.0, battery.max_discharge_w)
    charge, discharge, netted = _net_overlap(charge, discharge, eta_c, eta_d)

    ev, ev_rounded = np.zeros(n), 0
    if site.ev is not None and powers.ev_w is not None:
        ev = np.clip(np.nan_to_num(powers.ev_w), 0.0, site.ev.max_charge_w * prepared.ev_available)
        ev, ev_rounded = round_to_minimum(ev, minimum_per_slot(site.ev.min_charge_w, prepared.ev_available))
    heat_pump, temperature = _thermal(site, shape, prepared, powers)

    pv = prepared.pv_w
    curtailable = site.pv.curtailable and powers.pv_used_w is not None
    pv_used = np.clip(np.nan_to_num(powers.pv_used_w), 0.0, pv) if curtailable else pv.copy()
    fixed = prepared.load_w + ev + heat_pump  # demand the battery and PV work against

    # SoC re-simulation with exact bounds, the charge taper and the grid limits.
    capacity = battery.capacity_wh
    e_min, e_max = battery.soc_min * capacity, battery.soc_max * capacity
    energy = np.empty(n)
    level = prepared.soc_initial * capacity
    for t in range(n):
        if battery.charge_taper_start_soc is not None:
            start = battery.charge_taper_start_soc
            slope = (battery.max_charge_w - battery.charge_w_at_full) / ((1 - start) * capacity)
            charge[t] = min(charge[t], max(0.0, battery.max_charge_w - slope * (level - start * capacity)))
        after = level + dt * (eta_c * charge[t] - discharge[t] / eta_d)
        if after > e_max:
            charge[t] = max(0.0, ((e_max - level) / dt + discharge[t] / eta_d) / eta_c)
        elif after < e_min:
            discharge[t] = max(0.0, ((level - e_min) / dt + eta_c * charge[t]) * eta_d)
        net = fixed[t] + charge[t] - discharge[t] - pv_used[t]
        if site.pv.curtailable and net < -prepared.export_limit_w[t]:
            # The inverter's active-power limit takes what the export limit cannot.
            cut = min(-prepared.export_limit_w[t] - net, pv_used[t])
            pv_used[t] -= cut
            net += cut
        if net < -prepared.export_limit_w[t] and discharge[t] > 0:
            # Discharging into an export limit is never intended (solver tolerance): trim it.
            trim = min(-prepared.export_limit_w[t] - net, discharge[t])
            discharge[t] -= trim
            net += trim
        if net > prepared.import_limit_w[t] and charge[t] > 0:
            trim = min(net - prepared.import_limit_w[t], charge[t])  # never charge through the fuse
            charge[t] -= trim
        level = min(max(level + dt * (eta_c * charge[t] - discharge[t] / eta_d), e_min), e_max)
        energy[t] = level
    net = fixed + charge - discharge - pv_used
    grid_import, grid_export = np.maximum(net, 0.0), np.maximum(-net, 0.0)

    slack = _slack(site, prepared, dt, grid_import, grid_export, energy, ev, temperature)
    cost = _cost(site, shape, prepared, grid_import, grid_export, charge, discharge, energy, slack)
    steps = tuple(
        PlanStep(
            start=prepared.slot_start(t), battery_charge_w=float(charge[t]), battery_discharge_w=float(discharge[t]),
            soc=float(energy[t] / capacity), grid_import_w=float(grid_import[t]), grid_export_w=float(grid_export[t]),
            pv_used_w=float(pv_used[t]), pv_curtailed_w=float(pv[t] - pv_used[t]), load_w=float(prepared.load_w[t]),
            ev_charge_w=float(ev[t]), heat_pump_w=float(heat_pump[t]),
            thermal_temp_c=None if temperature is None else float(temperature[t]),
            import_price=float(prepared.import_price[t]), export_price=float(prepared.export_price[t]),
        )
        for t in range(n)
    )
    return Realised(steps, cost, slack, netted, ev_rounded)


def _thermal(site: SiteConfig, shape: ModelShape, prepared: PreparedInputs,
             powers: DevicePowers) -> tuple[np.ndarray, np.ndarray | None]:
    """Clipped heat-pump powers and the re-simulated store temperature (None: no heat pump)."""
    n = shape.n_steps
    if site.heat_pump is None:
        return np.zeros(n), None
    heat = site.heat_pump
    heat_pump = np.zeros(n)
    if powers.heat_pump_w is not None:
        heat_pump = np.clip(np.nan_to_num(powers.heat_pump_w), 0.0, heat.max_electric_w)
    cop = heat_pump_cop(site, prepared.outdoor_temp_c)
    ambient = prepared.outdoor_temp_c if heat.kind == "space" else np.full(n, heat.tank_ambient_c)
    temperature = np.empty(n)
    temp = prepared.indoor_temp_c
    a, loss = shape.thermal_a, heat.heat_loss_w_per_k
    for t in range(n):
        temp = a * temp + (1 - a) * (ambient[t] + (cop[t] * heat_pump[t] - prepared.heat_demand_w[t]) / loss)
        temperature[t] = temp
    return heat_pump, temperature


def _slack(site: SiteConfig, prepared: PreparedInputs, dt: float, grid_import: np.ndarray, grid_export: np.ndarray,
           energy: np.ndarray, ev: np.ndarray, temperature: np.ndarray | None) -> SlackReport:
    battery = site.battery
    reserve = battery.backup_reserve_soc * battery.capacity_wh
    comfort = 0.0
    if temperature is not None:
        comfort = float(np.sum(np.maximum(prepared.comfort_min_c - temperature, 0.0)
                               + np.maximum(temperature - prepared.comfort_max_c, 0.0)) * dt)
    ev_short = 0.0
    if site.ev is not None:
        ev_short = max(0.0, prepared.ev_energy_needed_wh - float(np.sum(ev)) * dt * site.ev.charge_efficiency)
    return SlackReport(
        import_over_limit_wh=float(np.sum(np.maximum(grid_import - prepared.import_limit_w, 0.0)) * dt),
        export_over_limit_wh=float(np.sum(np.maximum(grid_export - prepared.export_limit_w, 0.0)) * dt),
        net_demand_over_cap_wh=float(np.sum(np.maximum(grid_import - grid_export - prepared.net_demand_cap_w, 0.0)) * dt),
        net_demand_under_floor_wh=float(np.sum(np.maximum(prepared.net_demand_floor_w - grid_import + grid_export,
                                                          0.0)) * dt),
        reserve_shortfall_wh=float(np.max(np.maximum(reserve - energy, 0.0))),
        final_soc_shortfall_wh=max(0.0, battery.soc_final_min * battery.capacity_wh - float(energy[-1])),
        ev_shortfall_wh=ev_short,
        comfort_violation_kh=comfort,
    )


def _cost(site: SiteConfig, shape: ModelShape, prepared: PreparedInputs, grid_import: np.ndarray,
          grid_export: np.ndarray, charge: np.ndarray, discharge: np.ndarray, energy: np.ndarray,
          slack: SlackReport) -> CostBreakdown:
    dt = shape.dt_h
    # The retailer settles the residual after committed trades.
    residual_wh = (grid_import - grid_export) * dt - prepared.trade_wh
    energy_cost = float(np.sum(prepared.import_price * np.maximum(residual_wh, 0.0)
                               - prepared.export_price * np.maximum(-residual_wh, 0.0))) / 1000.0
    trades = float(np.sum(prepared.trade_wh * prepared.trade_price)) / 1000.0
    throughput_kwh = float(np.sum(charge + discharge)) * dt / 1000.0
    demand = 0.0
    if site.grid.demand_charge_per_kw > 0:
        peak_kw = max(prepared.peak_import_so_far_w, float(np.max(grid_import))) / 1000.0
        demand = site.grid.demand_charge_per_kw * peak_kw
    weight = max(site.mpc.slack_penalty_per_kwh,
                 2.0 * float(np.max(np.abs(np.concatenate([prepared.import_price, prepared.export_price])))))
    slack_kwh = (slack.import_over_limit_wh + slack.export_over_limit_wh + slack.net_demand_over_cap_wh
                 + slack.net_demand_under_floor_wh + slack.final_soc_shortfall_wh) / 1000.0
    slack_penalty = weight * slack_kwh
    if site.ev is not None:
        slack_penalty += site.ev.shortfall_penalty_per_kwh * slack.ev_shortfall_wh / 1000.0
    discomfort = site.heat_pump.discomfort_penalty_per_kh * slack.comfort_violation_kh if site.heat_pump else 0.0
    # Degradation as configured; the anti-burn surcharge is a modelling device, not a cost.
    return CostBreakdown(
        energy=energy_cost, trades=trades,
        degradation=site.battery.degradation_cost_per_kwh * throughput_kwh,
        demand_charge=demand,
        terminal_value=-site.battery.terminal_value_per_kwh * float(energy[-1]) / 1000.0,
        discomfort_penalty=discomfort, slack_penalty=slack_penalty,
    )
