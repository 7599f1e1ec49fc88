"""``hems emulate``: listing, argument parsing, and a real run stopped by SIGINT."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hems.cli import build_parser
from hems.cli.emulate import parse_bindings, parse_tcp, run

ROOT = Path(__file__).resolve().parents[2]


def test_list_names_maps_and_sunspec_sites() -> None:
    out = io.StringIO()
    assert run(build_parser().parse_args(["emulate", "--list"]), out) == 0
    text = out.getvalue()
    assert "eastron_sdm630" in text and "grid_meter" in text and "Eastron" in text
    assert "sunspec_hybrid" in text and "(sunspec)" in text


def test_bindings_get_consecutive_unit_ids_unless_given() -> None:
    bindings = parse_bindings(["eastron_sdm630", "sunspec_hybrid", "eastron_sdm120@7"], first_unit=3)
    assert [(b.register_map.id, b.unit_id) for b in bindings] == [
        ("eastron_sdm630", 3), ("sunspec_hybrid", 4), ("eastron_sdm120", 7)]
    with pytest.raises(ValueError):
        parse_bindings(["eastron_sdm630@2", "eastron_sdm120@2"], first_unit=None)
    with pytest.raises(ValueError):
        parse_bindings(["no_such_map"], first_unit=None)


def test_tcp_address_defaults_to_loopback() -> None:
    assert parse_tcp(":1502") == ("127.0.0.1", 1502)
    assert parse_tcp("0.0.0.0:502") == ("0.0.0.0", 502)


def test_runs_until_sigint() -> None:
    process = subprocess.Popen([sys.executable, "-m", "hems.cli", "emulate", "eastron_sdm630", "--tcp", ":0",
                                "--status-every", "0.1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 10
        lines = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "SoC" in line:
                break
        assert any("serving eastron_sdm630@1 on tcp://127.0.0.1:" in line for line in lines), lines
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=5)
        assert process.returncode == 0
        assert "stopped" in out
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
