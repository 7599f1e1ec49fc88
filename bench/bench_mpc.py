"""MPC benchmark (issue 3): build, re-solve against raw OSQP on the same QP data, 576 steps, RSS.

Run: .venv/bin/python bench/bench_mpc.py [--resolves 200] [--soak 1000]
(``--resolves 100 --soak 200`` takes about 45 s on the 2-core machine.)
Prints one JSON object; bench/RESULTS.md records the figures with machine and date.

"Full model" = battery (with taper and reserve) + curtailable PV + EV + heat pump + demand
charge + market, 96 x 15 min. Each re-solve gets new parameter values (load, PV, prices,
outdoor temperature -> COP, so OSQP also refactorises, and the measured SoC). The raw-OSQP
reference is a second OSQP instance with identical settings fed exactly the same (P, q, A, l, u)
sequence (update of the changed vectors/matrices + warm solve; setup excluded), interleaved
with the planner's solves so both see the same machine noise. The "shift" cases are the daemon's
rolling re-plan (each horizon one slot later); there both warm-start from the previous solution
shifted by one slot. The EV has no minimum power in these cases; ``ev_minimum_*`` times whole
plans with a 4.14 kW minimum (the pattern re-solves of hems.mpc.ev_minimum) against the same
plans without one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


RSS_START = rss_mb()
started = time.perf_counter()
import numpy as np  # noqa: E402

from hems.mpc.bid_curve import bid_curves  # noqa: E402
from hems.mpc.fast_solver import OsqpSession, _int32  # noqa: E402
from hems.mpc.inputs import EvSession, PlanInputs  # noqa: E402
from hems.mpc.planner import Planner  # noqa: E402
from hems.mpc.site import (BatteryConfig, EvConfig, GridConfig, HeatPumpConfig, MpcSettings,  # noqa: E402
                           SiteConfig)

IMPORT_S = time.perf_counter() - started
RSS_AFTER_IMPORT = rss_mb()


def full_site(ev_min_charge_w: float = 0.0) -> SiteConfig:
    """The full home model. The EV minimum is off by default: with it, a plan adds re-solves
    with a fixed on/off pattern (hems.mpc.ev_minimum), which the raw-OSQP ratio must not mix
    in; :func:`ev_minimum_cost` measures them."""
    return SiteConfig(
        battery=BatteryConfig(capacity_wh=10_000, max_charge_w=5_000, max_discharge_w=5_000,
                              charge_taper_start_soc=0.8, charge_w_at_full=1_000, backup_reserve_soc=0.2),
        grid=GridConfig(import_limit_w=17_000, export_limit_w=7_000, demand_charge_per_kw=0.1),
        ev=EvConfig(max_charge_w=11_000, min_charge_w=ev_min_charge_w), heat_pump=HeatPumpConfig(max_electric_w=3_000),
        mpc=MpcSettings(market_enabled=True),
    )


def scenario(n: int, step_s: int, rng: np.random.Generator) -> PlanInputs:
    from datetime import datetime, timedelta, timezone

    start = datetime(2024, 3, 1, tzinfo=timezone.utc)
    hours = np.arange(n) * step_s / 3600.0
    pv = np.maximum(0.0, 6_000 * np.sin((hours % 24 - 6) / 12 * np.pi)) * rng.uniform(0.3, 1.0)
    load = 300 + 700 * np.sin(hours / 24 * 2 * np.pi) ** 2 + 200 * rng.random(n)
    import_price = 0.25 + 0.1 * np.sin(hours / 4 + rng.random() * 6) + 0.02 * rng.standard_normal(n)
    return PlanInputs(
        start=start, load_w=load, pv_w=pv, import_price=import_price, export_price=np.full(n, 0.08),
        soc_initial=float(rng.uniform(0.1, 0.9)), outdoor_temp_c=2 + 6 * np.sin(hours / 24 * 6) + rng.standard_normal(),
        ev_session=EvSession(start + timedelta(hours=17), start + timedelta(hours=31), float(rng.uniform(5e3, 3e4))),
    )


class RawOsqp:
    """The reference: OSQP alone on the same data with the planner's settings."""

    def __init__(self, planner: Planner, first) -> None:
        import osqp

        self.solved = osqp.SolverStatus.OSQP_SOLVED
        self.solver = osqp.OSQP()
        self.solver.setup(_int32(first.p_upper), first.q, _int32(first.a), first.l, first.u,
                          **planner._osqp._settings)
        self.last = first
        self.x = self.y = None

    def solve(self, data, shift=None) -> tuple[float, int]:
        """Update + warm solve; with ``shift`` (index arrays), warm-start from the last solution
        moved in time, as the planner does. After a failure the next solve starts cold."""
        started = time.perf_counter()
        update = {}
        if not np.array_equal(data.q, self.last.q):
            update["q"] = data.q
        if not (np.array_equal(data.l, self.last.l) and np.array_equal(data.u, self.last.u)):
            update["l"], update["u"] = data.l, data.u  # both, as OsqpSession (OSQP 1.1 pitfall)
        if not np.array_equal(data.p_upper.data, self.last.p_upper.data):
            update["Px"] = data.p_upper.data
        if not np.array_equal(data.a.data, self.last.a.data):
            update["Ax"] = data.a.data
        if update:
            self.solver.update(**update)
        if shift is not None and self.x is not None:
            self.solver.warm_start(x=self.x[shift[0]], y=self.y[shift[1]])
        result = self.solver.solve(raise_error=False)
        self.last = data
        if result.info.status_val == self.solved:
            self.x, self.y = np.array(result.x), np.array(result.y)
        else:
            self.solver.warm_start(x=np.zeros(data.a.shape[1]), y=np.zeros(data.a.shape[0]))
            self.x = self.y = None
        return time.perf_counter() - started, int(result.info.iter)


def perturbed(base: PlanInputs, rng: np.random.Generator) -> PlanInputs:
    """A forecast update: the same day with new noise on load, PV, prices, temperature and SoC."""
    n = len(base.load_w)
    return dataclasses.replace(
        base, load_w=np.asarray(base.load_w) * (1 + 0.1 * rng.standard_normal(n)).clip(0.5),
        pv_w=np.asarray(base.pv_w) * rng.uniform(0.9, 1.1),
        import_price=np.asarray(base.import_price) + 0.01 * rng.standard_normal(n),
        outdoor_temp_c=np.asarray(base.outdoor_temp_c) + 0.5 * rng.standard_normal(n),
        soc_initial=float(np.clip(base.soc_initial + 0.02 * rng.standard_normal(), 0.05, 0.95)),
    )


def rolling(n: int, step_s: int, count: int, rng: np.random.Generator) -> list[PlanInputs]:
    """The daemon's rolling case: re-plan k starts k slots later, on a window of one longer
    scenario, with new load noise and a drifting measured SoC."""
    from datetime import timedelta

    base = scenario(n + count, step_s, rng)
    windows = []
    soc = base.soc_initial
    for k in range(count):
        window = lambda values: np.asarray(values)[k:k + n]  # noqa: E731
        soc = float(np.clip(soc + 0.01 * rng.standard_normal(), 0.05, 0.95))
        windows.append(dataclasses.replace(
            base, start=base.start + timedelta(seconds=k * step_s),
            load_w=window(base.load_w) * (1 + 0.05 * rng.standard_normal(n)).clip(0.5),
            pv_w=window(base.pv_w), import_price=window(base.import_price),
            export_price=window(base.export_price), outdoor_temp_c=window(base.outdoor_temp_c), soc_initial=soc))
    return windows


def resolve_series(n: int, step_s: int, count: int, seed: int, mode: str) -> dict:
    """First build + solve, then ``count`` re-solves vs raw OSQP. ``mode`` "update": each
    re-solve is the same day with new forecast noise; "shift": each re-solve starts one slot
    later (the daemon's rolling case; both the planner and the raw reference warm-start from the
    previous solution shifted by one slot); "random": a new random day each time (stress)."""
    rng = np.random.default_rng(seed)
    site = dataclasses.replace(full_site(), mpc=dataclasses.replace(full_site().mpc, horizon_steps=n, step_s=step_s))
    windows = rolling(n, step_s, count + 1, rng) if mode == "shift" else None
    first_inputs = windows[0] if windows else scenario(n, step_s, rng)
    t0 = time.perf_counter()
    planner = Planner(site)
    first_plan = planner.plan(first_inputs)
    first_s = time.perf_counter() - t0
    if mode == "update":
        prepared = [planner.prepare(perturbed(first_inputs, rng)) for _ in range(count)]
    elif mode == "shift":
        prepared = [planner.prepare(window) for window in windows[1:]]
    else:
        prepared = [planner.prepare(scenario(n, step_s, rng)) for _ in range(count)]
    shift = planner.compiled.shift_indices(n, 1) if mode == "shift" else None
    datas = [planner.compiled.data(planner.compiled.vector(planner.model.parameter_values(p))) for p in prepared]
    # Both solvers start from the same state (set up and solved on the first data), so they run
    # the same iterations and the difference is the planner's own overhead.
    planner._osqp = OsqpSession(planner.compiled, datas[0], eps=site.mpc.osqp_eps)
    raw = RawOsqp(planner, datas[0])
    raw.solve(datas[0])
    planner.solve(prepared[0])
    model_iters = []
    model_s, raw_s, plan_s, raw_iters, statuses = [], [], [], [], []
    for index in range(1, count):
        t0 = time.perf_counter()
        outcome = planner.solve(prepared[index])
        model_s.append(time.perf_counter() - t0)
        model_iters.append(planner._osqp.last_iterations)
        statuses.append(outcome.solver)
        seconds, iterations = raw.solve(datas[index], shift)
        raw_s.append(seconds)
        raw_iters.append(iterations)
    # The whole plan() (input repair + solve + realisation + Plan objects), on the same inputs.
    for index in range(1, count):
        t0 = time.perf_counter()
        planner.plan_prepared(prepared[index])
        plan_s.append(time.perf_counter() - t0)
    ms = lambda values: round(statistics.median(values) * 1000, 2)  # noqa: E731
    p95 = lambda values: round(float(np.percentile(values, 95)) * 1000, 2)  # noqa: E731
    return {
        "mode": mode, "steps": n, "step_s": step_s, "qp_variables": planner.compiled.n, "qp_constraints": planner.compiled.m,
        "build_ms": round(planner.build_ms, 1), "first_build_plus_solve_ms": round(first_s * 1000, 1),
        "first_solver": first_plan.solver,
        "resolves": count - 1, "model_resolve_median_ms": ms(model_s), "model_resolve_p95_ms": p95(model_s),
        "raw_osqp_median_ms": ms(raw_s), "raw_osqp_p95_ms": p95(raw_s),
        "ratio_median": round(statistics.median(model_s) / statistics.median(raw_s), 3),
        "ratio_of_totals": round(sum(model_s) / sum(raw_s), 3),
        "raw_osqp_median_iterations": statistics.median(raw_iters),
        "same_iterations_as_raw": model_iters == raw_iters,
        "plan_median_ms": ms(plan_s), "plan_p95_ms": p95(plan_s),
        "solvers_used": {name: statuses.count(name) for name in set(statuses)},
        "counters": dataclasses.asdict(planner.counters),
    }, planner


def ev_minimum_cost(n: int, step_s: int, count: int, seed: int, minimum_w: float) -> dict:
    """plan() on the same forecast updates with the EV at ``minimum_w`` and without a minimum,
    interleaved, the car connected for the whole horizon (the case where every plan rounds)."""
    from datetime import timedelta

    rng = np.random.default_rng(seed)
    base = scenario(n, step_s, rng)
    base = dataclasses.replace(base, ev_session=EvSession(base.start, base.start + timedelta(seconds=n * step_s),
                                                          float(rng.uniform(1e4, 3e4))))
    planners = {}
    for label, minimum in (("without", 0.0), ("with", minimum_w)):
        site = full_site(minimum)
        planners[label] = Planner(dataclasses.replace(site, mpc=dataclasses.replace(site.mpc, horizon_steps=n, step_s=step_s)))
        planners[label].plan(base)
    inputs = [perturbed(base, rng) for _ in range(count)]
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    costs: dict[str, list[float]] = {"without": [], "with": []}
    for item in inputs:
        for label, planner in planners.items():
            t0 = time.perf_counter()
            plan = planner.plan(item)
            seconds[label].append(time.perf_counter() - t0)
            costs[label].append(plan.cost.total)
    counters = planners["with"].counters
    ms = lambda values: round(statistics.median(values) * 1000, 2)  # noqa: E731
    return {
        "steps": n, "step_s": step_s, "minimum_w": minimum_w, "plans": count,
        "plan_median_ms_without_minimum": ms(seconds["without"]), "plan_median_ms_with_minimum": ms(seconds["with"]),
        "ratio": round(statistics.median(seconds["with"]) / statistics.median(seconds["without"]), 2),
        "pattern_resolves_per_plan": round(counters.ev_minimum_resolves / (count + 1), 2),
        "pattern_failures": counters.ev_minimum_failed, "rounded_slots": counters.ev_minimum_rounded_slots,
        "cost_increase_median": round(statistics.median(np.subtract(costs["with"], costs["without"])), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolves", type=int, default=200)
    parser.add_argument("--soak", type=int, default=1000)
    arguments = parser.parse_args()
    result: dict = {
        "python": platform.python_version(), "nproc": os.cpu_count(),
        "import_s": round(IMPORT_S, 3), "rss_start_mb": round(RSS_START, 1),
        "rss_after_import_mb": round(RSS_AFTER_IMPORT, 1),
    }
    result["full_96_update"], planner = resolve_series(96, 900, arguments.resolves, seed=1, mode="update")
    result["full_96_shift"], _ = resolve_series(96, 900, arguments.resolves, seed=6, mode="shift")
    result["full_96_random"], _ = resolve_series(96, 900, arguments.resolves, seed=4, mode="random")
    result["full_576_update"], _ = resolve_series(576, 300, max(arguments.resolves // 4, 20), seed=2, mode="update")
    result["full_576_shift"], _ = resolve_series(576, 300, max(arguments.resolves // 4, 20), seed=7, mode="shift")
    result["full_576_random"], _ = resolve_series(576, 300, max(arguments.resolves // 4, 20), seed=5, mode="random")
    result["ev_minimum_96"] = ev_minimum_cost(96, 900, max(arguments.resolves // 2, 20), seed=8, minimum_w=4_140)
    result["ev_minimum_576"] = ev_minimum_cost(576, 300, max(arguments.resolves // 8, 10), seed=9, minimum_w=4_140)
    rng = np.random.default_rng(3)
    inputs = scenario(96, 900, rng)
    t0 = time.perf_counter()
    curves = bid_curves(planner, inputs, slots=(0, 1, 2, 3), points=11)
    result["bid_curves_4_slots_11_points_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    result["bid_curve_example"] = {"prices": curves[0].prices, "net_import_wh": curves[0].net_import_wh}
    soak_inputs = [scenario(96, 900, rng) for _ in range(50)]
    rss = {}
    for index in range(arguments.soak):
        planner.plan(soak_inputs[index % len(soak_inputs)])
        if index + 1 in (100, arguments.soak):
            rss[index + 1] = round(rss_mb(), 1)
    result["rss_after_resolves_mb"] = rss
    result["soak_counters"] = dataclasses.asdict(planner.counters)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
