"""Flexibility dispatch benchmark (issue 8): ``split_request`` for 10, 100 and 1,000 homes against an
LP reference (scipy ``linprog``, HiGHS) that solves the same least-cost split.

Run: .venv/bin/python bench/bench_flexibility.py [--homes 10,100,1000] [--repeats 21] [--seed 1]

Each home has, in each of 4 slots of 15 minutes, 11 up and 11 down blocks at distinct random prices
in [0, 0.30) per kWh (µ¤/kWh multiples of 1,000) with 1-199 Wh each. The request asks per slot for
+30 %, −30 %, +90 % and −90 % of the community's capacity in that direction, at 0.15 per kWh, so
two slots are met and two are short (every affordable block used). Timed (``time.perf_counter``,
after a ``gc.collect()``, median of ``--repeats`` runs): ``split_request`` from the HomeFlexibility
objects to the Dispatch; the LP reference from the same objects to the 4 solved LPs (building the
cost vector and bounds, then one ``linprog(method="highs")`` per slot, of the volume the split
reached: min Σ price·x, Σ x = volume, 0 ≤ x ≤ block, blocks above the request price left out). The
two costs are checked equal (within 1 n¤ per Wh). Also timed: ``redispatch`` after 5 % of the
dispatched homes fail, and ``aggregate_offers``. Prints a Markdown table, the machine and the date.
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
from scipy.optimize import linprog  # noqa: E402

from hems.community.flexibility import (Direction, FlexibilityRequest, FlexibilitySegment,  # noqa: E402
                                        HomeFlexibility, aggregate_offers, redispatch, split_request)

SLOTS = (0, 900, 1800, 2700)
SHARES = (0.3, -0.3, 0.9, -0.9)
PRICE_MICRO = 150_000


def community(homes: int, rng: np.random.Generator) -> list[HomeFlexibility]:
    """``homes`` homes × 4 slots, 11 blocks each way."""
    flexibilities = []
    for index in range(homes):
        for slot in SLOTS:
            orders = []
            for _ in Direction:
                prices = np.sort(rng.choice(np.arange(0, 300_000, 1_000), 11, replace=False))
                energies = rng.integers(1, 200, 11)
                orders.append(tuple(FlexibilitySegment(int(energy), int(price))
                                    for energy, price in zip(energies, prices)))
            flexibilities.append(HomeFlexibility(f"home-{index:05d}", slot, int(rng.integers(-500, 800)),
                                                 orders[0], orders[1]))
    return flexibilities


def request_for(flexibilities: list[HomeFlexibility]) -> FlexibilityRequest:
    deltas = []
    for slot, share in zip(SLOTS, SHARES):
        direction = Direction.UP if share > 0 else Direction.DOWN
        capacity = sum(sum(item.energy_wh for item in flex.segments(direction))
                       for flex in flexibilities if flex.slot_start_s == slot)
        deltas.append(int(round(share * capacity)))
    return FlexibilityRequest("bench", SLOTS, tuple(deltas), PRICE_MICRO, 200_000)


def lp_reference(request: FlexibilityRequest, flexibilities: list[HomeFlexibility],
                 volumes_wh: list[int]) -> list[float]:
    """The least cost per slot by HiGHS, built from the same objects."""
    costs = []
    for slot, delta, volume in zip(request.slot_starts_s, request.delta_wh, volumes_wh):
        direction = Direction.UP if delta > 0 else Direction.DOWN
        blocks = [segment for flex in flexibilities if flex.slot_start_s == slot
                  for segment in flex.segments(direction) if segment.price_micro <= request.price_micro]
        prices = np.array([segment.price_micro for segment in blocks], dtype=float)
        bounds = np.array([[0, segment.energy_wh] for segment in blocks], dtype=float)
        result = linprog(c=prices, A_eq=np.ones((1, len(blocks))), b_eq=[volume], bounds=bounds, method="highs")
        if result.status != 0:
            raise RuntimeError(result.message)
        costs.append(float(result.fun))
    return costs


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load average unknown"
    return (f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}; {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", default="10,100,1000")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    print(f"Machine: {machine()}")
    print(f"Date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"Command: .venv/bin/python bench/bench_flexibility.py --homes {arguments.homes} "
          f"--repeats {arguments.repeats} --seed {arguments.seed}\n")
    print("| homes | blocks | split_request | LP reference (HiGHS) | LP / split | redispatch (5 % fail) "
          "| aggregate_offers |")
    print("|---|---|---|---|---|---|---|")
    for homes in (int(value) for value in arguments.homes.split(",")):
        flexibilities = community(homes, np.random.default_rng(arguments.seed))
        request = request_for(flexibilities)
        split_s, dispatch = timed(lambda: split_request(request, flexibilities), arguments.repeats)
        volumes = [abs(item.committed_wh) for item in dispatch.slots]
        lp_s, lp_costs = timed(lambda: lp_reference(request, flexibilities, volumes), max(3, arguments.repeats // 3))
        for item, lp_cost, volume in zip(dispatch.slots, lp_costs, volumes):
            if abs(item.cost_nano - lp_cost) > max(1, volume):
                raise SystemExit(f"slot {item.slot_start_s}: split {item.cost_nano} n¤ != LP {lp_cost:.0f} n¤")
        dispatched = sorted({commitment.home for item in dispatch.slots for commitment in item.commitments})
        failed = frozenset(dispatched[::20])
        redispatch_s, _ = timed(lambda: redispatch(request, dispatch, flexibilities, failed), arguments.repeats)
        offers_s, _ = timed(lambda: aggregate_offers(flexibilities, minimum_offer_wh=1000), arguments.repeats)
        blocks = sum(len(flex.up) + len(flex.down) for flex in flexibilities)
        print(f"| {homes:,} | {blocks:,} | {split_s * 1e3:.2f} ms | {lp_s * 1e3:.2f} ms | {lp_s / split_s:.1f} "
              f"| {redispatch_s * 1e3:.2f} ms | {offers_s * 1e3:.2f} ms |")
    print("\nMedians; the split's cost equals the LP optimum in every slot (checked).")


if __name__ == "__main__":
    main()
