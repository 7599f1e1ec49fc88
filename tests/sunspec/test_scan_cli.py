"""``hems scan`` as an installer runs it: a subprocess against a server started by the test."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from drivers.sunspec import hybrid_site_map
from tests.sunspec.servers import modbus_server, runs_of, silent_server

REPOSITORY = Path(__file__).resolve().parents[2]


async def run_scan(*arguments: str) -> tuple[int, str, str]:
    """Run ``python -m hems.cli scan ...`` while this test's loop keeps serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hems.cli", "scan", *arguments, cwd=REPOSITORY,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_scan_prints_the_models_and_values():
    site = hybrid_site_map(initial={"m103_W_SF": -1, "m103_W": 345.6})
    async with modbus_server(runs_of(site), unit_id=1) as port:
        code, out, err = await run_scan(f"127.0.0.1:{port}", "--unit", "1", "--timeout", "0.5")
    assert code == 0, out + err
    assert "SunSpec device at base address 40000" in out
    for model_id, label in [(1, "Common"), (103, "Inverter (Three Phase)"), (120, "Nameplate"),
                            (123, "Immediate Controls"), (124, "Storage"), (203, "wye-connect")]:
        assert any(f" {model_id} " in line and label in line for line in out.splitlines()), (model_id, out)
    assert "manufacturer hems, model emulated hybrid" in out
    assert "pv_power_w: 345.6 W" in out


async def test_scan_of_a_silent_device_finds_nothing():
    async with silent_server() as port:
        code, out, _ = await run_scan(f"127.0.0.1:{port}", "--unit", "7", "--timeout", "0.2")
    assert code == 1
    assert "unit 7: no answer" in out and "nothing found" in out


async def test_scan_recognises_a_vendor_map_by_its_identify_point():
    # One device serving the SMA profile (device class 8001 at 30051) and SunSpec at 40000.
    from drivers.maps import load_map

    runs = runs_of(load_map("sma_sunny_tripower")) + runs_of(hybrid_site_map())
    async with modbus_server(sorted(runs), unit_id=3) as port:
        code, out, err = await run_scan(f"127.0.0.1:{port}", "--unit", "3", "--timeout", "0.5")
    assert code == 0, out + err
    assert "vendor map sma_sunny_tripower matches: device_class = 8001" in out
    assert "sma_sunny_boy_storage matches" not in out
