"""An asyncio link to the community broker over paho-mqtt 2.x (MQTT 3.1.1, QoS 1, last will, reconnect).

paho is driven from the event loop by ``PahoLoopDriver`` (hems/protocol/mqtt_driver.py): no thread per
link, no ``select()``. paho's callbacks therefore run on the event loop, inside its ``loop_read`` or
``loop_write``; each one only records its facts and schedules the rest (``call_soon``), so nothing
re-enters paho from its own callback. One dispatcher task delivers incoming messages in arrival order,
so a handler sees the broker's order and a slow handler delays the next message rather than racing it.

Delivery rules the callers rely on:

- ``publish`` returns True only once the broker acknowledged the message (PUBACK for QoS 1; written to
  the socket for QoS 0). When the link is down it returns False at once and hands nothing to paho:
  paho would queue a QoS 1 message in memory and send it after reconnecting (libraries.md), which
  would duplicate whatever the caller's outbox resends.
- A message handed over just as the connection dropped stays in paho's queue and is resent on
  reconnect; ``publish`` returns True if that happens within ``timeout_s``, else False (the caller's
  retry may then duplicate it: receivers dedupe by ``message_id``).
- With ``persistent_session`` the broker keeps our subscriptions and queues QoS 1 messages while we
  are away; we resubscribe on every connect anyway, since a broker restarted without persistence
  has lost the session.
- An incoming QoS 1 message is acknowledged to the broker only after its handlers ran (paho's
  ``manual_ack``), so a message the process never finished is redelivered on the next connect of a
  persistent session. Delivery is at least once: handlers dedupe by ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from hems.protocol.mqtt_driver import PahoLoopDriver
from hems.protocol.mqtt_settings import BrokerSettings, IncomingMessage, LinkStats, WillMessage, broker_endpoint

__all__ = ["BrokerSettings", "IncomingMessage", "LinkStats", "MqttLink", "WillMessage", "broker_endpoint"]

logger = logging.getLogger(__name__)

Handler = Callable[[IncomingMessage], Awaitable[None]]


@dataclass(frozen=True)
class _Delivery:
    message: IncomingMessage
    mid: int
    qos: int
    generation: int  # of the connection it came on: its mid means nothing on another one


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"qos {qos!r}: must be 0, 1 or 2")


def _check_filter(topic_filter: str) -> None:
    levels = topic_filter.split("/")
    if (not topic_filter or "\0" in topic_filter or "#" in levels[:-1]
            or any(("+" in level and level != "+") or ("#" in level and level != "#") for level in levels)):
        raise ValueError(f"topic filter {topic_filter!r}: '+' and '#' must fill a level, '#' only last")


def _text(path: Any) -> str | None:
    return None if path is None else str(path)


class MqttLink:
    """One MQTT 3.1.1 connection: subscriptions with async handlers, acknowledged publishes, last will,
    automatic reconnect. Create it, ``subscribe``, ``await start()``, ``await stop()`` when done."""

    def __init__(self, settings: BrokerSettings, *, will: WillMessage | None = None,
                 on_connection_change: Callable[[bool], None] | None = None) -> None:
        self.settings = settings
        self._host, self._port, self._tls = settings.endpoint()
        if settings.persistent_session and not settings.client_id:
            raise ValueError("a persistent session needs a client_id")
        if (settings.cert_file is None) != (settings.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if settings.cert_file is not None and not self._tls:
            raise ValueError(f"a client certificate needs an mqtts:// url, not {settings.url!r}")
        if not 0 < settings.reconnect_min_s <= settings.reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        if will is not None:
            _check_qos(will.qos)
        self._will = will
        self._on_connection_change = on_connection_change
        self._subscriptions: dict[str, tuple[Handler, int]] = {}
        self._pending: dict[int, asyncio.Future[bool]] = {}  # publish futures by mid
        self._awaiting_suback: int | None = None  # the mid of the subscriptions made on connect
        self._generation = 0  # +1 on every disconnect
        self._stats = LinkStats()
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: PahoLoopDriver | None = None
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._connected = False
        self._connected_event = asyncio.Event()
        self._first_connack: asyncio.Future[None] | None = None
        self._stopping = False
        self._ever_connected = False
        self._outage_logged = False
        self._last_failure = ""
        self._handler_errors_logged: set[tuple[str, str]] = set()

    @property
    def connected(self) -> bool:
        """True between an accepted CONNACK and the next disconnect."""
        return self._connected

    @property
    def stats(self) -> LinkStats:
        """A snapshot of the counters."""
        return copy.copy(self._stats)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Deliver messages matching ``topic_filter`` to ``handler`` (one handler per filter; a second
        call replaces it). Works before or after ``start``; every connect subscribes again."""
        _check_filter(topic_filter)
        _check_qos(qos)
        self._subscriptions[topic_filter] = (handler, qos)
        client = self._client
        if client is not None and client.is_connected():
            client.subscribe(topic_filter, qos)

    async def start(self, connect_timeout_s: float | None = None) -> None:
        """Start connecting in the background (and keep reconnecting).

        Without ``connect_timeout_s`` this returns at once. With it, it waits for the first CONNACK (and
        the SUBACK of the subscriptions made so far, so no message published after ``start`` returns
        is missed for want of a subscription) and raises ConnectionError when the broker refuses us
        (with its reason) or TimeoutError (with the last transport error) when none came in time; the
        link is stopped in both cases.
        """
        if self._client is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._last_failure = ""
        first = self._first_connack = loop.create_future() if connect_timeout_s is not None else None
        self._dispatcher = loop.create_task(self._dispatch(), name=f"mqtt-dispatch-{self.settings.client_id}")
        try:
            client = await asyncio.to_thread(self._make_client)  # tls_set reads files: not on the loop
        except BaseException:
            await self._end_dispatcher()
            raise
        self._client = client
        self._driver = PahoLoopDriver(
            client, reconnect_min_s=self.settings.reconnect_min_s, reconnect_max_s=self.settings.reconnect_max_s,
            on_connect_failed=lambda reason: self._handle_failure(reason, refused=False),
            name=self.settings.client_id)
        client.connect_async(self._host, self._port, keepalive=self.settings.keepalive_s)  # no I/O yet
        self._driver.start()
        if first is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(first), connect_timeout_s)
        except TimeoutError:
            detail = f" (last error: {self._last_failure})" if self._last_failure else ""
            await self.stop()
            raise TimeoutError(f"no CONNACK from {self._host}:{self._port} within "
                               f"{connect_timeout_s} s{detail}") from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Disconnect cleanly (the broker discards our will), end the connection task and the
        dispatcher. Publishes still waiting return False. Idempotent."""
        client, self._client = self._client, None
        self._first_connack = None
        driver, self._driver = self._driver, None
        if client is not None:
            self._stopping = True
        if driver is not None:
            await driver.stop()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_result(False)
        await self._end_dispatcher()
        if self._connected:
            self._set_connected(False)

    async def wait_connected(self, timeout_s: float) -> bool:
        """True as soon as the link is connected; False after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      timeout_s: float = 10.0) -> bool:
        """Send one message; True once the broker acknowledged it (see the module docstring).

        False at once when not connected or paho's queue is full (nothing handed to paho), False
        after ``timeout_s`` without acknowledgement. ValueError for an invalid topic or qos.
        """
        _check_qos(qos)
        client = self._client
        if client is None or not self._connected or not client.is_connected():
            self._stats.publish_refused += 1
            return False
        # paho only queues here (its write callback is set): the acknowledgement comes from a later
        # loop_read or loop_write, after the future is registered.
        info = client.publish(topic, payload, qos=qos, retain=retain)
        # NO_CONN with qos > 0: the link dropped just now and paho queued it for the reconnect.
        queued = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0)
        if not queued:
            self._stats.publish_refused += 1
            logger.debug("publish to %s not queued: %s", topic, mqtt.error_string(info.rc))
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[info.mid] = future
        try:
            acknowledged = await asyncio.wait_for(future, timeout_s)  # False after stop()
        except TimeoutError:
            self._stats.publish_timeouts += 1
            return False
        finally:
            if self._pending.get(info.mid) is future:
                del self._pending[info.mid]
        if acknowledged:
            self._stats.messages_sent += 1
            self._stats.bytes_sent += len(payload)
        return acknowledged

    def _make_client(self) -> mqtt.Client:
        settings = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                             clean_session=not settings.persistent_session,
                             protocol=MQTTProtocolVersion.MQTTv311, manual_ack=True)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if self._tls:
            client.tls_set(ca_certs=_text(settings.ca_file), certfile=_text(settings.cert_file),
                           keyfile=_text(settings.key_file))
        if self._will is not None:
            client.will_set(self._will.topic, self._will.payload, qos=self._will.qos, retain=self._will.retain)
        client.max_queued_messages_set(settings.max_queued_messages)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    async def _end_dispatcher(self) -> None:
        task, self._dispatcher = self._dispatcher, None
        if task is None:
            return
        # Python 3.11's wait_for (used by a handler's publish) can swallow a cancellation that races
        # with its result; the dispatcher would then wait for the next message forever. Cancel until
        # the task has really ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    # paho's protocol callbacks: they run inside loop_read/loop_write and schedule the rest.

    def _later(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(callback, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        if self._stopping:
            return
        if reason_code.is_failure:
            self._later(self._handle_failure, f"broker refused the connection: {reason_code}", True)
            return
        filters = [(topic_filter, qos) for topic_filter, (_, qos) in self._subscriptions.items()]
        if filters:
            _, self._awaiting_suback = client.subscribe(filters)
        self._later(self._handle_connected, bool(flags.session_present))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        self._generation += 1
        self._later(self._handle_disconnected, str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            logger.warning("dropped a message whose topic is not UTF-8", extra={"broker": self.settings.url})
            return
        incoming = IncomingMessage(topic, bytes(message.payload), bool(message.retain))
        self._enqueue(_Delivery(incoming, message.mid, message.qos, self._generation))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: mqtt.ReasonCode,
                    properties: mqtt.Properties | None) -> None:
        future = self._pending.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(True)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[mqtt.ReasonCode], properties: mqtt.Properties | None) -> None:
        if mid == self._awaiting_suback:
            self._awaiting_suback = None
            self._later(self._handle_subscribed)
        refused = sum(1 for code in reason_codes if code.is_failure)
        if refused:
            logger.warning("broker refused %d of %d subscriptions (ACL?)", refused, len(reason_codes),
                           extra={"broker": self.settings.url, "client_id": self.settings.client_id})

    def _enqueue(self, delivery: _Delivery) -> None:
        self._stats.messages_received += 1
        self._stats.bytes_received += len(delivery.message.payload)
        self._queue.put_nowait(delivery)

    def _handle_connected(self, session_present: bool) -> None:
        if self._stopping:
            return
        self._stats.connects += 1
        if self._ever_connected:
            self._stats.reconnects += 1
            logger.info("MQTT link to %s:%d reconnected (session %s)", self._host, self._port,
                        "resumed" if session_present else "new", extra={"client_id": self.settings.client_id})
        self._ever_connected = True
        self._outage_logged = False
        if self._driver is not None:
            self._driver.connection_accepted()
        if self._awaiting_suback is None:
            self._handle_subscribed()
        self._set_connected(True)

    def _handle_subscribed(self) -> None:
        """The broker confirmed the subscriptions made on connect: ``start`` may return."""
        if self._first_connack is not None and not self._first_connack.done():
            self._first_connack.set_result(None)

    def _handle_failure(self, reason: str, refused: bool) -> None:
        """A connect attempt failed: ``refused`` by the broker's CONNACK, or before (TCP, TLS)."""
        self._stats.connect_failures += 1
        self._last_failure = reason
        self._log_outage(reason)
        first = self._first_connack
        if refused and first is not None and not first.done():
            first.set_exception(ConnectionError(
                f"MQTT broker {self._host}:{self._port}, client {self.settings.client_id!r}: {reason}"))

    def _handle_disconnected(self, reason: str) -> None:
        if self._connected:
            self._set_connected(False)
        self._log_outage(f"connection lost: {reason}")

    def _log_outage(self, reason: str) -> None:
        """Warn once per outage; the rest of it goes to debug."""
        if self._stopping:
            return
        if self._outage_logged:
            logger.debug("MQTT link to %s:%d still down: %s", self._host, self._port, reason)
            return
        self._outage_logged = True
        logger.warning("MQTT link to %s:%d down (%s); reconnecting in the background", self._host,
                       self._port, reason, extra={"client_id": self.settings.client_id})

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        if connected:
            self._connected_event.set()
        else:
            self._connected_event.clear()
        if self._on_connection_change is not None:
            try:
                self._on_connection_change(connected)
            except Exception:
                logger.exception("on_connection_change callback failed", extra={"connected": connected})

    async def _dispatch(self) -> None:
        """Deliver queued messages, in order, to every handler whose filter matches; then ack."""
        while True:
            delivery = await self._queue.get()
            message = delivery.message
            matching = [(topic_filter, handler) for topic_filter, (handler, _) in self._subscriptions.items()
                        if mqtt.topic_matches_sub(topic_filter, message.topic)]
            if not matching:
                self._stats.unhandled_messages += 1
                logger.debug("no handler for a message on %s", message.topic)
            for topic_filter, handler in matching:
                try:
                    await handler(message)
                except Exception as error:
                    self._handler_failed(topic_filter, message, error)
            # Acknowledged even after a handler failed: a poison message must not come back forever.
            self._acknowledge(delivery)

    def _acknowledge(self, delivery: _Delivery) -> None:
        client = self._client
        if client is None or delivery.qos == 0:
            return
        # A mid of an earlier connection may name another message now; the broker redelivers the
        # unacknowledged one itself.
        if delivery.generation == self._generation:
            client.ack(delivery.mid, delivery.qos)

    def _handler_failed(self, topic_filter: str, message: IncomingMessage, error: Exception) -> None:
        """Count every failure; log the first of each exception type per filter, with its traceback."""
        self._stats.handler_errors += 1
        key = (topic_filter, type(error).__qualname__)
        if key in self._handler_errors_logged:
            logger.debug("handler for %s failed again on %s: %r", topic_filter, message.topic, error)
            return
        self._handler_errors_logged.add(key)
        logger.error("handler for %s failed on %s (%d payload bytes); further %s errors of this handler "
                     "are counted, not logged", topic_filter, message.topic, len(message.payload),
                     type(error).__name__, exc_info=error,
                     extra={"client_id": self.settings.client_id, "topic": message.topic})
