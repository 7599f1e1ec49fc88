"""The embedded amqtt broker with real MqttLink clients: delivery, retained messages, persistent
sessions, last will, 200 clients, clean stop.

Network faults come from the TCP proxy of the MqttLink tests: cutting it drops the connection without an
MQTT DISCONNECT, like a pulled cable.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hems.demo.broker import EmbeddedBroker, embedded_broker
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink, WillMessage
from tests.conftest import wait_for
from tests.protocol.test_mqtt_link import Inbox, TcpProxy
from tests.protocol.test_mqtt_link import Links as MosquittoLinks

TIMEOUT_S = 5.0
HOMES = 200  # the demo's largest community


def settings(url: str, client_id: str, **overrides: object) -> BrokerSettings:
    defaults: dict[str, object] = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
    return BrokerSettings(url, client_id, **{**defaults, **overrides})  # type: ignore[arg-type]


class Links(MosquittoLinks):
    """The MQTT link tests' starter, settled the amqtt way; stops every link at the end."""

    async def settle(self, link: MqttLink) -> None:
        # amqtt may acknowledge a PUBLISH before it has handled an earlier SUBSCRIBE, so a round trip
        # proves nothing; a retained probe arrives once the SUBSCRIBEs before its own are in.
        ready = Inbox()
        probe = f"ready/{link.settings.client_id}"
        link.subscribe(probe, ready)
        assert await link.publish(probe, b"ready", retain=True, timeout_s=TIMEOUT_S)
        await wait_for(lambda: ready.messages, TIMEOUT_S)

    async def stop_all(self) -> None:
        await asyncio.gather(*(link.stop() for link in self.started))


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with embedded_broker() as running:
        yield running


@pytest.fixture
async def links() -> AsyncIterator[Links]:
    started = Links()
    yield started
    await started.stop_all()


def broker_tasks() -> list[asyncio.Task[object]]:
    """Unfinished tasks running amqtt's or our broker's code."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = Path(code.co_filename if code is not None else "")
        if not task.done() and ("amqtt" in filename.parts or filename.name == "broker.py"):
            found.append(task)
    return found


async def test_url_names_the_loopback_port_it_listens_on(broker: EmbeddedBroker) -> None:
    assert broker.port > 0 and broker.url == f"mqtt://127.0.0.1:{broker.port}"
    _, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.close()
    await writer.wait_closed()
    with pytest.raises(RuntimeError, match="not started"):
        _ = EmbeddedBroker().url


async def test_qos1_round_trip_in_publish_order(broker: EmbeddedBroker, links: Links) -> None:
    inbox = Inbox()
    subscriber = await links.start(settings(broker.url, "rt-sub"), {"rt/+": inbox})
    publisher = await links.start(settings(broker.url, "rt-pub"))
    count = 200
    results = await asyncio.gather(*(publisher.publish(f"rt/{i % 3}", str(i).encode()) for i in range(count)))
    assert all(results)
    await wait_for(lambda: len(inbox.messages) == count, TIMEOUT_S)
    assert inbox.payloads == [str(i).encode() for i in range(count)]
    assert inbox.messages[0] == IncomingMessage("rt/0", b"0", False)
    assert subscriber.stats.messages_received == count + 1  # + its ready probe


async def test_a_retained_message_reaches_a_later_subscriber(broker: EmbeddedBroker, links: Links) -> None:
    publisher = await links.start(settings(broker.url, "ret-pub"))
    assert await publisher.publish("ret/config", b"mechanism", retain=True)
    assert await publisher.publish("ret/signal", b"not kept")
    late = Inbox()
    await links.start(settings(broker.url, "ret-late"), {"ret/#": late})
    assert late.messages == [IncomingMessage("ret/config", b"mechanism", True)]
    assert await publisher.publish("ret/signal", b"live")
    await wait_for(lambda: len(late.messages) == 2, TIMEOUT_S)
    assert late.messages[1] == IncomingMessage("ret/signal", b"live", False)


async def test_retained_messages_come_once_per_subscribe_and_only_for_own_filters(
        broker: EmbeddedBroker, links: Links) -> None:
    # amqtt alone also sends them on CONNECT, for the filters of every other client.
    publisher = await links.start(settings(broker.url, "own-pub"), {"status/#": Inbox()})
    assert await publisher.publish("status/home-1", b"online", retain=True)
    stranger = await links.start(settings(broker.url, "own-stranger"), {"orders/x": Inbox()})
    assert stranger.stats.messages_received == 1 and stranger.stats.unhandled_messages == 0  # its probe
    watcher = Inbox()
    await links.start(settings(broker.url, "own-watch"), {"status/#": watcher})
    assert watcher.messages == [IncomingMessage("status/home-1", b"online", True)]
    resumed = Inbox()  # the same persistent session again: MqttLink subscribes anew, as to mosquitto
    await links.started[-1].stop()
    await links.start(settings(broker.url, "own-watch"), {"status/#": resumed})
    assert resumed.messages == [IncomingMessage("status/home-1", b"online", True)]


async def test_a_persistent_session_gets_what_was_published_while_away(
        broker: EmbeddedBroker, links: Links) -> None:
    # amqtt's own anonymous login would drop this session when the client leaves.
    away = await links.start(settings(broker.url, "away"), {"away/x": Inbox()})
    publisher = await links.start(settings(broker.url, "away-pub"))
    await away.stop()
    for payload in (b"1", b"2", b"3"):
        assert await publisher.publish("away/x", payload)
    inbox = Inbox()
    back = MqttLink(settings(broker.url, "away"))
    back.subscribe("away/x", inbox)
    links.started.append(back)
    await back.start(connect_timeout_s=TIMEOUT_S)
    assert await publisher.publish("away/x", b"marker")
    await wait_for(lambda: b"marker" in inbox.payloads, TIMEOUT_S)
    assert inbox.payloads == [b"1", b"2", b"3", b"marker"]


async def test_last_will_when_the_connection_dies_and_none_on_a_clean_stop(
        broker: EmbeddedBroker, links: Links) -> None:
    proxy = await TcpProxy(broker.port).start()
    try:
        watcher = Inbox()
        await links.start(settings(broker.url, "will-watch"), {"will/#": watcher})
        await links.start(settings(f"mqtt://127.0.0.1:{proxy.port}", "will-cut"),
                          will=WillMessage("will/cut", b"offline"))
        stopped = await links.start(settings(broker.url, "will-stop"), will=WillMessage("will/stop", b"offline"))
        await stopped.stop()
        proxy.cut()
        await wait_for(lambda: watcher.messages, TIMEOUT_S)
        # The clean stop came first: had it left a will, that would have arrived before this one.
        assert watcher.messages == [IncomingMessage("will/cut", b"offline", False)]
        late = Inbox()
        await links.start(settings(broker.url, "will-late"), {"will/#": late})
        assert late.messages == [IncomingMessage("will/cut", b"offline", True)]  # the will was retained
    finally:
        await proxy.close()


async def test_two_hundred_clients_at_once(broker: EmbeddedBroker, links: Links) -> None:
    collector = Inbox()
    await links.start(settings(broker.url, "collector"), {"homes/+/meter": collector})
    inboxes = [Inbox() for _ in range(HOMES)]
    homes = await asyncio.gather(*(links.start(settings(broker.url, f"home-{i}"), {"market/#": inbox})
                                   for i, inbox in enumerate(inboxes)))
    manager = await links.start(settings(broker.url, "manager"))
    assert await manager.publish("market/signal", b"price 0.21")
    await wait_for(lambda: all(inbox.messages for inbox in inboxes), TIMEOUT_S)
    assert all(inbox.payloads == [b"price 0.21"] for inbox in inboxes)
    results = await asyncio.gather(*(home.publish(f"homes/{i}/meter", str(i).encode())
                                     for i, home in enumerate(homes)))
    assert all(results)
    await wait_for(lambda: len(collector.messages) == HOMES, TIMEOUT_S)
    assert sorted(int(payload) for payload in collector.payloads) == list(range(HOMES))


async def test_stop_ends_every_connection_and_frees_the_port(
        links: Links, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    first = EmbeddedBroker()
    await first.start()
    port = first.port
    inbox = Inbox()
    link = await links.start(settings(first.url, "survivor"), {"again/x": inbox},
                             will=WillMessage("again/status", b"offline"))
    await first.stop()
    await first.stop()  # idempotent
    await wait_for(lambda: not link.connected, TIMEOUT_S)
    assert broker_tasks() == []
    # Nothing left half-done: no "Task was destroyed but it is pending" once collected.
    gc.collect()
    await asyncio.sleep(0)
    assert [record.getMessage() for record in caplog.records if record.name.startswith(("asyncio", "amqtt"))] == []

    async with embedded_broker(port=port) as second:  # the same port binds again at once
        assert second.url == f"mqtt://127.0.0.1:{port}"
        assert await link.wait_connected(TIMEOUT_S)  # the link found the new broker by itself
        publisher = await links.start(settings(second.url, "again-pub"))

        async def delivered() -> bool:  # until the link's new subscription is in place
            assert await publisher.publish("again/x", b"hello")
            return bool(inbox.messages)

        await wait_for(delivered, TIMEOUT_S, interval_s=0.05)
        assert set(inbox.payloads) == {b"hello"}


async def test_a_taken_port_is_an_error_and_leaves_logging_as_it_was(broker: EmbeddedBroker) -> None:
    amqtt_logger = logging.getLogger("amqtt")
    assert amqtt_logger.level == logging.WARNING  # quiet while a broker runs
    with pytest.raises(OSError):
        await EmbeddedBroker(port=broker.port).start()
    assert amqtt_logger.level == logging.WARNING  # the running broker still wants it quiet
    await broker.stop()
    assert amqtt_logger.level == logging.NOTSET
    with socket.create_server(("127.0.0.1", 0)) as taken:  # a fixed port held by someone else
        with pytest.raises(OSError):
            await EmbeddedBroker(port=taken.getsockname()[1]).start()
    assert amqtt_logger.level == logging.NOTSET


async def test_a_level_the_application_chose_is_left_alone() -> None:
    amqtt_logger = logging.getLogger("amqtt")
    amqtt_logger.setLevel(logging.DEBUG)
    try:
        async with embedded_broker():
            assert amqtt_logger.level == logging.DEBUG
        assert amqtt_logger.level == logging.DEBUG
    finally:
        amqtt_logger.setLevel(logging.NOTSET)


async def test_amqtt_stays_quiet_below_warning(broker: EmbeddedBroker, links: Links,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    await links.start(settings(broker.url, "quiet-sub"), {"quiet/x": inbox})
    publisher = await links.start(settings(broker.url, "quiet-pub"))
    assert await publisher.publish("quiet/x", b"1")
    await wait_for(lambda: inbox.messages, TIMEOUT_S)
    noisy = [record.name for record in caplog.records if record.name.startswith(("amqtt", "transitions"))]
    assert noisy == []
