"""What the daemon tells people: the systemd STATUS= line and the stored plan record."""

from __future__ import annotations

from typing import Any

from hems.control.controller import ControlDecision
from hems.control.policy import ControlMode
from hems.runtime.planning import PlanInForce
from hems.runtime.snapshot import Quantity, SiteSnapshot


def status_line(snapshot: SiteSnapshot, plan: PlanInForce | None, decision: ControlDecision | None,
                market: str | None = None) -> str:
    """One line a person can read, e.g. ``plan ok, soc 54%, grid -1.2 kW, pv 3.4 kW, mode plan``;
    with a market agent also ``market trading`` or ``market retail_only``."""
    parts = ["no plan" if plan is None else f"plan {'ok' if plan.plan.status == 'optimal' else plan.plan.status}"]
    soc = snapshot.value(Quantity.BATTERY_SOC)
    if soc is not None:
        parts.append(f"soc {soc * 100:.0f}%")
    for quantity, label in ((Quantity.GRID_IMPORT_W, "grid"), (Quantity.PV_POWER_W, "pv")):
        value = snapshot.value(quantity)
        if value is not None:
            parts.append(f"{label} {value / 1000:.1f} kW")
    if decision is not None:
        parts.append(f"mode {decision.mode.value}")
        if decision.mode is not ControlMode.PLAN:
            parts.append(decision.reason)
    if market is not None:
        parts.append(f"market {market}")
    return ", ".join(parts)


def plan_record(in_force: PlanInForce) -> dict[str, Any]:
    """A compact, JSON-ready record of a plan for the store: per-slot columns, not objects
    (a day of 15-minute plans stays in the hundreds of kilobytes)."""
    plan = in_force.plan
    steps = plan.steps

    def column(values: Any, digits: int = 1) -> list[float]:
        return [round(float(value), digits) for value in values]

    return {
        "start_s": in_force.start_s, "step_s": plan.step_s, "made_at_s": in_force.made_at_s,
        "status": plan.status, "solver": plan.solver, "solve_ms": round(plan.solve_ms, 2),
        "initial_soc": round(in_force.initial_soc, 4), "flags": list(plan.flags),
        "cost_total": round(plan.cost.total, 4), "energy_cost": round(plan.cost.energy, 4),
        "battery_w": column(s.battery_charge_w - s.battery_discharge_w for s in steps),
        "grid_w": column(s.grid_import_w - s.grid_export_w for s in steps),
        "soc": column((s.soc for s in steps), 4),
        "pv_w": column(s.pv_used_w for s in steps),
        "load_w": column(s.load_w for s in steps),
        "import_price": column((s.import_price for s in steps), 4),
        "export_price": column((s.export_price for s in steps), 4),
    }
