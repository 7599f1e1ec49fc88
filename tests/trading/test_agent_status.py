"""Without a manager the home says ``retail_only`` (retained status, metrics) and plans without
trades; a broker down at start does not stop the agent (real mosquitto)."""

from __future__ import annotations

from pathlib import Path

from hems.protocol.messages import HomeStatus
from hems.runtime.status import status_line
from tests.conftest import wait_for
from tests.mosquitto import free_tcp_port
from tests.trading.conftest import (SLOT0_S, STEP_S, ManagerStandIn, SamePortBroker, TcpProxy, agent_harness,
                                    market_config, metric, snapshot, utc)


def market_states(metrics) -> dict[str, float | None]:
    return {state: metric(metrics, "hems_market_state", state=state) for state in ("trading", "retail_only",
                                                                                   "disabled")}


async def test_without_a_manager_the_home_is_retail_only(tmp_path, mosquitto_broker):
    watcher = await ManagerStandIn(mosquitto_broker.url, config=None).start()  # no market config: no manager
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url) as h:
            await wait_for(lambda: HomeStatus(state="online", market="retail_only") in watcher.statuses)
            assert h.agent.state == "retail_only" and h.agent.describe()["state"] == "retail_only"
            assert market_states(h.metrics) == {"trading": 0, "retail_only": 1, "disabled": 0}
            assert metric(h.metrics, "hems_market_connected") == 1
            await h.plan()
            assert h.planning.last_inputs.trades is None
            assert h.planning.last_inputs.community_price_band is None
            assert h.planning.current.plan.cost.trades == 0
            line = status_line(snapshot(h.clock.now_s()), h.planning.current, None, market=h.agent.state)
            assert line.endswith("market retail_only")
        # A clean stop says offline (retained) before disconnecting.
        await wait_for(lambda: watcher.statuses[-1].state == "offline")
    finally:
        await watcher.stop()


async def test_an_unanswered_submission_turns_the_home_retail_only(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config(), answer_orders=False).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url, ack_timeout_s=10) as h:
            await wait_for(lambda: HomeStatus(state="online", market="trading") in manager.statuses)
            await h.plan()
            h.advance_to(SLOT0_S + STEP_S - 180)  # the first bid is due
            await wait_for(lambda: len(manager.orders) == 1)
            await wait_for(lambda: h.agent.describe()["awaiting_ack"])
            h.clock.advance(9)
            assert h.agent.state == "trading"  # the manager still has time
            h.clock.advance(2)
            await wait_for(lambda: manager.statuses[-1] == HomeStatus(state="online", market="retail_only"))
            assert market_states(h.metrics)["retail_only"] == 1
    finally:
        await manager.stop()


async def test_a_broker_down_at_start_does_not_stop_the_agent(tmp_path: Path):
    broker = SamePortBroker(tmp_path / "broker")
    broker.port = free_tcp_port()
    url = f"mqtt://127.0.0.1:{broker.port}"
    async with agent_harness(tmp_path / "state", url, connect=False) as h:
        assert not h.agent.link.connected and h.agent.state == "retail_only"
        assert metric(h.metrics, "hems_market_connected") == 0
        broker.restart_on_same_port()  # the broker comes up later
        manager = await ManagerStandIn(url, market_config()).start()
        try:
            await wait_for(lambda: h.agent.state == "trading", timeout_s=10)
            await wait_for(lambda: HomeStatus(state="online", market="trading") in manager.statuses)
            assert metric(h.metrics, "hems_market_connected") == 1
        finally:
            await manager.stop()
            broker.stop()


async def test_the_last_will_says_offline_and_the_agent_says_online_again(tmp_path, mosquitto_broker):
    """A network failure (the relay drops the agent's connection without a DISCONNECT) makes the
    broker publish the will; once the agent is back it says online again."""
    proxy = await TcpProxy(mosquitto_broker.port).start()
    watcher = await ManagerStandIn(mosquitto_broker.url, config=None).start()
    try:
        async with agent_harness(tmp_path, proxy.url) as h:
            await wait_for(lambda: HomeStatus(state="online", market="retail_only") in watcher.statuses)
            proxy.cut()
            await wait_for(lambda: HomeStatus(state="offline", market="retail_only") in watcher.statuses)
            await wait_for(lambda: watcher.statuses[-1] == HomeStatus(state="online", market="retail_only"))
            assert h.agent.link.connected
    finally:
        await watcher.stop()
        await proxy.stop()


async def test_a_withdrawn_market_configuration_means_retail_only(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config()).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url) as h:
            # The manager must have seen "trading" first, or the initial "retail_only" would pass below.
            await wait_for(lambda: manager.statuses and manager.statuses[-1].market == "trading")
            assert await manager.link.publish(manager.topics.market_config(), b"", retain=True)  # market closed
            await wait_for(lambda: manager.statuses[-1] == HomeStatus(state="online", market="retail_only"))
            assert h.agent.market_config is None
            terms = h.agent.plan_terms(utc(SLOT0_S), 4, STEP_S)
            assert terms.trades is None and terms.community_price_band is None
            assert terms.net_demand_cap_w is None and terms.net_demand_floor_w is None
    finally:
        await manager.stop()
