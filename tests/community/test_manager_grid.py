"""The manager's grid review: a clearing that would push more through the transformer than it carries,
or lift the far end of the feeder above the voltage band, is cleared again with the homes capped; the
slot result says so; a slot that keeps every limit is left as it was; [grid] errors name the key."""

from __future__ import annotations

import pytest

from hems.community.config import parse_community_config
from hems.community.grid.check import check
from hems.community.grid.feeder import FeederModel
from hems.community.manager import CommunityManager
from hems.config.errors import ConfigError
from hems.protocol.messages import Allocation, Side, SlotResult

from .test_manager import DAY_S, LEAD_S, SLOT_S, config_text, on, submit

SLOT = DAY_S + 2 * SLOT_S
BEFORE_GATE = SLOT - LEAD_S - 100
#: 900-s slots: 8 kW through the transformer is 2,000 Wh a slot.
GRID = """
[grid]
transformer_import_limit_w = 40000
transformer_export_limit_w = 8000
voltage_band_pct = 10
homes = [{ id = "alice", position_m = 100, voltage_sensitivity_v_per_kw = 0.5 },
         { id = "bob", position_m = 300, voltage_sensitivity_v_per_kw = 1.5 },
         { id = "carol", position_m = 500, voltage_sensitivity_v_per_kw = 2.5 }]
"""


@pytest.fixture
def grid_manager(manager_factory):
    def make(mechanism: str = "uniform_auction") -> CommunityManager:
        return manager_factory(mechanism, tables=GRID)

    return make


def result_of(out) -> SlotResult:
    """The result of SLOT (the tick also clears the empty slots before it)."""
    return next(item for item in on(out, "/result", SlotResult).values() if int(item.slot_start.timestamp()) == SLOT)


def positions(out) -> dict[str, int]:
    return {topic.split("/")[-2]: item.bought_wh - item.sold_wh for topic, item in on(out, "/allocation", Allocation).items()}


@pytest.mark.parametrize("mechanism", ["uniform_auction", "bid_curve", "differentiated", "bilateral"])
def test_a_clearing_beyond_the_transformer_is_cleared_again_inside_it(grid_manager, mechanism):
    manager = grid_manager(mechanism)
    manager.start(DAY_S)
    # Everyone sells at noon: 2,000 + 1,500 + 1,200 Wh, and the retailer takes what nobody buys.
    for home, wh in (("alice", 2000), ("bob", 1500), ("carol", 1200)):
        assert submit(manager, home, BEFORE_GATE, SLOT, orders=[(Side.SELL, wh, 80_000)])
    out = manager.tick(SLOT - LEAD_S)
    cleared = positions(out)
    assert sum(cleared.values()) >= -2000  # the transformer carries 2,000 Wh in the slot
    feeder = FeederModel.from_section(manager.config.grid, manager.members)
    assert not check(feeder, None, cleared, SLOT_S).congested  # nor is the far end above 253 V
    assert all(wh <= 0 for wh in cleared.values())  # capped toward zero, never turned around
    result = result_of(out)
    assert result.grid_congested is True and result.grid_curtailed_wh >= 4700 - 2000
    body = manager.state.slot(SLOT).clearing
    assert body["details"]["grid"]["kept_after"] is True and body["details"]["grid"]["violations"]


def test_a_slot_inside_every_limit_is_left_alone(grid_manager):
    manager = grid_manager()
    manager.start(DAY_S)
    submit(manager, "alice", BEFORE_GATE, SLOT, orders=[(Side.SELL, 800, 90_000)])
    submit(manager, "bob", BEFORE_GATE, SLOT, orders=[(Side.BUY, 500, 250_000)])
    out = manager.tick(SLOT - LEAD_S)
    assert positions(out) == {"alice": -500, "bob": 500}  # her rest asks above feed-in: unsold
    result = result_of(out)
    assert result.grid_congested is False and result.grid_curtailed_wh == 0


def test_without_a_feeder_there_is_no_review(manager_factory):
    manager = manager_factory()
    manager.start(DAY_S)
    submit(manager, "alice", BEFORE_GATE, SLOT, orders=[(Side.SELL, 20_000, 80_000)])
    out = manager.tick(SLOT - LEAD_S)
    result = result_of(out)
    assert result.grid_congested is None and positions(out) == {"alice": -20_000}


def test_feeder_homes_must_be_members():
    text = config_text() + GRID.replace('id = "carol"', 'id = "mallory"')
    with pytest.raises(ConfigError) as caught:
        parse_community_config(text)
    assert any("grid.homes[2].id" in line and "mallory" in line for line in caught.value.problems)
