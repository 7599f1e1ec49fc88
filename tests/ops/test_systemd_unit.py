"""hems.service passes systemd-analyze verify (no warnings at all) and security (exposure <= 2.0)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "hems.service"
EXPOSURE_THRESHOLD = 20  # systemd-analyze compares exposure x 10: 20 means <= 2.0
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")


def verifiable_copy(directory: Path) -> Path:
    """The unit with ExecStart pointed at /bin/true, under its own name.

    ``systemd-analyze verify`` fails when the ExecStart binary does not exist, and
    /opt/hems/venv/bin/hems exists only on an installed gateway. Only the binary
    path changes; the arguments and every other line are checked as written.
    """
    text = UNIT.read_text()
    assert text.count("ExecStart=/opt/hems/venv/bin/hems ") == 1
    copy = directory / "hems.service"
    copy.write_text(text.replace("ExecStart=/opt/hems/venv/bin/hems ", "ExecStart=/bin/true "))
    return copy


def test_verify_reports_nothing(tmp_path):
    result = subprocess.run([ANALYZE, "verify", "--man=no", str(verifiable_copy(tmp_path))],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path)
    # Unknown keys and bad values only warn (exit 0), so any output is a failure.
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_security_exposure_at_most_2(tmp_path):
    result = subprocess.run([ANALYZE, "security", "--offline=true", f"--threshold={EXPOSURE_THRESHOLD}",
                             str(verifiable_copy(tmp_path))],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path)
    match = re.search(r"Overall exposure level for hems\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0
    assert result.returncode == 0, result.stdout[-2000:]


def test_unit_has_the_required_settings():
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "on-failure",
        "TimeoutStopSec": "15", "User": "hems", "Group": "hems", "SupplementaryGroups": "dialout",
        "StateDirectory": "hems", "ConfigurationDirectory": "hems", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "DevicePolicy": "closed", "MemoryMax": "400M", "UMask": "0077", "SystemCallArchitectures": "native",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ExecStart": "/opt/hems/venv/bin/hems run --config /etc/hems/hems.toml",
    }
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    assert "@system-service" in settings["SystemCallFilter"]
    assert {"char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw"} <= set(settings["DeviceAllow"])
    # The dialout group must stay mapped, and the LAN reachable.
    assert "PrivateUsers" not in settings and "IPAddressDeny" not in settings
    assert "PrivateDevices" not in settings  # would hide the serial adapters
