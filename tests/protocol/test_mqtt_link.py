"""MqttLink against a real mosquitto: delivery, ordering, acknowledgements, reconnect, sessions, will, TLS.

Network faults are made with a TCP proxy between the link and the broker (``TcpProxy``): cutting it is
an unclean connection loss that neither side can tell from a pulled cable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink, WillMessage
from tests.conftest import wait_for
from tests.mosquitto import MosquittoBroker, TlsListener, free_tcp_port, mosquitto_binary
from tests.protocol.test_broker_security import make_test_pki

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")

TIMEOUT_S = 3.0


class TcpProxy:
    """Forwards connections on 127.0.0.1:``port`` to the broker. ``cut()`` aborts every connection
    (RST, no MQTT DISCONNECT) and refuses new ones until ``restore()``; ``stall()`` stops forwarding
    without closing anything."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.up = True
        self.stalled = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._transports += [writer.transport, up_writer.transport]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                while self.stalled.is_set():
                    await asyncio.sleep(0.01)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()

    def cut(self) -> None:
        self.up = False
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def settings(url: str, client_id: str, **overrides: object) -> BrokerSettings:
    defaults: dict[str, object] = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
    return BrokerSettings(url, client_id, **{**defaults, **overrides})  # type: ignore[arg-type]


class Inbox:
    """A handler that records what it got."""

    def __init__(self) -> None:
        self.messages: list[IncomingMessage] = []

    async def __call__(self, message: IncomingMessage) -> None:
        self.messages.append(message)

    @property
    def payloads(self) -> list[bytes]:
        return [message.payload for message in self.messages]


class Links:
    def __init__(self) -> None:
        self.started: list[MqttLink] = []

    async def start(self, link_settings: BrokerSettings, subscriptions: dict[str, Inbox] | None = None,
                    **kwargs: object) -> MqttLink:
        """A started, connected link whose subscriptions are in place at the broker."""
        link = MqttLink(link_settings, **kwargs)  # type: ignore[arg-type]
        for topic_filter, inbox in (subscriptions or {}).items():
            link.subscribe(topic_filter, inbox)
        self.started.append(link)
        await link.start(connect_timeout_s=TIMEOUT_S)
        await self.settle(link)
        return link

    async def settle(self, link: MqttLink) -> None:
        """Return once the link's subscriptions are in place at the broker."""
        await settle(link)


async def settle(link: MqttLink) -> None:
    """A QoS 1 round trip: mosquitto handles one client's packets in order, so everything the link
    sent before (its SUBSCRIBEs) has been processed when this returns."""
    assert await link.publish("settle", b"", timeout_s=TIMEOUT_S)


@pytest.fixture
async def links() -> AsyncIterator[Links]:
    started = Links()
    yield started
    for link in started.started:
        await link.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One anonymous broker for the tests that do not restart it; each test uses its own topics."""
    with MosquittoBroker(tmp_path_factory.mktemp("mosquitto")) as running:
        yield running


@pytest.fixture
async def proxy(broker: MosquittoBroker) -> AsyncIterator[TcpProxy]:
    running = await TcpProxy(broker.port).start()
    yield running
    await running.close()


async def test_qos1_round_trip(broker: MosquittoBroker, links: Links) -> None:
    inbox = Inbox()
    subscriber = await links.start(settings(broker.url, "rt-sub"), {"rt/#": inbox})
    publisher = await links.start(settings(broker.url, "rt-pub"))
    assert await publisher.publish("rt/a", b"hello", qos=1)
    assert await publisher.publish("rt/b", b"", qos=0)
    await wait_for(lambda: len(inbox.messages) == 2, TIMEOUT_S)
    assert inbox.messages == [IncomingMessage("rt/a", b"hello", False), IncomingMessage("rt/b", b"", False)]
    assert publisher.stats.messages_sent == 3 and publisher.stats.bytes_sent == 5  # + the settle
    assert subscriber.stats.messages_received == 2 and subscriber.stats.bytes_received == 5


async def test_messages_reach_the_handler_in_order(broker: MosquittoBroker, links: Links) -> None:
    received: list[int] = []

    async def slow_handler(message: IncomingMessage) -> None:
        await asyncio.sleep(0)  # a handler that yields must still not be overtaken by the next message
        received.append(int(message.payload))

    await links.start(settings(broker.url, "order-sub"), {"order/+": slow_handler})  # type: ignore[dict-item]
    publisher = await links.start(settings(broker.url, "order-pub"))
    count = 300
    results = await asyncio.gather(*(publisher.publish(f"order/{i % 3}", str(i).encode()) for i in range(count)))
    assert all(results)
    await wait_for(lambda: len(received) == count, TIMEOUT_S)
    assert received == list(range(count))


async def test_publish_while_disconnected_returns_false_and_hands_nothing_to_paho(
        broker: MosquittoBroker, proxy: TcpProxy, links: Links) -> None:
    inbox = Inbox()
    await links.start(settings(broker.url, "dc-watch"), {"dc/#": inbox})
    changes: list[bool] = []
    link = await links.start(settings(f"mqtt://127.0.0.1:{proxy.port}", "dc-link"),
                             on_connection_change=changes.append)
    proxy.cut()
    await wait_for(lambda: not link.connected, TIMEOUT_S)
    started = time.monotonic()
    assert not await link.publish("dc/lost", b"sent while down", timeout_s=TIMEOUT_S)
    assert time.monotonic() - started < 0.1  # at once, not after the timeout
    assert link.stats.publish_refused == 1
    proxy.restore()
    assert await link.wait_connected(TIMEOUT_S)
    assert await link.publish("dc/marker", b"after reconnect")
    await wait_for(lambda: b"after reconnect" in inbox.payloads, TIMEOUT_S)
    # paho would have sent a queued message before the marker: there was none.
    assert inbox.payloads == [b"after reconnect"]
    assert changes == [True, False, True] and link.stats.reconnects == 1


async def test_publish_times_out_when_the_broker_does_not_answer(
        broker: MosquittoBroker, proxy: TcpProxy, links: Links) -> None:
    link = await links.start(settings(f"mqtt://127.0.0.1:{proxy.port}", "stall-link"))
    proxy.stalled.set()
    started = time.monotonic()
    assert not await link.publish("stall/x", b"x", timeout_s=0.2)
    assert 0.2 <= time.monotonic() - started < 1.0
    assert link.stats.publish_timeouts == 1
    proxy.stalled.clear()


async def test_reconnects_and_resubscribes_after_a_broker_restart(tmp_path: Path, links: Links) -> None:
    with MosquittoBroker(tmp_path / "restarting", port=free_tcp_port()) as restarting:
        inbox = Inbox()
        subscriber = await links.start(settings(restarting.url, "restart-sub"), {"restart/#": inbox})
        publisher = await links.start(settings(restarting.url, "restart-pub"))
        restarting.stop()
        await wait_for(lambda: not subscriber.connected and not publisher.connected, TIMEOUT_S)
        restarting.start()
        assert await subscriber.wait_connected(TIMEOUT_S) and await publisher.wait_connected(TIMEOUT_S)
        await settle(subscriber)  # the restarted broker has no sessions: the link subscribed again
        assert await publisher.publish("restart/x", b"after restart")
        await wait_for(lambda: inbox.payloads == [b"after restart"], TIMEOUT_S)
        assert subscriber.stats.reconnects == 1 and subscriber.stats.connects == 2


@pytest.mark.parametrize("persistent", [True, False])
async def test_persistent_session_gets_what_was_published_while_away(
        broker: MosquittoBroker, links: Links, persistent: bool) -> None:
    client_id = f"away-{persistent}"
    topic = f"away/{persistent}"
    first = await links.start(settings(broker.url, client_id, persistent_session=persistent), {topic: Inbox()})
    await first.stop()
    publisher = await links.start(settings(broker.url, f"away-pub-{persistent}"))
    for payload in (b"1", b"2", b"3"):
        assert await publisher.publish(topic, payload)
    inbox = Inbox()
    await links.start(settings(broker.url, client_id, persistent_session=persistent), {topic: inbox})
    assert await publisher.publish(topic, b"marker")
    await wait_for(lambda: b"marker" in inbox.payloads, TIMEOUT_S)
    assert inbox.payloads == ([b"1", b"2", b"3", b"marker"] if persistent else [b"marker"])


async def test_a_message_whose_handler_never_finished_is_delivered_again(
        broker: MosquittoBroker, links: Links) -> None:
    """Acknowledged only after the handler: a process that stops mid-message gets it again."""
    started = asyncio.Event()

    async def stuck(message: IncomingMessage) -> None:
        started.set()
        await asyncio.Event().wait()

    first = await links.start(settings(broker.url, "redeliver"), {"redeliver/x": stuck})  # type: ignore[dict-item]
    publisher = await links.start(settings(broker.url, "redeliver-pub"))
    assert await publisher.publish("redeliver/x", b"order")
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    await first.stop()
    inbox = Inbox()
    await links.start(settings(broker.url, "redeliver"), {"redeliver/x": inbox})
    await wait_for(lambda: inbox.payloads == [b"order"], TIMEOUT_S)


async def test_last_will_on_an_unclean_disconnect_and_none_on_stop(
        broker: MosquittoBroker, proxy: TcpProxy, links: Links) -> None:
    inbox = Inbox()
    await links.start(settings(broker.url, "will-watch"), {"will/#": inbox})
    will = WillMessage("will/cut", b"offline")
    await links.start(settings(f"mqtt://127.0.0.1:{proxy.port}", "will-cut"), will=will)
    stopped = await links.start(settings(broker.url, "will-stop"), will=WillMessage("will/stop", b"offline"))
    await stopped.stop()
    proxy.cut()
    await wait_for(lambda: inbox.messages, TIMEOUT_S)
    # The clean stop came first: had it left a will, that would have arrived before this one.
    assert inbox.messages == [IncomingMessage("will/cut", b"offline", False)]
    late = Inbox()
    await links.start(settings(broker.url, "will-late"), {"will/#": late})
    assert late.messages == [IncomingMessage("will/cut", b"offline", True)]  # retained


async def test_a_failing_handler_does_not_stop_delivery(broker: MosquittoBroker, links: Links,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    delivered: list[bytes] = []

    async def picky(message: IncomingMessage) -> None:
        delivered.append(message.payload)
        if int(message.payload) % 2:
            raise ValueError(f"odd payload {message.payload!r}")

    other = Inbox()
    link = await links.start(settings(broker.url, "fail-sub"),
                             {"fail/x": picky, "fail/#": other})  # type: ignore[dict-item]
    publisher = await links.start(settings(broker.url, "fail-pub"))
    caplog.set_level(logging.DEBUG, logger="hems.protocol.mqtt")
    for i in range(6):
        assert await publisher.publish("fail/x", str(i).encode())
    await wait_for(lambda: len(other.messages) == 6, TIMEOUT_S)
    assert delivered == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert link.stats.handler_errors == 3
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(errors) == 1 and "fail/x" in errors[0].getMessage() and errors[0].exc_info is not None


@pytest.mark.parametrize("url,expected", [
    ("mqtt://broker.example", ("broker.example", 1883, False)),
    ("mqtts://broker.example", ("broker.example", 8883, True)),
    ("mqtt://127.0.0.1:1884/", ("127.0.0.1", 1884, False)),
    ("mqtts://[::1]:8884", ("::1", 8884, True)),
])
def test_endpoint_of_good_urls(url: str, expected: tuple[str, int, bool]) -> None:
    assert BrokerSettings(url, "x").endpoint() == expected


@pytest.mark.parametrize("url,message", [
    ("http://broker.example", "scheme"),
    ("broker.example:1883", "scheme"),
    ("mqtt://", "no host"),
    ("mqtt://:1883", "no host"),
    ("mqtt://broker.example:99999", "out of range"),
    ("mqtt://broker.example:port", "port"),
    ("mqtt://broker.example:0", "port 0"),
    ("mqtt://user:secret@broker.example", "credentials"),
    ("mqtt://broker.example/hems", "only scheme, host and port"),
])
def test_bad_urls_are_rejected_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BrokerSettings(url, "x").endpoint()
    with pytest.raises(ValueError, match=message):
        MqttLink(BrokerSettings(url, "x"))


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="mqtts"):
        MqttLink(BrokerSettings("mqtt://h", "x", cert_file=Path("c"), key_file=Path("k")))
    with pytest.raises(ValueError, match="together"):
        MqttLink(BrokerSettings("mqtts://h", "x", cert_file=Path("c")))
    with pytest.raises(ValueError, match="client_id"):
        MqttLink(BrokerSettings("mqtt://h", ""))
    link = MqttLink(BrokerSettings("mqtt://h", "x"))
    with pytest.raises(ValueError, match="filter"):
        link.subscribe("a/#/b", Inbox())


async def test_start_gives_up_after_the_timeout_when_nobody_listens() -> None:
    link = MqttLink(settings(f"mqtt://127.0.0.1:{free_tcp_port()}", "nobody"))
    with pytest.raises(TimeoutError, match="ConnectionRefusedError"):
        await link.start(connect_timeout_s=0.2)
    assert not link.connected and link.stats.connect_failures >= 1
    await link.stop()  # idempotent after a failed start


async def test_tls_round_trip_with_a_generated_ca(tmp_path: Path, links: Links) -> None:
    pki = make_test_pki(tmp_path / "pki")
    tls = TlsListener(pki.ca_file, pki.cert_file, pki.key_file)
    with MosquittoBroker(tmp_path / "tls", tls=tls) as tls_broker:
        inbox = Inbox()
        await links.start(settings(tls_broker.url, "tls-sub"), {"tls/#": inbox})
        link = await links.start(settings(tls_broker.tls_url, "tls-pub", ca_file=pki.ca_file))
        assert await link.publish("tls/x", b"over TLS")
        await wait_for(lambda: inbox.payloads == [b"over TLS"], TIMEOUT_S)
        # A client without the CA is refused: test_broker_security.py.


async def test_a_link_runs_no_thread_of_its_own(broker: MosquittoBroker, links: Links) -> None:
    for index in range(5):
        await links.start(settings(broker.url, f"threadless-{index}"))
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("paho-mqtt-client")]


async def test_links_work_with_file_descriptors_above_1024(broker: MosquittoBroker, links: Links) -> None:
    # select() fails for descriptors >= FD_SETSIZE (1024): paho's own network thread used it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 1100
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    fillers: list[int] = []
    try:
        while not fillers or fillers[-1] < 1030:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        inbox = Inbox()
        await links.start(settings(broker.url, "high-fd-sub"), {"high/#": inbox})
        link = await links.start(settings(broker.url, "high-fd-pub"))
        assert await link.publish("high/x", b"above 1024")
        await wait_for(lambda: inbox.payloads == [b"above 1024"], TIMEOUT_S)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_keepalive_notices_a_broker_that_stopped_answering(
        broker: MosquittoBroker, proxy: TcpProxy, links: Links) -> None:
    link = await links.start(settings(f"mqtt://127.0.0.1:{proxy.port}", "keepalive-link", keepalive_s=1))
    proxy.stalled.set()
    # A PINGREQ is due after 1 s of silence; with no PINGRESP 1 s later the link gives up.
    await wait_for(lambda: not link.connected, 5.0)
    proxy.stalled.clear()
    proxy.cut()
    proxy.restore()
    assert await link.wait_connected(TIMEOUT_S)
    assert await link.publish("keepalive/after", b"x")
