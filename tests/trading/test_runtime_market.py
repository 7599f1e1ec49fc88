"""The whole daemon with ``[market] enabled``: an emulated hybrid inverter over Modbus TCP, virtual
time, a real mosquitto and the manager stand-in. Bids go out before each gate, allocations come
back into the plans, every whole slot is reported, and the home says trading, then offline."""

from __future__ import annotations

from hems.protocol.messages import Allocation, HomeStatus
from hems.protocol.units import money_nano
from hems.runtime.home import HomeRuntime
from tests.conftest import wait_for
from tests.hil.site import DAY_START_S, PlantForecast, hil_site, home_config, run_until
from tests.trading.conftest import STEP_S, ManagerStandIn, market_config

START_S = DAY_START_S + 11 * 3600 + 600  # 11:10 UTC
HOURS = 1.0


def allocate_mid_price(allocated: dict[float, int]):
    """Clear every submission's first slot at the middle of the grid, at the curve's quantity there."""

    def reply(home: str, message) -> Allocation:
        slot = message.payload.slots[0]
        middle = len(slot.curve.prices_micro) // 2
        price, net_wh = slot.curve.prices_micro[middle], slot.curve.net_import_wh[middle]
        allocated[slot.slot_start.timestamp()] = net_wh
        bought, sold = max(net_wh, 0), max(-net_wh, 0)
        return Allocation(slot_start=slot.slot_start, duration_s=slot.duration_s, mechanism="bid_curve",
                          sequence=message.payload.sequence, bought_wh=bought, sold_wh=sold,
                          buy_price_micro=price, sell_price_micro=price, paid_nano=money_nano(bought, price),
                          received_nano=money_nano(sold, price), fees_nano=0)

    return reply


async def test_the_daemon_trades_in_the_community_market(tmp_path, mosquitto_broker):
    allocated: dict[float, int] = {}
    manager = await ManagerStandIn(mosquitto_broker.url, market_config(),
                                   on_orders=allocate_mid_price(allocated)).start()
    planned_trades: dict[float, float] = {}  # slot start -> the trade in slot 0 of a plan made for it
    try:
        async with hil_site(start_s=START_S) as site:
            # Broker round trips take real time, in which virtual time races on: the timeouts
            # are long enough for that, not the seconds they would be in real time.
            config = home_config(tmp_path, site.port, extra_toml=(
                f'\n[market]\nenabled = true\ncommunity = "c1"\nbroker = "{mosquitto_broker.url}"\n'
                'ack_timeout_s = 600\nresend_after_s = 600\n'))
            assert config.site.mpc.market_enabled
            runtime = HomeRuntime(config, site.clock, forecast=PlantForecast(site.plant),
                                  start_metrics_exporter=False)

            described: dict = {}

            def watch(now_s: float) -> None:
                described.update(runtime.describe().get("market", {}))  # while running
                inputs = runtime.planning.last_inputs if runtime.planning is not None else None
                if inputs is not None and inputs.trades is not None:
                    planned_trades[inputs.start.timestamp()] = inputs.trades.quantity_wh[0]

            await run_until(runtime, site.clock, START_S + HOURS * 3600, during=watch)
            assert runtime.describe()["market"]["connected"] is False  # stopped
        await wait_for(lambda: manager.statuses and manager.statuses[-1].state == "offline")
    finally:
        await manager.stop()

    gate_lead_s = market_config().gate_closure_lead_s
    assert len(manager.orders) >= 3
    for message in manager.orders:
        first_slot = message.payload.slots[0]
        assert message.envelope.sent_at.timestamp() < first_slot.slot_start.timestamp() - gate_lead_s
    # Every allocation of a slot that started in the run is in the plan made at its start.
    started = {slot: net for slot, net in allocated.items() if slot + 60 < START_S + HOURS * 3600}
    assert started and all(planned_trades.get(slot) == net for slot, net in started.items()), (
        started, planned_trades)
    # One report per whole slot watched: 11:15, 11:30, 11:45 (11:10-11:15 was not watched whole).
    # Simulated time runs ahead of the broker's real-time round trips, so a report may be resent
    # before its ack is in; the manager deduplicates by message id, and so does this count.
    reports = list({str(m.message_id): m.payload for m in manager.meter}.values())
    assert [r.slot_start.timestamp() for r in reports] == [DAY_START_S + 11 * 3600 + k * STEP_S for k in (1, 2, 3)]
    assert all(r.import_wh + r.export_wh > 0 for r in reports)
    assert HomeStatus(state="online", market="trading") in manager.statuses
    assert described["state"] == "trading" and described["meter_reports"] == 3
    assert described["outbox_pending"] == 0
