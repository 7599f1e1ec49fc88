"""deploy/install.sh into a temporary root: dry run, idempotence, uninstall, platform check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "install.sh"
RULES = REPO / "deploy" / "udev" / "99-hems-serial.rules"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(path.relative_to(root)): (path.stat().st_mtime_ns, path.read_bytes() if path.is_file() else b"")
            for path in sorted(root.rglob("*"))}


def test_syntax():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dry_run_changes_nothing_and_lists_every_step(tmp_path):
    root = tmp_path / "root"
    result = run("--dry-run", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert not root.exists()
    for step in ("would: create virtual environment /opt/hems/venv", "would: create /etc/hems",
                 "would: install /etc/systemd/system/hems.service",
                 "would: install /etc/udev/rules.d/99-hems-serial.rules",
                 "would run: systemctl enable hems.service", "would run: udevadm control --reload"):
        assert step in result.stdout, step
    assert "useradd" in result.stdout and "dialout" in result.stdout


def test_install_into_root_is_idempotent_and_never_overwrites_config(tmp_path):
    root = tmp_path / "root"
    (root / "etc" / "hems").mkdir(parents=True)
    (root / "etc" / "hems" / "hems.toml").write_text("# the installer's own\n")
    first = run("--root", str(root), "--skip-venv")
    assert first.returncode == 0, first.stderr
    assert (root / "etc/systemd/system/hems.service").read_bytes() == (REPO / "hems.service").read_bytes()
    assert (root / "etc/udev/rules.d/99-hems-serial.rules").read_bytes() == RULES.read_bytes()
    assert (root / "etc/systemd/system/hems.service").stat().st_mode & 0o777 == 0o644
    assert (root / "etc/hems/hems.toml").read_text() == "# the installer's own\n"
    assert "systemctl" in first.stdout  # printed, not run, under --root
    before = snapshot(root)
    second = run("--root", str(root), "--skip-venv")
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout
    assert "would run: systemctl" not in second.stdout
    assert snapshot(root) == before


def test_uninstall_keeps_config_and_state_unless_purge(tmp_path):
    root = tmp_path / "root"
    assert run("--root", str(root), "--skip-venv").returncode == 0
    (root / "opt/hems/venv/bin").mkdir(parents=True)
    (root / "var/lib/hems").mkdir(parents=True)
    (root / "var/lib/hems/hems.sqlite3").write_bytes(b"history")
    (root / "etc/hems/hems.toml").write_text("x = 1\n")
    result = run("--root", str(root), "--uninstall")
    assert result.returncode == 0, result.stderr
    assert "would run: systemctl disable --now hems.service" in result.stdout
    assert not (root / "etc/systemd/system/hems.service").exists()
    assert not (root / "etc/udev/rules.d/99-hems-serial.rules").exists()
    assert not (root / "opt/hems").exists()
    assert (root / "var/lib/hems/hems.sqlite3").read_bytes() == b"history"
    assert (root / "etc/hems/hems.toml").exists()
    assert "nothing to remove" in run("--root", str(root), "--uninstall").stdout
    purged = run("--root", str(root), "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not (root / "var/lib/hems").exists() and not (root / "etc/hems").exists()
    assert "would run: userdel hems" in purged.stdout


def fake_tools(directory: Path, machine: str, bits: str) -> dict[str, str]:
    directory.mkdir()
    for name, output in (("uname", machine), ("getconf", bits)):
        tool = directory / name
        tool.write_text(f"#!/bin/sh\necho {output}\n")
        tool.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ['PATH']}"}


@pytest.mark.parametrize("machine, bits", [("armv7l", "32"), ("aarch64", "32")])
def test_refuses_32_bit(tmp_path, machine, bits):
    result = run("--dry-run", "--root", str(tmp_path / "root"), env=fake_tools(tmp_path / "bin", machine, bits))
    assert result.returncode == 1
    assert "64-bit" in result.stderr


def test_environment_variable_root(tmp_path):
    root = tmp_path / "root"
    result = run("--skip-venv", env={"HEMS_INSTALL_ROOT": str(root)})
    assert result.returncode == 0, result.stderr
    assert (root / "etc/systemd/system/hems.service").exists()


def test_udev_rule_gives_dialout_0660_and_stable_names():
    lines = [line for line in RULES.read_text().splitlines() if line and not line.startswith("#")]
    labels = set(re.findall(r'LABEL="([^"]+)"', RULES.read_text()))
    assert set(re.findall(r'GOTO="([^"]+)"', RULES.read_text())) <= labels  # every jump lands
    adapters = [line for line in lines if "SYMLINK" in line]
    vendors = {re.search(r'ID_VENDOR_ID}=="([0-9a-f]{4})"', line).group(1) for line in adapters}
    assert {"0403", "10c4", "1a86"} <= vendors  # FTDI, CP210x, CH340
    for line in adapters:
        assert 'GROUP="dialout"' in line and 'MODE="0660"' in line
        assert 'SYMLINK+="hems/' in line
        for clause in line.split(", "):  # key, operator, quoted value
            assert re.fullmatch(r'[A-Z]+(\{[A-Za-z_]+\})?(==|!=|=|\+=)"[^"]*"', clause), clause
