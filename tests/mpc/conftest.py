"""Fixtures of the MPC tests."""

from __future__ import annotations

import pytest

from .helpers import full_site


@pytest.fixture(scope="module")
def full_planner():
    """A planner of the full site, 96 x 15 min (built once per test module)."""
    from hems.mpc.planner import Planner

    return Planner(full_site(), n_steps=96, step_s=900)
