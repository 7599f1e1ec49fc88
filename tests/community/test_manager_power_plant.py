"""The manager as one power plant, without a broker: the operator's requests and limits in, the
homes' commitments and answers, delivery from the meter reports, the money in the ledger."""

from __future__ import annotations

import uuid

import pytest

from hems.community.config import parse_community_config
from hems.community.ledger import RecordKind
from hems.community.manager import CommunityManager, Outgoing
from hems.community.state import CommunityState
from hems.community.statement import monthly_statement
from hems.protocol.codec import decode, encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import Ack, Allocation, Curve, MarketConfig
from hems.protocol.power_plant import (
    Commitment,
    CommitmentAnswer,
    CommitmentState,
    FlexibilityCall,
    FlexibilityOffers,
    FlexibilityResponse,
    GridLimitsPublication,
    LimitSlot,
    PowerPlantNotice,
    RequestedSlot,
    RequestState,
)
from hems.protocol.topics import GridTopic, HomeTopic

from .test_manager import DAY_S, LEAD_S, SLOT_S, TOPICS, meter, submit, utc

GRID = [80_000, 135_000, 190_000, 245_000, 300_000]
#: Net import per grid price. At the book's equilibrium (about 0.18) the baselines are 800, 600 and
#: -500 Wh, and each home can lower its import by 400 / 300 / 300 Wh for 0.0055 per kWh.
CURVES = {"alice": [1000, 800, 400, 200, 0], "bob": [600, 600, 300, 300, 300], "carol": [-500, -500, -800, -800, -1000]}
WINDOW_S = 60


def config(opt_out: str = "", extra: str = "", tmp_path=None) -> str:
    members = "\n".join(f'[[member]]\nid = "{home}"' + ("\nflexibility_opt_out = true" if home == opt_out else "")
                        for home in ("alice", "bob", "carol", "dave"))
    return f"""
[community]
id = "street"
state_directory = "{tmp_path}"
[market]
mechanism = "bid_curve"
slot_duration_s = {SLOT_S}
gate_closure_lead_s = {LEAD_S}
horizon_slots = 8
retail_price = 0.30
feed_in_price = 0.08
price_grid_points = 5
meter_deadline_s = 600
tie_break_seed = 7
[flexibility]
answer_window_s = {WINDOW_S}
{extra}
{members}
"""


@pytest.fixture
def plant(tmp_path):
    states: list[CommunityState] = []

    def make(opt_out: str = "", extra: str = "") -> CommunityManager:
        parsed = parse_community_config(config(opt_out, extra, tmp_path))
        state = CommunityState(parsed.community.database_path)
        states.append(state)
        return CommunityManager(parsed, state)

    yield make
    for state in states:
        state.close()


NOW = DAY_S + 100
SLOT = DAY_S + 4 * SLOT_S  # an hour ahead: bids are open, the homes have time to answer


def bid_all(manager: CommunityManager, slots=(SLOT,), now_s: float = NOW) -> None:
    for home, values in CURVES.items():
        for slot in slots:
            submit(manager, home, now_s, slot, curve=Curve(prices_micro=GRID, net_import_wh=values),
                   sequence=int(now_s * 1000) + slot % 100_000)


def request(manager: CommunityManager, now_s: float, slots=(SLOT,), delta_w: int = -2000, price: float = 100_000,
            request_id: str = "peak-1", penalty: int = 50_000, message_id=None) -> list[Outgoing]:
    call = FlexibilityCall(request_id=request_id, price_micro=int(price), penalty_micro=penalty,
                           slots=[RequestedSlot(slot_start=utc(slot), duration_s=SLOT_S, delta_w=delta_w)
                                  for slot in slots])
    raw = encode(call, sender="dso", sent_at=utc(now_s), message_id=message_id)
    return manager.handle(TOPICS.grid(GridTopic.REQUEST), raw, now_s)


def answer(manager: CommunityManager, home: str, commitment: Commitment, now_s: float, accepted: bool = True,
           reason: str = "") -> list[Outgoing]:
    raw = encode(CommitmentAnswer(request_id=commitment.request_id, revision=commitment.revision, accepted=accepted,
                                  reason=reason), sender=home, sent_at=utc(now_s))
    return manager.handle(TOPICS.home(home, HomeTopic.COMMITMENT_ANSWER), raw, now_s)


def commitments(out: list[Outgoing]) -> dict[str, Commitment]:
    found = {}
    for item in out:
        address = TOPICS.parse_home(item.topic)
        if address is not None and address.leaf is HomeTopic.COMMITMENT:
            found[address.home] = decode(item.payload, (Commitment,)).payload
    return found


def responses(out: list[Outgoing]) -> list[FlexibilityResponse]:
    return [decode(item.payload, (FlexibilityResponse,)).payload for item in out
            if item.topic == TOPICS.grid(GridTopic.RESPONSE)]


def grid_acks(out: list[Outgoing]) -> list[Ack]:
    return [decode(item.payload, (Ack,)).payload for item in out if item.topic == TOPICS.grid(GridTopic.ACK)]


def started(make, **options) -> CommunityManager:
    manager = make(**options)
    manager.start(DAY_S)
    bid_all(manager)
    return manager


def confirm_all(manager: CommunityManager, out: list[Outgoing], now_s: float) -> list[Outgoing]:
    result: list[Outgoing] = []
    for home, item in commitments(out).items():
        if item.state is CommitmentState.PROPOSED:
            result += answer(manager, home, item, now_s)
    return result


def test_a_request_is_split_at_least_cost_and_confirmed_once_every_home_accepted(plant):
    manager = started(plant)
    out = request(manager, NOW)
    notices = [decode(item.payload, (PowerPlantNotice,)).payload for item in out if item.topic == TOPICS.vpp_request()]
    assert [(item.request_id, item.state) for item in notices] == [("peak-1", RequestState.DISPATCHED)]
    proposed = commitments(out)
    # -500 Wh at the cheapest blocks: the three 0.0055 blocks (400/300/300 Wh) pro rata.
    assert {home: item.slots[0].change_wh for home, item in proposed.items()} == {"alice": -200, "bob": -150,
                                                                                  "carol": -150}
    assert {home: item.slots[0].baseline_wh for home, item in proposed.items()} == {"alice": 800, "bob": 600,
                                                                                    "carol": -500}
    assert all(item.state is CommitmentState.PROPOSED and item.answer_by == utc(NOW + WINDOW_S)
               for item in proposed.values())
    assert "dave" not in proposed  # no bid, no flexibility
    assert responses(out) == []  # the operator hears back once the homes have answered
    assert answer(manager, "alice", proposed["alice"], NOW + 5)[-1].topic.endswith("/ack")
    answer(manager, "bob", proposed["bob"], NOW + 6)
    last = answer(manager, "carol", proposed["carol"], NOW + 7)
    confirmed = commitments(last)
    assert {home: item.state for home, item in confirmed.items()} == dict.fromkeys(proposed, CommitmentState.CONFIRMED)
    [response] = responses(last)
    assert response.state is RequestState.DISPATCHED
    assert [(slot.requested_wh, slot.committed_wh, slot.homes) for slot in response.slots] == [(-500, -500, 3)]
    assert manager.state.ledger.records(kind=RecordKind.FLEXIBILITY_DISPATCH)


def test_a_declining_home_is_replaced_and_a_silent_one_counts_as_declined(plant):
    manager = started(plant)
    proposed = commitments(request(manager, NOW, delta_w=-1600))  # -400 Wh of the 1000 Wh at 0.0055
    assert set(proposed) == {"alice", "bob", "carol"}
    answer(manager, "alice", proposed["alice"], NOW + 1)
    second = answer(manager, "bob", proposed["bob"], NOW + 2, accepted=False, reason="owner opt-out")
    assert second[0].topic.endswith("/ack") and commitments(second) == {}  # carol has not answered yet
    # carol never answers: at the deadline bob and carol are replaced from alice's unused blocks.
    again = commitments(manager.tick(NOW + WINDOW_S + 1))
    assert again["bob"].state is CommitmentState.CANCELLED and again["carol"].state is CommitmentState.CANCELLED
    assert again["alice"].state is CommitmentState.PROPOSED and again["alice"].revision == 2
    assert again["alice"].slots[0].change_wh == -400  # alice's whole 0.0055 block
    final = answer(manager, "alice", again["alice"], NOW + WINDOW_S + 2)
    assert commitments(final)["alice"].state is CommitmentState.CONFIRMED
    [response] = responses(final)
    assert [(slot.committed_wh, slot.homes) for slot in response.slots] == [(-400, 1)]


def test_an_owner_who_opted_out_is_never_dispatched_however_cheap(plant):
    manager = started(plant, opt_out="alice")
    out = request(manager, NOW, delta_w=-8000)  # -2000 Wh: more than the others can give below the price
    proposed = commitments(out)
    assert "alice" not in proposed and set(proposed) == {"bob", "carol"}
    last = confirm_all(manager, out, NOW + 1)
    [response] = responses(last)
    committed = response.slots[0].committed_wh
    assert committed == sum(item.slots[0].change_wh for item in proposed.values())
    assert "could not be committed" in response.reason and abs(committed) < 2000


@pytest.mark.parametrize(("change", "reason"), [
    ({"request_id": "peak-1"}, "already taken"),
    ({"slots": [DAY_S + 4 * SLOT_S + 60]}, "aligned"),
    ({"slots": [DAY_S + SLOT_S]}, "need 60 s"),
])
def test_requests_that_cannot_be_taken_are_refused_with_the_reason(plant, change, reason):
    manager = started(plant)
    request(manager, NOW)
    slots = change.get("slots", (SLOT,))
    now_s = NOW + 1 if "need" not in reason else DAY_S + SLOT_S - 30
    [response] = responses(request(manager, now_s, slots=slots, request_id=change.get("request_id", "peak-2")))
    assert response.state is RequestState.REFUSED and reason in response.reason


def test_invalid_operator_messages_get_an_ack_that_says_why_and_change_nothing(plant):
    manager = started(plant)
    raw = b'{"message_id": "00000000-0000-4000-8000-000000000009", "message_type": "flexibility_request",' \
          b' "schema_version": 1, "sent_at": "2026-11-18T00:01:00Z", "sender": "dso", "payload":' \
          b' {"request_id": "x", "slots": [], "price_micro": 1}}'
    [ack] = grid_acks(manager.handle(TOPICS.grid(GridTopic.REQUEST), raw, NOW))
    assert ack.status is ReceptionStatus.INVALID_DATA and "slots" in ack.diagnostic_label
    assert manager.state.ledger.records(kind=RecordKind.FLEXIBILITY_REQUEST) == []


def test_a_repeated_request_message_is_answered_once(plant):
    manager = started(plant)
    message_id = uuid.uuid4()
    assert commitments(request(manager, NOW, message_id=message_id))
    assert request(manager, NOW + 1, message_id=message_id) == []


def settle_slot(manager: CommunityManager, slot: int, net_import_wh: dict[str, int]) -> list[Outgoing]:
    out: list[Outgoing] = []
    for home in ("alice", "bob", "carol", "dave"):
        value = net_import_wh.get(home, 0)
        out += meter(manager, home, slot + SLOT_S + 1, slot, max(value, 0), max(-value, 0))
    return out + manager.tick(slot + SLOT_S + 700)


def test_delivery_is_measured_from_the_meters_and_the_money_shared_in_the_ledger_and_statements(plant):
    manager = started(plant)
    out = request(manager, NOW, price=100_000, penalty=50_000)
    confirm_all(manager, out, NOW + 1)
    manager.tick(SLOT - LEAD_S)  # the market clears the slot
    # alice delivers her 200 Wh, bob 100 of 150, carol 150 and 50 more.
    out = settle_slot(manager, SLOT, {"alice": 600, "bob": 500, "carol": -700, "dave": 300})
    [response] = responses(out)
    assert response.state is RequestState.SETTLED
    assert [(slot.requested_wh, slot.committed_wh, slot.delivered_wh) for slot in response.slots] == [(-500, -500,
                                                                                                         -500)]
    assert response.revenue_nano == 500 * 100_000 and response.penalty_nano == 0
    records = {record.home: record.body for record in manager.state.ledger.records(
        kind=RecordKind.FLEXIBILITY_SETTLEMENT)}
    assert sum(records[home]["revenue_nano"] for home in ("alice", "bob", "carol")) == records[None]["revenue_nano"]
    assert records["alice"]["delivered_wh"] == 200 and records["alice"]["baseline"] == "declared"
    # Pro rata to delivered energy: 200 / 100 / 200 of 500 accepted Wh.
    assert [records[home]["revenue_nano"] for home in ("alice", "bob", "carol")] == [20_000_000, 10_000_000,
                                                                                    20_000_000]
    statement = monthly_statement(manager.state.ledger, "alice", "2026-11")
    assert statement.flexibility is not None and statement.flexibility.revenue_nano == 20_000_000
    assert monthly_statement(manager.state.ledger, "dave", "2026-11").flexibility is None


def test_a_short_home_is_replaced_in_the_slots_that_can_still_be_agreed(plant):
    manager = started(plant)
    later = (SLOT + SLOT_S, SLOT + 2 * SLOT_S)
    bid_all(manager, slots=later, now_s=NOW + 1)
    out = request(manager, NOW + 2, slots=(SLOT, *later), delta_w=-1600)
    confirm_all(manager, out, NOW + 3)
    manager.tick(SLOT - LEAD_S)
    # Slot 1: alice does nothing (800 Wh, her baseline); bob and carol deliver. Everyone reports at
    # once, so the slot settles right after it ended: the second slot is under way, the third can
    # still be agreed.
    committed = {home: item.slots[0].change_wh for home, item in commitments(out).items()}
    metered = {home: baseline + (0 if home == "alice" else committed[home])
               for home, baseline in {"alice": 800, "bob": 600, "carol": -500}.items()}
    out = []
    for home in ("alice", "bob", "carol", "dave"):
        value = metered.get(home, 0)
        out += meter(manager, home, SLOT + SLOT_S + 1, SLOT, max(value, 0), max(-value, 0))
    replaced = commitments(out)
    # alice keeps her first two slots (a part of what she accepted: confirmed, no answer needed);
    # her share of the third goes to bob and carol, who must accept it.
    assert replaced["alice"].state is CommitmentState.CONFIRMED
    assert [slot.slot_start for slot in replaced["alice"].slots] == [utc(SLOT), utc(later[0])]
    assert {replaced[home].state for home in ("bob", "carol")} == {CommitmentState.PROPOSED}
    assert all(utc(later[1]) in [slot.slot_start for slot in replaced[home].slots] for home in ("bob", "carol"))
    final = []
    for home in ("bob", "carol"):
        final += answer(manager, home, replaced[home], SLOT + SLOT_S + 5)
    [response] = responses(final)
    assert response.state is RequestState.DISPATCHED and response.slots[2].homes == 2
    assert response.slots[2].committed_wh == -400  # bob's and carol's 0.0055 blocks cover it


def test_a_restarted_manager_settles_the_requests_it_confirmed(plant, tmp_path):
    manager = started(plant)
    confirm_all(manager, request(manager, NOW), NOW + 1)
    manager.state.close()
    again = plant()
    again.start(NOW + 10)
    assert set(again.power_plant.active) == {"peak-1"}
    again.tick(SLOT - LEAD_S)
    [response] = responses(settle_slot(again, SLOT, {"alice": 600, "bob": 450, "carol": -650}))
    assert response.state is RequestState.SETTLED and response.slots[0].delivered_wh == -500


def test_a_manager_restarted_during_the_proposals_refuses_the_request(plant):
    manager = started(plant)
    request(manager, NOW)
    manager.state.close()
    again = plant()
    [response] = responses(again.start(NOW + 10))
    assert response.state is RequestState.REFUSED and "restarted" in response.reason
    assert responses(plant().start(NOW + 20)) == []  # said once


def limits(manager: CommunityManager, now_s: float, slot: int, **values) -> list[Outgoing]:
    raw = encode(GridLimitsPublication(slots=[LimitSlot(slot_start=utc(slot), duration_s=SLOT_S, **values)]),
                 sender="dso", sent_at=utc(now_s))
    return manager.handle(TOPICS.grid(GridTopic.LIMITS), raw, now_s)


def test_the_operators_import_limit_and_fee_bind_the_clearing(plant):
    manager = plant()
    manager.start(DAY_S)
    [ack] = grid_acks(limits(manager, NOW, SLOT, import_limit_w=2000, locational_fee_micro=20_000))
    assert ack.status is ReceptionStatus.OK
    assert manager.state.ledger.records(kind=RecordKind.GRID_LIMITS)
    # Everyone wants to import at any price: 3 × 1000 Wh = 12 kW, against 2 kW allowed.
    for home in ("alice", "bob", "carol"):
        submit(manager, home, NOW, SLOT, curve=Curve(prices_micro=GRID, net_import_wh=[1000] * 5))
    submit(manager, "dave", NOW, SLOT, curve=Curve(prices_micro=GRID, net_import_wh=[-100, -200, -300, -400, -400]))
    out = manager.tick(SLOT - LEAD_S)
    allocations = [decode(item.payload, (Allocation,)).payload for item in out if item.topic.endswith("/allocation")]
    net_import_wh = sum(item.bought_wh - item.sold_wh for item in allocations)
    assert net_import_wh <= 2000 * SLOT_S // 3600
    traded = sum(item.sold_wh for item in allocations)
    assert traded > 0 and sum(item.fees_nano for item in allocations) >= traded * 20_000


def test_limits_for_a_slot_the_market_does_not_have_are_refused(plant):
    manager = plant()
    manager.start(DAY_S)
    [ack] = grid_acks(limits(manager, NOW, SLOT + 60, import_limit_w=1000))
    assert ack.status is ReceptionStatus.INVALID_CONTENT and "aligned" in ack.diagnostic_label
    assert manager.state.ledger.records(kind=RecordKind.GRID_LIMITS) == []


def test_the_community_offers_its_pooled_flexibility_at_each_gate(plant):
    manager = started(plant, extra="minimum_offer_w = 2000")
    out = manager.tick(DAY_S + SLOT_S - LEAD_S)
    [offers] = [decode(item.payload, (FlexibilityOffers,)).payload for item in out
                if item.topic == TOPICS.grid(GridTopic.OFFERS)]
    down = [item for item in offers.offers if item.slot_start == utc(SLOT) and item.direction == "down"]
    assert down and all(item.energy_wh >= 500 for item in down)  # 2 kW over 15 minutes
    assert down[0].energy_wh == 1000 and down[0].price_micro == 5500
    assert manager.tick(DAY_S + SLOT_S - LEAD_S + 1) == [] or all(
        item.topic != TOPICS.grid(GridTopic.OFFERS) for item in manager.tick(DAY_S + SLOT_S - LEAD_S + 2))


def test_config_errors_name_the_flexibility_keys(tmp_path):
    from hems.config.errors import ConfigError
    with pytest.raises(ConfigError, match="flexibility.answer_window_s"):
        parse_community_config(config(tmp_path=tmp_path).replace(f"answer_window_s = {WINDOW_S}",
                                                                 "answer_window_s = 1"))
    assert MarketConfig  # the market config is unchanged by the section
