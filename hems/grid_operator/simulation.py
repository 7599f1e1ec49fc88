"""``hems grid simulate``: a grid operator that publishes the next day's limits at a fixed time each day
and sends flexibility requests on a daily schedule, and logs what the community manager answers.

It reads the time and sleeps only through its :class:`~hems.clock.Clock`, so a test runs days of it in
seconds on a :class:`~hems.clock.VirtualClock`. It takes part in that clock (``holding``): simulated
time does not move past one of its instants while it is still publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID

from hems.clock import Clock, holding
from hems.grid_operator.client import DEFAULT_SENDER, GridOperatorClient, PublishError
from hems.grid_operator.config import RequestSchedule, SimulationConfig
from hems.grid_operator.messages import flexibility_call
from hems.grid_operator.quantities import exact_price_micro, is_aligned, kw_to_w, local_instant_s, utc_from_s
from hems.protocol.codec import Message
from hems.protocol.messages import Ack, Payload
from hems.protocol.mqtt import BrokerSettings
from hems.protocol.power_plant import FlexibilityResponse

logger = logging.getLogger(__name__)

#: The longest single sleep: a wall clock that jumps (NTP, a suspended machine) is noticed within it.
MAX_SLEEP_S = 60.0
#: Every schedule has an event within two days (limits and requests are daily).
LOOKAHEAD_S = 2 * 86_400


@dataclass(frozen=True)
class ScheduledEvent:
    """One thing to send: at ``at_s`` (UTC epoch seconds), the limits of ``day`` or the request whose
    first slot is on ``day`` (local days of the configuration's time zone)."""

    at_s: int
    kind: Literal["limits", "request"]
    day: date
    request: RequestSchedule | None = None
    index: int = 0  # the request's place in the file: the order of requests at the same instant


@dataclass(frozen=True)
class SentMessage:
    """What the operator sent and when (its clock)."""

    kind: Literal["limits", "request"]
    at_s: float
    message_id: UUID
    payload: Payload


def schedule(config: SimulationConfig, start_s: int, end_s: int) -> list[ScheduledEvent]:
    """Every event with ``start_s <= at_s < end_s``, in time order (limits before requests at one instant)."""
    zone = config.zone
    first_day = datetime.fromtimestamp(start_s, zone).date() - timedelta(days=2)
    last_day = datetime.fromtimestamp(end_s, zone).date() + timedelta(days=2)
    events: list[ScheduledEvent] = []
    day = first_day
    while day <= last_day:
        if config.limits is not None:
            events.append(ScheduledEvent(local_instant_s(day, config.limits.publish_minute, zone), "limits",
                                         day + timedelta(days=1)))
        for index, request in enumerate(config.request):
            first_slot_s = local_instant_s(day, request.minute, zone)
            events.append(ScheduledEvent(first_slot_s - request.notice_minutes * 60, "request", day, request, index))
        day += timedelta(days=1)
    return sorted((event for event in events if start_s <= event.at_s < end_s),
                  key=lambda event: (event.at_s, event.kind != "limits", event.index))


class SimulatedOperator:
    """The simulated grid operator of one community; :meth:`run` until stopped."""

    def __init__(self, config: SimulationConfig, settings: BrokerSettings, community: str, clock: Clock, *,
                 sender: str = DEFAULT_SENDER) -> None:
        self.config = config
        self.clock = clock
        self.client = GridOperatorClient(settings, community, sender=sender, clock=clock,
                                         on_response=self._log_response, on_ack=self._log_ack)
        self.sent: list[SentMessage] = []
        self.responses: list[Message[FlexibilityResponse]] = []
        self.acks: list[Message[Ack]] = []
        self._request_ids: dict[UUID, str] = {}
        #: Set once the schedule runs (on a virtual clock: from then on it holds time at its instants).
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None, connect_timeout_s: float = 10.0) -> None:
        """Connect, then send on schedule until ``stop`` is set or the task is cancelled.

        ConnectionError or TimeoutError when the broker cannot be reached at start; later outages
        are ridden out by the link (a message due while it is down is logged as not sent)."""
        await self.client.start(connect_timeout_s)
        worker = asyncio.create_task(self._work(), name="grid-operator")
        try:
            if stop is None:
                await worker
            else:
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if worker.done():
                    worker.result()  # an error of the worker surfaces here
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await self.client.stop()

    async def _work(self) -> None:
        # The whole schedule runs in this one task, which sleeps on the clock itself: on a virtual
        # clock, time then stands still whenever it is awake.
        with holding(self.clock):
            self.ready.set()
            cursor = math.ceil(self.clock.now_s())
            limits = self.config.limits
            if limits is not None and limits.publish_on_start:
                await self._publish_limits(self._day_after_last_publication(cursor))
            while True:
                events = schedule(self.config, cursor, cursor + LOOKAHEAD_S)
                if not events:
                    return  # cannot happen with a valid configuration (limits or requests, daily)
                at_s = events[0].at_s
                await self._sleep_until(at_s)
                for event in (event for event in events if event.at_s == at_s):
                    if event.kind == "limits":
                        await self._publish_limits(event.day)
                    else:
                        await self._send_request(event)
                cursor = at_s + 1

    def _day_after_last_publication(self, now_s: int) -> date:
        """The day the last ``publish_at`` that has passed spoke for (today or tomorrow, local)."""
        assert self.config.limits is not None
        zone, minute = self.config.zone, self.config.limits.publish_minute
        today = datetime.fromtimestamp(now_s, zone).date()
        # Strictly before: a publish_at at this very instant is the schedule's, not the start's.
        passed_today = local_instant_s(today, minute, zone) < now_s
        return today + timedelta(days=1) if passed_today else today

    async def _sleep_until(self, at_s: float) -> None:
        while (remaining := at_s - self.clock.now_s()) > 0:
            await self.clock.sleep(min(remaining, MAX_SLEEP_S))

    async def _publish_limits(self, day: date) -> None:
        assert self.config.limits is not None
        try:
            publication = self.config.limits.publication(day, self.config.zone, self.config.slot_minutes)
        except ValueError as error:
            logger.error("no limits published for %s: %s", day, error, extra={"day": str(day)})
            return
        try:
            message_id = await self.client.publish_limits(publication, track=False)
        except PublishError as error:
            logger.error("limits for %s not published: %s", day, error, extra={"day": str(day)})
            return
        self.sent.append(SentMessage("limits", self.clock.now_s(), message_id, publication))
        logger.info("published the limits of %s: %d slots from %s", day, len(publication.slots),
                    publication.slots[0].slot_start.isoformat(), extra={"message_id": str(message_id)})

    async def _send_request(self, event: ScheduledEvent) -> None:
        request = event.request
        assert request is not None
        request_id = request.request_id(event.day)
        first_slot = utc_from_s(local_instant_s(event.day, request.minute, self.config.zone))
        slot_s = self.config.slot_minutes * 60
        if first_slot.timestamp() <= self.clock.now_s():
            logger.warning("request %s not sent: its first slot %s has begun (the clock jumped?)", request_id,
                           first_slot.isoformat(), extra={"request_id": request_id})
            return
        if not is_aligned(first_slot, slot_s):
            logger.error("request %s not sent: %s is not on a %d-minute slot boundary in UTC", request_id,
                         first_slot.isoformat(), self.config.slot_minutes, extra={"request_id": request_id})
            return
        call = flexibility_call(request_id, first_slot, request.slots, self.config.slot_minutes,
                                delta_w=kw_to_w(request.delta_kw), price_micro=exact_price_micro(request.price),
                                penalty_micro=exact_price_micro(request.penalty))
        try:
            message_id = await self.client.send_request(call, track=False)
        except PublishError as error:
            logger.error("request %s not sent: %s", request_id, error, extra={"request_id": request_id})
            return
        self._request_ids[message_id] = request_id
        self.sent.append(SentMessage("request", self.clock.now_s(), message_id, call))
        logger.info("sent request %s: %d slots from %s, %s kW at %s/kWh", request_id, request.slots,
                    first_slot.isoformat(), request.delta_kw, request.price,
                    extra={"request_id": request_id, "message_id": str(message_id)})

    def _log_response(self, message: Message[FlexibilityResponse]) -> None:
        self.responses.append(message)
        response = message.payload
        ours = self._request_ids.get(message.envelope.correlation_id) if message.envelope.correlation_id else None
        requested = sum(slot.requested_wh for slot in response.slots)
        committed = sum(slot.committed_wh for slot in response.slots)
        delivered = (None if not response.slots or any(slot.delivered_wh is None for slot in response.slots)
                     else sum(slot.delivered_wh or 0 for slot in response.slots))
        note = (f" ({response.reason})" if response.reason else "") + (
            " (not a request of this run)" if ours is None else "")
        logger.log(logging.WARNING if ours is None else logging.INFO,
                   "request %s %s: committed %d of %d Wh%s%s", response.request_id, response.state, committed,
                   requested, "" if delivered is None else f", delivered {delivered} Wh", note,
                   extra={"request_id": response.request_id, "state": str(response.state),
                          "requested_wh": requested, "committed_wh": committed, "delivered_wh": delivered,
                          "revenue_nano": response.revenue_nano, "penalty_nano": response.penalty_nano,
                          "at": utc_from_s(self.clock.now_s()).isoformat()})

    def _log_ack(self, message: Message[Ack]) -> None:
        self.acks.append(message)
        ack = message.payload
        logger.log(logging.INFO if ack.status == "OK" else logging.WARNING, "limits ack %s%s", ack.status,
                   f": {ack.diagnostic_label}" if ack.diagnostic_label else "",
                   extra={"correlation_id": str(message.envelope.correlation_id)})
