"""The agent bids before gate closure, on the market's grid, and takes allocations into the plan
(real mosquitto, real planner, the manager stand-in of conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from hems.protocol.messages import Allocation, BidFormat, Side
from hems.protocol.units import money_nano
from tests.conftest import wait_for
from tests.trading.conftest import (GRID_MICRO, HOME, SLOT0_S, STEP_S, ManagerStandIn, agent_harness, market_config,
                                    snapshot, utc)

#: The agent starts at SLOT0 + 100 s: the first open slot is the next one, its gate closes 120 s
#: before it starts, and the bid is due 60 s before that.
FIRST_SLOT_S = SLOT0_S + STEP_S
GATE_S = FIRST_SLOT_S - 120
DUE_S = GATE_S - 60


async def test_a_curve_bid_arrives_before_gate_closure_on_the_market_grid(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config()).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url) as h:
            await wait_for(lambda: h.agent.market_config is not None)
            await h.plan()
            h.advance_to(DUE_S - 1)
            await asyncio.sleep(0.2)
            assert manager.orders == []  # not before it is due
            h.advance_to(DUE_S)
            await wait_for(lambda: len(manager.orders) == 1)
            assert h.clock.now_s() < GATE_S
            first = manager.orders[0]
            assert first.sender == HOME and first.envelope.sent_at.timestamp() < GATE_S
            bids = first.payload.slots
            assert [bid.slot_start for bid in bids] == [utc(FIRST_SLOT_S), utc(FIRST_SLOT_S + STEP_S)]
            for bid in bids:
                assert bid.duration_s == STEP_S and bid.orders == [] and bid.curve is not None
                assert bid.curve.prices_micro == GRID_MICRO
                quantities = bid.curve.net_import_wh
                assert all(a >= b for a, b in zip(quantities, quantities[1:]))
            # The home buys (or sells less) when the local price is low: the curve answers the price.
            assert bids[0].curve.net_import_wh[0] > bids[0].curve.net_import_wh[-1]
            await wait_for(lambda: h.agent.last_order_ack is not None)
            assert h.agent.state == "trading"

            h.advance_to(GATE_S + STEP_S - 60)  # the next gate's bid, replacing the second slot's
            await wait_for(lambda: len(manager.orders) == 2)
            second = manager.orders[1].payload
            assert second.sequence > first.payload.sequence
            assert second.slots[0].slot_start == utc(FIRST_SLOT_S + STEP_S)
            # Counted once the broker's PUBACK is in, which may come after the manager has it.
            await wait_for(lambda: h.metrics.registry.get_sample_value(
                "hems_market_messages_total", {"direction": "out", "message_type": "orders"}) == 2)
    finally:
        await manager.stop()


async def test_orders_format_sends_step_orders_with_fresh_ids(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config(bid_format=BidFormat.ORDERS)).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url, bid_slots=1) as h:
            await wait_for(lambda: h.agent.market_config is not None)
            await h.plan()
            h.advance_to(DUE_S)
            await wait_for(lambda: len(manager.orders) == 1)
            bid, = manager.orders[0].payload.slots
            assert bid.curve is None and bid.orders
            assert all(order.limit_price_micro in GRID_MICRO and order.energy_wh > 0 for order in bid.orders)
            assert len({order.order_id for order in bid.orders}) == len(bid.orders)
            assert all(order.order_id.version == 4 for order in bid.orders)
            assert any(order.side is Side.BUY for order in bid.orders) or any(
                order.side is Side.SELL for order in bid.orders)
    finally:
        await manager.stop()


async def test_no_bids_for_a_market_without_bidding(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config(bid_format=BidFormat.NONE,
                                                                       mechanism="sdr")).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url) as h:
            await wait_for(lambda: h.agent.market_config is not None)
            await h.plan()
            h.advance_to(GATE_S - 1)
            await asyncio.sleep(0.2)
            assert manager.orders == [] and h.agent.state == "trading"
    finally:
        await manager.stop()


def allocate_first_slot(bought_wh: int, price_micro: int):
    """A stand-in reply: the first slot of every submission clears at ``bought_wh``."""

    def reply(home: str, message) -> Allocation:
        slot = message.payload.slots[0]
        return Allocation(slot_start=slot.slot_start, duration_s=slot.duration_s, mechanism="bid_curve",
                          sequence=message.payload.sequence, bought_wh=bought_wh, sold_wh=0,
                          buy_price_micro=price_micro, paid_nano=money_nano(bought_wh, price_micro),
                          received_nano=0, fees_nano=0)

    return reply


async def test_an_allocation_becomes_trades_in_the_next_plan(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config(),
                                   on_orders=allocate_first_slot(400, 150_000)).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url) as h:
            await wait_for(lambda: h.agent.market_config is not None)
            await h.plan()
            assert h.planning.last_inputs.trades is None  # nothing committed yet
            h.advance_to(DUE_S)
            await wait_for(lambda: h.agent.commitments.get(FIRST_SLOT_S) is not None)
            now_s = h.clock.now_s()
            assert h.planning.reason_to_plan(snapshot(now_s), now_s) == "allocation"
            await h.plan()  # the re-plan the allocation asked for, still in the slot before
            assert h.planning.last_inputs.trades.quantity_wh[1] == 400

            h.advance_to(FIRST_SLOT_S + 5)  # the plan made at the boundary has the trade in slot 0
            assert h.planning.reason_to_plan(snapshot(FIRST_SLOT_S + 5), FIRST_SLOT_S + 5) == "slot boundary"
            await h.plan()
            trades = h.planning.last_inputs.trades
            assert trades.quantity_wh[0] == 400 and trades.price_per_kwh[0] == pytest.approx(0.15)
            assert all(q == 0 for q in trades.quantity_wh[1:])
            assert h.planning.last_inputs.community_price_band == pytest.approx((0.08, 0.30))
            assert h.planning.current.plan.cost.trades == pytest.approx(400 * 0.15 / 1000)
            assert "trades:ignored_market_disabled" not in h.planning.current.plan.flags
    finally:
        await manager.stop()


async def test_a_repeated_allocation_asks_for_one_replan(tmp_path, mosquitto_broker):
    """QoS 1 may deliver an allocation twice; a sale books a negative trade at the price received."""
    manager = await ManagerStandIn(mosquitto_broker.url, market_config()).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url) as h:
            await h.plan()
            allocation = Allocation(slot_start=utc(FIRST_SLOT_S), duration_s=STEP_S, mechanism="bid_curve",
                                    sequence=7, bought_wh=0, sold_wh=250, sell_price_micro=100_000, paid_nano=0,
                                    received_nano=money_nano(250, 100_000), fees_nano=0)
            await manager.allocate(HOME, allocation)
            await wait_for(lambda: h.agent.commitments.get(FIRST_SLOT_S) is not None)
            trade = h.agent.commitments.get(FIRST_SLOT_S)
            assert trade.net_wh == -250 and trade.price_per_kwh == pytest.approx(0.10)
            await h.plan()
            await manager.allocate(HOME, allocation)
            await wait_for(lambda: h.metrics.registry.get_sample_value(
                "hems_market_messages_total", {"direction": "in", "message_type": "allocation"}) == 2)
            now_s = h.clock.now_s()
            assert h.planning.reason_to_plan(snapshot(now_s), now_s) is None
    finally:
        await manager.stop()
