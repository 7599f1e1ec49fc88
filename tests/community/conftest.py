"""Shared fixtures of the community tests."""

from __future__ import annotations

import pytest

from hems.community.config import parse_community_config
from hems.community.manager import CommunityManager
from hems.community.state import CommunityState

from .test_manager import config_text


@pytest.fixture
def manager_factory(tmp_path):
    opened: list[CommunityState] = []

    def make(mechanism: str = "uniform_auction", extra_market: str = "", tables: str = "") -> CommunityManager:
        """A manager of ``config_text``; ``tables`` are appended (e.g. ``[grid]``)."""
        config = parse_community_config(config_text(mechanism, extra_market).replace(
            'id = "street"', f'id = "street"\nstate_directory = "{tmp_path}"', 1) + tables)
        state = CommunityState(config.community.database_path)
        opened.append(state)
        return CommunityManager(config, state)

    yield make
    for state in opened:
        state.close()
