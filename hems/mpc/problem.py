"""The home's MPC as one parametrised cvxpy problem (DPP), built once per site configuration.

Internally the model works in kW, kWh and currency so that the numbers the solver sees are
of order 1 (OSQP converges much better on well-scaled data). Every value that changes between
solves is a :class:`cvxpy.Parameter`; :meth:`MpcModel.parameter_values` computes their values
from :class:`~hems.mpc.inputs.PreparedInputs`. docs/mpc.md describes the model.

Which parameters enter where matters for speed: prices, forecasts, limits and the initial state
only change OSQP's ``q``, ``l`` and ``u`` (no refactorisation); only the heat pump's COP and the
regularisation weight change matrix entries.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from hems.mpc.inputs import PreparedInputs, heat_pump_cop
from hems.mpc.shape import W_PER_KW, ModelShape, anti_burn_surcharge
from hems.mpc.site import SiteConfig


class MpcModel:
    """The cvxpy problem of one site; build once, then set parameter values and re-solve."""

    def __init__(self, site: SiteConfig, n_steps: int, step_s: int) -> None:
        self.site = site
        self.shape = ModelShape.from_site(site, n_steps, step_s)
        self.parameters: dict[str, cp.Parameter] = {}
        self.variables: dict[str, cp.Variable] = {}
        self.problem = self._build()

    # -- construction -----------------------------------------------------------------------
    def _param(self, name: str, size: int | None, nonneg: bool = False) -> cp.Parameter:
        shape = () if size is None else (size,)
        parameter = cp.Parameter(shape, name=name, nonneg=nonneg)
        self.parameters[name] = parameter
        return parameter

    def _var(self, name: str, size: int | None) -> cp.Variable:
        # Plain variables (no nonneg attribute): cvxpy then keeps their ids through the
        # reduction chain, which the fast solver relies on to read the solution.
        variable = cp.Variable(() if size is None else (size,), name=name)
        self.variables[name] = variable
        return variable

    def _build(self) -> cp.Problem:
        shape, site, n = self.shape, self.site, self.shape.n_steps
        dt, battery = shape.dt_h, site.battery
        weight = self._param("slack_weight", None, nonneg=True)

        load = self._param("load_kw", n)
        pv = self._param("pv_kw", n, nonneg=True)
        import_price = self._param("import_price", n)
        export_price = self._param("export_price", n)
        throughput_price = self._param("throughput_price", n, nonneg=True)
        soc0 = self._param("soc0_kwh", None)
        reserve = self._param("reserve_kwh", None)
        final_min = self._param("final_min_kwh", None)
        terminal_value = self._param("terminal_value", None)
        regularisation = self._param("regularisation", None, nonneg=True)
        import_limit = self._param("import_limit_kw", n)
        export_limit = self._param("export_limit_kw", n)
        net_cap = self._param("net_cap_kw", n)
        net_floor = self._param("net_floor_kw", n)

        charge, discharge, energy = self._var("charge_kw", n), self._var("discharge_kw", n), self._var("energy_kwh", n)
        grid_import, grid_export = self._var("import_kw", n), self._var("export_kw", n)
        slack_import, slack_export = self._var("slack_import_kw", n), self._var("slack_export_kw", n)
        slack_cap, slack_reserve = self._var("slack_cap_kw", n), self._var("slack_reserve_kwh", n)
        slack_final = self._var("slack_final_kwh", None)

        energy_prev = cp.hstack([cp.reshape(soc0, (1,), order="F"), energy[:-1]])
        constraints = [
            charge >= 0, charge <= battery.max_charge_w / W_PER_KW,
            discharge >= 0, discharge <= battery.max_discharge_w / W_PER_KW,
            energy == energy_prev + dt * (shape.eta_charge * charge - discharge / shape.eta_discharge),
            energy >= shape.e_min_kwh, energy <= shape.e_max_kwh,
            energy + slack_reserve >= reserve, slack_reserve >= 0,
            energy[n - 1] + slack_final >= final_min, slack_final >= 0,
            grid_import >= 0, grid_export >= 0,
            grid_import <= import_limit + slack_import, slack_import >= 0,
            grid_export <= export_limit + slack_export, slack_export >= 0,
            # One slack for the cap and the floor: the floor never exceeds the cap (inputs.prepare),
            # so no slot misses both, and a miss of either is priced the same.
            grid_import - grid_export <= net_cap + slack_cap, slack_cap >= 0,
            grid_import - grid_export >= net_floor - slack_cap,
        ]
        if battery.charge_taper_start_soc is not None:
            start = battery.charge_taper_start_soc
            max_kw, full_kw = battery.max_charge_w / W_PER_KW, battery.charge_w_at_full / W_PER_KW
            slope = (max_kw - full_kw) / ((1.0 - start) * shape.capacity_kwh)
            constraints.append(charge <= max_kw - slope * (energy_prev - start * shape.capacity_kwh))

        if shape.pv_curtailable:
            pv_used = self._var("pv_used_kw", n)
            constraints += [pv_used >= 0, pv_used <= pv]
        else:
            pv_used = pv

        demand = load + charge - discharge - pv_used
        regularised = cp.sum_squares(charge) + cp.sum_squares(discharge)
        penalties = weight * dt * cp.sum(slack_import + slack_export + slack_cap + slack_reserve) + weight * slack_final

        if shape.has_ev:
            ev_min, ev_max = self._param("ev_min_kw", n, nonneg=True), self._param("ev_max_kw", n, nonneg=True)
            ev_needed = self._param("ev_needed_kwh", None)
            ev_room = self._param("ev_room_kwh", None)
            ev_power, slack_ev = self._var("ev_kw", n), self._var("slack_ev_kwh", None)
            delivered = dt * site.ev.charge_efficiency * cp.sum(ev_power)
            constraints += [ev_power >= ev_min, ev_power <= ev_max, delivered + slack_ev >= ev_needed,
                            delivered <= ev_room, slack_ev >= 0]
            demand = demand + ev_power
            regularised = regularised + cp.sum_squares(ev_power)
            penalties = penalties + site.ev.shortfall_penalty_per_kwh * slack_ev

        if shape.has_heat_pump:
            heat = site.heat_pump
            cop = self._param("cop", n, nonneg=True)
            ambient = self._param("ambient_c", n)
            heat_demand = self._param("heat_demand_kw", n)
            temp0 = self._param("temp0_c", None)
            comfort_min, comfort_max = self._param("comfort_min_c", n), self._param("comfort_max_c", n)
            hp_power, temp = self._var("heat_pump_kw", n), self._var("temp_c", n)
            too_cold, too_warm = self._var("slack_cold_k", n), self._var("slack_warm_k", n)
            a, loss = shape.thermal_a, shape.heat_loss_kw_per_k
            temp_prev = cp.hstack([cp.reshape(temp0, (1,), order="F"), temp[:-1]])
            constraints += [
                hp_power >= 0, hp_power <= heat.max_electric_w / W_PER_KW,
                temp == a * temp_prev + (1 - a) * ambient + ((1 - a) / loss) * (cp.multiply(cop, hp_power) - heat_demand),
                temp + too_cold >= comfort_min, temp - too_warm <= comfort_max,
                too_cold >= 0, too_warm >= 0,
            ]
            demand = demand + hp_power
            regularised = regularised + cp.sum_squares(hp_power)
            penalties = penalties + heat.discomfort_penalty_per_kh * dt * cp.sum(too_cold + too_warm)

        constraints.append(grid_import - grid_export == demand)

        if shape.market:
            # Committed trades settle at their agreed price (a constant); the retailer sees the
            # residual, split into a bought and a sold part.
            trade = self._param("trade_kw", n)
            retail_import, retail_export = self._var("retail_import_kw", n), self._var("retail_export_kw", n)
            constraints += [retail_import >= 0, retail_export >= 0,
                            retail_import - retail_export == grid_import - grid_export - trade]
            # Exchange ADMM's proximity term: the parameter multiplies the expression inside
            # sum_squares, which cvxpy canonicalises through an auxiliary variable, so the problem
            # data stay affine in the parameters (DPP) and only a changed rho touches the matrix.
            negotiation_scale = self._param("negotiation_scale", n, nonneg=True)
            negotiation_target = self._param("negotiation_target", n)
            negotiation = cp.sum_squares(cp.multiply(negotiation_scale, grid_import - grid_export) - negotiation_target)
        else:
            retail_import, retail_export = grid_import, grid_export
            negotiation = 0.0

        objective = (
            dt * (import_price @ retail_import - export_price @ retail_export)
            + dt * (throughput_price @ (charge + discharge))
            + penalties
            - terminal_value * energy[n - 1]
            + regularisation * dt * regularised
            + negotiation
        )
        if shape.demand_charge:
            demand_price = self._param("demand_price_per_kw", None, nonneg=True)
            peak_before = self._param("peak_before_kw", None, nonneg=True)
            peak = self._var("peak_kw", None)
            constraints += [peak >= grid_import, peak >= peak_before]
            objective = objective + demand_price * peak

        return cp.Problem(cp.Minimize(objective), constraints)

    # -- values -----------------------------------------------------------------------------
    def parameter_values(self, prepared: PreparedInputs, regularisation: float | None = None) -> dict[str, np.ndarray]:
        """Values of every Parameter for ``prepared`` (converted to kW / kWh)."""
        shape, site = self.shape, self.site
        battery = site.battery
        kw = 1.0 / W_PER_KW
        import_price, export_price = prepared.import_price, prepared.export_price
        throughput = (battery.degradation_cost_per_kwh + site.mpc.throughput_tie_break_per_kwh
                      + anti_burn_surcharge(import_price, export_price, shape.round_trip))
        reg = site.mpc.regularisation if regularisation is None else regularisation
        values: dict[str, np.ndarray] = {
            "load_kw": prepared.load_w * kw,
            "pv_kw": prepared.pv_w * kw,
            "import_price": import_price,
            "export_price": export_price,
            "throughput_price": throughput,
            "soc0_kwh": np.asarray(prepared.soc_initial * shape.capacity_kwh),
            "reserve_kwh": np.asarray(battery.backup_reserve_soc * shape.capacity_kwh),
            "final_min_kwh": np.asarray(battery.soc_final_min * shape.capacity_kwh),
            "terminal_value": np.asarray(battery.terminal_value_per_kwh),
            "regularisation": np.asarray(reg),
            "slack_weight": np.asarray(max(site.mpc.slack_penalty_per_kwh,
                                           2.0 * float(np.max(np.abs(np.concatenate([import_price, export_price])))))),
            "import_limit_kw": prepared.import_limit_w * kw,
            "export_limit_kw": prepared.export_limit_w * kw,
            "net_cap_kw": prepared.net_demand_cap_w * kw,
            "net_floor_kw": prepared.net_demand_floor_w * kw,
        }
        if shape.has_ev:
            # The relaxation; the minimum power enters through hems.mpc.ev_minimum's pattern.
            values["ev_min_kw"] = np.zeros(shape.n_steps)
            values["ev_max_kw"] = prepared.ev_available * site.ev.max_charge_w * kw
            values["ev_needed_kwh"] = np.asarray(prepared.ev_energy_needed_wh * kw)
            values["ev_room_kwh"] = np.asarray(prepared.ev_max_energy_wh * kw)
        if shape.has_heat_pump:
            heat = site.heat_pump
            values["cop"] = heat_pump_cop(site, prepared.outdoor_temp_c)
            ambient = prepared.outdoor_temp_c if heat.kind == "space" else np.full(shape.n_steps, heat.tank_ambient_c)
            values["ambient_c"] = ambient
            values["heat_demand_kw"] = prepared.heat_demand_w * kw
            values["temp0_c"] = np.asarray(prepared.indoor_temp_c)
            values["comfort_min_c"] = prepared.comfort_min_c
            values["comfort_max_c"] = prepared.comfort_max_c
        if shape.market:
            values["trade_kw"] = prepared.trade_wh / shape.dt_h * kw
            zeros = np.zeros(shape.n_steps)
            scale, target = prepared.negotiation_scale, prepared.negotiation_target
            values["negotiation_scale"] = zeros if scale is None else scale
            values["negotiation_target"] = zeros if target is None else target
        if shape.demand_charge:
            values["demand_price_per_kw"] = np.asarray(site.grid.demand_charge_per_kw)
            values["peak_before_kw"] = np.asarray(prepared.peak_import_so_far_w * kw)
        return values

    def assign(self, values: dict[str, np.ndarray]) -> None:
        """Write ``values`` into the cvxpy Parameters (for cvxpy's own solve path and tests)."""
        for name, parameter in self.parameters.items():
            parameter.value = np.reshape(values[name], parameter.shape)
