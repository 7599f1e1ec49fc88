"""The grid operator's side of the manager: ``grid/limits`` and ``grid/request`` in, acks out.

Limits and fees are kept per slot (a new publication replaces the slots it names) and recorded in
the ledger; the manager's grid review reads them at every clearing (:meth:`OperatorInbox.review`).
Requests go to the :class:`~hems.community.power_plant.desk.PowerPlantDesk`.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from uuid import UUID

from hems.community.grid.feeder import MAX_LIMIT_W, FeederModel, FeederSection
from hems.community.grid.limits import DayAheadLimits, GridLimits
from hems.community.grid.review import GridReview
from hems.community.ledger import RecordKind
from hems.community.outgoing import Outgoing, outgoing
from hems.community.power_plant.desk import PowerPlantDesk
from hems.community.state import CommunityState
from hems.protocol.calendar import MarketCalendar
from hems.protocol.codec import Message, ProtocolError, decode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import Ack
from hems.protocol.power_plant import FlexibilityCall, GridLimitsPublication
from hems.protocol.topics import GridTopic, Topics

logger = logging.getLogger(__name__)

#: The operator's sender id is free, but it must name itself (the dedupe memo is kept under it).
OPERATOR = "grid-operator"
#: Limits of slots that ended this long ago are forgotten.
KEEP_LIMITS_S = 86_400


class OperatorInbox:
    """What the grid operator said, and the answers to it."""

    def __init__(self, topics: Topics, state: CommunityState, calendar: MarketCalendar, desk: PowerPlantDesk,
                 feeder: FeederModel | None, members: frozenset[str]) -> None:
        self.topics = topics
        self.state = state
        self.calendar = calendar
        self.desk = desk
        self.members = members
        # Without a feeder model the operator's limits still bind the community's connection.
        self.feeder = feeder or FeederModel.from_section(FeederSection(
            transformer_import_limit_w=MAX_LIMIT_W, transformer_export_limit_w=MAX_LIMIT_W), members)
        self.has_feeder = feeder is not None
        self.limits: dict[datetime, GridLimits] = {}
        self.received: Counter[tuple[str, str]] = Counter()
        self._restore()

    def review(self) -> GridReview | None:
        """The grid review of the next clearing: None when there is neither a feeder nor a limit."""
        if not self.has_feeder and not self.limits:
            return None
        return GridReview(self.feeder, DayAheadLimits.from_mapping(self.limits) if self.limits else None)

    def handle(self, topic: str, raw: bytes, now_s: float) -> list[Outgoing]:
        """One message on ``grid/limits`` or ``grid/request`` (others: nothing)."""
        if topic == self.topics.grid(GridTopic.LIMITS):
            accepted: tuple[type, ...] = (GridLimitsPublication,)
        elif topic == self.topics.grid(GridTopic.REQUEST):
            accepted = (FlexibilityCall,)
        else:
            return []
        try:
            message = decode(raw, accepted)
        except ProtocolError as error:
            self.received[(error.message_type or "unknown", str(error.status))] += 1
            logger.info("refused a message of the grid operator: %s", error)
            return self._refusal(error, now_s)
        if self.state.seen_ack(str(message.message_id)) is not None:
            self.received[(message.envelope.message_type, "DUPLICATE")] += 1
            return []  # a QoS 1 repeat: answered the first time
        self.state.remember(OPERATOR, str(message.message_id), {"type": message.envelope.message_type}, now_s)
        self.received[(message.envelope.message_type, "OK")] += 1
        if isinstance(message.payload, FlexibilityCall):
            return self.desk.take_request(message, now_s)
        return self._take_limits(message, now_s)

    def _take_limits(self, message: Message[GridLimitsPublication], now_s: float) -> list[Outgoing]:
        duration = self.calendar.slot_duration_s
        for slot in message.payload.slots:
            if slot.duration_s != duration or not self.calendar.is_aligned(int(slot.slot_start.timestamp())):
                return self._ack(ReceptionStatus.INVALID_CONTENT, f"limits are per aligned {duration} s slot of "
                                 f"the market; {slot.slot_start.isoformat()} ({slot.duration_s} s) is not one",
                                 message, now_s)
        body = {"slots": [slot.model_dump(mode="json") for slot in message.payload.slots]}
        self.state.ledger.append(RecordKind.GRID_LIMITS, body, slot_start_s=None, home=None, at_s=now_s)
        self._apply(message.payload, now_s)
        return self._ack(ReceptionStatus.OK, f"limits for {len(message.payload.slots)} slot(s) taken", message, now_s)

    def _apply(self, publication: GridLimitsPublication, now_s: float) -> None:
        for slot in publication.slots:
            self.limits[slot.slot_start] = GridLimits(slot.import_limit_w, slot.export_limit_w,
                                                      slot.locational_fee_micro)
        oldest = now_s - KEEP_LIMITS_S
        for start in [start for start in self.limits if start.timestamp() < oldest]:
            del self.limits[start]

    def _restore(self) -> None:
        for record in self.state.ledger.records(kind=RecordKind.GRID_LIMITS):
            publication = GridLimitsPublication.model_validate({"slots": record.body["slots"]}, strict=False)
            self._apply(publication, record.recorded_at_s)

    def _ack(self, status: ReceptionStatus, label: str, message: Message, now_s: float) -> list[Outgoing]:
        return self._ack_out(status, label, message.envelope.message_type, message.message_id, now_s)

    def _refusal(self, error: ProtocolError, now_s: float) -> list[Outgoing]:
        return self._ack_out(error.status, error.label, error.message_type, error.message_id, now_s)

    def _ack_out(self, status: ReceptionStatus, label: str, message_type: str | None, correlation_id: UUID | None,
                 now_s: float) -> list[Outgoing]:
        ack = Ack(status=status, diagnostic_label=label[:500], acked_message_type=message_type)
        return [outgoing(self.topics.grid(GridTopic.ACK), ack, now_s, correlation_id=correlation_id)]
