"""The demo raises its soft limit on open files to what its homes need (Debian's default is 1,024)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from hems.demo.open_files import descriptors_needed, open_files, raise_open_file_limit


@pytest.fixture
def restore_limit():
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_the_soft_limit_rises_to_what_200_homes_need(restore_limit) -> None:
    _, hard = restore_limit
    needed = descriptors_needed(200)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    assert raise_open_file_limit(200) == needed
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (needed, hard)
    # Never lowered: 10 homes need less than what is now allowed.
    assert raise_open_file_limit(10) == needed
    opened, limit = open_files()
    assert 0 < opened < limit == needed


def test_a_hard_limit_too_low_is_used_whole_and_named() -> None:
    # In a child: lowering the hard limit cannot be undone without privileges.
    script = """
import logging, resource, sys
from hems.demo.open_files import raise_open_file_limit
logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (512, 1500))
print(raise_open_file_limit(200), resource.getrlimit(resource.RLIMIT_NOFILE))
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    warning, result = finished.stdout.strip().splitlines()
    assert result == "1500 (1500, 1500)"
    assert "200 homes need about 2656 open files, but the hard limit is 1500" in warning
    assert "homes beyond about 103 will fail to connect" in warning
