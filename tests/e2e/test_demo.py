"""``hems demo --homes 3 --hours 6`` end to end, as a user runs it: the real command in a
subprocess (worker processes, embedded broker, emulators, daemons, manager), then every money
figure of its report recomputed from the ledger and the meter readings it wrote."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from hems.demo.settings import DEFAULT_START_S
from tests.demo_report.recompute import check_report

HOMES, HOURS, SLOTS = 3, 6, 24


def test_demo_runs_a_community_and_its_report_adds_up(tmp_path: Path) -> None:
    out = tmp_path / "report"
    finished = subprocess.run([sys.executable, "-m", "hems", "demo", "--homes", str(HOMES), "--hours", str(HOURS),
                               "--out", str(out)], capture_output=True, text=True, timeout=110)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # The terminal shows the Markdown summary and where the report is.
    assert "| MPC with trading |" in finished.stdout and "report.html" in finished.stdout
    assert "100%" in finished.stderr  # the progress line reached the end
    for name in ("report.html", "summary.md", "results.json", "data/meters.csv", "data/homes.json",
                 "data/community.sqlite", "logs/no-market.log", "logs/bid_curve.log"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text(encoding="utf-8")
    plots = sorted((out / "plots").glob("*.png"))
    assert len(plots) >= 5 and all(f"plots/{plot.name}" in html for plot in plots)
    assert all(plot.read_bytes().startswith(b"\x89PNG") for plot in plots)

    check_report(out)  # every bill and total, to the n¤, from the ledger and the meter readings

    # The market worked: every home settled in every slot from its own reading, nothing estimated.
    with sqlite3.connect(out / "data/community.sqlite") as ledger:
        settlements = [json.loads(body) for (body,) in ledger.execute(
            "SELECT body FROM ledger WHERE kind = 'settlement'")]
    period = {DEFAULT_START_S + index * 900 for index in range(SLOTS)}
    settled = {(item["home"], item["slot_start_s"]) for item in settlements if item["slot_start_s"] in period}
    assert len(settled) == HOMES * SLOTS
    assert not any(item["estimated"] for item in settlements)


def test_demo_negotiates_with_admm(tmp_path: Path) -> None:
    """``--mechanism admm``: the homes negotiate every slot of the period with their MPC, and the
    report adds up as for any mechanism."""
    out, hours = tmp_path / "report", 2
    finished = subprocess.run([sys.executable, "-m", "hems", "demo", "--homes", str(HOMES), "--hours", str(hours),
                               "--mechanism", "admm", "--out", str(out)], capture_output=True, text=True, timeout=110)
    assert finished.returncode == 0, finished.stderr[-3000:]
    check_report(out)
    period = {DEFAULT_START_S + index * 900 for index in range(hours * 4)}
    with sqlite3.connect(out / "data/community.sqlite") as ledger:
        details = {slot: json.loads(body)["details"] for slot, body in ledger.execute(
            "SELECT slot_start_s, clearing_json FROM slots WHERE clearing_json IS NOT NULL")}
    negotiated = {slot for slot, detail in details.items() if detail.get("negotiated")}
    # The first slot's negotiation starts before the homes have a plan; every later one agrees.
    assert negotiated >= period - {min(period)}
    assert all(detail["rounds"] < 100 for slot, detail in details.items() if slot in negotiated)
