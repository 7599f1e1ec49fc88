import asyncio, time
from tests.trading.conftest import ManagerStandIn, market_config, agent_harness


async def test_debug(tmp_path, mosquitto_broker):
    manager = await ManagerStandIn(mosquitto_broker.url, market_config()).start()
    try:
        async with agent_harness(tmp_path, mosquitto_broker.url) as h:
            t = time.monotonic()
            while h.agent.market_config is None and time.monotonic() - t < 3:
                await asyncio.sleep(0.01)
            if h.agent.market_config is None:
                print("stats agent", h.agent.link.stats, h.agent.link.connected)
                print("stats manager", manager.link.stats)
                print("dispatcher", h.agent.link._dispatcher, h.agent.link._queue.qsize())
                print("subs", h.agent.link._subscriptions.keys())
                for task in asyncio.all_tasks():
                    print("TASK", task.get_name()); task.print_stack()
            assert h.agent.market_config is not None
    finally:
        await manager.stop()
