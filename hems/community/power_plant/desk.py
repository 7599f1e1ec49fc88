"""The community as one power plant: take the grid operator's requests, split them among the homes,
agree the shares with the homes, measure delivery and share the money (docs/flexibility.md).

Synchronous and free of MQTT like the manager that owns it: every method takes the time and returns
the messages to publish. The flow of one request:

1. ``grid/request`` arrives: it is checked, each home's flexibility is read off its bid for each
   slot (:mod:`hems.community.power_plant.books`), the request is split at least cost
   (:func:`~hems.community.flexibility.dispatch.split_request`; standing opt-outs are never
   dispatched) and every dispatched home gets a PROPOSED commitment with a deadline.
2. Answers come in on ``home/<home>/commitment_answer``. When all are in, or at the deadline, the
   homes that declined or did not answer are replaced from the others' unused blocks
   (:func:`~hems.community.flexibility.dispatch.redispatch`) and the changed shares proposed again,
   up to ``max_rounds`` rounds. Then the shares the homes accepted become CONFIRMED, the rest
   CANCELLED, and the operator gets a DISPATCHED response with the committed volume per slot.
3. After each slot of the request is settled, the homes that delivered less than the tolerance of
   their commitment are replaced in the later slots that can still be agreed (shortfall handling).
4. When every slot is settled, delivery is measured against the baselines from the meter readings,
   the revenue is shared by the configured policy, penalties are allocated, the ledger gets the
   figures per home and the operator a SETTLED response.

A manager that restarts keeps every confirmed request (ledger records); a request whose proposals
were still out is answered REFUSED, because the homes' answers to it are lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from uuid import UUID

from hems.community.config import CommunityConfig
from hems.community.flexibility.delivery import measure_delivery
from hems.community.flexibility.dispatch import Dispatch, redispatch, split_request
from hems.community.flexibility.model import FlexibilityRequest, HomeFlexibility
from hems.community.flexibility.revenue import RevenuePolicy, settle_request
from hems.community.ledger import RecordKind
from hems.community.mechanisms.base import MarketParameters
from hems.community.outgoing import Outgoing, outgoing
from hems.community.power_plant import notices
from hems.community.power_plant.books import baselines_wh, metered_net_import_wh, slot_flexibility
from hems.community.power_plant.request import (
    ActiveRequest,
    HomeShare,
    dispatch_body,
    homes_of,
    keep_only,
    request_body,
    restore,
    share_of,
    within,
)
from hems.community.seeds import tie_break_seed
from hems.community.state import CommunityState
from hems.protocol.calendar import MarketCalendar
from hems.protocol.codec import Message
from hems.protocol.power_plant import (
    CommitmentAnswer,
    CommitmentState,
    FlexibilityCall,
    FlexibilityResponse,
    RequestState,
)
from hems.protocol.topics import GridTopic, HomeTopic, Topics

logger = logging.getLogger(__name__)


class PowerPlantDesk:
    """The requests of one community, from arrival to settlement."""

    def __init__(self, config: CommunityConfig, state: CommunityState, calendar: MarketCalendar,
                 parameters: Callable[[int], MarketParameters]) -> None:
        self.config = config
        self.settings = config.flexibility
        self.state = state
        self.calendar = calendar
        self.topics = Topics(config.community.id)
        self.parameters = parameters  # seed -> the market's parameters (prices and the price grid)
        self.opted_out = frozenset(member.id for member in config.member if member.flexibility_opt_out)
        self.weights = {member.id: member.flexibility_weight for member in config.member}
        self.active: dict[str, ActiveRequest] = {}
        self._last_offers: list = []
        self.counters = {"requests": 0, "refused": 0, "dispatched": 0, "settled": 0, "answers": 0}

    # -- life cycle ---------------------------------------------------------------------------

    def restore(self, now_s: float) -> list[Outgoing]:
        """Carry on with the confirmed, unsettled requests of the ledger; refuse the ones caught mid-proposal."""
        settled = {record.body["request_id"] for record in self.state.ledger.records(
            kind=RecordKind.FLEXIBILITY_SETTLEMENT) if record.home is None}
        dispatched = {record.body["request_id"]: record.body for record in self.state.ledger.records(
            kind=RecordKind.FLEXIBILITY_DISPATCH)}
        out: list[Outgoing] = []
        for record in self.state.ledger.records(kind=RecordKind.FLEXIBILITY_REQUEST):
            request_id = record.body["request_id"]
            if request_id in settled:
                continue
            if request_id in dispatched:
                self.active[request_id] = restore(record.body, dispatched[request_id])
                continue
            # Refused in the ledger too, so that the next restart does not answer it again.
            self.state.ledger.append(RecordKind.FLEXIBILITY_SETTLEMENT, {"request_id": request_id, "refused": True},
                                     slot_start_s=None, home=None, at_s=now_s)
            out.append(self._response(notices.refused(request_id, "the manager restarted while the homes were "
                                                      "answering; send the request again"),
                                      UUID(record.body["message_id"]), now_s))
        return out + self.settle_due(now_s)

    def next_event_s(self) -> float | None:
        """The earliest answer deadline of a round under way."""
        deadlines = [item.answer_by_s for item in self.active.values() if item.answer_by_s is not None]
        return min(deadlines) if deadlines else None

    def tick(self, now_s: float) -> list[Outgoing]:
        """Close the rounds whose deadline passed."""
        out: list[Outgoing] = []
        for active in list(self.active.values()):
            if active.answer_by_s is not None and active.answer_by_s <= now_s:
                out += self._close_round(active, now_s)
        return out

    # -- the operator's request ---------------------------------------------------------------

    def take_request(self, message: Message[FlexibilityCall], now_s: float) -> list[Outgoing]:
        """A request on ``grid/request``: refuse it with a reason, or split it and propose the shares."""
        call = message.payload
        self.counters["requests"] += 1
        problem = self._request_problem(call, now_s)
        if problem:
            self.counters["refused"] += 1
            logger.info("flexibility request %s refused: %s", call.request_id, problem)
            return [self._response(notices.refused(call.request_id, problem), message.message_id, now_s)]
        duration = call.slots[0].duration_s
        request = FlexibilityRequest(
            call.request_id, tuple(int(slot.slot_start.timestamp()) for slot in call.slots),
            tuple(slot.delta_w * duration // 3600 for slot in call.slots), call.price_micro, call.penalty_micro)
        seed = tie_break_seed(self.config.market.tie_break_seed, self.config.community.id,
                              f"flexibility:{call.request_id}")
        parameters = self.parameters(seed)
        reference: dict[int, int] = {}
        flexibilities: list[HomeFlexibility] = []
        for slot_start_s in request.slot_starts_s:
            reference[slot_start_s], found = slot_flexibility(self.state.bids_for_slot(slot_start_s), parameters,
                                                              slot_start_s)
            flexibilities += found
        dispatch = split_request(request, flexibilities, opted_out=self.opted_out, seed=seed)
        if not homes_of(dispatch):
            self.counters["refused"] += 1
            return [self._response(notices.refused(call.request_id, "no home offers flexibility for these slots "
                                                   "at this price"), message.message_id, now_s)]
        active = ActiveRequest(request, message.message_id, duration, tuple(flexibilities), reference, dispatch,
                               delta_w=tuple(slot.delta_w for slot in call.slots))
        self.state.ledger.append(RecordKind.FLEXIBILITY_REQUEST, request_body(active, self.opted_out),
                                 slot_start_s=request.slot_starts_s[0], home=None, at_s=now_s)
        self.active[request.request_id] = active
        logger.info("flexibility request %s: %d Wh asked, %d Wh proposed to %d homes", request.request_id,
                    sum(abs(value) for value in request.delta_wh),
                    sum(abs(slot.committed_wh) for slot in dispatch.slots), len(homes_of(dispatch)))
        notice = outgoing(self.topics.vpp_request(), notices.notice(active, RequestState.DISPATCHED), now_s)
        return [notice] + self._propose(active, dispatch, now_s)

    def _request_problem(self, call: FlexibilityCall, now_s: float) -> str:
        if not self.settings.enabled:
            return "this community takes no flexibility requests ([flexibility] enabled = false)"
        if call.request_id in self.active or any(
                record.body["request_id"] == call.request_id
                for record in self.state.ledger.records(kind=RecordKind.FLEXIBILITY_REQUEST)):
            return f"request_id {call.request_id!r} was already taken"
        duration = self.calendar.slot_duration_s
        for slot in call.slots:
            start_s = int(slot.slot_start.timestamp())
            if slot.duration_s != duration or not self.calendar.is_aligned(start_s):
                return f"slots must be the market's aligned {duration} s slots"
        first_s = call.slots[0].slot_start.timestamp()
        if first_s < now_s + self.settings.answer_window_s:
            return (f"the first slot starts in {first_s - now_s:.0f} s; the homes need "
                    f"{self.settings.answer_window_s} s to answer")
        return ""

    # -- the homes' answers -------------------------------------------------------------------

    def take_answer(self, home: str, answer: CommitmentAnswer, now_s: float) -> tuple[str, list[Outgoing]]:
        """A home's answer: a problem ('' if taken) and what to publish (the next round, once all answered)."""
        active = self.active.get(answer.request_id)
        share = None if active is None else active.shares.get(home)
        if active is None or share is None:
            return f"no commitment of request {answer.request_id!r} was proposed to {home}", []
        if answer.revision != share.revision or share.state is not CommitmentState.PROPOSED:
            return f"revision {answer.revision} is not the open proposal (revision {share.revision})", []
        self.counters["answers"] += 1
        if answer.accepted:
            share.accepted_revision = answer.revision
        else:
            share.declined = answer.reason or "declined"
            logger.info("%s declined its share of %s: %s", home, active.request_id, share.declined)
        if active.pending_homes():
            return "", []
        return "", self._close_round(active, now_s)

    # -- rounds -------------------------------------------------------------------------------

    def _propose(self, active: ActiveRequest, dispatch: Dispatch, now_s: float) -> list[Outgoing]:
        """Send each home whose share changed its new share: PROPOSED if it asks anything the home has
        not accepted, else CONFIRMED (a smaller part of what it accepted) or CANCELLED (nothing)."""
        active.dispatch = dispatch
        active.rounds += 1
        active.answer_by_s = now_s + self.settings.answer_window_s  # stated in the proposals
        out = []
        for home in sorted(homes_of(dispatch) | set(active.shares)):
            share = active.shares.setdefault(home, HomeShare())
            new = share_of(dispatch, home)
            if new == share.share and share.state is not None:
                continue
            accepted = share.share if share.accepted_revision == share.revision else {}
            if not new:
                state = CommitmentState.CANCELLED
            elif within(new, accepted) and share.accepted_revision:
                state = CommitmentState.CONFIRMED
            else:
                state = CommitmentState.PROPOSED
            share.revision += 1
            share.share, share.state, share.declined = new, state, ""
            if state is not CommitmentState.PROPOSED:
                share.accepted_revision = share.revision if new else share.accepted_revision
            out.append(self._commitment(active, home, share, now_s))
        if not active.pending_homes():
            out += self._confirm(active, now_s)
        return out

    def _close_round(self, active: ActiveRequest, now_s: float) -> list[Outgoing]:
        """Every answer is in, or the time is up: replace who declined or kept silent, or confirm."""
        active.answer_by_s = None
        failed = {home for home, share in active.shares.items() if share.declined or share.pending}
        for home in sorted(failed):
            if active.shares[home].pending:
                active.shares[home].declined = "no answer in time"
        later = self._agreeable_from(active, now_s)
        if failed and active.rounds < self.settings.max_rounds and later is not None:
            again = redispatch(active.request, active.dispatch, active.flexibilities, failed,
                               opted_out=self.opted_out, from_slot_s=later)
            return self._propose(active, again, now_s)
        return self._confirm(active, now_s)

    def _confirm(self, active: ActiveRequest, now_s: float) -> list[Outgoing]:
        """Make the accepted shares binding, cancel the rest, and tell the operator."""
        accepted = {home for home, share in active.shares.items()
                    if share.share and share.accepted_revision == share.revision and not share.declined}
        dispatch = keep_only(active.dispatch, accepted)
        out = []
        for home, share in sorted(active.shares.items()):
            if home in accepted and share.state is CommitmentState.PROPOSED:
                share.state = CommitmentState.CONFIRMED
                out.append(self._commitment(active, home, share, now_s))
            elif home not in accepted and share.state is not CommitmentState.CANCELLED:
                share.revision += 1
                share.share, share.state = {}, CommitmentState.CANCELLED
                out.append(self._commitment(active, home, share, now_s))
        active.dispatch, active.confirmed, active.answer_by_s = dispatch, True, None
        self.state.ledger.append(RecordKind.FLEXIBILITY_DISPATCH, dispatch_body(dispatch),
                                 slot_start_s=active.request.slot_starts_s[0], home=None, at_s=now_s)
        self.counters["dispatched"] += 1
        logger.info("flexibility request %s: %d Wh committed by %d homes, %d Wh unmet", active.request_id,
                    sum(abs(slot.committed_wh) for slot in dispatch.slots), len(accepted), dispatch.unmet_wh)
        return out + [self._response(notices.dispatched(active), active.message_id, now_s)]

    def _agreeable_from(self, active: ActiveRequest, now_s: float) -> int | None:
        """The first slot of the request that a new proposal can still reach in time (None: none)."""
        margin_s = now_s + self.settings.answer_window_s
        return next((slot for slot in active.request.slot_starts_s if slot >= margin_s), None)

    # -- delivery -----------------------------------------------------------------------------

    def slot_settled(self, slot_start_s: int, now_s: float) -> list[Outgoing]:
        """A market slot was settled: replace under-delivering homes in later slots; settle finished requests."""
        out: list[Outgoing] = []
        for active in list(self.active.values()):
            if active.confirmed and slot_start_s in active.request.slot_starts_s:
                out += self._replace_shortfalls(active, slot_start_s, now_s)
        return out + self.settle_due(now_s)

    def _replace_shortfalls(self, active: ActiveRequest, slot_start_s: int, now_s: float) -> list[Outgoing]:
        later = self._agreeable_from(active, now_s)
        if later is None or later <= slot_start_s:
            return []
        metered = metered_net_import_wh(self.state, slot_start_s)
        baselines, _ = self._baselines(active, slot_start_s)
        tolerance = self.settings.delivery_tolerance_pct
        short = set()
        for item in active.dispatch.slot(slot_start_s).commitments:
            moved = (metered.get(item.home, baselines[item.home]) - baselines[item.home]) * (1 if item.energy_wh > 0
                                                                                           else -1)
            if moved * 100 < abs(item.energy_wh) * (100 - tolerance):
                short.add(item.home)
        if not short:
            return []
        logger.info("request %s: %s delivered too little in slot %s; re-dispatching from %s", active.request_id,
                    ", ".join(sorted(short)), slot_start_s, later)
        # What the short homes delivered before stays theirs (a part of what they accepted, confirmed
        # again); their later slots go to others, who must accept them.
        active.confirmed, active.rounds = False, 0
        again = redispatch(active.request, active.dispatch, active.flexibilities, short, opted_out=self.opted_out,
                           from_slot_s=later)
        return self._propose(active, again, now_s)

    def settle_due(self, now_s: float) -> list[Outgoing]:
        """Settle every confirmed request whose slots are all settled."""
        out: list[Outgoing] = []
        for active in list(self.active.values()):
            if active.confirmed and all(self.state.is_settled(slot) for slot in active.request.slot_starts_s):
                out += self._settle(active, now_s)
        return out

    def _settle(self, active: ActiveRequest, now_s: float) -> list[Outgoing]:
        request, dispatch = active.request, active.dispatch
        baselines: dict[int, dict[str, int]] = {}
        sources: dict[str, str] = {}
        for slot in request.slot_starts_s:
            baselines[slot], slot_sources = self._baselines(active, slot)
            sources.update(slot_sources)
        metered = {slot: metered_net_import_wh(self.state, slot) for slot in request.slot_starts_s}
        delivery = measure_delivery(request, dispatch, baselines, metered)
        settlement = settle_request(request, dispatch, delivery, policy=RevenuePolicy(self.settings.revenue_policy),
                                    weights=self.weights)
        with self.state.transaction():
            for home in settlement.homes:
                self.state.ledger.append(RecordKind.FLEXIBILITY_SETTLEMENT,
                                         notices.home_settlement_body(request, delivery, home, sources[home.home]),
                                         slot_start_s=request.slot_starts_s[0], home=home.home, at_s=now_s)
            self.state.ledger.append(RecordKind.FLEXIBILITY_SETTLEMENT, notices.settlement_body(settlement, delivery),
                                     slot_start_s=request.slot_starts_s[0], home=None, at_s=now_s)
        del self.active[active.request_id]
        self.counters["settled"] += 1
        logger.info("flexibility request %s settled: %d of %d Wh delivered, revenue %d n¤, penalty %d n¤",
                    request.request_id, sum(abs(slot.delivered_wh) for slot in delivery.slots),
                    sum(abs(value) for value in request.delta_wh), settlement.revenue_nano, settlement.penalty_nano)
        return [self._response(notices.settled(active, delivery, settlement), active.message_id, now_s),
                outgoing(self.topics.vpp_request(), notices.notice(active, RequestState.SETTLED), now_s)]

    def _baselines(self, active: ActiveRequest, slot_start_s: int) -> tuple[dict[str, int], dict[str, str]]:
        return baselines_wh(self.state, slot_start_s, active.declared_baselines(slot_start_s),
                            days=self.settings.baseline_days, min_days=self.settings.baseline_min_days)

    # -- offers -------------------------------------------------------------------------------

    def offers(self, first_slot_s: int, now_s: float) -> list[Outgoing]:
        """The pooled flexibility of the open slots from ``first_slot_s``, as retained ``grid/offers``."""
        if not self.settings.enabled:
            return []
        parameters = self.parameters(0)
        duration = self.calendar.slot_duration_s
        flexibilities: list[HomeFlexibility] = []
        for index in range(self.config.market.horizon_slots):
            slot = first_slot_s + index * duration
            flexibilities += slot_flexibility(self.state.bids_for_slot(slot), parameters, slot)[1]
        message = notices.offers(flexibilities, self.settings.minimum_offer_w * duration // 3600, duration,
                                 self.opted_out)
        if message.offers == self._last_offers:
            return []  # retained: what the operator sees is still right
        self._last_offers = message.offers
        return [outgoing(self.topics.grid(GridTopic.OFFERS), message, now_s, retain=True)]

    # -- helpers ------------------------------------------------------------------------------

    def _commitment(self, active: ActiveRequest, home: str, share: HomeShare, now_s: float) -> Outgoing:
        message = notices.commitment(active, home, share)
        return outgoing(self.topics.home(home, HomeTopic.COMMITMENT), message, now_s)

    def _response(self, response: FlexibilityResponse, correlation_id: UUID, now_s: float) -> Outgoing:
        return outgoing(self.topics.grid(GridTopic.RESPONSE), response, now_s, correlation_id=correlation_id)

