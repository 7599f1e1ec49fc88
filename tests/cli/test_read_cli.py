"""``hems read`` as an installer runs it, against emulators on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from drivers.emulators import MapBinding, SitePlant
from drivers.emulators.catalog import sunspec_builtins
from drivers.emulators.modbus_server import EmulatorServer
from drivers.maps import load_map
from tests.emulators.helpers import NOON_S

CONFIG = """
[home]
id = "cli-test"

[battery]
capacity_wh = 10000
max_charge_w = 5000
max_discharge_w = 5000

[grid]
import_limit_w = 17000
export_limit_w = 4000

[[device]]
name = "hybrid"
map = "sunspec"
tcp = "127.0.0.1:{port}"
unit_id = 1

[[device]]
name = "meter"
map = "eastron_sdm630"
tcp = "127.0.0.1:{port}"
unit_id = 2
"""


async def run_hems(*arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "hems", *arguments,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_read_prints_the_plants_values_with_units(tmp_path):
    plant = SitePlant(clock=lambda: NOON_S)
    bindings = [MapBinding(sunspec_builtins()["sunspec_hybrid"], 1), MapBinding(load_map("eastron_sdm630"), 2)]
    server = EmulatorServer(bindings, plant, tcp=("127.0.0.1", 0))
    await server.start()
    try:
        config = tmp_path / "home.toml"
        config.write_text(CONFIG.format(port=server.port))
        code, stdout, stderr = await run_hems("read", "--config", str(config), "--json")
        assert code == 0, stderr
        document = json.loads(stdout)
        flows = plant.advance()
        assert document["meter"]["grid_power_w"]["value"] == pytest.approx(flows.grid_w, abs=1)
        assert document["meter"]["grid_power_w"]["unit"] == "W"
        assert document["hybrid"]["battery_soc_pct"]["value"] == pytest.approx(plant.battery.soc_pct, abs=1)
        assert document["hybrid"]["pv_power_w"]["value"] == pytest.approx(flows.pv_w, abs=1)

        code, table, _ = await run_hems("read", "--config", str(config))
        assert code == 0 and "grid_power_w" in table and " W" in table
    finally:
        await server.stop()


async def test_read_reports_an_unreachable_device_and_a_config_error(tmp_path):
    config = tmp_path / "home.toml"
    config.write_text(CONFIG.format(port=1).replace('map = "sunspec"', 'map = "eastron_sdm630"'))
    code, stdout, stderr = await run_hems("read", "--config", str(config))
    assert code == 1 and "unavailable" in stdout
    config.write_text(CONFIG.format(port=70000))  # names the key and the range
    code, _, stderr = await run_hems("read", "--config", str(config))
    assert code == 2 and "outside 1..65535" in stderr
