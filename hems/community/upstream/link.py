"""The service's second MQTT connection: the community's seat in the upstream market.

It subscribes to the upstream's retained ``market/config`` and to our member's ``allocation`` and
``ack`` under the upstream prefix, and publishes what the manager addressed there (the residual
submissions and the meter reports). What it cannot send waits for its own reconnect, so an
unreachable upstream broker never holds back the messages to our homes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from hems.community.config import CommunityConfig
from hems.community.outgoing import Outgoing
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.topics import HomeTopic, Topics

logger = logging.getLogger(__name__)

#: Messages kept for re-sending while the upstream broker is unreachable (oldest dropped beyond this).
MAX_UNSENT = 1_000


def upstream_broker_settings(config: CommunityConfig) -> BrokerSettings:
    """The connection from ``[upstream] broker`` (default: the ``[broker]`` one), with its own client id."""
    assert config.upstream is not None
    broker = config.upstream.broker or config.broker
    return broker.broker_settings(f"hems-community-{config.community.id}-upstream-{config.upstream.community}",
                                  password=broker.read_password())


class UpstreamLink:
    """One :class:`MqttLink` to the upstream market and its own queue of unsent messages."""

    def __init__(self, config: CommunityConfig, link: MqttLink | None = None) -> None:
        assert config.upstream is not None, "an [upstream] section is needed"
        self.topics = Topics(config.upstream.community)
        self.member_id = config.upstream_member_id or ""
        self.link = link or MqttLink(upstream_broker_settings(config), on_connection_change=self._connection_changed)
        self._unsent: deque[Outgoing] = deque(maxlen=MAX_UNSENT)
        self._delivering: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush: asyncio.Task[None] | None = None  # the flush after a reconnect

    def owns(self, topic: str) -> bool:
        """True for a topic under the upstream prefix."""
        return topic.startswith(self.topics.prefix + "/")

    def subscribe(self, handler: Callable[[IncomingMessage], Awaitable[None]]) -> None:
        """Hand the upstream's config and our allocations and acks to ``handler``."""
        self.link.subscribe(self.topics.market_config(), handler)
        for leaf in (HomeTopic.ALLOCATION, HomeTopic.ACK):
            self.link.subscribe(self.topics.home(self.member_id, leaf), handler)

    async def start(self) -> None:
        """Connect in the background."""
        self._loop = asyncio.get_running_loop()
        self._delivering = asyncio.Lock()
        await self.link.start()

    async def stop(self) -> None:
        """Disconnect."""
        await self.link.stop()

    async def deliver(self, messages: list[Outgoing]) -> None:
        """Publish in order; what the broker did not take waits for the reconnect."""
        assert self._delivering is not None, "start() first"
        self._unsent.extend(messages)
        async with self._delivering:
            while self._unsent:
                item = self._unsent[0]
                if not await self.link.publish(item.topic, item.payload, retain=item.retain):
                    logger.warning("upstream broker unreachable: %d message(s) wait for the reconnect",
                                   len(self._unsent))
                    return
                self._unsent.popleft()

    def _connection_changed(self, connected: bool) -> None:
        # Called by the link on the event loop, outside any coroutine: flush what waited in a task.
        if connected and self._loop is not None and self._unsent:
            self._flush = self._loop.create_task(self.deliver([]))
