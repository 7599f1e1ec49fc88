"""The manager's decisions without a broker: messages in, messages out, books in SQLite."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from hems.community.ledger import RecordKind
from hems.community.manager import CommunityManager, Outgoing
from hems.protocol.codec import decode, encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import (
    Ack,
    Allocation,
    Curve,
    MarketConfig,
    MeterReport,
    Order,
    OrderStatus,
    OrderSubmission,
    Side,
    SlotBid,
    SlotResult,
    SlotState,
)
from hems.protocol.topics import HomeTopic, Topics

DAY_S = 1_795_046_400  # 2026-11-18 00:00 UTC
SLOT_S = 900
LEAD_S = 300
HOMES = ("alice", "bob", "carol")
TOPICS = Topics("street")


def config_text(mechanism: str = "uniform_auction", extra_market: str = "") -> str:
    members = "\n".join(f'[[member]]\nid = "{home}"' for home in HOMES)
    return f"""
[community]
id = "street"
[market]
mechanism = "{mechanism}"
slot_duration_s = {SLOT_S}
gate_closure_lead_s = {LEAD_S}
horizon_slots = 4
retail_price = 0.30
feed_in_price = 0.08
meter_deadline_s = 600
tie_break_seed = 7
{extra_market}
{members}
"""


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def submit(manager: CommunityManager, home: str, now_s: float, slot_s: int, orders=(), curve=None,
           sequence: int | None = None, sender: str | None = None, message_id=None) -> list[Outgoing]:
    bid = SlotBid(slot_start=utc(slot_s), duration_s=SLOT_S,
                  orders=[Order(order_id=uuid.uuid4(), side=side, energy_wh=wh, limit_price_micro=price)
                          for side, wh, price in orders], curve=curve)
    payload = OrderSubmission(sequence=int(now_s * 1000) if sequence is None else sequence, slots=[bid])
    raw = encode(payload, sender=sender or home, sent_at=utc(now_s), message_id=message_id)
    return manager.handle(TOPICS.home(home, HomeTopic.ORDERS), raw, now_s)


def meter(manager: CommunityManager, home: str, now_s: float, slot_s: int, import_wh: int, export_wh: int,
          message_id=None) -> list[Outgoing]:
    raw = encode(MeterReport(slot_start=utc(slot_s), duration_s=SLOT_S, import_wh=import_wh, export_wh=export_wh),
                 sender=home, sent_at=utc(now_s), message_id=message_id)
    return manager.handle(TOPICS.home(home, HomeTopic.METER), raw, now_s)


def acks(out: list[Outgoing]) -> list[Ack]:
    return [decode(item.payload, (Ack,)).payload for item in out if item.topic.endswith("/ack")]


def on(out: list[Outgoing], suffix: str, kind):
    return {item.topic: decode(item.payload, (kind,)).payload for item in out if item.topic.endswith(suffix)}


def test_a_slot_is_cleared_at_gate_closure_and_settled_from_the_meters(manager_factory):
    manager = manager_factory()
    start_out = manager.start(DAY_S)
    config = on(start_out, "market/config", MarketConfig)
    assert config and next(iter(config.values())).mechanism == "uniform_auction"
    slot = DAY_S + 2 * SLOT_S
    now = slot - LEAD_S - 100
    assert acks(submit(manager, "alice", now, slot, orders=[(Side.SELL, 500, 100_000)]))[0].status == "OK"
    assert acks(submit(manager, "bob", now, slot, orders=[(Side.BUY, 300, 250_000)]))[0].status == "OK"
    assert not on(manager.tick(slot - LEAD_S - 1), "/allocation", Allocation)  # only earlier, empty slots
    out = manager.tick(slot - LEAD_S)
    allocations = on(out, "/allocation", Allocation)
    assert set(allocations) == {TOPICS.home("alice", HomeTopic.ALLOCATION), TOPICS.home("bob", HomeTopic.ALLOCATION)}
    bob = allocations[TOPICS.home("bob", HomeTopic.ALLOCATION)]
    alice = allocations[TOPICS.home("alice", HomeTopic.ALLOCATION)]
    # alice asks more than the feed-in price, so the retailer does not take her rest
    assert bob.bought_wh == 300 and alice.sold_wh == 300 and bob.buy_price_micro == 175_000
    result = next(iter(on(out, "/result", SlotResult).values()))
    assert result.state is SlotState.CLEARED and result.homes == 2 and result.non_responders == 1
    assert result.price_micro == 175_000  # k = 0.5: the midpoint of the marginal pair
    # Meters after the slot: everyone reports, so the slot settles at once.
    end = slot + SLOT_S
    meter(manager, "alice", end + 5, slot, 0, 300)
    meter(manager, "bob", end + 5, slot, 350, 0)
    out = meter(manager, "carol", end + 6, slot, 100, 0)
    assert next(iter(on(out, "/result", SlotResult).values())).state is SlotState.SETTLED
    settlement = manager.state.home_settlement(slot, "bob")
    assert settlement.imbalance_wh == 50 and settlement.imbalance_charge_nano == 50 * 300_000
    assert manager.state.ledger.verify().ok


def test_duplicates_replays_and_bad_messages_change_nothing(manager_factory):
    manager = manager_factory()
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    now = slot - LEAD_S - 100
    message_id = uuid.uuid4()
    first = acks(submit(manager, "alice", now, slot, orders=[(Side.SELL, 500, 100_000)], sequence=5,
                        message_id=message_id))
    records = len(manager.state.ledger)
    again = acks(submit(manager, "alice", now, slot, orders=[(Side.SELL, 900, 100_000)], sequence=5,
                        message_id=message_id))
    assert again == first and len(manager.state.ledger) == records
    replay = acks(submit(manager, "alice", now, slot, orders=[(Side.SELL, 900, 100_000)], sequence=5))
    assert replay[0].status is ReceptionStatus.INVALID_CONTENT and "sequence" in replay[0].diagnostic_label
    forged = acks(submit(manager, "bob", now, slot, orders=[(Side.BUY, 1, 100_000)], sender="alice"))
    assert forged[0].status is ReceptionStatus.INVALID_CONTENT and "sender" in forged[0].diagnostic_label
    late = acks(submit(manager, "bob", slot - LEAD_S, slot, orders=[(Side.BUY, 1, 100_000)]))
    assert late[0].status is ReceptionStatus.INVALID_CONTENT and late[0].slots[0].status is OrderStatus.REJECTED
    assert "gate closed" in late[0].slots[0].reason
    far = acks(submit(manager, "bob", now, slot + 10 * SLOT_S, orders=[(Side.BUY, 1, 100_000)]))
    assert "horizon" in far[0].slots[0].reason
    crossing = acks(submit(manager, "carol", now, slot, orders=[(Side.BUY, 10, 200_000), (Side.SELL, 10, 150_000)]))
    assert "cross" in crossing[0].slots[0].reason
    garbage = acks(manager.handle(TOPICS.home("bob", HomeTopic.ORDERS), b"{not json", now))
    assert garbage[0].status is ReceptionStatus.INVALID_MESSAGE
    early = acks(meter(manager, "bob", slot + 10, slot, 1, 0))
    assert early[0].status is ReceptionStatus.INVALID_CONTENT and "not ended" in early[0].diagnostic_label
    assert manager.handle(TOPICS.home("mallory", HomeTopic.ORDERS), b"{}", now) == []
    assert len(manager.state.ledger) == records
    assert [bid.home for bid in manager.state.bids_for_slot(slot)] == ["alice"]


def test_a_restarted_manager_neither_loses_nor_repeats_anything(manager_factory):
    manager = manager_factory()
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    submit(manager, "alice", slot - LEAD_S - 100, slot, orders=[(Side.SELL, 500, 100_000)])
    submit(manager, "bob", slot - LEAD_S - 100, slot, orders=[(Side.BUY, 300, 250_000)])
    manager.tick(slot - LEAD_S)
    meter(manager, "alice", slot + SLOT_S + 1, slot, 0, 500)
    # A new manager on the same database (the process was killed): it catches up, once.
    restarted = manager_factory()
    restarted.start(slot + SLOT_S + 2)
    assert len(restarted.state.ledger.records(kind=RecordKind.CLEARING, slot_start_s=slot)) == 1
    assert len(restarted.state.ledger.records(kind=RecordKind.ALLOCATION, slot_start_s=slot)) == 2
    meter(restarted, "bob", slot + SLOT_S + 3, slot, 300, 0)
    meter(restarted, "carol", slot + SLOT_S + 3, slot, 0, 0)
    settlements = restarted.state.ledger.records(kind=RecordKind.SETTLEMENT, slot_start_s=slot)
    assert sorted(record.home for record in settlements) == list(HOMES)
    restarted.tick(slot + 3 * SLOT_S)
    assert len(restarted.state.ledger.records(kind=RecordKind.SETTLEMENT, slot_start_s=slot)) == 3
    assert restarted.state.ledger.verify().ok


def test_a_late_reading_is_appended_as_a_correction(manager_factory):
    manager = manager_factory()
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    submit(manager, "bob", slot - LEAD_S - 100, slot, orders=[(Side.BUY, 300, 300_000)])
    manager.tick(slot - LEAD_S)
    manager.tick(slot + SLOT_S + 600)  # the deadline passes without bob's reading: estimated
    provisional = manager.state.home_settlement(slot, "bob")
    assert provisional.estimated and provisional.import_wh == 300
    meter(manager, "bob", slot + SLOT_S + 700, slot, 400, 0)
    final = manager.state.home_settlement(slot, "bob")
    assert not final.estimated and final.import_wh == 400 and final.imbalance_wh == 100
    assert len(manager.state.ledger.records(kind=RecordKind.SETTLEMENT_CORRECTION)) == 1
    assert manager.state.ledger.verify().ok


def test_sharing_rules_clear_from_the_meters_after_the_slot(manager_factory):
    manager = manager_factory("supply_demand_ratio")
    start = on(manager.start(DAY_S), "market/config", MarketConfig)
    assert next(iter(start.values())).bid_format == "none"
    slot = DAY_S + 2 * SLOT_S
    refused = acks(submit(manager, "alice", slot - LEAD_S - 100, slot, orders=[(Side.SELL, 5, 100_000)]))
    assert refused[0].status is ReceptionStatus.INVALID_CONTENT
    assert manager.tick(slot - LEAD_S) == []  # nothing to clear at the gate
    meter(manager, "alice", slot + SLOT_S, slot, 0, 3000)
    meter(manager, "bob", slot + SLOT_S, slot, 10_000, 0)
    out = meter(manager, "carol", slot + SLOT_S, slot, 0, 0)
    allocations = on(out, "/allocation", Allocation)
    bob = allocations[TOPICS.home("bob", HomeTopic.ALLOCATION)]
    assert bob.bought_wh == 10_000 and bob.buy_price_micro == 259_315  # pinned SDR figures (markets.md §5)
    assert manager.state.home_settlement(slot, "bob").imbalance_wh == 0


@pytest.mark.parametrize("mechanism", ["uniform_auction", "pay_as_bid", "bid_curve", "energy_collective"])
def test_curves_clear_under_every_bidding_mechanism(manager_factory, mechanism):
    manager = manager_factory(mechanism)
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    grid = manager.config.market.price_grid_micro()
    seller = Curve(prices_micro=grid, net_import_wh=[-10 * index for index in range(len(grid))])
    buyer = Curve(prices_micro=grid, net_import_wh=[200 - 5 * index for index in range(len(grid))])
    submit(manager, "alice", slot - LEAD_S - 100, slot, curve=seller)
    submit(manager, "bob", slot - LEAD_S - 100, slot, curve=buyer)
    allocations = on(manager.tick(slot - LEAD_S), "/allocation", Allocation)
    bought = allocations[TOPICS.home("bob", HomeTopic.ALLOCATION)].bought_wh
    sold = allocations[TOPICS.home("alice", HomeTopic.ALLOCATION)].sold_wh
    assert bought > 0 and sold > 0
