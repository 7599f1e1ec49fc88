"""The community manager's side of ``grid/``, played by the tests over a real broker: no manager exists
yet, so a test decides what it answers and checks what it received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from uuid import UUID

import pytest

from hems.protocol.codec import Message, decode, encode
from hems.protocol.messages import Ack, Payload
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.power_plant import FlexibilityCall, GridLimitsPublication
from hems.protocol.topics import GridTopic, Topics

COMMUNITY = "sunny-street"


class ManagerRole:
    """Subscribes to ``grid/request`` and ``grid/limits`` as a manager would, keeps what arrives, and
    answers with what ``answer_request`` / ``answer_limits`` return (correlated to the message)."""

    def __init__(self, url: str, community: str = COMMUNITY) -> None:
        self.topics = Topics(community)
        self.link = MqttLink(BrokerSettings(url=url, client_id="manager-role", persistent_session=False))
        self.requests: list[Message[FlexibilityCall]] = []
        self.limits: list[Message[GridLimitsPublication]] = []
        self.raw_limits: list[IncomingMessage] = []
        self.answer_request: Callable[[Message[FlexibilityCall]], list[Payload]] = lambda message: []
        self.answer_limits: Callable[[Message[GridLimitsPublication]], Ack | None] = lambda message: None
        self.link.subscribe(self.topics.grid(GridTopic.REQUEST), self._on_request)
        self.link.subscribe(self.topics.grid(GridTopic.LIMITS), self._on_limits)

    async def publish(self, leaf: GridTopic, payload: Payload, *, correlation_id: UUID | None = None,
                      retain: bool = False) -> None:
        raw = encode(payload, sender="manager", sent_at=datetime.now(timezone.utc), correlation_id=correlation_id)
        assert await self.link.publish(self.topics.grid(leaf), raw, retain=retain)

    async def _on_request(self, incoming: IncomingMessage) -> None:
        message = decode(incoming.payload, (FlexibilityCall,))
        self.requests.append(message)
        for payload in self.answer_request(message):
            await self.publish(GridTopic.RESPONSE, payload, correlation_id=message.message_id)

    async def _on_limits(self, incoming: IncomingMessage) -> None:
        message = decode(incoming.payload, (GridLimitsPublication,))
        self.raw_limits.append(incoming)
        self.limits.append(message)
        ack = self.answer_limits(message)
        if ack is not None:
            await self.publish(GridTopic.ACK, ack, correlation_id=message.message_id)


@pytest.fixture
async def manager(mosquitto_broker) -> AsyncIterator[ManagerRole]:
    """The manager's role, connected and subscribed."""
    role = ManagerRole(mosquitto_broker.url)
    await role.link.start(connect_timeout_s=5)
    yield role
    await role.link.stop()


async def retained(url: str, topic: str, wait_s: float = 2.0) -> list[IncomingMessage]:
    """What a fresh subscriber gets on ``topic`` within ``wait_s``: the retained message, if any."""
    received: list[IncomingMessage] = []

    async def keep(incoming: IncomingMessage) -> None:
        received.append(incoming)

    link = MqttLink(BrokerSettings(url=url, client_id="late-reader", persistent_session=False))
    link.subscribe(topic, keep)
    await link.start(connect_timeout_s=5)
    try:
        deadline = asyncio.get_running_loop().time() + wait_s
        while not received and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await link.stop()
    return received
