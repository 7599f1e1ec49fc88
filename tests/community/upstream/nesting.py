"""Two communities, "north" and "south", nested under one upstream manager "feeder": their
configurations, their homes' bids, and the checks that they cleared consistently. Shared by the
manager-level test (no broker) and the end-to-end test over mosquitto."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from hems.community.config import UPSTREAM_PARTICIPANT, CommunityConfig, parse_community_config
from hems.community.ledger import RecordKind
from hems.community.mechanisms.base import ClearingResult
from hems.community.records import result_from_bodies
from hems.community.settlement import settlement_from_body
from hems.community.state import CommunityState
from hems.protocol.messages import Curve
from hems.protocol.units import round_half_even

DAY_S = 1_795_046_400  # 2026-11-18 00:00 UTC
UPSTREAM = "feeder"
#: Each home's net import (Wh per 15 min) at the feed-in and at the retail price, linear in between:
#: north imports on balance, south exports.
HOMES = {
    "north": {"n-heat": (900, 100), "n-shop": (400, -200), "n-flat": (300, 0)},
    "south": {"s-solar": (-300, -1300), "s-farm": (200, -500)},
}


@dataclass(frozen=True)
class Layout:
    """Slot lengths and gate leads of the upstream market and of the communities."""

    upstream_slot_s: int = 900
    upstream_lead_s: int = 600
    community_slot_s: int = 900
    community_lead_s: int = 300
    upstream_points: int = 12  # the communities' grid has 12 points too: the same prices
    north_mechanism: str = "bid_curve"
    south_mechanism: str = "bid_curve"
    submit_lead_s: int = 60

    @property
    def window_s(self) -> int:
        """The longer slot: both markets' slots tile it."""
        return max(self.upstream_slot_s, self.community_slot_s)


def upstream_config(directory: Path, layout: Layout, broker_url: str = "mqtt://127.0.0.1:1883") -> CommunityConfig:
    members = "\n".join(f'[[member]]\nid = "{name}"' for name in HOMES)
    return parse_community_config(f"""
[community]
id = "{UPSTREAM}"
state_directory = "{directory}"
[broker]
broker = "{broker_url}"
[market]
mechanism = "bid_curve"
slot_duration_s = {layout.upstream_slot_s}
gate_closure_lead_s = {layout.upstream_lead_s}
horizon_slots = 4
retail_price = 0.30
feed_in_price = 0.08
price_grid_points = {layout.upstream_points}
meter_deadline_s = 600
tie_break_seed = 3
{members}
""")


def community_config(name: str, directory: Path, layout: Layout, broker_url: str = "mqtt://127.0.0.1:1883"
                     ) -> CommunityConfig:
    members = "\n".join(f'[[member]]\nid = "{home}"' for home in HOMES[name])
    mechanism = layout.north_mechanism if name == "north" else layout.south_mechanism
    return parse_community_config(f"""
[community]
id = "{name}"
state_directory = "{directory}"
[broker]
broker = "{broker_url}"
[market]
mechanism = "{mechanism}"
slot_duration_s = {layout.community_slot_s}
gate_closure_lead_s = {layout.community_lead_s}
horizon_slots = 6
retail_price = 0.30
feed_in_price = 0.08
price_grid_points = 12
meter_deadline_s = 600
tie_break_seed = 5
{members}
[upstream]
community = "{UPSTREAM}"
submit_lead_s = {layout.submit_lead_s}
""")


def home_curve(community: str, home: str, slot_s: int, slot_start_s: int, grid_micro: list[int]) -> Curve:
    """The home's curve for one slot: its line, scaled to the slot length and varied slot by slot."""
    low, high = HOMES[community][home]
    scale = Fraction(slot_s, 900) * (1 + Fraction(slot_start_s // slot_s % 3, 5))
    span = grid_micro[-1] - grid_micro[0]
    quantities = [round_half_even(scale * (low + (high - low) * Fraction(price - grid_micro[0], span)))
                  for price in grid_micro]
    return Curve(prices_micro=list(grid_micro), net_import_wh=quantities)


def clearing(state: CommunityState, slot_s: int) -> ClearingResult:
    record = state.slot(slot_s)
    assert record is not None and record.clearing is not None, f"slot {slot_s} was not cleared"
    allocations = [item.body for item in state.ledger.records(kind=RecordKind.ALLOCATION, slot_start_s=slot_s)]
    return result_from_bodies(record.clearing, allocations)


def net_of(state: CommunityState, slot_s: int, home: str) -> int:
    """A participant's cleared net import in one slot (0 if it has no allocation)."""
    records = state.ledger.records(kind=RecordKind.ALLOCATION, slot_start_s=slot_s, home=home)
    return records[-1].body["bought_wh"] - records[-1].body["sold_wh"] if records else 0


def check_books(state: CommunityState, slot_s: int, homes: set[str]) -> ClearingResult:
    """One slot of one market: cleared and settled once, both balanced to the n¤; the participants'
    positions add up to what the market bought from (− sold to) its retailer."""
    record = state.slot(slot_s)
    assert record is not None and record.state == "SETTLED", (slot_s, record)
    result = clearing(state, slot_s)
    assert result.balance_error_nano() == 0, slot_s
    assert sum(item.net_import_wh for item in result.allocations) == result.grid_import_wh - result.grid_export_wh
    settlements = [settlement_from_body(item.body)
                   for item in state.ledger.records(kind=RecordKind.SETTLEMENT, slot_start_s=slot_s)]
    summary = record.settlement
    assert sum(item.bill_nano for item in settlements) == (summary["retailer_nano"] + summary["network_fees_nano"]
                                                          + summary["community_fees_nano"] + summary["rounding_nano"])
    assert {item.home for item in settlements} == homes | {item.home for item in result.allocations}
    return result


def check_nested(upstream: CommunityState, communities: dict[str, CommunityState], layout: Layout,
                 start_s: int, end_s: int) -> dict[str, int]:
    """Every check of "two communities nested under one upstream manager clear consistently" over
    [start_s, end_s); returns each community's total net import from the upstream market (Wh)."""
    traded = {name: 0 for name in communities}
    for slot_s in range(start_s, end_s, layout.upstream_slot_s):
        result = check_books(upstream, slot_s, set(communities))
        # The upstream sees each community as one participant, and only them.
        assert {item.home for item in result.allocations} == set(communities), slot_s
        assert upstream.slot(slot_s).clearing["homes"] == 2
        for settlement in upstream.ledger.records(kind=RecordKind.SETTLEMENT, slot_start_s=slot_s):
            # Each community reported its exchange as cleared: settled at its allocation, no imbalance.
            assert settlement.body["imbalance_wh"] == 0 and not settlement.body["estimated"], settlement.body
    for name, state in communities.items():
        for slot_s in range(start_s, end_s, layout.community_slot_s):
            result = check_books(state, slot_s, set(HOMES[name]))
            upstream_settlement = state.home_settlement(slot_s, UPSTREAM_PARTICIPANT)
            if result.allocation(UPSTREAM_PARTICIPANT) is not None:
                assert upstream_settlement is not None and upstream_settlement.imbalance_wh == 0
                assert not upstream_settlement.estimated
            assert state.slot(slot_s).clearing["homes"] == len(HOMES[name])  # real homes only
        for window_s in range(start_s, end_s, layout.window_s):
            allocated = sum(net_of(upstream, slot_s, name)
                            for slot_s in range(window_s, window_s + layout.window_s, layout.upstream_slot_s))
            participant = sum(net_of(state, slot_s, UPSTREAM_PARTICIPANT)
                              for slot_s in range(window_s, window_s + layout.window_s, layout.community_slot_s))
            assert allocated == -participant, (name, window_s, allocated, participant)
            traded[name] += allocated
    return traded
