"""``hems plan``: one MPC solve on given data (scenario CSV + site JSON), no daemon needed."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REQUIRED_COLUMNS = ("timestamp", "load_w", "pv_w", "import_price", "export_price")


class ScenarioError(ValueError):
    """The scenario CSV is unusable; the message says where."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plan`` subcommand."""
    parser = subparsers.add_parser("plan", help="one MPC solve on a scenario CSV and a site JSON")
    parser.add_argument("--scenario", required=True, type=Path,
                        help="CSV: timestamp (UTC ISO 8601, fixed step), load_w, pv_w, import_price, "
                             "export_price [, outdoor_temp_c]")
    parser.add_argument("--site", required=True, type=Path, help="site JSON (battery, grid, pv, ev, heat_pump)")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the plan into a PNG")
    parser.set_defaults(handler=run)


def _parse_time(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"{where}: not an ISO 8601 timestamp: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)  # the format says UTC
    return value.astimezone(timezone.utc)


def read_scenario(path: Path) -> dict[str, Any]:
    """Read the scenario CSV into columns; checks the header and the fixed step."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ScenarioError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    if len(rows) < 2:
        raise ScenarioError(f"{path}: needs at least two rows")
    times = [_parse_time(row["timestamp"], f"{path}:{index + 2}") for index, row in enumerate(rows)]
    step_s = (times[1] - times[0]).total_seconds()
    for index in range(1, len(times)):
        if (times[index] - times[index - 1]).total_seconds() != step_s:
            raise ScenarioError(f"{path}:{index + 2}: step differs from the first ({step_s:.0f} s)")
    if step_s <= 0 or step_s != int(step_s):
        raise ScenarioError(f"{path}: the step must be a positive whole number of seconds")

    def column(name: str) -> list[float] | None:
        if name not in rows[0]:
            return None
        # Empty cells become NaN: the planner repairs them and flags the repair.
        return [float(row[name]) if row[name] not in ("", None) else float("nan") for row in rows]

    return {"start": times[0], "step_s": int(step_s), "n": len(rows), **{
        name: column(name) for name in ("load_w", "pv_w", "import_price", "export_price", "outdoor_temp_c")}}


def run(arguments: argparse.Namespace) -> int:
    """Handler of ``hems plan``; returns the exit code."""
    from hems.mpc.inputs import EvSession, PlanInputs  # cvxpy-free
    from hems.mpc.site import SiteConfig, SiteConfigError

    try:
        scenario = read_scenario(arguments.scenario)
        site_data = json.loads(arguments.site.read_text(encoding="utf-8"))
        site = SiteConfig.from_dict(site_data)
        ev_session = None
        if site.ev is not None and site.ev.arrival and site.ev.departure:
            ev_session = EvSession(_parse_time(site.ev.arrival, "ev.arrival"),
                                   _parse_time(site.ev.departure, "ev.departure"), site.ev.energy_needed_wh)
    except (OSError, ValueError, ScenarioError, SiteConfigError) as error:
        print(f"hems plan: {error}", file=sys.stderr)
        return 2

    from hems.mpc.planner import Planner  # imports cvxpy: only for this subcommand

    planner = Planner(site, n_steps=scenario["n"], step_s=scenario["step_s"])
    inputs = PlanInputs(
        start=scenario["start"], load_w=scenario["load_w"], pv_w=scenario["pv_w"],
        import_price=scenario["import_price"], export_price=scenario["export_price"],
        soc_initial=site.battery.soc_initial, outdoor_temp_c=scenario["outdoor_temp_c"], ev_session=ev_session,
    )
    plan = planner.plan(inputs)
    if arguments.json:
        print(json.dumps(plan_json(plan)))
    else:
        print(f"status {plan.status} ({plan.solver}), cost {plan.energy_cost:.4f}, import {plan.import_wh:.0f} Wh, "
              f"export {plan.export_wh:.0f} Wh, build {plan.build_ms:.1f} ms, solve {plan.solve_ms:.1f} ms")
        for flag in plan.flags:
            print(f"flag: {flag}")
    if arguments.plot:
        plot_plan(plan, arguments.plot)
    return 0


def plan_json(plan) -> dict[str, Any]:
    """The ``--json`` object of a plan."""
    return {
        "status": plan.status,
        "solver": plan.solver,
        "cost": plan.energy_cost,
        "import_wh": plan.import_wh,
        "export_wh": plan.export_wh,
        "solve_ms": plan.solve_ms,
        "build_ms": plan.build_ms,
        "objective": plan.objective,
        "cost_breakdown": {**plan.cost.__dict__, "total": plan.cost.total},
        "slack": plan.slack.__dict__,
        "flags": list(plan.flags),
        "steps": [
            {
                "start": step.start.isoformat(),
                "battery_charge_w": step.battery_charge_w,
                "battery_discharge_w": step.battery_discharge_w,
                "soc": step.soc,
                "grid_import_w": step.grid_import_w,
                "grid_export_w": step.grid_export_w,
                "pv_used_w": step.pv_used_w,
                "pv_curtailed_w": step.pv_curtailed_w,
                "ev_charge_w": step.ev_charge_w,
                "heat_pump_w": step.heat_pump_w,
            }
            for step in plan.steps
        ],
    }


def plot_plan(plan, path: Path) -> None:
    """Draw prices, PV, load, battery power, SoC and grid flow over the horizon into ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a gateway
    import matplotlib.pyplot as plt

    times = [step.start for step in plan.steps]
    kw = 1 / 1000.0
    figure, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    axes[0].step(times, [s.import_price for s in plan.steps], where="post", label="import price")
    axes[0].step(times, [s.export_price for s in plan.steps], where="post", label="export price")
    axes[0].set_ylabel("currency/kWh")
    axes[1].plot(times, [s.pv_used_w * kw + s.pv_curtailed_w * kw for s in plan.steps], label="PV available")
    axes[1].plot(times, [s.pv_used_w * kw for s in plan.steps], label="PV used")
    axes[1].plot(times, [s.load_w * kw for s in plan.steps], label="load")
    axes[1].plot(times, [(s.ev_charge_w + s.heat_pump_w) * kw for s in plan.steps], label="EV + heat pump")
    axes[1].set_ylabel("kW")
    axes[2].step(times, [(s.battery_charge_w - s.battery_discharge_w) * kw for s in plan.steps], where="post",
                 label="battery (+ charge)")
    axes[2].set_ylabel("kW")
    soc_axis = axes[2].twinx()
    soc_axis.plot(times, [s.soc for s in plan.steps], color="black", label="SoC")
    soc_axis.set_ylabel("SoC")
    soc_axis.set_ylim(0, 1)
    axes[3].step(times, [(s.grid_import_w - s.grid_export_w) * kw for s in plan.steps], where="post",
                 label="grid (+ import)")
    axes[3].set_ylabel("kW")
    for axis in axes:
        axis.legend(loc="upper left", fontsize="small")
        axis.grid(alpha=0.3)
    figure.suptitle(f"hems plan: {plan.status} ({plan.solver}), cost {plan.energy_cost:.3f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
