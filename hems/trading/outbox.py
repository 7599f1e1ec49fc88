"""Messages that must reach the manager (meter reports) go through the store's on-disk outbox.

``enqueue`` writes the finished envelope to SQLite first; :meth:`OutboxSender.pump` publishes
what is pending, oldest first, while the link is up, and marks each one sent once the broker has
acknowledged it (PUBACK). The manager's :class:`~hems.protocol.messages.Ack` (``correlation_id``
= the message's id) marks it acked. A message sent but not acked within ``resend_after_s`` is
sent again, with its original id (the manager deduplicates by id). An ack that says the message
is invalid marks it acked too: it will never be accepted, so sending it again is pointless.

What survives a restart: every message not yet sent (the store's ``pending``), and every message
sent but never acknowledged (the store's ``unacked``): the first pump of a new run sends those
again at once, since the broker may have lost them; the manager dedupes by message id.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from hems.clock import Clock
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.mqtt import MqttLink
from hems.store import AsyncStore

logger = logging.getLogger(__name__)

#: Unacked messages that may be in flight at once: bounds the resend traffic of a silent manager.
MAX_IN_FLIGHT = 100
#: How many pending messages one pump reads from the store.
BATCH = 100
#: Unsent messages are counted up to this many (the gauge then says "at least").
COUNT_LIMIT = 1000
#: Acks remembered, so an ack that overtakes its own PUBACK is not forgotten.
ACKS_REMEMBERED = 1000
#: Statuses after which a message is never sent again.
FINAL_STATUSES = frozenset(ReceptionStatus) - {ReceptionStatus.TEMPORARY_ERROR}


@dataclass
class _InFlight:
    topic: str
    payload: bytes
    sent_at_s: float  # clock monotonic seconds of the last send


class OutboxSender:
    """Publishes the store's outbox over ``link``; ``on_sent(message_type)`` counts each send."""

    def __init__(self, store: AsyncStore, link: MqttLink, clock: Clock, resend_after_s: float,
                 on_sent: Callable[[str], None] | None = None,
                 on_pending: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.link = link
        self.clock = clock
        self.resend_after_s = resend_after_s
        self._on_sent = on_sent
        self._on_pending = on_pending
        self._in_flight: OrderedDict[str, _InFlight] = OrderedDict()
        self._acked: OrderedDict[str, None] = OrderedDict()
        self.unsent = 0
        self.sent = 0
        self.resent = 0
        self._restored = False

    @property
    def pending_count(self) -> int:
        """Messages not yet acknowledged by the manager (unsent, as of the last pump, and in flight)."""
        return self.unsent + len(self._in_flight)

    async def enqueue(self, topic: str, payload: bytes, message_id: str, created_at_s: float) -> None:
        """Store a message for sending (idempotent per ``message_id``)."""
        await self.store.enqueue(topic, payload.decode(), message_id=message_id, created_at_s=created_at_s)
        self.unsent += 1
        self._report_pending()

    async def pump(self) -> float | None:
        """Re-send what is due, then send what is pending, while the link takes it. Returns the
        monotonic time of the next resend, or None when nothing is in flight."""
        if not self._restored:
            await self._restore_in_flight()
        if self.link.connected:
            await self._resend_due()
            await self._send_pending()
        self.unsent = len(await self.store.pending(COUNT_LIMIT))
        self._report_pending()
        if not self._in_flight:
            return None
        return min(item.sent_at_s for item in self._in_flight.values()) + self.resend_after_s

    async def acknowledge(self, message_id: str, status: ReceptionStatus, at_s: float) -> bool:
        """The manager's ack of ``message_id``; True when it was one of the outbox's messages."""
        if status not in FINAL_STATUSES:
            return message_id in self._in_flight  # try again later, as the status asks
        if not await self.store.mark_acked(message_id, at_s):
            return False  # not ours (an order's ack, or a message pruned meanwhile)
        self._in_flight.pop(message_id, None)
        self._acked[message_id] = None
        while len(self._acked) > ACKS_REMEMBERED:
            self._acked.popitem(last=False)
        self._report_pending()
        return True

    async def _restore_in_flight(self) -> None:
        """Messages an earlier run sent but never saw acknowledged: the broker may have lost them
        with the manager's session, so they go again at once (the manager dedupes by id)."""
        self._restored = True
        due_s = self.clock.monotonic_s() - self.resend_after_s
        for message in await self.store.unacked(MAX_IN_FLIGHT):
            self._in_flight.setdefault(message.message_id, _InFlight(message.topic, message.payload.encode(), due_s))

    async def _resend_due(self) -> None:
        now_s = self.clock.monotonic_s()
        for message_id, item in list(self._in_flight.items()):
            if now_s - item.sent_at_s < self.resend_after_s or message_id not in self._in_flight:
                continue
            if not await self._publish(message_id, item.topic, item.payload):
                return
            item.sent_at_s = self.clock.monotonic_s()
            self.resent += 1

    async def _send_pending(self) -> None:
        while len(self._in_flight) < MAX_IN_FLIGHT:
            batch = await self.store.pending(min(BATCH, MAX_IN_FLIGHT - len(self._in_flight)))
            fresh = [message for message in batch if message.message_id not in self._in_flight]
            if not fresh:
                return
            for message in fresh:
                payload = message.payload.encode()
                if not await self._publish(message.message_id, message.topic, payload):
                    return  # keep the order: nothing newer goes before this one
                await self.store.mark_sent(message.message_id, self.clock.now_s())
                self.sent += 1
                if message.message_id not in self._acked:  # the ack may overtake the PUBACK
                    self._in_flight[message.message_id] = _InFlight(message.topic, payload,
                                                                    self.clock.monotonic_s())
            if len(batch) < BATCH:
                return

    async def _publish(self, message_id: str, topic: str, payload: bytes) -> bool:
        sent = await self.link.publish(topic, payload, qos=1)
        if sent and self._on_sent is not None:
            self._on_sent(topic.rsplit("/", 1)[-1])
        if not sent:
            logger.debug("outbox: %s not sent (link down or no PUBACK); it stays queued", message_id)
        return sent

    def _report_pending(self) -> None:
        if self._on_pending is not None:
            self._on_pending(self.pending_count)
