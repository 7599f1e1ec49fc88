"""An asyncio link to the community broker over paho-mqtt 2.x (MQTT 3.1.1, QoS 1, last will, reconnect).

paho runs its network loop in its own thread (``loop_start``) and calls our callbacks there. Every
callback only hands its facts to the event loop (``call_soon_threadsafe``); state, counters, futures and
handlers live on the event loop. One dispatcher task delivers incoming messages in arrival order, so a
handler sees the broker's order and a slow handler delays the next message rather than racing it.

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
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

__all__ = ["BrokerSettings", "IncomingMessage", "LinkStats", "MqttLink", "WillMessage"]

logger = logging.getLogger(__name__)

DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883
#: paho's TCP connect timeout; a connect in progress delays stop() by up to this much.
CONNECT_TIMEOUT_S = 5.0

Handler = Callable[["IncomingMessage"], Awaitable[None]]


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to reach the broker. ``url`` is ``mqtt://host[:port]`` (1883) or
    ``mqtts://host[:port]`` (8883, TLS verified against ``ca_file``, or the system CAs when None)."""

    url: str
    client_id: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    persistent_session: bool = True
    max_queued_messages: int = 1000
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0

    def endpoint(self) -> tuple[str, int, bool]:
        """``(host, port, tls)`` of ``url``; ValueError naming the problem for a malformed URL."""
        return broker_endpoint(self.url)


def broker_endpoint(url: str, where: str | None = None) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of ``mqtt://host[:port]`` (1883) or ``mqtts://host[:port]`` (8883);
    ValueError starting with ``where`` (default: the URL) and naming the problem."""
    where = where or f"broker url {url!r}"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{where}: the scheme must be mqtt:// or mqtts://")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{where}: put credentials in username/password, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{where}: only scheme, host and port are allowed")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if not parts.hostname:
        raise ValueError(f"{where}: no host")
    if port == 0:
        raise ValueError(f"{where}: port 0 is not a broker port")
    tls = parts.scheme == "mqtts"
    return parts.hostname, port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT), tls


@dataclass(frozen=True)
class IncomingMessage:
    """One message as the broker delivered it; ``retain`` is True when it comes from the retained store."""

    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class WillMessage:
    """What the broker publishes for us when we vanish without a clean disconnect."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass
class LinkStats:
    """Plain counters for metrics (a copy; the link never changes a returned instance)."""

    messages_sent: int = 0        # acknowledged by the broker (QoS 1) or written (QoS 0)
    bytes_sent: int = 0           # payload bytes of those
    messages_received: int = 0
    bytes_received: int = 0
    connects: int = 0             # accepted CONNACKs
    reconnects: int = 0           # accepted CONNACKs after the first
    connect_failures: int = 0     # unreachable broker, TLS failure, refused CONNACK
    publish_refused: int = 0      # not connected or paho's queue full: nothing handed to paho
    publish_timeouts: int = 0     # handed to paho, no acknowledgement within timeout_s
    handler_errors: int = 0
    unhandled_messages: int = 0   # matched no subscription (e.g. queued for an old one)


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


def _text(path: Path | None) -> str | None:
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
        # Guards what paho's thread touches too: the next six fields.
        self._lock = threading.Lock()
        self._subscriptions: dict[str, tuple[Handler, int]] = {}
        self._pending: dict[int, asyncio.Future[bool]] = {}  # publish futures by mid
        self._early_acks: set[int] = set()  # acks that came before publish() learnt their mid
        self._awaiting_suback: int | None = None  # the mid of the subscriptions made on connect
        self._publishing = False
        self._generation = 0  # +1 on every disconnect
        self._stats = LinkStats()
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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
        with self._lock:
            self._subscriptions[topic_filter] = (handler, qos)
        client = self._client
        if client is not None and client.is_connected():
            client.subscribe(topic_filter, qos)

    async def start(self, connect_timeout_s: float | None = None) -> None:
        """Start connecting in the background (paho's thread keeps reconnecting).

        Without ``connect_timeout_s`` this returns at once. With it, it waits for the first CONNACK (and
        the SUBACK of the subscriptions made so far, so no message published after ``start`` returns
        is missed for want of a subscription) and raises ConnectionError when the broker refuses us (with its reason) or TimeoutError (with the
        last transport error) when none came in time; the link is stopped in both cases.
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
        client.connect_async(self._host, self._port, keepalive=self.settings.keepalive_s)
        client.loop_start()
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
        """Disconnect cleanly (the broker discards our will), end paho's thread and the dispatcher.
        Publishes still waiting return False. Idempotent."""
        client, self._client = self._client, None
        self._first_connack = None
        if client is not None:
            self._stopping = True
            # disconnect + loop_stop join paho's thread, which may be inside a connect attempt.
            await asyncio.to_thread(self._shutdown, client)
        with self._lock:
            pending, self._pending = self._pending, {}
            self._early_acks.clear()
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
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # on_publish may run on paho's thread before publish() has returned the mid: until the future
        # is registered, _publishing tells it to keep the ack in _early_acks.
        with self._lock:
            self._publishing = True
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain)
        except BaseException:
            with self._lock:
                self._publishing = False
                self._early_acks.clear()
            raise
        # NO_CONN with qos > 0: the link dropped just now and paho queued it for the reconnect.
        queued = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0)
        with self._lock:
            self._publishing = False
            acked_early = info.mid in self._early_acks
            self._early_acks.clear()
            if queued and not acked_early:
                self._pending[info.mid] = future
        if not queued:
            self._stats.publish_refused += 1
            logger.debug("publish to %s not queued: %s", topic, mqtt.error_string(info.rc))
            return False
        if not acked_early and not await self._wait_for_ack(info.mid, future, timeout_s):
            return False
        self._stats.messages_sent += 1
        self._stats.bytes_sent += len(payload)
        return True

    async def _wait_for_ack(self, mid: int, future: asyncio.Future[bool], timeout_s: float) -> bool:
        try:
            # shield: a timeout must not cancel the future that paho's thread may be resolving.
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)  # False after stop()
        except TimeoutError:
            self._stats.publish_timeouts += 1
            return False
        finally:
            with self._lock:
                if self._pending.get(mid) is future:
                    del self._pending[mid]

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
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(settings.max_queued_messages)
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        return client

    @staticmethod
    def _shutdown(client: mqtt.Client) -> None:
        client.disconnect()
        client.loop_stop()

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

    # paho's callbacks: they run on paho's thread and only hand over to the event loop.

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
                loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        if self._stopping:
            return
        if reason_code.is_failure:
            self._to_loop(self._handle_failure, f"broker refused the connection: {reason_code}", True)
            return
        _send_small_packets_at_once(client)
        with self._lock:
            filters = [(topic_filter, qos) for topic_filter, (_, qos) in self._subscriptions.items()]
        if filters:
            _, mid = client.subscribe(filters)
            with self._lock:
                self._awaiting_suback = mid
        self._to_loop(self._handle_connected, bool(flags.session_present))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError:`, so the exception is still the current one.
        error = sys.exc_info()[1]
        self._to_loop(self._handle_failure, "connect failed" if error is None else repr(error), False)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        with self._lock:
            self._generation += 1
        self._to_loop(self._handle_disconnected, str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            logger.warning("dropped a message whose topic is not UTF-8", extra={"broker": self.settings.url})
            return
        with self._lock:
            generation = self._generation
        incoming = IncomingMessage(topic, bytes(message.payload), bool(message.retain))
        self._to_loop(self._enqueue, _Delivery(incoming, message.mid, message.qos, generation))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: mqtt.ReasonCode,
                    properties: mqtt.Properties | None) -> None:
        with self._lock:
            future = self._pending.pop(mid, None)
            if future is None and self._publishing:
                self._early_acks.add(mid)
        if future is not None:
            self._to_loop(self._resolve, future)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[mqtt.ReasonCode], properties: mqtt.Properties | None) -> None:
        with self._lock:
            first = mid == self._awaiting_suback
            if first:
                self._awaiting_suback = None
        if first:
            self._to_loop(self._handle_subscribed)
        refused = sum(1 for code in reason_codes if code.is_failure)
        if refused:
            logger.warning("broker refused %d of %d subscriptions (ACL?)", refused, len(reason_codes),
                           extra={"broker": self.settings.url, "client_id": self.settings.client_id})

    # The event loop's side of the callbacks.

    @staticmethod
    def _resolve(future: asyncio.Future[bool]) -> None:
        if not future.done():
            future.set_result(True)

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
        with self._lock:
            subscribing = self._awaiting_suback is not None
        if not subscribing:
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
            with self._lock:
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
        with self._lock:
            # A mid of an earlier connection may name another message now; the broker redelivers
            # the unacknowledged one itself.
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


def _send_small_packets_at_once(client: mqtt.Client) -> None:
    """Switch Nagle's algorithm off on the client's socket (paho leaves it on).

    A handler acks a message (PUBACK) and publishes its answer: two small packets in a row. With
    Nagle the second waits for the TCP acknowledgement of the first, which the broker delays by
    up to 40 ms; every request/answer round then costs tens of milliseconds instead of a few."""
    sock = client.socket()
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
