"""The differentiated market through the manager: classed bids and donations in, allocations with
their provenance out, the ledger and the monthly statement showing where each home's energy came from;
donations and partners the manager cannot honour are refused with a reason."""

from __future__ import annotations

import uuid

import pytest

from hems.community.ledger import RecordKind
from hems.community.statement import monthly_statement, render_statement
from hems.protocol.codec import encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import (Allocation, Curve, Donation, EnergyClass, Order, OrderStatus, OrderSubmission,
                                    Side, SlotBid)
from hems.protocol.topics import HomeTopic

from .test_manager import DAY_S, LEAD_S, SLOT_S, TOPICS, acks, on, utc

SLOT = DAY_S + 2 * SLOT_S
BEFORE_GATE = SLOT - LEAD_S - 100


def bid(manager, home: str, *, orders=(), curve=None, donations=()):
    payload = OrderSubmission(sequence=int(BEFORE_GATE * 1000), slots=[
        SlotBid(slot_start=utc(SLOT), duration_s=SLOT_S, orders=list(orders), curve=curve,
                donations=list(donations))])
    out = manager.handle(TOPICS.home(home, HomeTopic.ORDERS), encode(payload, sender=home, sent_at=utc(BEFORE_GATE)),
                         BEFORE_GATE)
    return acks(out)[0]


def order(side: Side, wh: int, price: int, **preferences) -> Order:
    return Order(order_id=uuid.uuid4(), side=side, energy_wh=wh, limit_price_micro=price, **preferences)


def gift(*recipients: str, wh: int, price: int = 0) -> Donation:
    return Donation(donation_id=uuid.uuid4(), recipients=list(recipients), energy_wh=wh, price_micro=price)


def test_green_energy_and_a_donation_go_where_the_homes_said(manager_factory):
    manager = manager_factory("differentiated")
    manager.start(DAY_S)
    # alice sells 1000 Wh of green energy and gives 300 of it to carol; bob pays a premium for green.
    assert bid(manager, "alice", orders=[order(Side.SELL, 1000, 90_000, energy_class=EnergyClass.GREEN_LOCAL)],
               donations=[gift("carol", wh=300)]).status is ReceptionStatus.OK
    assert bid(manager, "bob", orders=[order(Side.BUY, 500, 280_000, green_premium_micro=20_000)]).status == "OK"
    # carol bids with a curve: 400 Wh at any price.
    assert bid(manager, "carol", curve=Curve(prices_micro=[80_000, 300_000], net_import_wh=[400, 400])).status == "OK"
    out = manager.tick(SLOT - LEAD_S)
    allocations = {topic.split("/")[-2]: item for topic, item in on(out, "/allocation", Allocation).items()}
    alice, bob, carol = allocations["alice"].provenance, allocations["bob"].provenance, allocations["carol"].provenance
    assert carol.donated_wh == 300 and alice.given_wh == 300
    assert bob.donated_wh == 0  # a donation reaches its designated household and no one else
    assert bob.green_local_wh == 500 and bob.premium_paid_nano == 500 * 20_000
    assert alice.sold_green_local_wh == 500 + carol.green_local_wh and alice.premium_received_nano == 500 * 20_000
    assert carol.donated_wh + carol.green_local_wh + carol.local_wh + carol.grid_wh == allocations["carol"].bought_wh
    assert allocations["carol"].bought_wh == 400
    # The price a buyer pays stays within [feed-in, retail + premium].
    assert 80_000 <= allocations["bob"].buy_price_micro <= 300_000 + 20_000
    assert allocations["carol"].buy_price_micro < allocations["bob"].buy_price_micro  # the gift was free
    # The ledger keeps the provenance; the month's statement sums it.
    bodies = {record.home: record.body for record in manager.state.ledger.records(kind=RecordKind.ALLOCATION)}
    assert bodies["carol"]["provenance"]["donated_wh"] == 300
    for home, (imported, exported) in {"alice": (0, 1000), "bob": (500, 0), "carol": (400, 0)}.items():
        manager.handle(TOPICS.home(home, HomeTopic.METER), encode(_meter(imported, exported), sender=home,
                                                                 sent_at=utc(SLOT + SLOT_S + 5)), SLOT + SLOT_S + 5)
    statement = monthly_statement(manager.state.ledger, "carol", utc(SLOT).strftime("%Y-%m"))
    assert statement.provenance.donated_wh == 300 and statement.bought_wh == 400
    text = render_statement(statement)
    assert "Received as a gift" in text and "0.300 kWh" in text
    assert statement.to_dict()["provenance"]["premium_paid"] == "0.000000000"  # money as exact decimals
    plain = monthly_statement(manager.state.ledger, "nobody", utc(SLOT).strftime("%Y-%m"))
    assert plain.provenance is None and "Origin" not in render_statement(plain)


def _meter(imported: int, exported: int):
    from hems.protocol.messages import MeterReport
    return MeterReport(slot_start=utc(SLOT), duration_s=SLOT_S, import_wh=imported, export_wh=exported)


@pytest.mark.parametrize(("home", "kwargs", "reason"), [
    ("alice", {"donations": [gift("mallory", wh=100)]}, "recipients are not members: mallory"),
    ("alice", {"donations": [gift("alice", wh=100)]}, "cannot donate to itself"),
    ("alice", {"donations": [gift("bob", wh=100, price=400_000)]}, "above the retail price"),
    ("bob", {"orders": [order(Side.BUY, 100, 200_000, green_premium_micro=1, partners=["mallory"])]},
     "partners are not members: mallory"),
])
def test_donations_and_partners_the_manager_cannot_honour_are_refused(manager_factory, home, kwargs, reason):
    manager = manager_factory("differentiated")
    manager.start(DAY_S)
    kwargs.setdefault("orders", [order(Side.SELL, 500, 90_000)])
    ack = bid(manager, home, **kwargs)
    assert ack.status is ReceptionStatus.INVALID_CONTENT
    assert ack.slots[0].status is OrderStatus.REJECTED and reason in ack.slots[0].reason
    assert manager.state.bids_for_slot(SLOT) == []  # nothing of it reached the book


def test_other_markets_refuse_donations_but_take_classed_bids(manager_factory):
    manager = manager_factory("uniform_auction")
    manager.start(DAY_S)
    refused = bid(manager, "alice", orders=[order(Side.SELL, 500, 90_000)], donations=[gift("bob", wh=100)])
    assert refused.slots[0].status is OrderStatus.REJECTED and "does not clear donations" in refused.slots[0].reason
    taken = bid(manager, "alice", orders=[order(Side.SELL, 500, 90_000, energy_class=EnergyClass.GREEN_LOCAL)])
    assert taken.status is ReceptionStatus.OK
    assert bid(manager, "bob", orders=[order(Side.BUY, 500, 280_000, green_premium_micro=20_000)]).status == "OK"
    allocations = on(manager.tick(SLOT - LEAD_S), "/allocation", Allocation)
    assert {item.provenance for item in allocations.values()} == {None}  # no provenance, no premium
    assert sum(item.paid_nano for item in allocations.values()) == 500 * 185_000
