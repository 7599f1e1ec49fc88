"""The result of one planning run: per-slot setpoints, flows, SoC, costs, slack and status."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PlanStep:
    """Setpoints and expected flows of one slot (average powers over the slot)."""

    start: datetime
    battery_charge_w: float
    battery_discharge_w: float
    soc: float  # fraction of capacity at the end of the slot
    grid_import_w: float
    grid_export_w: float
    pv_used_w: float
    pv_curtailed_w: float
    load_w: float
    ev_charge_w: float = 0.0
    heat_pump_w: float = 0.0
    thermal_temp_c: float | None = None  # house or tank temperature at the end of the slot
    import_price: float = 0.0
    export_price: float = 0.0


@dataclass(frozen=True)
class CostBreakdown:
    """Currency over the horizon. ``energy`` is the retail bill plus committed trades; the
    penalties are model terms, not money, and are reported separately."""

    energy: float
    trades: float
    degradation: float
    demand_charge: float
    terminal_value: float  # negative: value credited for energy left in the battery
    discomfort_penalty: float
    slack_penalty: float

    @property
    def total(self) -> float:
        """Sum of all terms (the objective without the regularisation)."""
        return (self.energy + self.trades + self.degradation + self.demand_charge + self.terminal_value
                + self.discomfort_penalty + self.slack_penalty)


@dataclass(frozen=True)
class SlackReport:
    """Goals and limits the plan cannot meet, measured on the realised plan."""

    import_over_limit_wh: float = 0.0
    export_over_limit_wh: float = 0.0
    net_demand_over_cap_wh: float = 0.0
    net_demand_under_floor_wh: float = 0.0
    reserve_shortfall_wh: float = 0.0  # summed over slots (Wh below the backup reserve)
    final_soc_shortfall_wh: float = 0.0
    ev_shortfall_wh: float = 0.0
    comfort_violation_kh: float = 0.0  # K*h outside the comfort band

    @property
    def any(self) -> bool:
        """True when some goal or limit is not met (beyond 1 Wh / 0.01 K*h of rounding)."""
        return any(value > 1.0 for value in (
            self.import_over_limit_wh, self.export_over_limit_wh, self.net_demand_over_cap_wh,
            self.net_demand_under_floor_wh, self.reserve_shortfall_wh, self.final_soc_shortfall_wh,
            self.ev_shortfall_wh,
        )) or self.comfort_violation_kh > 0.01


@dataclass(frozen=True)
class Plan:
    """One plan over the horizon."""

    status: str  # "optimal" (a solver's optimum) or "fallback" (rule-based)
    solver: str  # "osqp", "clarabel" or "rule_based"
    steps: tuple[PlanStep, ...]
    cost: CostBreakdown
    slack: SlackReport
    solve_ms: float
    build_ms: float
    step_s: int
    objective: float = float("nan")  # the solver's objective value (NaN for the fallback)
    flags: tuple[str, ...] = ()  # input repairs, netting of charge/discharge overlaps, solver failures
    solver_attempts: tuple[str, ...] = field(default=())  # e.g. ("osqp:time_limit", "clarabel:Solved")

    @property
    def import_wh(self) -> float:
        """Energy imported over the horizon."""
        return sum(step.grid_import_w for step in self.steps) * self.step_s / 3600.0

    @property
    def export_wh(self) -> float:
        """Energy exported over the horizon."""
        return sum(step.grid_export_w for step in self.steps) * self.step_s / 3600.0

    @property
    def energy_cost(self) -> float:
        """Sum of import_wh * import_price - export_wh * export_price over the slots, / 1000."""
        hours = self.step_s / 3600.0
        return sum((s.grid_import_w * s.import_price - s.grid_export_w * s.export_price) * hours
                   for s in self.steps) / 1000.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (datetimes as ISO 8601 strings)."""
        data = asdict(self)
        for step in data["steps"]:
            step["start"] = step["start"].isoformat()
        data["cost"]["total"] = self.cost.total
        data["import_wh"], data["export_wh"] = self.import_wh, self.export_wh
        return data
