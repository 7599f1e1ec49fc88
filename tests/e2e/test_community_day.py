"""A simulated day of a community trading through the manager over a real mosquitto, under every
mechanism: allocations honour the bids, prices stay within [feed-in, retail], money balances to
the n¤ per slot, the ledger verifies, and a manager killed mid-day loses and repeats nothing."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hems.community.bids import curve_of
from hems.community.ledger import RecordKind
from hems.community.mechanisms.registry import mechanism_names
from hems.community.settlement import settlement_from_body
from tests.conftest import wait_for
from tests.e2e.community_day import (FEED_IN, GREEN_PREMIUM_MICRO, HOMES, RETAIL, community, day_slots)

RETAIL_MICRO, FEED_IN_MICRO = round(RETAIL * 1e6), round(FEED_IN * 1e6)
UNIFORM_PRICE = {"uniform_auction", "bid_curve"}


def curve_value(prices, quantities, price) -> Fraction:
    """The curve's net import at ``price``, linear between its points (as bid_curve reads it)."""
    if price <= prices[0]:
        return Fraction(quantities[0])
    for (p0, q0), (p1, q1) in zip(zip(prices, quantities), zip(prices[1:], quantities[1:])):
        if price <= p1:
            return q0 + Fraction(q1 - q0) * Fraction(price - p0, p1 - p0)
    return Fraction(quantities[-1])


@pytest.mark.parametrize("mechanism", mechanism_names())
async def test_a_day_of_trading(tmp_path, mosquitto_broker, mechanism):
    restart_after = 12 if mechanism in ("bid_curve", "supply_demand_ratio") else None
    async with community(tmp_path, mosquitto_broker.url, mechanism) as running:
        await running.run_day(restart_after_slots=restart_after)
        state = running.service.manager.state
        ledger = state.ledger
        assert ledger.verify().ok
        members = {spec.name for spec in HOMES}
        traded_wh = negotiated_slots = 0
        for slot_s in day_slots():
            record = state.slot(slot_s)
            assert record is not None and record.state == "SETTLED", slot_s
            clearings = ledger.records(kind=RecordKind.CLEARING, slot_start_s=slot_s)
            assert len(clearings) == 1, f"slot {slot_s} cleared {len(clearings)} times"
            result = clearings[0].body
            for key in ("price_micro", "buy_price_micro", "sell_price_micro", "min_trade_price_micro",
                        "max_trade_price_micro"):
                if result[key] is not None:
                    assert FEED_IN_MICRO <= result[key] <= RETAIL_MICRO, (slot_s, key, result[key])
            traded_wh += result["traded_wh"]
            settlements = [settlement_from_body(item.body)
                           for item in ledger.records(kind=RecordKind.SETTLEMENT, slot_start_s=slot_s)]
            assert sorted(item.home for item in settlements) == sorted(members)  # each once: no double count
            assert not any(item.estimated for item in settlements)  # every meter report arrived
            bills = sum(item.bill_nano for item in settlements)
            summary = record.settlement
            assert bills == (summary["retailer_nano"] + summary["network_fees_nano"]
                             + summary["community_fees_nano"] + summary["rounding_nano"]), slot_s
            negotiated_slots += bool(result["details"].get("negotiated"))
            if running.bidding and not result["details"].get("negotiated"):
                # (A negotiated slot clears at the positions the homes answered in the last round,
                # not on their curves, which only back the negotiation up.)
                bids = {bid.home: bid for bid in state.bids_for_slot(slot_s)}
                for allocation in ledger.records(kind=RecordKind.ALLOCATION, slot_start_s=slot_s):
                    body = allocation.body
                    curve = curve_of(body["home"], bids[body["home"]].bid, running.config.market.price_grid_micro())
                    net = body["bought_wh"] - body["sold_wh"]
                    # Never more than the home would take at the lowest price, nor less than at the highest.
                    assert curve.net_import_wh[-1] - 1 <= net <= curve.net_import_wh[0] + 1, (slot_s, body)
                    if mechanism in UNIFORM_PRICE and result["price_micro"] is not None:
                        expected = curve_value(curve.prices_micro, curve.net_import_wh, result["price_micro"])
                        tolerance = 1 if mechanism == "bid_curve" else max(abs(q) for q in curve.net_import_wh)
                        assert abs(net - expected) <= tolerance, (slot_s, body, float(expected))
        assert traded_wh > 0, "a sunny day in a mixed street trades something"
        if mechanism == "admm":  # the homes did negotiate: every slot reached an agreement
            assert negotiated_slots == len(day_slots())
        if mechanism == "differentiated":
            check_differentiated_day(ledger)
        # The homes' own view: every slot they bid for came back as a commitment.
        if running.bidding:
            assert all(len(home.agent.commitments) > 0 for home in running.homes)
        # Every meter report was acknowledged: nothing is left in any home's outbox.
        await wait_for(lambda: all(home.agent.describe()["outbox_pending"] == 0 for home in running.homes))


def check_differentiated_day(ledger) -> None:
    """Provenance over the day: the donation reached "plain" only, the premium bought green energy,
    classes balance slot by slot, and no buyer paid more than retail plus its premium."""
    received: dict[str, int] = {}
    green_bought = 0
    for slot_s in day_slots():
        bodies = {record.home: record.body for record in ledger.records(kind=RecordKind.ALLOCATION,
                                                                         slot_start_s=slot_s)}
        origin = {home: body["provenance"] for home, body in bodies.items()}
        for home, item in origin.items():
            received[home] = received.get(home, 0) + item["donated_wh"]
            assert sum(item[key] for key in ("donated_wh", "green_local_wh", "local_wh", "grid_wh")) \
                == bodies[home]["bought_wh"], (slot_s, home)
            if bodies[home]["bought_wh"]:
                premium = GREEN_PREMIUM_MICRO if home == "storage" else 0
                assert bodies[home]["paid_nano"] <= bodies[home]["bought_wh"] * (RETAIL_MICRO + premium)
        total = lambda key: sum(item[key] for item in origin.values())  # noqa: E731
        assert total("donated_wh") == total("given_wh") == origin.get("solar", {}).get("given_wh", 0)
        assert total("green_local_wh") == total("sold_green_local_wh")
        assert total("premium_paid_nano") == total("premium_received_nano")
        green_bought += origin.get("storage", {}).get("green_local_wh", 0)
    assert received.get("plain", 0) > 0, "solar's surplus reached plain"
    assert sum(received.values()) == received["plain"]  # and no one else
    assert green_bought > 0, "the premium bought green energy"
