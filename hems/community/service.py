"""The community manager as a service: MQTT in and out, the market clock, one worker thread.

:class:`hems.community.manager.CommunityManager` holds every decision and the SQLite state; it is
synchronous, so it runs on a single worker thread (SQLite and the energy collective's solver
never block the event loop, and messages and clock ticks are applied strictly one after the
other). This module only moves messages and time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from hems.clock import Clock, SystemClock
from hems.community.config import CommunityConfig
from hems.community.manager import HOME_INPUTS, CommunityManager, Outgoing
from hems.community.state import CommunityState
from hems.community.upstream.link import UpstreamLink
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from hems.protocol.topics import GridTopic, Topics

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Messages kept for re-sending while the broker is unreachable (oldest dropped beyond this).
MAX_UNSENT = 10_000
#: After an unexpected failure of a tick, try again after this many seconds.
RETRY_AFTER_S = 5.0


def broker_settings(config: CommunityConfig) -> BrokerSettings:
    """The manager's MQTT connection from its ``[broker]`` section."""
    return config.broker.broker_settings(f"hems-community-{config.community.id}",
                                         password=config.broker.read_password())


class CommunityService:
    """Runs one :class:`CommunityManager` against a broker."""

    def __init__(self, config: CommunityConfig, clock: Clock, link: MqttLink | None = None) -> None:
        self.config = config
        self.clock = clock
        self.topics = Topics(config.community.id)
        self.link = link or MqttLink(broker_settings(config), on_connection_change=self._connection_changed)
        #: The seat in the upstream market (docs/community.md, "Nesting"): a second connection.
        self.upstream = UpstreamLink(config) if config.upstream is not None else None
        self._reschedule = asyncio.Event()  # an upstream message may bring the next event forward
        self.manager: CommunityManager | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="community")
        self._state: CommunityState | None = None
        self._unsent: deque[Outgoing] = deque(maxlen=MAX_UNSENT)
        self._delivering: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush: asyncio.Task[None] | None = None  # the flush after a reconnect

    async def start(self) -> None:
        """Open the books, connect (in the background), publish the config and catch up."""
        self._loop = asyncio.get_running_loop()
        self._delivering = asyncio.Lock()
        self.manager = await self._in_worker(self._open)
        for leaf in HOME_INPUTS:
            self.link.subscribe(self.topics.all_homes(leaf), self._on_message)
        for grid_leaf in (GridTopic.LIMITS, GridTopic.REQUEST):
            self.link.subscribe(self.topics.grid(grid_leaf), self._on_message)
        await self.link.start()
        if self.upstream is not None:
            self.upstream.subscribe(self._on_upstream_message)
            await self.upstream.start()
        await self._deliver(await self._in_worker(self.manager.start, self.clock.now_s()))

    async def run(self, stop: asyncio.Event) -> None:
        """Clear and settle on the market clock until ``stop`` is set."""
        assert self.manager is not None, "start() first"
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._reschedule.clear()
                now_s = self.clock.now_s()
                try:
                    await self._deliver(await self._in_worker(self.manager.tick, now_s))
                    next_s = await self._in_worker(self.manager.next_event_s, now_s)
                except Exception:  # e.g. the disk is full: keep the service up, try again shortly
                    logger.exception("community manager tick failed; retrying in %s s", RETRY_AFTER_S)
                    next_s = now_s + RETRY_AFTER_S
                sleeping = asyncio.ensure_future(self._sleep_until(next_s))
                waking = asyncio.ensure_future(self._reschedule.wait())
                await asyncio.wait({sleeping, stopping, waking}, return_when=asyncio.FIRST_COMPLETED)
                sleeping.cancel()
                waking.cancel()
        finally:
            stopping.cancel()

    async def _sleep_until(self, instant_s: float) -> None:
        # The delay is taken when the task starts, not when it is created: a simulated clock moved in
        # between would otherwise push the wake-up past the event (a missed gate).
        await self.clock.sleep(max(instant_s - self.clock.now_s(), 0.0))

    async def catch_up(self) -> None:
        """Do what is due at the clock's present instant now (clear, settle, start or close a
        negotiation's round), without waiting for the run loop's next wake-up. Under a VirtualClock
        the run loop is a bystander that wakes only as time passes; whoever holds simulated time at a
        market moment (the demo's conductor) calls this so the moment's work happens at that instant.
        Ticks are idempotent, so the run loop's own tick later changes nothing."""
        assert self.manager is not None, "start() first"
        await self._deliver(await self._in_worker(self.manager.tick, self.clock.now_s()))

    async def stop(self) -> None:
        """Disconnect and close the books."""
        await self.link.stop()
        if self.upstream is not None:
            await self.upstream.stop()
        if self._state is not None:
            await self._in_worker(self._state.close)
            self._state = None
        self._executor.shutdown(wait=True)

    def _open(self) -> CommunityManager:
        self.config.community.state_directory.mkdir(parents=True, exist_ok=True)
        self._state = CommunityState(self.config.community.database_path)
        return CommunityManager(self.config, self._state)

    async def _on_message(self, message: IncomingMessage) -> None:
        assert self.manager is not None
        out = await self._in_worker(self.manager.handle, message.topic, message.payload, self.clock.now_s())
        await self._deliver(out)

    async def _on_upstream_message(self, message: IncomingMessage) -> None:
        await self._on_message(message)
        self._reschedule.set()  # e.g. the upstream's config: submissions and reports are now due

    async def _deliver(self, messages: list[Outgoing]) -> None:
        """Publish in order; what the broker did not take waits for the reconnect."""
        assert self._delivering is not None
        if self.upstream is not None:
            await self.upstream.deliver([item for item in messages if self.upstream.owns(item.topic)])
            messages = [item for item in messages if not self.upstream.owns(item.topic)]
        self._unsent.extend(messages)
        async with self._delivering:  # one publisher at a time, or two could send the same head
            while self._unsent:
                item = self._unsent[0]
                if not await self.link.publish(item.topic, item.payload, retain=item.retain):
                    logger.warning("broker unreachable: %d message(s) wait for the reconnect", len(self._unsent))
                    return
                self._unsent.popleft()

    def _connection_changed(self, connected: bool) -> None:
        # Called by the link on the event loop, outside any coroutine: flush what waited in a task.
        if connected and self._loop is not None and self._unsent:
            self._flush = self._loop.create_task(self._deliver([]))

    async def _in_worker(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


async def run_community_manager(config: CommunityConfig, clock: Clock | None = None,
                                stop: asyncio.Event | None = None) -> int:
    """``hems community --config FILE``: run until ``stop`` is set; the exit code."""
    service = CommunityService(config, clock or SystemClock())
    stop = stop or asyncio.Event()
    await service.start()
    logger.info("community %s: %s market for %d member(s) on %s", config.community.id, config.market.mechanism,
                len(config.member), config.broker.broker)
    try:
        await service.run(stop)
    finally:
        await service.stop()
    return 0
