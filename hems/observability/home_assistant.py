"""Home Assistant MQTT discovery (opt-in): the home's sensors and its plan appear in HA without YAML.

``HomeAssistantPublisher`` owns one paho-mqtt 2.x client. paho's network loop runs in its own
thread (``loop_start``): connecting, reconnecting (``reconnect_delay_set``) and the callbacks never
touch the asyncio loop, and ``publish`` only hands messages to paho's queue. Payloads are built in
``home_assistant_payloads``.

Delivery choices:

- availability, discovery configs and the plan attributes: QoS 1, retained. HA (re)reads them
  whenever it subscribes, and the broker confirms it stored them.
- the state JSON: QoS 0, not retained. It is replaced every ``publish_period_s``, so a lost message
  costs one period; QoS 1 would make paho queue stale values during an outage and flush them after
  reconnecting (libraries.md), and a retained state would show old values as current after hems
  stopped. After a (re)connect or an HA restart the next ``publish`` sends the state at once.
- nothing is sent while disconnected (counted in ``publish_failures``); on reconnect the publisher
  republishes availability, discovery and the latest plan, so no queue is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

import hems
from hems.mpc.plan import Plan
from hems.observability.home_assistant_payloads import (PAYLOAD_OFFLINE, PAYLOAD_ONLINE, EntitySpec,
                                                        HomeAssistantSettings, Topics, device_info,
                                                        discovery_config, entities_for, entity_catalogue,
                                                        parse_broker_url, plan_attributes, state_payload)
from hems.runtime.snapshot import Quantity, SiteSnapshot

__all__ = ["HomeAssistantPublisher", "HomeAssistantSettings", "Topics"]

logger = logging.getLogger(__name__)

KEEPALIVE_S = 60
#: A TCP connect to an unreachable host blocks paho's thread this long; stop() may wait for it.
CONNECT_TIMEOUT_S = 1.5
STOP_TIMEOUT_S = 2.0
#: Cap on paho's in-memory QoS 1 queue: one connect sends ~25 messages; more means a dead link.
MAX_QUEUED_MESSAGES = 200
#: Powers and SoC older than this are published as unknown.
DEFAULT_STALE_AFTER_S = 120.0


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


class HomeAssistantPublisher:
    """Publishes one home's discovery configs, state and plan to the HA broker.

    ``quantities`` selects the entities; when None they are taken from the first snapshot given to
    ``publish``. Call ``start()`` once, ``publish()`` after every telemetry cycle (it sends only when
    due), ``stop()`` on shutdown. Nothing but a configuration error (bad URL, unreadable CA file)
    raises: broker failures are logged once per outage and counted in ``publish_failures`` and
    ``connect_failures``.
    """

    def __init__(self, settings: HomeAssistantSettings, home_id: str,
                 clock_now_s: Callable[[], float] = time.time, *,
                 quantities: Iterable[Quantity] | None = None,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S,
                 reconnect_min_delay_s: float = 1.0, reconnect_max_delay_s: float = 60.0) -> None:
        self.settings = settings
        self.home_id = home_id
        self.topics = Topics.for_home(settings, home_id)
        self.broker = parse_broker_url(settings.broker)
        self._clock_now_s = clock_now_s
        self._stale_after_s = stale_after_s
        self._reconnect_delays_s = (reconnect_min_delay_s, reconnect_max_delay_s)
        self._device = device_info(home_id, getattr(hems, "__version__", None))
        #: Messages not handed to the broker (disconnected, or refused by paho).
        self.publish_failures = 0
        #: Failed connection attempts (unreachable broker, refused CONNECT).
        self.connect_failures = 0
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()  # guards the fields below; paho's thread reads them
        self._entities: tuple[EntitySpec, ...] | None = (
            None if quantities is None else entities_for(quantities, settings.currency))
        self._plan_payload: bytes | None = None
        self._force_state = True
        self._connected = False
        self._outage_logged = False
        self._stopping = False
        self._last_state_s: float | None = None
        self._last_plan: Plan | None = None
        self._last_plan_made_at_s: float | None = None

    @property
    def connected(self) -> bool:
        """True while the broker session is up."""
        return self._connected

    @property
    def entities(self) -> tuple[EntitySpec, ...]:
        """The announced entities (empty until the quantities are known)."""
        return self._entities or ()

    async def start(self) -> None:
        """Configure the client and start paho's thread, which connects and keeps reconnecting.

        Returns without waiting for the broker (see ``connected``).
        """
        if self._client is not None:
            return
        self._stopping = False
        await asyncio.to_thread(self._start_client)

    def _start_client(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hems-ha-{self.topics.node}",
                             protocol=MQTTProtocolVersion.MQTTv311, clean_session=True)
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.settings.password)
        if self.broker.tls:
            client.tls_set(ca_certs=self.settings.ca_file)
        client.will_set(self.topics.availability, PAYLOAD_OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(*self._reconnect_delays_s)
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        # Set before the thread starts: its on_connect may run before start() resumes.
        self._client = client
        client.loop_start()

    def due(self, now_s: float) -> bool:
        """True when the state should be sent: first time, after a (re)connect or HA restart, or
        ``publish_period_s`` after the last one."""
        with self._lock:
            if self._force_state or self._last_state_s is None:
                return True
            return now_s - self._last_state_s >= self.settings.publish_period_s

    async def publish(self, snapshot: SiteSnapshot, plan: Plan | None, plan_made_at_s: float | None) -> bool:
        """Send the state (when due or when the plan changed) and the plan attributes (when it
        changed). Returns True when the state was handed to the broker; never raises."""
        try:
            return self._publish(snapshot, plan, plan_made_at_s)
        except Exception:  # a bug here must not stop the control loop that calls us
            with self._lock:
                self.publish_failures += 1
            logger.exception("Home Assistant publish failed", extra={"topic": self.topics.state})
            return False

    def _publish(self, snapshot: SiteSnapshot, plan: Plan | None, plan_made_at_s: float | None) -> bool:
        now_s = self._clock_now_s()
        if self._entities is None:
            with self._lock:
                self._entities = entities_for(snapshot.values.keys(), self.settings.currency)
            if self._connected:
                self._publish_discovery()
        plan_changed = plan is not self._last_plan or plan_made_at_s != self._last_plan_made_at_s
        if plan_changed:
            self._last_plan, self._last_plan_made_at_s = plan, plan_made_at_s
            payload = None if plan is None else _json(plan_attributes(plan, plan_made_at_s))
            with self._lock:
                self._plan_payload = payload
            if payload is not None:
                self._send(self.topics.plan, payload, qos=1, retain=True)
        if not (plan_changed or self.due(now_s)):
            return False
        fields = [spec.object_id for spec in self.entities]
        state = _json(state_payload(snapshot, plan, plan_made_at_s, now_s, fields, self._stale_after_s))
        with self._lock:
            self._last_state_s = now_s
            self._force_state = False
        return self._send(self.topics.state, state, qos=0, retain=False)

    def _send(self, topic: str, payload: bytes | str, qos: int, retain: bool) -> bool:
        """Hand one message to paho if connected; count and log (once per outage) if not."""
        client = self._client
        if client is None or not self._connected:
            self._count_failure(topic, "not connected to the broker")
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._count_failure(topic, mqtt.error_string(info.rc))
            return False
        return True

    def _count_failure(self, topic: str, reason: str) -> None:
        with self._lock:  # both the caller's thread and paho's (republishing on connect) count here
            self.publish_failures += 1
            first = not self._outage_logged
            self._outage_logged = True
        if first:
            logger.warning("Home Assistant publishing paused: %s", reason,
                           extra={"broker": self.settings.broker, "topic": topic})

    def _publish_discovery(self) -> None:
        """Availability, every announced config, an empty retained config for every entity this home
        does not have (HA removes entities left from an earlier configuration), and the plan."""
        with self._lock:
            entities, plan_payload = self._entities, self._plan_payload
            self._force_state = True
        self._send(self.topics.availability, PAYLOAD_ONLINE, qos=1, retain=True)
        if entities is not None:
            announced = {spec.object_id for spec in entities}
            for spec in entities:
                config = discovery_config(spec, self.topics, self._device, self.settings.publish_period_s)
                self._send(self.topics.config(spec.component, spec.object_id), _json(config), qos=1, retain=True)
            for spec in entity_catalogue(self.settings.currency):
                if spec.object_id not in announced:
                    self._send(self.topics.config(spec.component, spec.object_id), b"", qos=1, retain=True)
        if plan_payload is not None:
            self._send(self.topics.plan, plan_payload, qos=1, retain=True)

    # paho callbacks: they run on paho's network thread.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        if self._stopping:
            return
        if reason_code.is_failure:
            self.connect_failures += 1
            self._log_outage(f"broker refused the connection: {reason_code}")
            return
        with self._lock:
            self._connected = True
            recovered = self._outage_logged
            self._outage_logged = False
        logger.info("Home Assistant publisher %s", "reconnected" if recovered else "connected",
                    extra={"broker": self.settings.broker})
        client.subscribe(self.topics.ha_status, qos=1)
        self._publish_discovery()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.connect_failures += 1
        self._log_outage("broker unreachable")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: mqtt.ReasonCode, properties: mqtt.Properties | None) -> None:
        with self._lock:
            self._connected = False
        if not self._stopping:
            self._log_outage(f"connection lost: {reason_code}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping:
            return
        if message.topic == self.topics.ha_status and message.payload == PAYLOAD_ONLINE.encode():
            logger.info("Home Assistant came online; republishing discovery")
            self._publish_discovery()

    def _log_outage(self, reason: str) -> None:
        with self._lock:
            first = not self._outage_logged
            self._outage_logged = True
        if first:
            logger.warning("Home Assistant publisher disconnected (%s); retrying in the background", reason,
                           extra={"broker": self.settings.broker})

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Publish ``offline`` (retained), disconnect and end paho's thread, in at most ``timeout_s``.

        The work runs on a thread of its own: a connect attempt in progress can hold paho's thread
        for ``CONNECT_TIMEOUT_S``, and a stuck thread must not delay the caller's shutdown.
        """
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not finished.done():
                finished.set_result(None)

        def work() -> None:
            try:
                self._stop_client(client, deadline_s=time.monotonic() + timeout_s)
            except Exception:
                logger.exception("Home Assistant publisher did not stop cleanly")
            finally:
                # RuntimeError: the event loop is already closed, so nobody waits any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(resolve)

        threading.Thread(target=work, name=f"hems-ha-stop-{self.topics.node}", daemon=True).start()
        try:
            await asyncio.wait_for(finished, timeout_s)
        except TimeoutError:
            logger.warning("Home Assistant publisher still stopping after %.1f s; left to finish", timeout_s)

    def _stop_client(self, client: mqtt.Client, deadline_s: float) -> None:
        if self._connected:
            info = client.publish(self.topics.availability, PAYLOAD_OFFLINE, qos=1, retain=True)
            try:
                # Wait for the broker's PUBACK: after a clean disconnect there is no last will.
                info.wait_for_publish(timeout=max(0.0, deadline_s - time.monotonic() - 0.5))
            except (RuntimeError, ValueError) as error:  # the link dropped meanwhile: the will says offline
                logger.info("Home Assistant offline message not confirmed: %s", error)
        client.disconnect()
        client.loop_stop()
        with self._lock:
            self._connected = False
