"""Grid-aware trading benchmark (issue 8): how long the approval of one slot takes.

Run: .venv/bin/python bench/bench_grid_approval.py [--homes 10,100,1000] [--repeats 21] [--seed 8]
Prints a Markdown table with the machine and the date; bench/RESULTS.md records the figures.

Each slot: N homes on one radial line, positions uniform in 0…1,000 m, sensitivity proportional to
the distance; 80 % of the homes export 2-6 kW (midday PV), 20 % import 0.5-3 kW; 900 s slots. The far
end's sensitivity is set so that the exports alone would raise the far end 1.5 × the band (+10 % of
230 V), and the operator's export limit is 80 % of the homes' exports; a slot is drawn again unless
the cleared positions (importers included) violate both, so every slot solves the LP. A new random
slot per repeat; only ``approve()`` is timed (``time.perf_counter``, after a ``gc.collect()``), and
``check()`` alone for comparison. Every approval is verified afterwards: its two worst corners (all
importers at their caps with exporters at 0, and the reverse) keep every limit.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy  # noqa: E402

from hems.community.grid import FeederModel, FeederSection, GridLimits, approve, check  # noqa: E402

DURATION_S = 900
WH_PER_KW = DURATION_S / 3600 * 1000  # Wh over the slot of 1 kW


def slot(homes: int, rng: np.random.Generator) -> tuple[FeederModel, GridLimits, dict[str, int]]:
    """A random feeder and a cleared slot that violates the export limit and the voltage band (drawn
    again in the rare slot whose importers keep it inside either)."""
    ids = [f"home-{index:04d}" for index in range(homes)]
    while True:
        positions = np.sort(rng.uniform(0, 1_000, homes))
        exporting = rng.random(homes) < 0.8
        kw = np.where(exporting, -rng.uniform(2, 6, homes), rng.uniform(0.5, 3, homes))
        injection_kw = np.maximum(-kw, 0)
        shape = np.maximum(positions / 1_000, 1e-3)
        far_v_per_kw = 1.5 * 23.0 / float(shape @ injection_kw)  # all exports: 1.5 × the band (+23 V)
        feeder = FeederModel.from_section(FeederSection.model_validate({
            "transformer_import_limit_w": 10_000_000, "transformer_export_limit_w": 10_000_000,
            "homes": [{"id": home, "position_m": float(position),
                       "voltage_sensitivity_v_per_kw": float(far_v_per_kw * s)}
                      for home, position, s in zip(ids, positions, shape)],
        }), ids)
        limits = GridLimits(export_limit_w=int(0.8 * float(injection_kw.sum()) * 1000))
        net_import_wh = {home: int(round(value * WH_PER_KW)) for home, value in zip(ids, kw)}
        kinds = {item.kind.value for item in check(feeder, limits, net_import_wh, DURATION_S).violations}
        if {"transformer_export", "overvoltage"} <= kinds:
            return feeder, limits, net_import_wh


def verify(feeder: FeederModel, limits: GridLimits, approval) -> None:
    assert approval.caps is not None and approval.solver_status == "optimal", approval.solver_status
    kinds = {item.kind.value for item in approval.check.violations}
    assert {"transformer_export", "overvoltage"} <= kinds, kinds
    importing = {home: cap.max_import_wh for home, cap in approval.caps.items()}
    exporting = {home: -cap.max_export_wh for home, cap in approval.caps.items()}
    for corner in (importing, exporting):
        assert not check(feeder, limits, corner, DURATION_S).congested


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.machine()}, {os.cpu_count()} cores ({model}), {platform.platform()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__} (HiGHS)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", default="10,100,1000")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--verbose", action="store_true", help="every slot's time on stderr")
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    print(f"Date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"Machine: {machine()}")
    print(f"Command: .venv/bin/python bench/bench_grid_approval.py --homes {arguments.homes} "
          f"--repeats {arguments.repeats} --seed {arguments.seed}\n")
    print("| homes | approve median | approve max | check median | curtailed (median of slots) | binding rows |")
    print("|---|---|---|---|---|---|")
    for homes in (int(value) for value in arguments.homes.split(",")):
        approve_s, check_s, curtailed, binding = [], [], [], set()
        for _ in range(arguments.repeats):
            feeder, limits, cleared = slot(homes, rng)
            gc.collect()
            start = time.perf_counter()
            approval = approve(feeder, limits, cleared, DURATION_S)
            approve_s.append(time.perf_counter() - start)
            if arguments.verbose:
                print(f"  {homes} homes: approve {approve_s[-1] * 1e3:.2f} ms", file=sys.stderr)
            gc.collect()
            start = time.perf_counter()
            check(feeder, limits, cleared, DURATION_S)
            check_s.append(time.perf_counter() - start)
            verify(feeder, limits, approval)
            total_export = sum(-wh for wh in cleared.values() if wh < 0)
            curtailed.append(approval.total_curtailed_wh / total_export)
            binding |= {item.kind.value for item in approval.binding}
        print(f"| {homes:,} | {statistics.median(approve_s) * 1e3:.2f} ms | {max(approve_s) * 1e3:.2f} ms | "
              f"{statistics.median(check_s) * 1e3:.2f} ms | {statistics.median(curtailed):.1%} of the export | "
              f"{', '.join(sorted(binding))} |")


if __name__ == "__main__":
    main()
