"""Every example under deploy/examples/ validates and passes check-config's map and capability check."""

from __future__ import annotations

from pathlib import Path

import pytest

from hems.cli import main
from hems.config import load_config
from hems.config.check import check_devices

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
FILES = sorted(EXAMPLES.glob("*.toml"))


def test_the_promised_examples_exist():
    assert {path.name for path in FILES} >= {
        "sunspec-hybrid.toml", "huawei-luna2000.toml", "victron-gx.toml", "sdm630-p1.toml", "emulated-site.toml",
        "hems.toml"}


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_example_validates_and_its_maps_resolve(path, capsys):
    config = load_config(path)
    result = check_devices(config)
    assert result.problems == []
    assert config.device, "an example without devices teaches nothing"
    assert config.metrics.enabled and config.metrics.address == "127.0.0.1"
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok")


def test_the_examples_use_what_they_say():
    maps = {path.name: {device.map for device in load_config(path).device} for path in FILES}
    assert maps["sunspec-hybrid.toml"] == {"sunspec"}
    assert maps["huawei-luna2000.toml"] == {"huawei_sun2000"}
    assert maps["victron-gx.toml"] == {"victron_gx"}
    sdm630 = load_config(EXAMPLES / "sdm630-p1.toml")
    meter = next(device for device in sdm630.device if device.map == "eastron_sdm630")
    assert meter.rtu is not None and sdm630.p1 is not None
    emulated = load_config(EXAMPLES / "emulated-site.toml")
    assert str(emulated.home.state_directory) == "state"
    assert {device.tcp for device in emulated.device} == {"127.0.0.1:5020"}
    # What install.sh copies to /etc/hems must never reach real hardware before it is edited.
    installed = load_config(EXAMPLES / "hems.toml")
    assert all(device.tcp and device.tcp.startswith("127.0.0.1:") for device in installed.device)
    assert str(installed.home.state_directory) == "/var/lib/hems"
