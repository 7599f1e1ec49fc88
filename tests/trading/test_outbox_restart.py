"""A meter report that an earlier run sent but never saw acknowledged goes again after a restart
(the broker may have lost it with the manager's session); the manager dedupes by message id."""

from __future__ import annotations

from hems.clock import SystemClock
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.store import AsyncStore
from hems.trading.outbox import OutboxSender
from tests.conftest import wait_for

TOPIC = "hems/v1/c1/home/home-a/meter"


async def test_sent_but_unacknowledged_reports_are_sent_again_after_a_restart(tmp_path, mosquitto_broker):
    store = await AsyncStore.in_directory(tmp_path / "home")
    await store.enqueue(TOPIC, '{"report": 1}', message_id="m-1", created_at_s=1.0)
    await store.enqueue(TOPIC, '{"report": 2}', message_id="m-2", created_at_s=2.0)
    await store.mark_sent("m-1", 3.0)  # the earlier run sent m-1 and was killed before its ack
    await store.mark_sent("m-2", 4.0)
    await store.mark_acked("m-2", 5.0)  # m-2 was acknowledged: it must not go again
    received: list[bytes] = []
    manager = MqttLink(BrokerSettings(url=mosquitto_broker.url, client_id="manager", persistent_session=False))

    async def on_meter(message: IncomingMessage) -> None:
        received.append(message.payload)

    manager.subscribe(TOPIC, on_meter)
    home = MqttLink(BrokerSettings(url=mosquitto_broker.url, client_id="home-a", persistent_session=False))
    await manager.start(connect_timeout_s=5)
    await home.start(connect_timeout_s=5)
    try:
        sender = OutboxSender(store, home, SystemClock(), resend_after_s=60)
        await sender.pump()
        await wait_for(lambda: received == [b'{"report": 1}'])
        assert sender.pending_count == 1 and sender.resent == 1
        assert await sender.acknowledge("m-1", ReceptionStatus.OK, 6.0)
        assert sender.pending_count == 0 and await store.unacked() == []
    finally:
        await home.stop()
        await manager.stop()
        await store.close()
