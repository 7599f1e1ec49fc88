"""``hems plan`` end to end, in a subprocess, on the bundled example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "plan"


def test_hems_plan_json_on_example(tmp_path):
    plot = tmp_path / "plan.png"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "hems.cli", "plan", "--scenario", str(EXAMPLE / "scenario_day.csv"),
         "--site", str(EXAMPLE / "site.json"), "--json", "--plot", str(plot)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "optimal"
    assert len(data["steps"]) == 96
    for key in ("cost", "import_wh", "export_wh", "solve_ms", "build_ms"):
        assert isinstance(data[key], float)
    hours = 0.25
    rows = [line.split(",") for line in (EXAMPLE / "scenario_day.csv").read_text().splitlines()[1:]]
    cost = sum((s["grid_import_w"] * float(r[3]) - s["grid_export_w"] * float(r[4])) * hours
               for s, r in zip(data["steps"], rows)) / 1000
    assert abs(cost - data["cost"]) < 1e-9
    assert abs(sum(s["grid_import_w"] for s in data["steps"]) * hours - data["import_wh"]) < 1e-6
    for step in data["steps"]:
        assert set(step) >= {"battery_charge_w", "battery_discharge_w", "soc", "grid_import_w", "grid_export_w", "pv_used_w"}
        assert min(step["battery_charge_w"], step["battery_discharge_w"]) == 0
        assert 0.05 - 1e-9 <= step["soc"] <= 0.95 + 1e-9
        assert step["grid_export_w"] <= 4000 + 1e-6
    assert plot.stat().st_size > 10_000


def test_hems_plan_rejects_bad_site(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"battery": {"capacity_wh": 1}, "grid": {"import_limit_w": 1, "export_limit_w": 1},
                                "bogus": 1}))
    result = subprocess.run(
        [sys.executable, "-m", "hems.cli", "plan", "--scenario", str(EXAMPLE / "scenario_day.csv"), "--site", str(site)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "bogus" in result.stderr or "max_charge_w" in result.stderr


def test_cli_does_not_import_cvxpy_for_other_commands():
    code = "import sys, hems.cli; hems.cli.build_parser(); print('cvxpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60, check=True)
    assert result.stdout.strip() == "False"
