"""The community manager's decisions: take bids and meter reports, clear at gate closure, settle
after each slot. Synchronous and free of MQTT: every method takes the time and returns the
messages to publish, so the service (hems/community/service.py) can run it on one worker thread
and the tests can drive it directly.

Every state change and its ledger record are one SQLite transaction (hems/community/state.py), so
a manager killed at any instant restarts without losing or double-counting anything: a cleared
slot is never cleared again, a settled slot never settled again, a duplicate message gets its
first ack again and changes nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import Any
from uuid import UUID

from hems.community.bids import clearing_input
from hems.protocol.calendar import MarketCalendar
from hems.community.config import UPSTREAM_PARTICIPANT, CommunityConfig
from hems.community.grid.feeder import FeederModel
from hems.community.grid.limits import with_locational_fee
from hems.community.intake import METER_RETENTION_S, bid_problem, envelope_problem, meter_report_problem
from hems.community.ledger import RecordKind
from hems.community.mechanisms.base import ClearingResult, HomeAllocation, InputKind
from hems.community.mechanisms.registry import create_mechanism, input_kind
from hems.community.negotiation.driver import NegotiationDriver
from hems.community.outgoing import Outgoing, encode_as_manager
from hems.community.power_plant.desk import PowerPlantDesk
from hems.community.power_plant.operator import OperatorInbox
from hems.community.records import (
    allocation_message,
    allocation_to_body,
    book_hash,
    result_from_bodies,
    result_to_body,
    slot_result_message,
)
from hems.community.seeds import tie_break_seed
from hems.community.settlement import (
    MeteredEnergy,
    SettlementPrices,
    correction,
    settle_slot,
)
from hems.community.state import CommunityState
from hems.community.upstream.desk import UpstreamDesk
from hems.protocol.codec import Message, ProtocolError, decode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import (
    Ack,
    MeterReport,
    NegotiationAnswer,
    NegotiationSignal,
    OrderStatus,
    OrderSubmission,
    Payload,
    SlotAck,
    SlotState,
)
from hems.protocol.power_plant import CommitmentAnswer
from hems.protocol.topics import HomeTopic, Topics

logger = logging.getLogger(__name__)

#: What the manager takes from the homes, by topic leaf.
HOME_INPUTS: dict[HomeTopic, tuple[type[Payload], ...]] = {
    HomeTopic.ORDERS: (OrderSubmission,), HomeTopic.METER: (MeterReport,),
    HomeTopic.NEGOTIATION: (NegotiationAnswer,), HomeTopic.COMMITMENT_ANSWER: (CommitmentAnswer,)}


class CommunityManager:
    """One community's market, on its state database."""

    def __init__(self, config: CommunityConfig, state: CommunityState) -> None:
        self.config = config
        self.state = state
        self.topics = Topics(config.community.id)
        market = config.market
        self.calendar = MarketCalendar(market.slot_duration_s, market.gate_closure_lead_s, market.horizon_slots)
        self.mechanism = create_mechanism(market.mechanism, config)
        self.input_kind = input_kind(market.mechanism)
        self.members = frozenset(config.member_ids)
        retail_and_feed_in = market.parameters(0)
        self.prices = SettlementPrices(
            retail_price_micro=retail_and_feed_in.retail_price_micro,
            feed_in_price_micro=retail_and_feed_in.feed_in_price_micro,
            imbalance_import_price_micro=market.imbalance_import_price_micro,
            imbalance_export_price_micro=market.imbalance_export_price_micro)
        self.config_version = 0
        self.market_start_s = 0  # slots before the manager's first start are not this market's
        self.received: Counter[tuple[str, str]] = Counter()  # (message type, reception status)
        self.clearing_failures = 0
        self._next_clearing_s = 0
        self._next_settlement_s = 0
        self._unknown_senders: set[str] = set()
        self.negotiation = NegotiationDriver.for_community(config) if market.mechanism == "admm" else None
        self.power_plant = PowerPlantDesk(config, state, self.calendar, market.parameters)
        feeder = None if config.grid is None else FeederModel.from_section(config.grid, self.members)
        self.operator = OperatorInbox(self.topics, state, self.calendar, self.power_plant, feeder, self.members)
        self.upstream = UpstreamDesk(config, state, self.calendar)  # docs/community.md, "Nesting"

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, now_s: float) -> list[Outgoing]:
        """Publish the market config (a new version when it changed) and re-publish what homes may
        have missed while the manager was away; then catch up with due clearings and settlements."""
        market_body = self.config.market_config(1).model_dump(mode="json", exclude={"config_version"})
        history = self.state.ledger.records(kind=RecordKind.CONFIG)
        if history and history[-1].body.get("market") == market_body:
            self.config_version = int(history[-1].body["config_version"])
        else:
            self.config_version = len(history) + 1
            self.state.record_config({"config_version": self.config_version, "market": market_body}, now_s)
            history = self.state.ledger.records(kind=RecordKind.CONFIG)
        first_start_s = history[0].recorded_at_s
        self.market_start_s = self.calendar.slot_start_s(first_start_s) + self.calendar.slot_duration_s
        self._next_clearing_s = max(self.market_start_s, self._first_unprocessed(now_s))
        self._next_settlement_s = self._next_clearing_s
        out = [Outgoing(self.topics.market_config(), self._encode(self.config.market_config(self.config_version),
                                                                  now_s), retain=True)]
        out += self._republish_current(now_s)
        return out + self.power_plant.restore(now_s) + self.tick(now_s)

    def tick(self, now_s: float) -> list[Outgoing]:
        """Clear every slot whose gate has closed and settle every slot whose meter deadline passed."""
        out = self._negotiation_rounds(now_s) + self.power_plant.tick(now_s)
        duration = self.calendar.slot_duration_s
        gate_passed = False
        while self.calendar.gate_closure_s(self._next_clearing_s) <= now_s:
            slot = self._next_clearing_s
            if self.input_kind is not InputKind.POSITIONS and self.state.slot(slot) is None \
                    and slot + duration > now_s:
                out += self._clear(slot, now_s)
            self._next_clearing_s += duration
            gate_passed = True
        if gate_passed:  # the open slots changed: so did what the community can offer
            out += self.power_plant.offers(self._next_clearing_s, now_s)
        return out + self._negotiation_start(now_s) + self._settle_due(now_s) + self.upstream.tick(now_s)

    def _settle_due(self, now_s: float) -> list[Outgoing]:
        """Settle, in order, every slot past its meter deadline or fully reported after its end."""
        out: list[Outgoing] = []
        duration = self.calendar.slot_duration_s
        deadline = self.config.market.meter_deadline_s
        while True:
            slot = self._next_settlement_s
            ended = slot + duration <= now_s
            if not (slot + duration + deadline <= now_s or (ended and self._all_reported(slot))):
                return out
            out += self._settle(slot, now_s)
            self._next_settlement_s += duration

    def next_event_s(self, now_s: float) -> float:
        """When :meth:`tick` next has something to do."""
        duration = self.calendar.slot_duration_s
        settle_at = self._next_settlement_s + duration + self.config.market.meter_deadline_s
        gate_at = self.calendar.gate_closure_s(self._next_clearing_s)
        events = [settle_at, gate_at] + [at for at in [self.upstream.next_event_s(now_s)] if at is not None]
        if (answer_by := self.power_plant.next_event_s()) is not None:
            events.append(answer_by)
        driver = self.negotiation
        if driver is not None:
            pending = driver.next_event_s()
            if pending is not None:
                events.append(pending)
            elif not driver.started(self._next_clearing_s):
                events.append(driver.start_due_s(self._next_clearing_s))
        return float(max(min(events), now_s))

    # -- messages -----------------------------------------------------------------------------

    def handle(self, topic: str, raw: bytes, now_s: float) -> list[Outgoing]:
        """One message from a home: validate, apply, and ack (always, with a reason)."""
        if topic.startswith(f"{self.topics.prefix}/grid/"):
            return self.operator.handle(topic, raw, now_s)
        if self.upstream.owns(topic):
            return self.upstream.handle(topic, raw, now_s)
        address = self.topics.parse_home(topic)
        if address is None or address.leaf not in HOME_INPUTS:
            return []  # our own acks and allocations, home status: nothing to take
        home = address.home
        if home not in self.members:
            if home not in self._unknown_senders:
                self._unknown_senders.add(home)
                logger.warning("message from %r, who is not a member of %s: ignored", home, self.config.community.id)
            self.received[(str(address.leaf), "NOT_A_MEMBER")] += 1
            return []
        try:
            message = decode(raw, HOME_INPUTS[address.leaf])
        except ProtocolError as error:
            return self._refuse(home, error, now_s)
        memo = self.state.seen_ack(str(message.message_id))
        if memo is not None:  # a QoS 1 duplicate or a replay: the first answer again, nothing else
            self.received[(message.envelope.message_type, "DUPLICATE")] += 1
            return [self._ack_out(home, Ack.model_validate_json(memo["ack"]), message.message_id, now_s)]
        problem = envelope_problem(home, message, now_s)
        if problem:
            return self._refuse(home, ProtocolError(ReceptionStatus.INVALID_CONTENT, problem, message.message_id,
                                                    message.envelope.message_type), now_s)
        if isinstance(message.payload, OrderSubmission):
            return self._take_orders(home, message, now_s)
        if isinstance(message.payload, NegotiationAnswer):
            return self._take_answer(home, message, now_s)
        if isinstance(message.payload, CommitmentAnswer):
            return self._take_commitment_answer(home, message, now_s)
        return self._take_meter(home, message, now_s)

    def _take_orders(self, home: str, message: Message[OrderSubmission], now_s: float) -> list[Outgoing]:
        submission = message.payload
        last = self.state.last_sequence(home)
        if last is not None and submission.sequence <= last:
            return self._refuse(home, ProtocolError(
                ReceptionStatus.INVALID_CONTENT,
                f"sequence {submission.sequence} is not above the last accepted {last} (replayed or out of order)",
                message.message_id, "orders"), now_s)
        slot_acks, accepted = [], []
        for bid in submission.slots:
            slot_start_s = int(bid.slot_start.timestamp())
            reason = bid_problem(home, bid, slot_start_s, now_s, market=self.config.market, calendar=self.calendar,
                                 prices=self.prices, members=self.members, input_kind=self.input_kind)
            slot_acks.append(SlotAck(slot_start=bid.slot_start, status=OrderStatus.REJECTED if reason
                                     else OrderStatus.ACCEPTED, reason=reason))
            if not reason:
                accepted.append((slot_start_s, bid.model_dump(mode="json", exclude_none=True)))
        if not accepted:
            ack = Ack(status=ReceptionStatus.INVALID_CONTENT, diagnostic_label="no slot accepted: "
                      + "; ".join(sorted({item.reason for item in slot_acks}))[:400],
                      acked_message_type="orders", slots=slot_acks)
            self.state.reject(home, str(message.message_id), self._memo(ack), now_s)
        else:
            rejected = sum(item.status is OrderStatus.REJECTED for item in slot_acks)
            ack = Ack(status=ReceptionStatus.OK, acked_message_type="orders", slots=slot_acks,
                      diagnostic_label=f"{len(accepted)} slot(s) accepted, {rejected} rejected")
            self.state.accept_bids(home, str(message.message_id), submission.sequence, accepted,
                                   self._memo(ack), now_s)
        self.received[("orders", str(ack.status))] += 1
        return [self._ack_out(home, ack, message.message_id, now_s)]

    def _take_meter(self, home: str, message: Message[MeterReport], now_s: float) -> list[Outgoing]:
        report = message.payload
        slot_start_s = int(report.slot_start.timestamp())
        problem = meter_report_problem(report, now_s, calendar=self.calendar, market_start_s=self.market_start_s)
        if problem:
            return self._refuse(home, ProtocolError(ReceptionStatus.INVALID_CONTENT, problem, message.message_id,
                                                    "meter"), now_s)
        ack = Ack(status=ReceptionStatus.OK, acked_message_type="meter")
        changed = self.state.record_meter(home, str(message.message_id), slot_start_s, report.import_wh,
                                          report.export_wh, self._memo(ack), now_s)
        self.received[("meter", "OK")] += 1
        out = [self._ack_out(home, ack, message.message_id, now_s)]
        if changed and self._settled(slot_start_s):
            self._correct(home, slot_start_s, MeteredEnergy(home, report.import_wh, report.export_wh), now_s)
        elif changed:
            out += self._settle_due(now_s)  # everyone has reported: no need to wait for the deadline
        return out

    def _take_answer(self, home: str, message: Message[NegotiationAnswer], now_s: float) -> list[Outgoing]:
        """A round's answer: taken silently (the next signal acknowledges it), or refused with a reason.
        Answers are not remembered for deduplication: a repeated answer to the open round replaces
        the first, and one to any other round is stale."""
        if self.negotiation is None:
            problem, signals = f"{self.config.market.mechanism} does not negotiate", []
        else:
            problem, signals = self.negotiation.take(home, message.payload, now_s)
        if problem:
            ack = Ack(status=ReceptionStatus.INVALID_CONTENT, diagnostic_label=problem,
                      acked_message_type=NegotiationAnswer.MESSAGE_TYPE)
            self.received[(NegotiationAnswer.MESSAGE_TYPE, str(ack.status))] += 1
            return [self._ack_out(home, ack, message.message_id, now_s)]
        self.received[(NegotiationAnswer.MESSAGE_TYPE, "OK")] += 1
        return self._signals_out(signals, now_s)

    def _take_commitment_answer(self, home: str, message: Message[CommitmentAnswer], now_s: float
                                ) -> list[Outgoing]:
        """A home's answer to its share of a flexibility request: taken, or refused with the reason."""
        problem, out = self.power_plant.take_answer(home, message.payload, now_s)
        ack = Ack(status=ReceptionStatus.INVALID_CONTENT if problem else ReceptionStatus.OK,
                  diagnostic_label=problem[:500], acked_message_type=CommitmentAnswer.MESSAGE_TYPE)
        self.state.remember(home, str(message.message_id), self._memo(ack), now_s)
        self.received[(CommitmentAnswer.MESSAGE_TYPE, str(ack.status))] += 1
        return [self._ack_out(home, ack, message.message_id, now_s)] + out

    def _negotiation_rounds(self, now_s: float) -> list[Outgoing]:
        """Close rounds whose time is up; end a negotiation at its gate (before that slot clears)."""
        return [] if self.negotiation is None else self._signals_out(self.negotiation.tick(now_s), now_s)

    def _negotiation_start(self, now_s: float) -> list[Outgoing]:
        """Start the negotiation for the next gate when it is due."""
        driver, slot = self.negotiation, self._next_clearing_s
        if (driver is None or driver.active is not None or driver.started(slot)
                or not driver.start_due_s(slot) <= now_s < self.calendar.gate_closure_s(slot)):
            return []
        return self._signals_out(driver.start(slot, now_s), now_s)

    def _signals_out(self, signals: list[NegotiationSignal], now_s: float) -> list[Outgoing]:
        return [Outgoing(self.topics.market_signal(), self._encode(signal, now_s)) for signal in signals]

    def _refuse(self, home: str, error: ProtocolError, now_s: float) -> list[Outgoing]:
        ack = Ack(status=error.status, diagnostic_label=error.label[:500], acked_message_type=error.message_type)
        self.received[(error.message_type or "unknown", str(error.status))] += 1
        logger.info("refused a message from %s: %s", home, error)
        if error.message_id is not None:
            self.state.reject(home, str(error.message_id), self._memo(ack), now_s)
        return [self._ack_out(home, ack, error.message_id, now_s)]

    # -- clearing and settlement --------------------------------------------------------------

    def _clear(self, slot_start_s: int, now_s: float, positions: dict[str, tuple[int, int]] | None = None
               ) -> list[Outgoing]:
        stored = self.state.bids_for_slot(slot_start_s)
        seed = tie_break_seed(self.config.market.tie_break_seed, self.config.community.id, str(slot_start_s))
        review = self.operator.review()
        parameters = self.config.market.parameters(seed)
        if review is not None:  # the operator's locational fee is paid on home-to-home trades
            parameters = with_locational_fee(parameters, review.limits_for(slot_start_s))
        duration = self.calendar.slot_duration_s
        book = [(bid.home, bid.sequence, bid.bid) for bid in stored] + self.upstream.book_entries(slot_start_s)
        market = clearing_input(self.input_kind, parameters, book, positions or {},
                                slot_start_s=slot_start_s, duration_s=duration)
        negotiated = self.negotiation.outcome(slot_start_s) if self.negotiation is not None else None
        agreed = negotiated is not None and negotiated.converged
        try:
            result = self.mechanism.clear_negotiated(parameters, negotiated) if agreed else self.mechanism.clear(market)
            if review is not None:  # positions metered or agreed are what they are: reported, not changed
                result = review.review(self.mechanism.clear, market, result, slot_start_s, duration,
                                       adjustable=not (positions or agreed))
        except (ValueError, RuntimeError) as error:
            # A solver failure or a book the mechanism cannot take: nothing is booked and every home
            # settles this slot with the retailer, as if the market had not been there.
            logger.error("slot %s: %s could not clear: %s", slot_start_s, self.mechanism.name, error)
            self.clearing_failures += 1
            return []
        if result.balance_error_nano() != 0:
            # A bug, never a market outcome: refuse to book it; the slot settles with the retailer.
            logger.error("slot %s: %s does not balance by %d n¤; not booked", slot_start_s,
                         self.mechanism.name, result.balance_error_nano())
            return []
        participants = {home for home, _, _ in book if home != UPSTREAM_PARTICIPANT} | set(positions or {})
        body = result_to_body(result, slot_start_s=slot_start_s, duration_s=duration,
                              config_version=self.config_version, price_rule_k=parameters.k, seed=seed,
                              book_hash=book_hash({"home": h, "sequence": s, "bid": b} for h, s, b in book),
                              homes=len(participants), non_responders=len(self.members - participants))
        sequences = {bid.home: bid.sequence for bid in stored}
        allocations = {item.home: allocation_to_body(_with_sequence(item, sequences.get(item.home)))
                       for item in result.allocations}
        self.state.record_clearing(slot_start_s, duration, body, allocations, now_s)
        return self._clearing_messages(slot_start_s, body, result, sequences, now_s)

    def _clearing_messages(self, slot_start_s: int, body: dict[str, Any], result: ClearingResult,
                           sequences: dict[str, int], now_s: float) -> list[Outgoing]:
        out = []
        duration = self.calendar.slot_duration_s
        for allocation in (item for item in result.allocations if item.home != UPSTREAM_PARTICIPANT):
            message = allocation_message(_with_sequence(allocation, sequences.get(allocation.home)),
                                         slot_start_s=slot_start_s, duration_s=duration, mechanism=result.mechanism)
            out.append(Outgoing(self.topics.home(allocation.home, HomeTopic.ALLOCATION),
                                self._encode(message, now_s), retain=True))
        state = SlotState.SETTLED if self._settled(slot_start_s) else SlotState.CLEARED
        out.append(self._result_out(slot_start_s, body, state, now_s))
        return out

    def _settle(self, slot_start_s: int, now_s: float) -> list[Outgoing]:
        if self._settled(slot_start_s):
            return []
        meters = self.state.meters_for_slot(slot_start_s)
        out: list[Outgoing] = []
        if self.input_kind is InputKind.POSITIONS and self.state.slot(slot_start_s) is None and meters:
            out += self._clear(slot_start_s, now_s, positions=meters)
        clearing = self._stored_clearing(slot_start_s)
        # Every member gets a line per slot; one without a reading is settled provisionally.
        settlement = settle_slot(slot_start_s, clearing,
                                 {home: MeteredEnergy(home, imported, exported)
                                  for home, (imported, exported) in meters.items()}
                                 | self.upstream.settlement_meters(clearing), sorted(self.members), self.prices)
        if settlement.balance_error_nano() != 0:
            logger.error("slot %s: settlement does not balance by %d n¤", slot_start_s,
                         settlement.balance_error_nano())
        summary = {"slot_start_s": slot_start_s, "homes": len(settlement.homes),
                   "estimated": sum(item.estimated for item in settlement.homes),
                   "retailer_nano": settlement.retailer_nano, "network_fees_nano": settlement.network_fees_nano,
                   "community_fees_nano": settlement.community_fees_nano, "rounding_nano": settlement.rounding_nano}
        self.state.record_settlement(slot_start_s, settlement.homes, summary, now_s,
                                     duration_s=self.calendar.slot_duration_s)
        stored = self.state.slot(slot_start_s)
        if stored is not None and stored.clearing is not None:
            out.append(self._result_out(slot_start_s, stored.clearing, SlotState.SETTLED, now_s))
        return out + self.power_plant.slot_settled(slot_start_s, now_s)

    def _correct(self, home: str, slot_start_s: int, actual: MeteredEnergy, now_s: float) -> None:
        """A reading for a settled slot: append the difference; never edit what was booked."""
        booked = self.state.home_settlement(slot_start_s, home)
        if booked is None:  # not a member when the slot settled: nothing to correct
            return
        delta = correction(booked, actual, self.prices)
        self.state.record_correction(slot_start_s, delta, now_s)

    # -- helpers ------------------------------------------------------------------------------

    def _stored_clearing(self, slot_start_s: int) -> ClearingResult | None:
        stored = self.state.slot(slot_start_s)
        if stored is None or stored.clearing is None:
            return None
        allocations = [record.body for record in self.state.ledger.records(kind=RecordKind.ALLOCATION,
                                                                           slot_start_s=slot_start_s)]
        return result_from_bodies(stored.clearing, allocations)

    def _settled(self, slot_start_s: int) -> bool:
        return self.state.is_settled(slot_start_s)

    def _all_reported(self, slot_start_s: int) -> bool:
        return self.members <= set(self.state.meters_for_slot(slot_start_s))

    def _first_unprocessed(self, now_s: float) -> int:
        """The earliest slot that still needs clearing or settling, scanning back at most the retention."""
        duration = self.calendar.slot_duration_s
        slot = self.calendar.slot_start_s(now_s) + duration
        oldest = max(self.market_start_s, self.calendar.slot_start_s(now_s - METER_RETENTION_S))
        while slot - duration >= oldest and not self._settled(slot - duration):
            slot -= duration
        return slot

    def _republish_current(self, now_s: float) -> list[Outgoing]:
        """Allocations and results of cleared slots that have not ended (retained topics may be lost
        when the broker restarts without persistence)."""
        out = []
        duration = self.calendar.slot_duration_s
        slot = self.calendar.slot_start_s(now_s)
        while True:
            stored = self.state.slot(slot)
            if stored is None or stored.clearing is None:
                break
            clearing = self._stored_clearing(slot)
            if clearing is not None:
                sequences = {item.home: item.sequence for item in clearing.allocations if item.sequence is not None}
                out += self._clearing_messages(slot, stored.clearing, clearing, sequences, now_s)
            slot += duration
        return out

    def _result_out(self, slot_start_s: int, body: dict[str, Any], state: SlotState, now_s: float) -> Outgoing:
        message = slot_result_message(body, state, self.state.ledger.head())
        return Outgoing(self.topics.slot_result(message.slot_start), self._encode(message, now_s), retain=True)

    def _ack_out(self, home: str, ack: Ack, correlation_id: UUID | None, now_s: float) -> Outgoing:
        return Outgoing(self.topics.home(home, HomeTopic.ACK), self._encode(ack, now_s, correlation_id))

    @staticmethod
    def _memo(ack: Ack) -> dict[str, Any]:
        return {"ack": ack.model_dump_json(exclude_none=True)}

    @staticmethod
    def _encode(payload: Payload, now_s: float, correlation_id: UUID | None = None) -> bytes:
        return encode_as_manager(payload, now_s, correlation_id)


def _with_sequence(allocation: HomeAllocation, sequence: int | None) -> HomeAllocation:
    if sequence is None or allocation.sequence is not None:
        return allocation
    return replace(allocation, sequence=sequence)
