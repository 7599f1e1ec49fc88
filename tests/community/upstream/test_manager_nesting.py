"""Nesting without a broker: an upstream manager and two community managers exchange their messages
through an in-memory wire on a stepped clock; the homes' bids and meter reports are injected as the
homes would send them."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pytest

from hems.community.config import UPSTREAM_PARTICIPANT
from hems.community.ledger import RecordKind
from hems.community.manager import CommunityManager, Outgoing
from hems.community.mechanisms.base import Curve as BookCurve
from hems.community.mechanisms.bid_curve import curve_value_wh
from hems.community.state import CommunityState
from hems.protocol.codec import decode, encode
from hems.protocol.messages import MeterReport, OrderSubmission, SlotBid
from hems.protocol.topics import HomeTopic, Topics
from hems.protocol.units import round_half_even
from tests.community.test_manager import utc
from tests.community.upstream.nesting import (DAY_S, HOMES, UPSTREAM, Layout, check_nested, community_config,
                                              home_curve, upstream_config)

STEP_S = 60


class Wire:
    """An in-memory broker: every message reaches every manager, and so does every answer."""

    def __init__(self, managers: list[CommunityManager]) -> None:
        self.managers = managers
        self.sent: list[Outgoing] = []

    def send(self, out: list[Outgoing], now_s: float) -> None:
        queue = list(out)
        while queue:
            item = queue.pop(0)
            self.sent.append(item)
            for manager in self.managers:
                queue += manager.handle(item.topic, item.payload, now_s)


class Street:
    """The three managers, the homes that bid and report, and the clock."""

    def __init__(self, tmp_path: Path, layout: Layout) -> None:
        self.layout = layout
        configs = [upstream_config(tmp_path / UPSTREAM, layout)]
        configs += [community_config(name, tmp_path / name, layout) for name in HOMES]
        self.states = [CommunityState(config.community.database_path) for config in configs]
        self.managers = {config.community.id: CommunityManager(config, state)
                         for config, state in zip(configs, self.states)}
        self.wire = Wire(list(self.managers.values()))
        self.sequence: dict[str, int] = defaultdict(int)
        self.bid: set[tuple[str, int]] = set()
        self.reported: set[tuple[str, int]] = set()
        self.deviation_wh = 37  # n-heat imports this much more than allocated: its imbalance, not the upstream's

    def close(self) -> None:
        for state in self.states:
            state.close()

    def start(self, now_s: float) -> None:
        self.wire.send(self.managers[UPSTREAM].start(now_s), now_s)  # its config reaches the communities
        for name in HOMES:
            self.wire.send(self.managers[name].start(now_s), now_s)

    def run(self, start_s: int, until_s: int) -> None:
        now_s = start_s
        while now_s <= until_s:
            for name in HOMES:
                self._bid(name, now_s)
                self._report(name, now_s)
            for manager in self.managers.values():
                self.wire.send(manager.tick(now_s), now_s)
            for manager in self.managers.values():  # nothing left due: the service would spin
                assert manager.next_event_s(now_s) > now_s, (manager.config.community.id, now_s)
            now_s += STEP_S

    def _bid(self, name: str, now_s: int) -> None:
        manager = self.managers[name]
        grid = manager.config.market.price_grid_micro()
        for slot_s in manager.calendar.open_slots(now_s):
            if (name, slot_s) in self.bid:
                continue
            self.bid.add((name, slot_s))
            for home in HOMES[name]:
                self.sequence[home] += 1
                bid = SlotBid(slot_start=utc(slot_s), duration_s=self.layout.community_slot_s,
                              curve=home_curve(name, home, self.layout.community_slot_s, slot_s, grid))
                raw = encode(OrderSubmission(sequence=self.sequence[home], slots=[bid]), sender=home,
                             sent_at=utc(now_s))
                self.wire.send([Outgoing(Topics(name).home(home, HomeTopic.ORDERS), raw)], now_s)

    def _report(self, name: str, now_s: int) -> None:
        slot_s = now_s - self.layout.community_slot_s
        state = self.managers[name].state
        if state.slot(slot_s) is None or (name, slot_s) in self.reported:
            return
        self.reported.add((name, slot_s))
        for home in HOMES[name]:
            body = next((item.body for item in state.ledger.records(kind=RecordKind.ALLOCATION, slot_start_s=slot_s,
                                                                    home=home)), {"bought_wh": 0, "sold_wh": 0})
            extra = self.deviation_wh if home == "n-heat" else 0
            raw = encode(MeterReport(slot_start=utc(slot_s), duration_s=self.layout.community_slot_s,
                                     import_wh=body["bought_wh"] + extra, export_wh=body["sold_wh"]),
                         sender=home, sent_at=utc(now_s))
            self.wire.send([Outgoing(Topics(name).home(home, HomeTopic.METER), raw)], now_s)


@pytest.fixture
def street_factory(tmp_path):
    made: list[Street] = []

    def make(layout: Layout) -> Street:
        street = Street(tmp_path, layout)
        made.append(street)
        return street

    yield make
    for street in made:
        street.close()


LAYOUTS = {
    "same slots": Layout(),
    "5-min upstream under a 15-min community": Layout(upstream_slot_s=300, upstream_lead_s=960),
    "15-min upstream over 5-min communities": Layout(community_slot_s=300, community_lead_s=60,
                                                     upstream_lead_s=300),
    "other upstream grid, an auction in south": Layout(upstream_points=9, south_mechanism="uniform_auction"),
    "residual sent more than a slot ahead": Layout(submit_lead_s=1_000),
    "bilateral and differentiated, other upstream grid": Layout(upstream_points=9, north_mechanism="bilateral",
                                                                south_mechanism="differentiated"),
    "energy collective and pay-as-bid": Layout(north_mechanism="energy_collective", south_mechanism="pay_as_bid"),
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_two_communities_clear_consistently_under_one_upstream(street_factory, layout):
    street = street_factory(layout)
    start_s = DAY_S - 3600
    street.start(start_s)
    assert all(street.managers[name].upstream.active for name in HOMES)
    street.run(start_s, DAY_S + 2 * 3600)
    traded = check_nested(street.managers[UPSTREAM].state, {name: street.managers[name].state for name in HOMES},
                          layout, DAY_S, DAY_S + 3600)
    assert traded["north"] > 0 > traded["south"], traded  # north bought upstream what south sold
    check_prices_follow_upstream(street, layout)
    # No allocation message for the upstream participant on our topics; the homes got theirs.
    topics = {item.topic for item in street.wire.sent}
    assert not any(f"/home/{UPSTREAM_PARTICIPANT}/" in topic for topic in topics)
    assert Topics("north").home("n-heat", HomeTopic.ALLOCATION) in topics


def check_prices_follow_upstream(street: Street, layout: Layout) -> None:
    """Where the homes kept their bids, a bid-curve community clears within 0.001 ¤/kWh of the upstream
    price of its slot: the upstream trade was shared where the demand was (an even split of a 15-min
    allocation over 5-min slots of unequal demand misses by some 0.02 ¤/kWh)."""
    upstream = street.managers[UPSTREAM].state
    for name in HOMES:
        if street.managers[name].config.market.mechanism != "bid_curve":
            continue
        for slot_s in range(DAY_S, DAY_S + 3600, layout.community_slot_s):
            overlapping = range(slot_s // layout.upstream_slot_s * layout.upstream_slot_s,
                                slot_s + layout.community_slot_s, layout.upstream_slot_s)
            prices = [upstream.slot(item).clearing["price_micro"] for item in overlapping]
            internal = street.managers[name].state.slot(slot_s).clearing["price_micro"]
            assert abs(internal - sum(prices) / len(prices)) <= 1_000, (name, slot_s, internal, prices)


def test_the_residual_submitted_is_the_sum_of_the_homes_curves(street_factory):
    layout = LAYOUTS["other upstream grid, an auction in south"]
    street = street_factory(layout)
    street.start(DAY_S - 3600)
    street.run(DAY_S - 3600, DAY_S)
    upstream_grid = street.managers[UPSTREAM].config.market.price_grid_micro()
    north_grid = street.managers["north"].config.market.price_grid_micro()
    submissions = [decode(item.payload, (OrderSubmission,)).payload for item in street.wire.sent
                   if item.topic == Topics(UPSTREAM).home("north", HomeTopic.ORDERS)]
    assert submissions and all(len(item.slots) == 1 for item in submissions)
    for submission in submissions:
        bid = submission.slots[0]
        slot_s = int(bid.slot_start.timestamp())
        curves = [home_curve("north", home, 900, slot_s, north_grid) for home in HOMES["north"]]
        assert bid.curve.prices_micro == upstream_grid
        for price, quantity in zip(bid.curve.prices_micro, bid.curve.net_import_wh):
            expected = sum(curve_value_wh(BookCurve(home, tuple(curve.prices_micro), tuple(curve.net_import_wh)),
                                          price) for home, curve in zip(HOMES["north"], curves))
            assert quantity == round_half_even(expected)


def test_an_upstream_gate_after_ours_is_refused_at_run_time(street_factory, caplog):
    # The upstream's gate closes 200 s before its slots, ours 300 s: its allocation would come too late.
    layout = Layout(upstream_lead_s=200)
    street = street_factory(layout)
    with caplog.at_level(logging.ERROR, logger="hems.community.upstream.desk"):
        street.start(DAY_S - 3600)
    assert not street.managers["north"].upstream.active
    assert "the upstream lead must exceed 300 s" in caplog.text
    street.run(DAY_S - 3600, DAY_S + 1800)
    north = street.managers["north"].state
    # Nothing went upstream; north traded with its retailer as before.
    assert not any(item.topic.startswith(f"hems/v1/{UPSTREAM}/home/") for item in street.wire.sent)
    assert north.slot(DAY_S).clearing["homes"] == 3
    assert not north.ledger.records(kind=RecordKind.ALLOCATION, home=UPSTREAM_PARTICIPANT)
