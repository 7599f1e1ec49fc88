"""Configuration texts shared by the config tests."""

from __future__ import annotations

import pytest

from hems.config import ConfigError, HomeConfig, parse_config

#: The smallest valid file: [home] with an id, [battery] and [grid].
MINIMAL = """
[home]
id = "home-01"

[battery]
capacity_wh = 10000
max_charge_w = 5000
max_discharge_w = 5000

[grid]
import_limit_w = 17000
export_limit_w = 4000
"""


def load(text: str) -> HomeConfig:
    """Validate TOML text."""
    return parse_config(text, "test.toml")


def problems(text: str) -> list[str]:
    """The problem lines of an invalid text (fails the test if it is valid)."""
    with pytest.raises(ConfigError) as raised:
        load(text)
    return raised.value.problems


def with_section(header: str, body: str) -> str:
    """MINIMAL plus one more table (or extra keys in one of its own tables)."""
    if f"[{header}]\n" in MINIMAL:
        return MINIMAL.replace(f"[{header}]\n", f"[{header}]\n{body}\n")
    return f"{MINIMAL}\n[{header}]\n{body}\n"
