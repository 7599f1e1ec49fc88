"""The home's market agent: bids before each gate closure, takes allocations back into the plan,
reports metered energy after each slot, and says whether the home is trading.

One :class:`~hems.protocol.mqtt.MqttLink` to the community broker (persistent session, last will
``offline`` on ``home/<id>/status``) and two tasks:

- **bidding**: ``submit_lead_s`` before the gate of the next open slot closes, the bid curves of
  the next ``bid_slots`` slots are computed from the inputs of the plan in force (with the trades
  committed since), in a worker thread, and published as a curve or as step orders. Orders never
  go into the outbox: a late order is useless.
- **service**: publishes the retained ``HomeStatus``, drains the outbox of meter reports
  (:mod:`hems.trading.outbox`) and wakes for resends and the submission's ack deadline.

The power plant's commitments (``home/<id>/commitment``) are answered and kept by
:class:`~hems.trading.power_plant.PowerPlantResponder`; confirmed ones reach the plan through
:meth:`MarketAgent.plan_terms` as bounds on net import.

The home is ``trading`` while the link is up, the market's configuration is known and usable,
and the manager acknowledged the last submission within ``ack_timeout_s``; otherwise
``retail_only``: the plan then has no trades except those already committed, and the MPC
optimises against the retail tariff. Every time is read from the runtime's clock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from hems.clock import Clock, holding
from hems.mpc.inputs import PlanInputs, PlanTerms
from hems.mpc.planner import Planner
from hems.observability.metrics import HomeMetrics
from hems.protocol.codec import Message, ProtocolError, decode, encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import (MAX_ENERGY_WH, Ack, Allocation, BidFormat, HomeStatus, MarketConfig,
                                    MeterReport, NegotiationSignal, OrderStatus, OrderSubmission)
from hems.protocol.mqtt import IncomingMessage, MqttLink, WillMessage
from hems.protocol.power_plant import Commitment, PowerPlantNotice
from hems.protocol.topics import HomeTopic, Topics
from hems.protocol.units import micro_to_price
from hems.runtime.snapshot import SiteSnapshot
from hems.store import AsyncStore
from hems.trading.bids import (SequenceCounter, compute_curves, price_grid_micro, slot_indices, submission, utc,
                               with_market_terms)
from hems.protocol.calendar import MarketCalendar
from hems.trading.commitments import Commitments, committed_trade
from hems.trading.metering import SlotMeter
from hems.trading.negotiation import NegotiationResponder
from hems.trading.outbox import FINAL_STATUSES, OutboxSender
from hems.trading.power_plant import PowerPlantResponder
from hems.trading.reporting import MarketReporter
from hems.trading.settings import TradingSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Clock seconds between two looks at the market calendar (a new configuration is seen this fast).
CALENDAR_POLL_S = 5.0
#: Clock seconds before a failed submission is tried again (while its gate is open).
RETRY_S = 5.0
#: Real seconds the broker has to acknowledge a publish.
PUBLISH_TIMEOUT_S = 10.0
#: Recent submission ids remembered to match their acks.
SUBMISSIONS_REMEMBERED = 50


class PlanningPort(Protocol):
    """What the agent needs of :class:`hems.runtime.planning.PlanningService`."""

    last_inputs: PlanInputs | None

    @property
    def step_s(self) -> int: ...

    def request_replan(self, reason: str) -> None: ...

    async def run_with_planner(self, function: Callable[[Planner], T]) -> T: ...


class MarketAgent:
    """Trades one home's flexibility in its community. ``start``, feed ``observe`` every telemetry
    snapshot, give ``plan_terms`` to the planning service, ``stop``."""

    def __init__(self, settings: TradingSettings, clock: Clock, store: AsyncStore, planning: PlanningPort, *,
                 metrics: HomeMetrics | None = None, max_gap_s: float = 120.0) -> None:
        self.settings = settings
        self.clock = clock
        self.planning = planning
        self.report = MarketReporter(metrics)
        self.topics = Topics(settings.community)
        self.slot_s = planning.step_s
        self.meter = SlotMeter(self.slot_s, max_gap_s)
        self.commitments = Commitments()
        self.sequence = SequenceCounter()
        self.market_config: MarketConfig | None = None
        self.link = MqttLink(settings.broker, will=WillMessage(self._topic(HomeTopic.STATUS), self._status_payload(
            "offline", "retail_only")), on_connection_change=self._connection_changed)
        self.outbox = OutboxSender(store, self.link, clock, settings.resend_after_s, on_sent=self.report.message_out,
                                   on_pending=self.report.outbox_pending)
        self.submissions = 0
        self.meter_reports = 0
        self.last_submission: OrderSubmission | None = None
        self.last_order_ack: Ack | None = None
        self._submitted_ids: OrderedDict[str, bool] = OrderedDict()  # id -> answered
        self._awaiting_ack: tuple[str, float] | None = None  # (message id, monotonic time sent)
        self._bid_for_s: float | None = None  # first slot of the last successful submission
        self._status_published: str | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.negotiation = NegotiationResponder(
            settings.home_id, clock, self.slot_s, self._negotiation_inputs, planning.run_with_planner,
            lambda payload: self.link.publish(self._topic(HomeTopic.NEGOTIATION), payload, qos=1,
                                              timeout_s=PUBLISH_TIMEOUT_S))
        self.power_plant = PowerPlantResponder(
            settings.home_id, settings.flexibility, self.slot_s, clock,
            lambda payload: self.link.publish(self._topic(HomeTopic.COMMITMENT_ANSWER), payload, qos=1,
                                              timeout_s=PUBLISH_TIMEOUT_S),
            planning.request_replan, self.report)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and start connecting in the background: a broker that is down does not stop
        the home (the agent trades once it comes up)."""
        self.link.subscribe(self.topics.market_config(), self._on_config)
        self.link.subscribe(self._topic(HomeTopic.ACK), self._on_ack)
        self.link.subscribe(self._topic(HomeTopic.ALLOCATION), self._on_allocation)
        self.link.subscribe(self.topics.market_signal(), self._on_signal)
        self.link.subscribe(self._topic(HomeTopic.COMMITMENT), self._on_commitment)
        self.link.subscribe(self.topics.vpp_request(), self._on_vpp_request)
        self.report.state(self.state)
        self.report.connected(False)
        try:
            await self.link.start()
        except Exception as error:  # e.g. an unreadable CA file: the home runs on, retail only
            logger.error("market: the link to %s cannot start (%s); the home optimises against the retail "
                         "tariff", self.settings.broker.url, error)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._bidding_loop(), name="hems-market-bidding"),
                       loop.create_task(self._service_loop(), name="hems-market-service")]
        logger.info("market agent of %s started: community %s at %s", self.settings.home_id,
                    self.settings.community, self.settings.broker.url)

    def request_stop(self) -> None:
        """Bid no more and send no more (the runtime asks this together with its loops, so that
        nothing runs on while simulated time races once the loops are gone)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        """End the tasks, publish ``offline`` (retained) and disconnect."""
        self.request_stop()
        pending = set(self._tasks)
        while pending:
            # Python 3.11's wait_for can swallow a cancellation that races with its result (a
            # PUBACK arriving just then), so cancel again until the task has really ended.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        self._tasks = []
        if self.link.connected:
            await self.link.publish(self._topic(HomeTopic.STATUS), self._status_payload("offline", "retail_only"),
                                    retain=True, timeout_s=2.0)
        await self.link.stop()

    # -- what the runtime asks ----------------------------------------------------------------

    @property
    def state(self) -> str:
        """``trading`` or ``retail_only`` (see the module docstring)."""
        config = self.market_config
        if not self.link.connected or config is None or config.slot_duration_s != self.slot_s:
            return "retail_only"
        awaiting = self._awaiting_ack
        if awaiting is not None and self.clock.monotonic_s() - awaiting[1] > self.settings.ack_timeout_s:
            return "retail_only"
        return "trading"

    def plan_terms(self, start: datetime, n_steps: int, step_s: int) -> PlanTerms:
        """What the community adds to a horizon's plan: the committed trades, the community's price
        band (currency per kWh) and the confirmed power-plant commitments as net-import bounds (W)."""
        config = self.market_config
        band = None if config is None else (micro_to_price(config.feed_in_price_micro),
                                            micro_to_price(config.retail_price_micro))
        self.power_plant.prune(self.clock.now_s())
        cap_w, floor_w = self.power_plant.bounds(start, n_steps, step_s)
        return PlanTerms(self.commitments.trades(start, n_steps, step_s), band, cap_w, floor_w)

    async def observe(self, snapshot: SiteSnapshot, now_s: float) -> None:
        """A telemetry snapshot: each slot that ended becomes a meter report in the outbox."""
        for slot in self.meter.observe(snapshot):
            report = MeterReport(slot_start=utc(slot.slot_start_s), duration_s=slot.duration_s,
                                 import_wh=min(slot.import_wh, MAX_ENERGY_WH),
                                 export_wh=min(slot.export_wh, MAX_ENERGY_WH))
            message_id = uuid.uuid4()
            payload = encode(report, sender=self.settings.home_id, sent_at=utc(now_s), message_id=message_id)
            await self.outbox.enqueue(self._topic(HomeTopic.METER), payload, str(message_id), now_s)
            self.meter_reports += 1
            logger.debug("meter report for %s: %d Wh in, %d Wh out (%s)", report.slot_start.isoformat(),
                         report.import_wh, report.export_wh, slot.source)
            self._wake.set()

    def describe(self) -> dict[str, object]:
        """The agent's state for the daemon's describe() and the tests."""
        config = self.market_config
        return {
            "state": self.state, "connected": self.link.connected, "community": self.settings.community,
            "mechanism": None if config is None else config.mechanism,
            "bid_format": None if config is None else str(config.bid_format),
            "submissions": self.submissions, "last_sequence": self.sequence.last if self.submissions else None,
            "awaiting_ack": self._awaiting_ack is not None, "committed_slots": len(self.commitments),
            "meter_reports": self.meter_reports, "outbox_pending": self.outbox.pending_count,
            "outbox_sent": self.outbox.sent, "outbox_resent": self.outbox.resent,
            "power_plant": self.power_plant.describe(),
        }

    # -- bidding ------------------------------------------------------------------------------

    async def _bidding_loop(self) -> None:
        """Sleep on the clock until the next submission is due; submit while holding the clock."""
        while not self._stopping:
            config = self.market_config
            now_s = self.clock.now_s()
            if config is None or config.bid_format is BidFormat.NONE or config.slot_duration_s != self.slot_s:
                await self.clock.sleep(CALENDAR_POLL_S)
                continue
            calendar = MarketCalendar.of(config)
            slot_s = calendar.first_open_slot_s(now_s)
            if self._bid_for_s is not None and slot_s <= self._bid_for_s:
                slot_s = self._bid_for_s + calendar.slot_duration_s
            due_s = calendar.submit_at_s(slot_s, self.settings.submit_lead_s)
            if now_s < due_s:
                await self.clock.sleep(min(due_s - now_s, CALENDAR_POLL_S))
                continue
            # Simulated time must not pass the gate while the curves are computed.
            with holding(self.clock):
                try:
                    sent = await self._submit(config, calendar, slot_s)
                except Exception:
                    sent = False
                    self.report.once("submit-error", logging.ERROR, "market: building the bid failed", exc_info=True)
            if sent:
                self._bid_for_s = slot_s
            else:
                await self.clock.sleep(RETRY_S)

    async def _submit(self, config: MarketConfig, calendar: MarketCalendar, first_slot_s: float) -> bool:
        inputs = self.planning.last_inputs
        if inputs is None:
            logger.debug("market: no plan yet, no bid for %s", utc(first_slot_s).isoformat())
            return False
        indices = slot_indices(inputs, self.slot_s, calendar.bid_slots_s(first_slot_s, self.settings.bid_slots))
        if not indices:
            self.report.once("horizon", logging.WARNING, "market: the plan's horizon does not reach the slots open "
                             "for bids; no bids until it does")
            return False
        inputs = with_market_terms(inputs, self.plan_terms(inputs.start, len(inputs.load_w), self.slot_s))
        grid = price_grid_micro(config, self.settings.bid_points)
        curves = await self.planning.run_with_planner(
            functools.partial(compute_curves, inputs=inputs, indices=indices, grid_micro=grid))
        now_s = self.clock.now_s()
        if now_s >= calendar.gate_closure_s(first_slot_s):
            logger.warning("market: the bid for %s was ready after its gate closed", utc(first_slot_s).isoformat())
            return False
        bid = submission(self.settings.home_id, self.sequence.next(now_s), curves, grid, config.bid_format,
                         self.settings.terms)
        message_id = str(uuid.uuid4())
        payload = encode(bid, sender=self.settings.home_id, sent_at=utc(now_s), message_id=uuid.UUID(message_id))
        # Known before it is sent: the manager's ack can overtake the broker's PUBACK.
        self._submitted_ids[message_id] = False
        while len(self._submitted_ids) > SUBMISSIONS_REMEMBERED:
            self._submitted_ids.popitem(last=False)
        if not await self.link.publish(self._topic(HomeTopic.ORDERS), payload, qos=1, timeout_s=PUBLISH_TIMEOUT_S):
            logger.info("market: bid for %s not sent (broker unreachable)", utc(first_slot_s).isoformat())
            return False
        self.report.message_out(OrderSubmission.MESSAGE_TYPE)
        self.submissions += 1
        self.last_submission = bid
        if self._awaiting_ack is None and not self._submitted_ids.get(message_id):
            # The deadline runs from the oldest unanswered submission.
            self._awaiting_ack = (message_id, self.clock.monotonic_s())
        self._wake.set()
        logger.debug("market: bid #%d for %d slot(s) from %s sent", bid.sequence, len(bid.slots),
                     utc(first_slot_s).isoformat())
        return True

    # -- status and outbox --------------------------------------------------------------------

    async def _service_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            next_s: float | None = None
            try:
                await self._refresh_status()
                next_s = await self.outbox.pump()
            except Exception:
                self.report.once("service-error", logging.ERROR, "market: status or outbox failed", exc_info=True)
                next_s = self.clock.monotonic_s() + RETRY_S
            awaiting = self._awaiting_ack
            if awaiting is not None:
                deadline_s = awaiting[1] + self.settings.ack_timeout_s + 1e-3
                next_s = deadline_s if next_s is None else min(next_s, deadline_s)
            await self._wait(next_s)

    async def _wait(self, until_monotonic_s: float | None) -> None:
        """Until something happened (:attr:`_wake`) or the clock reached ``until_monotonic_s``."""
        waiters = [asyncio.ensure_future(self._wake.wait())]
        if until_monotonic_s is not None:
            waiters.append(asyncio.ensure_future(self.clock.sleep_until_s(until_monotonic_s)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _refresh_status(self) -> None:
        state = self.state
        self.report.state(state)
        if not self.link.connected or state == self._status_published:
            return
        if await self.link.publish(self._topic(HomeTopic.STATUS), self._status_payload("online", state),
                                   retain=True, timeout_s=PUBLISH_TIMEOUT_S):
            self.report.message_out(HomeStatus.MESSAGE_TYPE)
            if self._status_published != state:
                logger.info("market: %s", "trading" if state == "trading" else
                            "retail only (manager unreachable, no market configuration or no ack)")
            self._status_published = state

    def _connection_changed(self, connected: bool) -> None:
        self.report.connected(connected)
        if not connected:
            self._status_published = None  # the broker may have published our will: say online again
        self._wake.set()

    # -- incoming -----------------------------------------------------------------------------

    async def _on_config(self, message: IncomingMessage) -> None:
        if not message.payload:  # the retained configuration was cleared: no market any more
            self.market_config = None
            self._wake.set()
            return
        decoded = self._decode(message, MarketConfig)
        if decoded is None:
            return
        config = decoded.payload
        if config.community != self.settings.community:
            self.report.once("community", logging.WARNING, "market: configuration of community %r on our topic "
                             "ignored", config.community)
            return
        if config.slot_duration_s != self.slot_s:
            self.report.once(f"slot-{config.slot_duration_s}", logging.WARNING, "market: slots of %d s, the planner's "
                             "are %d s ([mpc] step_s): no trading", config.slot_duration_s, self.slot_s)
        previous, self.market_config = self.market_config, config
        if previous is None or previous.config_version != config.config_version:
            logger.info("market: configuration %d: %s, bids as %s, slots of %d s, gate %d s ahead",
                        config.config_version, config.mechanism, config.bid_format, config.slot_duration_s,
                        config.gate_closure_lead_s)
        self._wake.set()

    async def _on_ack(self, message: IncomingMessage) -> None:
        decoded = self._decode(message, Ack)
        if decoded is None or decoded.envelope.correlation_id is None:
            return
        ack, message_id = decoded.payload, str(decoded.envelope.correlation_id)
        if message_id in self._submitted_ids:
            self._order_ack(message_id, ack)
        elif await self.outbox.acknowledge(message_id, ack.status, self.clock.now_s()):
            if ack.status is not ReceptionStatus.OK:
                self.report.rejected(str(ack.status))
                final = ack.status in FINAL_STATUSES
                self.report.once(f"outbox-{ack.status}", logging.WARNING if final else logging.INFO,
                                 "market: the manager answered %s to %s (%s)%s", ack.status, message_id,
                                 ack.diagnostic_label, "; it is not sent again" if final else "; sent again later")
        self._wake.set()

    def _order_ack(self, message_id: str, ack: Ack) -> None:
        self._submitted_ids[message_id] = True
        self.last_order_ack = ack
        if self._awaiting_ack is not None:
            # Any answer shows the manager is there; later submissions are not overdue either.
            self._awaiting_ack = None
        if ack.status is not ReceptionStatus.OK:
            self.report.rejected(str(ack.status))
            self.report.once(f"orders-{ack.status}-{ack.diagnostic_label}", logging.WARNING,
                             "market: bid refused: %s %s", ack.status, ack.diagnostic_label)
        for slot in ack.slots:
            if slot.status is OrderStatus.REJECTED:
                self.report.rejected(str(OrderStatus.REJECTED))
                self.report.once(f"slot-{slot.reason}", logging.WARNING, "market: bid for a slot refused: %s",
                                 slot.reason)

    async def _on_allocation(self, message: IncomingMessage) -> None:
        decoded = self._decode(message, Allocation)
        if decoded is None:
            return
        trade = committed_trade(decoded.payload)
        if trade.duration_s != self.slot_s:
            self.report.once("allocation-duration", logging.WARNING, "market: allocation of a %d-s slot ignored",
                             trade.duration_s)
            return
        self.commitments.prune(self.clock.now_s())
        if self.commitments.record(trade):
            logger.info("market: committed %+d Wh at %.4f per kWh for %s", trade.net_wh, trade.price_per_kwh,
                        utc(trade.slot_start_s).isoformat())
            self.planning.request_replan("allocation")

    async def _on_signal(self, message: IncomingMessage) -> None:
        decoded = self._decode(message, NegotiationSignal)
        if decoded is not None:
            await self.negotiation.on_signal(decoded.payload)

    async def _on_commitment(self, message: IncomingMessage) -> None:
        decoded = self._decode(message, Commitment)  # an invalid one is logged, counted and never acted on
        if decoded is not None:
            await self.power_plant.on_commitment(decoded)

    async def _on_vpp_request(self, message: IncomingMessage) -> None:
        decoded = self._decode(message, PowerPlantNotice)
        if decoded is not None:
            self.power_plant.on_notice(decoded)

    def _negotiation_inputs(self) -> PlanInputs | None:
        """The plan in force's inputs with the committed trades: what a negotiation round re-plans."""
        inputs = self.planning.last_inputs
        if inputs is None:
            return None
        return with_market_terms(inputs, self.plan_terms(inputs.start, len(inputs.load_w), self.slot_s))

    def _decode(self, message: IncomingMessage, kind: Any) -> Message[Any] | None:
        try:
            decoded = decode(message.payload, (kind,))
        except ProtocolError as error:
            self.report.message_in("invalid")
            self.report.once(f"invalid-{kind.__name__}", logging.WARNING, "market: invalid %s on %s: %s",
                             kind.__name__, message.topic, error)
            return None
        self.report.message_in(kind.MESSAGE_TYPE)
        return decoded

    # -- helpers ------------------------------------------------------------------------------

    def _topic(self, leaf: HomeTopic) -> str:
        return self.topics.home(self.settings.home_id, leaf)

    def _status_payload(self, state: str, market: str) -> bytes:
        return encode(HomeStatus(state=state, market=market), sender=self.settings.home_id,
                      sent_at=utc(self.clock.now_s()))
