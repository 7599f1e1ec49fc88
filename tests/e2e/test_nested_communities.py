"""Two communities, "north" and "south", nested under one upstream manager "feeder", over a real
mosquitto: three real community services (each community with its second connection to the
upstream market), homes played by the test (their bids, their meter reports, reading their
allocations), and one simulated clock moved by the test from moment to moment of two slots.

Done when: the upstream clears each slot with exactly two participants, each community's upstream
allocation equals the opposite of its upstream participant's position in its own clearing, every
book balances, and each community's homes and upstream participant add up to its retail residual.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from hems.clock import VirtualClock
from hems.community.config import UPSTREAM_PARTICIPANT
from hems.community.ledger import RecordKind
from hems.community.records import utc
from hems.community.service import CommunityService
from hems.community.state import CommunityState
from hems.protocol.codec import decode, encode
from hems.protocol.messages import Allocation, MeterReport, OrderSubmission, SlotBid
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.topics import HomeTopic, Topics
from tests.community.upstream.nesting import (DAY_S, HOMES, UPSTREAM, Layout, check_nested, community_config,
                                              home_curve, upstream_config)
from tests.conftest import wait_for

LAYOUT = Layout()  # upstream: 15-min slots, gate 10 min ahead; communities: 15 min, 5 min ahead
SLOTS = (DAY_S, DAY_S + LAYOUT.community_slot_s)
SUBMIT_LEAD_S = 60
DEVIATION_WH = 37  # n-heat imports this much more than allocated: its own imbalance


class Clock(VirtualClock):
    def advance_to(self, instant_s: float) -> None:
        if instant_s > self.now_s():
            self.advance(instant_s - self.now_s())


@dataclass
class Homes:
    """The homes of both communities: one MQTT client that bids, reads allocations and reports meters."""

    link: MqttLink
    allocations: dict[tuple[str, str, int], Allocation] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)  # allocations addressed to anyone but a home
    sequence: int = 0

    async def on_allocation(self, message: IncomingMessage) -> None:
        parts = message.topic.split("/")  # hems/v1/<community>/home/<home>/allocation
        community, home = parts[2], parts[4]
        if community == UPSTREAM:
            return  # the communities' own allocations in the upstream market
        if home not in HOMES.get(community, {}):
            self.foreign.append(message.topic)
            return
        allocation = decode(message.payload, (Allocation,)).payload
        self.allocations[(community, home, int(allocation.slot_start.timestamp()))] = allocation

    async def bid(self, community: str, grid: list[int], now_s: float) -> None:
        for home in HOMES[community]:
            self.sequence += 1
            slots = [SlotBid(slot_start=utc(slot_s), duration_s=LAYOUT.community_slot_s,
                             curve=home_curve(community, home, LAYOUT.community_slot_s, slot_s, grid))
                     for slot_s in SLOTS]
            raw = encode(OrderSubmission(sequence=self.sequence, slots=slots), sender=home, sent_at=utc(now_s))
            assert await self.link.publish(Topics(community).home(home, HomeTopic.ORDERS), raw)

    async def report(self, community: str, slot_s: int, now_s: float) -> None:
        for home in HOMES[community]:
            allocation = self.allocations[(community, home, slot_s)]
            extra = DEVIATION_WH if home == "n-heat" else 0
            report = MeterReport(slot_start=utc(slot_s), duration_s=LAYOUT.community_slot_s,
                                 import_wh=allocation.bought_wh + extra, export_wh=allocation.sold_wh)
            raw = encode(report, sender=home, sent_at=utc(now_s))
            assert await self.link.publish(Topics(community).home(home, HomeTopic.METER), raw)


@dataclass
class Nest:
    clock: Clock
    services: dict[str, CommunityService]
    homes: Homes

    def state(self, name: str) -> CommunityState:
        manager = self.services[name].manager
        assert manager is not None
        return manager.state


@contextlib.asynccontextmanager
async def nest(tmp_path: Path, broker_url: str) -> AsyncIterator[Nest]:
    clock = Clock(DAY_S - 1800)
    configs = {UPSTREAM: upstream_config(tmp_path / UPSTREAM, LAYOUT, broker_url)}
    configs |= {name: community_config(name, tmp_path / name, LAYOUT, broker_url) for name in HOMES}
    services = {name: CommunityService(config, clock) for name, config in configs.items()}
    stop = asyncio.Event()
    tasks = []
    homes = Homes(MqttLink(BrokerSettings(url=broker_url, client_id="nested-homes")))
    try:
        with clock.participant():  # time moves only when the test moves it
            for service in services.values():
                await service.start()
                tasks.append(asyncio.ensure_future(service.run(stop)))
            homes.link.subscribe("hems/v1/+/home/+/allocation", homes.on_allocation)
            await homes.link.start(connect_timeout_s=10)
            yield Nest(clock, services, homes)
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await homes.link.stop()
        for service in services.values():
            await service.stop()


async def test_two_communities_nested_under_one_upstream_manager_clear_consistently(tmp_path, mosquitto_broker):
    async with nest(tmp_path, mosquitto_broker.url) as running:
        clock, homes = running.clock, running.homes
        # Each community has read the upstream's retained market config and taken its seat there.
        await wait_for(lambda: all(running.services[name].manager.upstream.active for name in HOMES), timeout_s=10)
        for name in HOMES:
            await homes.bid(name, running.services[name].config.market.price_grid_micro(), clock.now_s())
        await wait_for(lambda: all(len(running.state(name).bids_for_slot(slot_s)) == len(HOMES[name])
                                   for name in HOMES for slot_s in SLOTS), timeout_s=10)
        for slot_s in SLOTS:
            gate_up = slot_s - LAYOUT.upstream_lead_s
            clock.advance_to(gate_up - SUBMIT_LEAD_S)  # each community submits its residual
            await wait_for(lambda: {bid.home for bid in running.state(UPSTREAM).bids_for_slot(slot_s)} == set(HOMES),
                           timeout_s=20)
            clock.advance_to(gate_up)  # the upstream clears; the allocations go down
            await wait_for(lambda: all(running.state(name).ledger.records(kind=RecordKind.UPSTREAM_ALLOCATION,
                                                                          slot_start_s=slot_s) for name in HOMES),
                           timeout_s=20)
            clock.advance_to(slot_s - LAYOUT.community_lead_s)  # each community clears with the upstream in it
            await wait_for(lambda: all((name, home, slot_s) in homes.allocations
                                       for name in HOMES for home in HOMES[name]), timeout_s=20)
        for slot_s in SLOTS:  # each slot ends: the homes report, then the communities report upstream
            clock.advance_to(slot_s + LAYOUT.community_slot_s)
            for name in HOMES:
                await homes.report(name, slot_s, clock.now_s())
            await wait_for(lambda: all((record := running.state(name).slot(slot_s)) is not None
                                       and record.state == "SETTLED" for name in (*HOMES, UPSTREAM)), timeout_s=20)

        upstream = running.state(UPSTREAM)
        traded = check_nested(upstream, {name: running.state(name) for name in HOMES}, LAYOUT, SLOTS[0],
                              SLOTS[-1] + LAYOUT.community_slot_s)
        assert traded["north"] > 0 > traded["south"], traded
        # The upstream knows the communities only: no home of theirs appears in its books.
        assert {record.home for record in upstream.ledger.records(kind=RecordKind.ALLOCATION)} <= set(HOMES)
        # The homes got their allocations; nothing was published for the upstream participant.
        assert homes.foreign == []
        for name in HOMES:
            for slot_s in SLOTS:
                position = sum(homes.allocations[(name, home, slot_s)].bought_wh
                               - homes.allocations[(name, home, slot_s)].sold_wh for home in HOMES[name])
                participant = running.state(name).ledger.records(kind=RecordKind.ALLOCATION, slot_start_s=slot_s,
                                                                home=UPSTREAM_PARTICIPANT)[-1].body
                record = running.state(name).slot(slot_s).clearing
                # The homes' allocations and the upstream participant add up to the retail residual.
                assert position + participant["bought_wh"] - participant["sold_wh"] \
                    == record["grid_import_wh"] - record["grid_export_wh"], (name, slot_s)
            assert running.state(name).ledger.verify().ok
        assert upstream.ledger.verify().ok
