"""The grid operator's MQTT client: publishes limits and requests under ``grid/`` and collects what the
community manager answers (acks of limits, responses to requests, the retained offers).

Delivery is at least once (hems/protocol/mqtt.py): answers are deduplicated by ``message_id``. An
answer is matched to what it answers by its ``correlation_id`` (the message id of the limits or the
request). Waiting is in real time (``asyncio`` timeouts): the answers come over a real broker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from hems.clock import Clock, SystemClock
from hems.grid_operator.quantities import utc_from_s
from hems.protocol.codec import Message, ProtocolError, decode, encode
from hems.protocol.messages import Ack, Payload
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.power_plant import FlexibilityCall, FlexibilityOffers, FlexibilityResponse, GridLimitsPublication
from hems.protocol.topics import GridTopic, Topics

logger = logging.getLogger(__name__)

#: The envelope's sender unless told otherwise (the name docs/protocol.md's examples use).
DEFAULT_SENDER = "grid-operator"
#: How many answer ids are remembered to drop redeliveries.
SEEN_IDS = 1024


class PublishError(RuntimeError):
    """The broker did not take a message (link down, or no acknowledgement in time)."""


class GridOperatorClient:
    """One connection of the grid operator to the community's broker.

    ``on_response`` and ``on_ack`` see every valid answer, tracked or not (the simulated operator logs
    them there); :meth:`next_response` and :meth:`wait_ack` hand out the answers to what this client
    sent with ``track=True``. Use ``async with`` or :meth:`start` / :meth:`stop`.
    """

    def __init__(self, settings: BrokerSettings, community: str, *, sender: str = DEFAULT_SENDER,
                 clock: Clock | None = None,
                 on_response: Callable[[Message[FlexibilityResponse]], None] | None = None,
                 on_ack: Callable[[Message[Ack]], None] | None = None) -> None:
        self.topics = Topics(community)
        self.sender = sender
        self.clock = clock or SystemClock()
        self._on_response = on_response
        self._on_ack = on_ack
        self._link = MqttLink(settings)
        self._tracked: dict[UUID, asyncio.Queue[Message]] = {}
        self._seen: deque[UUID] = deque(maxlen=SEEN_IDS)
        self._offers: Message[FlexibilityOffers] | None = None
        self._offers_event = asyncio.Event()
        self._link.subscribe(self.topics.grid(GridTopic.RESPONSE), self._handle_response)
        self._link.subscribe(self.topics.grid(GridTopic.ACK), self._handle_ack)
        self._link.subscribe(self.topics.grid(GridTopic.OFFERS), self._handle_offers)

    async def start(self, connect_timeout_s: float = 10.0) -> None:
        """Connect and subscribe; ConnectionError (refused) or TimeoutError (unreachable) otherwise."""
        await self._link.start(connect_timeout_s=connect_timeout_s)

    async def stop(self) -> None:
        """Disconnect cleanly. Idempotent."""
        await self._link.stop()

    async def __aenter__(self) -> GridOperatorClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def connected(self) -> bool:
        return self._link.connected

    def now(self) -> datetime:
        """The client's clock as an aware UTC instant (the envelope's ``sent_at``)."""
        return utc_from_s(self.clock.now_s())

    async def publish_limits(self, publication: GridLimitsPublication, *, track: bool = True,
                             timeout_s: float = 10.0) -> UUID:
        """Publish ``grid_limits`` retained with QoS 1; its message id (the ack's correlation id)."""
        return await self._send(publication, GridTopic.LIMITS, retain=True, track=track, timeout_s=timeout_s)

    async def send_request(self, call: FlexibilityCall, *, track: bool = True, timeout_s: float = 10.0) -> UUID:
        """Publish ``flexibility_request`` with QoS 1; its message id (the responses' correlation id)."""
        return await self._send(call, GridTopic.REQUEST, retain=False, track=track, timeout_s=timeout_s)

    async def next_response(self, message_id: UUID, timeout_s: float) -> Message[FlexibilityResponse] | None:
        """The next response to the tracked request ``message_id``; None after ``timeout_s``."""
        return await self._next(message_id, timeout_s)

    async def wait_ack(self, message_id: UUID, timeout_s: float) -> Message[Ack] | None:
        """The manager's ack of the tracked limits ``message_id``; None after ``timeout_s``."""
        return await self._next(message_id, timeout_s)

    def forget(self, message_id: UUID) -> None:
        """Stop collecting answers to ``message_id``."""
        self._tracked.pop(message_id, None)

    async def offers(self, timeout_s: float) -> Message[FlexibilityOffers] | None:
        """The latest offers (retained: they come right after subscribing); None after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._offers_event.wait(), timeout_s)
        except TimeoutError:
            return None
        return self._offers

    async def _send(self, payload: Payload, leaf: GridTopic, *, retain: bool, track: bool,
                    timeout_s: float) -> UUID:
        message_id = uuid.uuid4()
        if track:  # before publishing: a fast manager may answer before publish() returns
            self._tracked[message_id] = asyncio.Queue()
        raw = encode(payload, sender=self.sender, sent_at=self.now(), message_id=message_id)
        if not await self._link.publish(self.topics.grid(leaf), raw, qos=1, retain=retain, timeout_s=timeout_s):
            self.forget(message_id)
            raise PublishError(f"the broker did not take {payload.MESSAGE_TYPE} on {self.topics.grid(leaf)} "
                               f"within {timeout_s} s (link {'up' if self.connected else 'down'})")
        return message_id

    async def _next(self, message_id: UUID, timeout_s: float) -> Message | None:
        queue = self._tracked.get(message_id)
        if queue is None:
            raise KeyError(f"{message_id} is not tracked (sent with track=False, or forgotten)")
        try:
            return await asyncio.wait_for(queue.get(), timeout_s)
        except TimeoutError:
            return None

    def _decode(self, incoming: IncomingMessage, kind: type[Payload]) -> Message | None:
        try:
            message = decode(incoming.payload, (kind,))
        except ProtocolError as error:
            # The operator has no channel to ack the manager: log it and go on.
            logger.warning("dropped an invalid message on %s: %s", incoming.topic, error.label,
                           extra={"topic": incoming.topic, "status": str(error.status)})
            return None
        if message.message_id in self._seen:
            return None
        self._seen.append(message.message_id)
        return message

    def _deliver(self, message: Message) -> None:
        correlation_id = message.envelope.correlation_id
        queue = self._tracked.get(correlation_id) if correlation_id is not None else None
        if queue is not None:
            queue.put_nowait(message)

    async def _handle_response(self, incoming: IncomingMessage) -> None:
        message = self._decode(incoming, FlexibilityResponse)
        if message is None:
            return
        self._deliver(message)
        if self._on_response is not None:
            self._on_response(message)

    async def _handle_ack(self, incoming: IncomingMessage) -> None:
        message = self._decode(incoming, Ack)
        if message is None:
            return
        self._deliver(message)
        if self._on_ack is not None:
            self._on_ack(message)

    async def _handle_offers(self, incoming: IncomingMessage) -> None:
        if not incoming.payload:  # a retained message being cleared
            return
        message = self._decode(incoming, FlexibilityOffers)
        if message is not None:
            self._offers = message
            self._offers_event.set()
