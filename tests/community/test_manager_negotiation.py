"""The manager's ``admm`` mechanism without a broker: signals out, answers in, the slot cleared from
the negotiated positions, or from the curves when the negotiation does not converge."""

from __future__ import annotations

import numpy as np

from hems.community.negotiation.homes import QuadraticHome
from hems.protocol.codec import decode, encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import (
    Allocation,
    Curve,
    NegotiationAnswer,
    NegotiationSignal,
    NegotiationState,
    SlotResult,
)
from hems.protocol.topics import HomeTopic

from .test_manager import DAY_S, HOMES, LEAD_S, SLOT_S, TOPICS, acks, on, submit, utc

NEGOTIATION = """
[market.negotiation]
slots = 2
lead_s = 200
round_timeout_s = 2.0
"""


def homes() -> dict[str, QuadraticHome]:
    """alice sells, bob and carol buy; alice's surplus does not cover both: the price settles inside
    (feed-in, retail)."""
    flat = np.ones(2)
    return {
        "alice": QuadraticHome("alice", 0.1 * flat, -0.05 * flat, -3_000 * flat, 0 * flat),
        "bob": QuadraticHome("bob", 0.2 * flat, 0.28 * flat, 0 * flat, 2_000 * flat),
        "carol": QuadraticHome("carol", 0.3 * flat, 0.2 * flat, 0 * flat, 2_000 * flat),
    }


def signals(out) -> list[NegotiationSignal]:
    return [decode(item.payload, (NegotiationSignal,)).payload for item in out
            if item.topic == TOPICS.market_signal()]


def answer(manager, home: str, signal: NegotiationSignal, position_wh, now_s: float, round_number=None):
    payload = NegotiationAnswer(negotiation_id=signal.negotiation_id,
                                round=signal.round if round_number is None else round_number,
                                net_import_wh=[int(round(value)) for value in position_wh])
    raw = encode(payload, sender=home, sent_at=utc(now_s))
    return manager.handle(TOPICS.home(home, HomeTopic.NEGOTIATION), raw, now_s)


def test_the_slot_clears_at_the_negotiated_price(manager_factory):
    manager = manager_factory("admm", NEGOTIATION)
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    start = slot - LEAD_S - 200
    assert not signals(manager.tick(start - 1))
    out = signals(manager.tick(start))
    assert len(out) == 1 and out[0].state is NegotiationState.ROUND and out[0].round == 0
    assert out[0].slot_start == utc(slot) and len(out[0].mean_wh) == 2
    community, last = homes(), {home: np.zeros(2) for home in HOMES}
    signal, now, rounds = out[0], float(start), 0
    while signal.state is NegotiationState.ROUND:
        published = []
        for home in HOMES:  # every member answers: each round closes at once, no time passes
            last[home] = community[home].best_response(np.array(signal.target_wh(list(last[home]))),
                                                         signal.rho_micro_per_kwh2 / 1e6)
            published += signals(answer(manager, home, signal, last[home], now))
        assert len(published) == 1
        signal, rounds = published[0], rounds + 1
        assert rounds < 300
    assert signal.state is NegotiationState.CONVERGED
    out = manager.tick(slot - LEAD_S)
    result = next(iter(on(out, "/result", SlotResult).values()))
    assert result.mechanism == "admm" and 80_000 < result.price_micro < 300_000
    allocations = {topic.split("/")[-2]: item for topic, item in on(out, "/allocation", Allocation).items()}
    assert allocations["alice"].sold_wh > 0 and allocations["bob"].bought_wh > 0
    sold = sum(item.sold_wh for item in allocations.values())
    bought = sum(item.bought_wh for item in allocations.values())
    assert abs(sold - bought) <= 3 + result.grid_import_wh + result.grid_export_wh
    clearing = manager.state.slot(slot).clearing
    assert clearing["details"]["negotiated"] is True and clearing["details"]["rounds"] == rounds


def test_stale_and_foreign_answers_are_refused_with_a_reason(manager_factory):
    manager = manager_factory("admm", NEGOTIATION)
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    start = slot - LEAD_S - 200
    signal = signals(manager.tick(start))[0]
    refused = acks(answer(manager, "alice", signal, [0, 0], start, round_number=5))
    assert refused[0].status is ReceptionStatus.INVALID_CONTENT and "round 5" in refused[0].diagnostic_label
    wrong_length = NegotiationAnswer(negotiation_id=signal.negotiation_id, round=0, net_import_wh=[1, 2, 3])
    out = manager.handle(TOPICS.home("bob", HomeTopic.NEGOTIATION),
                         encode(wrong_length, sender="bob", sent_at=utc(start)), start)
    assert "2 values" in acks(out)[0].diagnostic_label
    taken = answer(manager, "carol", signal, [100, 100], start)
    assert taken == []  # taken silently: the next signal is its acknowledgement


def test_silent_homes_time_out_rounds_and_the_slot_falls_back_to_the_curves(manager_factory):
    manager = manager_factory("admm", NEGOTIATION + "max_rounds = 3\n")
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    start = slot - LEAD_S - 200
    grid = [80_000, 190_000, 300_000]
    for home, quantities in (("alice", [-200, -600, -900]), ("bob", [700, 400, 100])):
        submit(manager, home, start - 10, slot, curve=Curve(prices_micro=grid, net_import_wh=quantities))
    signal = signals(manager.tick(start))[0]
    answer(manager, "alice", signal, [-500, -500], start)  # bob and carol never answer
    assert not signals(manager.tick(start + 1.9))
    timed_out = signals(manager.tick(start + 2.0))
    assert timed_out[0].round == 1 and timed_out[0].state is NegotiationState.ROUND
    assert manager.next_event_s(start + 2.0) == start + 4.0
    # Rounds keep timing out until the round cap: the negotiation is abandoned, the curves clear the slot.
    now, last = start + 2.0, None
    while now < slot - LEAD_S:
        now = manager.next_event_s(now)
        out = manager.tick(now)
        last = signals(out)[-1] if signals(out) else last
    assert last.state is NegotiationState.ABANDONED and last.round == 3
    result = next(iter(on(out, "/result", SlotResult).values()))
    assert result.mechanism == "admm" and result.traded_wh > 0
    assert manager.state.slot(slot).clearing["details"]["fallback"] == "bid_curve"


def test_a_negotiation_nobody_answers_is_no_agreement(manager_factory):
    manager = manager_factory("admm", NEGOTIATION)
    manager.start(DAY_S)
    slot = DAY_S + 2 * SLOT_S
    start = slot - LEAD_S - 200
    last = signals(manager.tick(start))[-1]
    now = float(start)
    while last.state is NegotiationState.ROUND:
        now = manager.next_event_s(now)
        last = (signals(manager.tick(now)) or [last])[-1]
    assert last.state is NegotiationState.ABANDONED and now < slot - LEAD_S
    result = next(iter(on(manager.tick(slot - LEAD_S), "/result", SlotResult).values()))
    assert result.traded_wh == 0 and manager.state.slot(slot).clearing["details"]["fallback"] == "bid_curve"
