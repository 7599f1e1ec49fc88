"""``hems demo --broker mosquitto``: the trading run talks through a mosquitto child process of its
own, and the market works through it: every home is settled in every slot from the meter reading it
sent, none provisionally. The broker is gone when the demo is."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hems.demo.mosquitto import mosquitto_binary
from hems.demo.settings import DEFAULT_START_S
from hems.demo.sites import generate_homes

HOMES, HOURS = 3, 2
SLOT_S = 900


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed (scripts/bootstrap.sh)")
def test_a_demo_through_a_mosquitto_child_settles_every_home_slot_from_its_reading(tmp_path: Path) -> None:
    out = tmp_path / "report"
    finished = subprocess.run([sys.executable, "-m", "hems", "demo", "--homes", str(HOMES), "--hours", str(HOURS),
                               "--broker", "mosquitto", "--out", str(out)], capture_output=True, text=True,
                              timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "a mosquitto child process per run" in (out / "report.html").read_text(encoding="utf-8")

    # Every home and the manager went through this mosquitto, and it was stopped at the end.
    log = (out / "logs" / "bid_curve-mosquitto.log").read_text(encoding="utf-8")
    homes = [home.home_id for home in generate_homes(HOMES)]
    for client in ["hems-community-demo", *(f"hems-market-demo-{home}" for home in homes)]:
        assert f" as {client} " in log, client
    assert "terminating" in log
    pid = int(re.search(r"mosquitto \(PID (\d+)\)", (out / "logs" / "bid_curve.log").read_text()).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    with sqlite3.connect(out / "data" / "community.sqlite") as ledger:
        settlements = [json.loads(body) for (body,) in ledger.execute(
            "SELECT body FROM ledger WHERE kind = 'settlement'")]
    period = {DEFAULT_START_S + index * SLOT_S for index in range(HOURS * 3600 // SLOT_S)}
    in_period = [item for item in settlements if item["slot_start_s"] in period]
    assert {(item["home"], item["slot_start_s"]) for item in in_period} == {
        (home, slot) for home in homes for slot in period}
    provisional = [(item["home"], item["slot_start_s"]) for item in in_period if item["estimated"]]
    assert not provisional, f"settled without a meter reading: {provisional}"
