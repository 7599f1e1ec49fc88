"""The planner facade: one instance per home, built once, re-solved every market interval.

Fallback chain inside a time budget: raw OSQP (warm-started, driven from cvxpy's compiled DPP
maps), then Clarabel on the same QP data, then the rule-based self-consumption plan. Every
outcome is counted in :class:`OutcomeCounters`, which belongs to the planner instance (several
homes' planners live in one process, so nothing here is global).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from hems.mpc import ev_minimum
from hems.mpc.fallback import self_consumption
from hems.mpc.fast_solver import CompiledQp, OsqpSession, SolveResult, solve_clarabel
from hems.mpc.inputs import PlanInputs, PreparedInputs, prepare
from hems.mpc.plan import Plan
from hems.mpc.problem import MpcModel
from hems.mpc.realise import DevicePowers, realise
from hems.mpc.shape import W_PER_KW
from hems.mpc.site import SiteConfig

SOLVERS = ("osqp", "clarabel")
OSQP_SHARE_OF_BUDGET = 0.6  # OSQP's share of the budget; Clarabel gets what is left
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # start of the neutral inputs used at build


@dataclass
class OutcomeCounters:
    """How solves ended, since the planner was built."""

    osqp: int = 0
    clarabel: int = 0
    rule_based: int = 0
    osqp_failed: int = 0
    clarabel_failed: int = 0
    netted_slots: int = 0
    plans_with_repaired_inputs: int = 0
    plans_with_slack: int = 0
    ev_minimum_resolves: int = 0  # re-solves with an EV on/off pattern fixed
    ev_minimum_failed: int = 0
    ev_minimum_rounded_slots: int = 0  # slots the realisation had to round (safety net)


@dataclass(frozen=True)
class SolveOutcome:
    """Device powers from the first solver that succeeded (None: every solver failed)."""

    powers: DevicePowers | None
    solver: str
    attempts: tuple[str, ...]
    objective: float
    elapsed_s: float


class Planner:
    """Build the site's problem once; :meth:`plan` re-solves it with new inputs."""

    def __init__(self, site: SiteConfig, n_steps: int | None = None, step_s: int | None = None,
                 shift_warm_start: bool = True) -> None:
        """``shift_warm_start``: when a solve's horizon starts k slots (0 < k < n_steps) after
        the last successful OSQP solve's, warm-start OSQP from that solution (primal and dual)
        moved k slots earlier, the daemon's rolling re-plan; otherwise OSQP warm-starts from
        its last iterate as it is."""
        started = time.perf_counter()
        self.shift_warm_start = shift_warm_start
        self._last_start: datetime | None = None  # horizon start of the last successful OSQP solve
        self._shift_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.site = site
        self.n_steps = int(n_steps or site.mpc.horizon_steps)
        self.step_s = int(step_s or site.mpc.step_s)
        self.model = MpcModel(site, self.n_steps, self.step_s)
        neutral = prepare(
            PlanInputs(start=_EPOCH, load_w=[0.0], pv_w=[0.0], import_price=[0.0], export_price=[0.0],
                       soc_initial=site.battery.soc_initial),
            site, self.n_steps, self.step_s,
        )
        self.model.assign(self.model.parameter_values(neutral))  # cvxpy needs values to compile
        self.compiled = CompiledQp(self.model.problem, self.model.parameters, self.model.variables)
        self._osqp = OsqpSession(self.compiled, self.compiled.data(self.compiled.vector(
            self.model.parameter_values(neutral))), eps=site.mpc.osqp_eps)
        self.counters = OutcomeCounters()
        self.build_ms = (time.perf_counter() - started) * 1000.0

    @property
    def shape(self):
        """The static shape of the problem."""
        return self.model.shape

    def prepare(self, inputs: PlanInputs) -> PreparedInputs:
        """Repair ``inputs`` for this planner's horizon."""
        return prepare(inputs, self.site, self.n_steps, self.step_s)

    def solve(self, prepared: PreparedInputs, regularisation: float | None = None,
              solvers: tuple[str, ...] = SOLVERS, time_budget_s: float | None = None) -> SolveOutcome:
        """Run the solver chain on ``prepared``; count each outcome. With an EV minimum power,
        the solver that succeeded re-solves with each candidate on/off pattern fixed and keeps the
        cheapest (hems.mpc.ev_minimum)."""
        started = time.perf_counter()
        budget = self.site.mpc.time_budget_s if time_budget_s is None else time_budget_s
        deadline = started + budget
        values = self.model.parameter_values(prepared, regularisation)
        attempts: list[str] = []
        for name in solvers:
            osqp_cap = OSQP_SHARE_OF_BUDGET * budget if len(solvers) > 1 else budget
            result = self._run(name, values, deadline, osqp_cap, self._shift(prepared.start))
            attempts.append(f"{name}:{result.status}")
            if name == "osqp":
                self._last_start = prepared.start if result.ok else None
            if not result.ok:
                setattr(self.counters, f"{name}_failed", getattr(self.counters, f"{name}_failed") + 1)
                continue
            setattr(self.counters, name, getattr(self.counters, name) + 1)
            powers, objective = self._powers(result), result.objective
            relaxed = powers
            patterns = self._ev_patterns(powers, prepared)
            relaxed_state = (self._osqp.last_x, self._osqp.last_y) if name == "osqp" else None
            for lower_w, upper_w in patterns:
                values["ev_min_kw"], values["ev_max_kw"] = lower_w / W_PER_KW, upper_w / W_PER_KW
                fixed = self._run(name, values, deadline, osqp_cap, shift=None)
                attempts.append(f"{name}:ev_minimum:{fixed.status}")
                if not fixed.ok:
                    self.counters.ev_minimum_failed += 1
                    continue
                self.counters.ev_minimum_resolves += 1
                if powers is relaxed or fixed.objective < objective:
                    powers, objective = self._powers(fixed), fixed.objective
            if patterns and relaxed_state is not None:
                # The next plan's relaxation starts best from this relaxation, not a rounded plan.
                self._osqp.restore(*relaxed_state)
            # If every pattern failed, the realisation rounds the relaxed powers instead.
            return SolveOutcome(powers, name, tuple(attempts), objective, time.perf_counter() - started)
        return SolveOutcome(None, "rule_based", tuple(attempts), float("nan"), time.perf_counter() - started)

    def _run(self, name: str, values: dict[str, np.ndarray], deadline: float, osqp_cap_s: float,
             shift: tuple[np.ndarray, np.ndarray] | None) -> SolveResult:
        """One solve of the QP for ``values`` with solver ``name`` within the time left."""
        data = self.compiled.data(self.compiled.vector(values))
        remaining = deadline - time.perf_counter()
        if name == "osqp":
            return self._osqp.solve(data, time_limit_s=min(remaining, osqp_cap_s), shift=shift)
        if name == "clarabel":
            return solve_clarabel(data, time_limit_s=remaining)
        raise ValueError(f"unknown solver {name!r}")

    def _ev_patterns(self, powers: DevicePowers, prepared: PreparedInputs) -> list[tuple[np.ndarray, np.ndarray]]:
        """(lower, upper) EV power bounds in W per candidate on/off pattern of the relaxed plan;
        empty when the plan needs no rounding (hems.mpc.ev_minimum)."""
        ev = self.site.ev
        if ev is None or ev.min_charge_w <= 0 or powers.ev_w is None:
            return []
        floor_w = ev_minimum.minimum_per_slot(ev.min_charge_w, prepared.ev_available)
        max_w = ev.max_charge_w * prepared.ev_available
        dt_h, needed_wh = self.shape.dt_h, prepared.ev_energy_needed_wh
        if not ev_minimum.needs_pattern(powers.ev_w, floor_w, max_w, dt_h, ev.charge_efficiency, needed_wh):
            return []
        patterns = ev_minimum.candidate_patterns(powers.ev_w, floor_w, max_w, dt_h, ev.charge_efficiency,
                                                 needed_wh, prepared.ev_max_energy_wh)
        return [ev_minimum.pattern_bounds(on, floor_w, max_w) for on in patterns]

    def _shift(self, start: datetime) -> tuple[np.ndarray, np.ndarray] | None:
        """Shift index arrays when ``start`` is a whole number of slots (within the horizon)
        after the last successful OSQP solve's start; None otherwise."""
        if not self.shift_warm_start or self._last_start is None:
            return None
        offset_s = (start - self._last_start).total_seconds()
        slots = int(round(offset_s / self.step_s))
        if slots <= 0 or slots >= self.n_steps or abs(offset_s - slots * self.step_s) > 1e-6:
            return None
        if slots not in self._shift_cache:
            self._shift_cache[slots] = self.compiled.shift_indices(self.n_steps, slots)
        return self._shift_cache[slots]

    def _powers(self, result: SolveResult) -> DevicePowers:
        values = self.compiled.split(result.x)
        to_w = W_PER_KW

        def power(name: str) -> np.ndarray | None:
            return values[name] * to_w if name in values else None

        return DevicePowers(
            charge_w=power("charge_kw"), discharge_w=power("discharge_kw"), pv_used_w=power("pv_used_kw"),
            ev_w=power("ev_kw"), heat_pump_w=power("heat_pump_kw"),
        )

    def plan(self, inputs: PlanInputs, regularisation: float | None = None,
             solvers: tuple[str, ...] = SOLVERS) -> Plan:
        """Plan the horizon starting at ``inputs.start``; never raises on bad data."""
        started = time.perf_counter()
        prepared = self.prepare(inputs)
        return self.plan_prepared(prepared, started, regularisation, solvers)

    def plan_prepared(self, prepared: PreparedInputs, started: float | None = None,
                      regularisation: float | None = None, solvers: tuple[str, ...] = SOLVERS) -> Plan:
        """Plan from already repaired inputs (used by the bid curve's re-solves)."""
        started = time.perf_counter() if started is None else started
        outcome = self.solve(prepared, regularisation, solvers)
        powers = outcome.powers
        if powers is None:
            self.counters.rule_based += 1
            powers = self_consumption(self.site, self.shape, prepared)
        realised = realise(self.site, self.shape, prepared, powers)
        flags = list(prepared.flags)
        if realised.netted_slots:
            flags.append(f"charge_discharge_overlap_netted:{realised.netted_slots}")
            self.counters.netted_slots += realised.netted_slots
        if realised.ev_rounded_slots:
            flags.append(f"ev_minimum_power_rounded:{realised.ev_rounded_slots}")
            self.counters.ev_minimum_rounded_slots += realised.ev_rounded_slots
        if prepared.flags:
            self.counters.plans_with_repaired_inputs += 1
        if realised.slack.any:
            self.counters.plans_with_slack += 1
        return Plan(
            status="optimal" if outcome.powers is not None else "fallback",
            solver=outcome.solver, steps=realised.steps, cost=realised.cost, slack=realised.slack,
            solve_ms=(time.perf_counter() - started) * 1000.0, build_ms=self.build_ms, step_s=self.step_s,
            objective=outcome.objective, flags=tuple(flags), solver_attempts=outcome.attempts,
        )

