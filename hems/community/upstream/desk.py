"""The community's seat in the upstream market, on the manager's side: synchronous and free of MQTT
like :class:`~hems.community.manager.CommunityManager`, whose worker thread runs it.

- **Up**: ``submit_lead_s`` before each upstream gate, the residual of the upstream slot (the sum of
  our homes' curves, :mod:`.residual`) goes to ``hems/v1/<upstream>/home/<member_id>/orders`` as one
  :class:`OrderSubmission` on the upstream's price grid.
- **Down**: the upstream allocation is booked (``UPSTREAM_ALLOCATION``) and, at our own gate, enters
  our clearing as the upstream participant (:mod:`.participant`), settled at its cleared position.
- **Back up**: after each upstream slot a meter report gives the community's exchange with the upstream
  market as cleared in our slots (see docs/community.md, "Nesting", for why not the metered total).

Nesting is on only while the upstream's retained ``market/config`` allows it (:func:`nesting_problem`);
otherwise the community trades with its retailer as before and the reason is logged once.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from hems.community.bids import curve_of, orders_of
from hems.community.config import UPSTREAM_PARTICIPANT, CommunityConfig
from hems.community.ledger import RecordKind
from hems.community.mechanisms.base import ClearingResult, Curve, InputKind, curve_from_orders
from hems.community.mechanisms.registry import input_kind
from hems.community.outgoing import Outgoing
from hems.community.records import utc
from hems.community.settlement import MeteredEnergy
from hems.community.state import CommunityState
from hems.community.upstream.participant import (UpstreamTrade, limit_price_micro, participant_bid,
                                                 participant_position, placing_limit_micro, reported_exchange_wh)
from hems.community.upstream.residual import PriceBand, residual_bid, residual_wh, upstream_quantities
from hems.community.upstream.slots import SlotMapping, gate_problem, mapping_problem
from hems.protocol.calendar import MarketCalendar
from hems.protocol.codec import ProtocolError, decode, encode
from hems.protocol.envelope import ReceptionStatus
from hems.protocol.messages import Ack, Allocation, BidFormat, MarketConfig, MeterReport, OrderStatus, OrderSubmission
from hems.protocol.topics import HomeTopic, Topics
from hems.protocol.units import price_to_micro

logger = logging.getLogger(__name__)

#: Submitted upstream slots remembered (their sequence numbers, for the log and the tests).
SUBMISSIONS_REMEMBERED = 200


def nesting_problem(upstream: MarketConfig, upstream_id: str, ours: MarketCalendar) -> str:
    """Why the community cannot trade in this upstream market ('' when it can)."""
    if upstream.community != upstream_id:
        return f"the configuration on the upstream topic names community {upstream.community!r}"
    if upstream.bid_format is BidFormat.NONE:
        return f"the upstream market clears from metered energy ({upstream.mechanism}): there is no bid to submit"
    return mapping_problem(ours.slot_duration_s, upstream.slot_duration_s) or gate_problem(
        ours, MarketCalendar.of(upstream))


class UpstreamDesk:
    """Submits the residual, books the upstream allocation, puts it into our clearings, reports back.
    Without ``[upstream]`` every hook is a no-op."""

    def __init__(self, config: CommunityConfig, state: CommunityState, calendar: MarketCalendar) -> None:
        self.section = config.upstream
        self.state = state
        self.calendar = calendar
        self.topics = Topics(self.section.community) if self.section is not None else None
        self.member_id = config.upstream_member_id or ""
        self.band = PriceBand(price_to_micro(config.market.feed_in_price), price_to_micro(config.market.retail_price))
        self.our_grid = tuple(config.market.price_grid_micro())
        self.reads_orders = input_kind(config.market.mechanism) is not InputKind.CURVES
        self.market: MarketConfig | None = None  # the upstream's configuration while nesting is possible
        self.mapping: SlotMapping | None = None  # kept when nesting stops: booked trades still map
        self.problem = "no upstream market configuration received yet" if self.section is not None else ""
        self.submitted: dict[int, int] = {}  # upstream slot -> sequence of its submission
        self.received: Counter[str] = Counter()
        self.last_ack: Ack | None = None
        self._last_sequence = -1
        self._next_report_s: int | None = None
        self._logged: set[str] = set()

    @property
    def active(self) -> bool:
        """True while the community trades in the upstream market."""
        return self.market is not None

    @property
    def upstream_calendar(self) -> MarketCalendar | None:
        """The upstream market's calendar while nested."""
        return None if self.market is None else MarketCalendar.of(self.market)

    # -- hooks of the manager -----------------------------------------------------------------

    def owns(self, topic: str) -> bool:
        """True for a topic of the upstream market (handled here, never as one of our homes')."""
        return self.topics is not None and topic.startswith(self.topics.prefix + "/")

    def handle(self, topic: str, raw: bytes, now_s: float) -> list[Outgoing]:
        """The upstream's market config, our allocation or an ack to us; what is due right away."""
        assert self.topics is not None
        if topic == self.topics.market_config():
            self._take_config(raw, now_s)
            return self.tick(now_s)  # a submission may be due already
        address = self.topics.parse_home(topic)
        if address is None or address.home != self.member_id:
            return []
        if address.leaf is HomeTopic.ALLOCATION:
            self._take_allocation(raw, now_s)
        elif address.leaf is HomeTopic.ACK:
            self._take_ack(raw)
        return []

    def tick(self, now_s: float) -> list[Outgoing]:
        """Submit the residual of the next upstream slot when due; report every upstream slot that ended."""
        if self.market is None:
            return []
        return self._submission_due(now_s) + self._reports_due(now_s)

    def next_event_s(self, now_s: float) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing while not nested)."""
        calendar, section = self.upstream_calendar, self.section
        if calendar is None or section is None:
            return None
        slot_s = calendar.first_open_slot_s(now_s)
        due_s = calendar.submit_at_s(slot_s, section.submit_lead_s)
        if slot_s in self.submitted:  # the next slot is submitted once it is the first open one
            due_s = max(calendar.submit_at_s(slot_s + calendar.slot_duration_s, section.submit_lead_s),
                        calendar.gate_closure_s(slot_s))
        events = [due_s]
        if self._next_report_s is not None:
            events.append(self._next_report_s + calendar.slot_duration_s)
        return float(min(events))

    def book_entries(self, slot_start_s: int) -> list[tuple[str, int, dict[str, Any]]]:
        """The upstream participant's bid in our slot's book, as (participant, sequence, bid body)."""
        mapping = self.mapping
        if mapping is None:
            return []
        upstream_slots = mapping.upstream_slots(slot_start_s)
        trades = self._trades(upstream_slots)
        missing = [slot_s for slot_s in upstream_slots if slot_s in self.submitted and slot_s not in trades]
        if missing:
            logger.warning("slot %s: no upstream allocation for upstream slot(s) %s by our gate; that part of the "
                           "residual trades with the retailer", slot_start_s, ", ".join(map(str, missing)))
        taken_wh, weights_wh = self._sharing(mapping, slot_start_s, trades)
        position = participant_position(mapping, slot_start_s, trades, taken_wh, weights_wh)
        if position is None:
            return []
        net_wh, limit_micro = position
        if self.reads_orders:  # the homes' steps, not the upstream's view of them, decide where it is placed
            orders = [order for bid in self.state.bids_for_slot(slot_start_s) for order in orders_of(bid.home, bid.bid)]
            limit_micro = placing_limit_micro(orders, net_wh, limit_micro, self.band.feed_in_price_micro,
                                              self.band.retail_price_micro)
        return [(UPSTREAM_PARTICIPANT, 0, participant_bid(net_wh, limit_micro))]

    def _sharing(self, mapping: SlotMapping, slot_start_s: int, trades: dict[int, UpstreamTrade]
                 ) -> tuple[int, list[int]]:
        """For an upstream slot longer than ours: what our earlier slots inside it cleared, and the
        residual at the trade's price, in its direction, of this slot and the later ones."""
        upstream_start_s = mapping.upstream_slots(slot_start_s)[0]
        trade = trades.get(upstream_start_s)
        if mapping.ours_per_upstream == 1 or trade is None or trade.net_import_wh == 0:
            return 0, []
        ours = mapping.our_slots(upstream_start_s)
        taken_wh = sum(self._position_of(slot_s) for slot_s in ours if slot_s < slot_start_s)
        price = limit_price_micro(trade.net_import_wh, trade.net_cost_nano)
        direction = 1 if trade.net_import_wh > 0 else -1
        weights = [max(direction * residual_wh(self._curves_of(slot_s), price, self.band), 0)
                   for slot_s in ours if slot_s >= slot_start_s]
        return taken_wh, weights

    @staticmethod
    def settlement_meters(clearing: ClearingResult | None) -> dict[str, MeteredEnergy]:
        """The upstream participant 'metered' at its cleared position: it has no meter and never an
        imbalance (what the homes deviate is theirs)."""
        allocation = clearing.allocation(UPSTREAM_PARTICIPANT) if clearing is not None else None
        if allocation is None:
            return {}
        return {UPSTREAM_PARTICIPANT: MeteredEnergy(UPSTREAM_PARTICIPANT, allocation.bought_wh, allocation.sold_wh)}

    # -- incoming -----------------------------------------------------------------------------

    def _take_config(self, raw: bytes, now_s: float) -> None:
        assert self.section is not None
        if not raw:
            self._stop("the upstream market configuration was withdrawn")
            return
        try:
            config = decode(raw, (MarketConfig,)).payload
        except ProtocolError as error:
            self._stop(f"the upstream market configuration is invalid: {error}")
            return
        problem = nesting_problem(config, self.section.community, self.calendar)
        if problem:
            self._stop(problem)
            return
        previous, self.market, self.problem = self.market, config, ""
        self.mapping = SlotMapping(self.calendar.slot_duration_s, config.slot_duration_s)
        calendar = MarketCalendar.of(config)
        if self._next_report_s is None or not calendar.is_aligned(self._next_report_s) \
                or self._next_report_s < calendar.slot_start_s(now_s) - calendar.slot_duration_s:
            self._next_report_s = self._first_to_report(calendar, now_s)
        if previous is None or previous.config_version != config.config_version:
            logger.info("nested in %s as %r: %s, slots of %d s (ours %d s), its gate %d s ahead (ours %d s)",
                        self.section.community, self.member_id, config.mechanism, config.slot_duration_s,
                        self.calendar.slot_duration_s, config.gate_closure_lead_s, self.calendar.gate_closure_lead_s)

    def _first_to_report(self, calendar: MarketCalendar, now_s: float) -> int:
        """The first upstream slot to report on taking (or retaking) our seat: the earliest with a gate
        already closed that has not ended and holds a booked trade (after a restart), else the next
        one to be submitted; slots we never traded in are the upstream's to settle without us."""
        slot_s, first_open_s = calendar.slot_start_s(now_s), calendar.first_open_slot_s(now_s)
        while slot_s < first_open_s and self._latest_trade(slot_s) is None:
            slot_s += calendar.slot_duration_s
        return slot_s

    def _stop(self, problem: str) -> None:
        if self.market is not None or problem != self.problem:
            logger.error("not nested in %s: %s; the community trades with its retailer only",
                         self.topics.community if self.topics else "?", problem)
        self.market, self.problem = None, problem

    def _take_allocation(self, raw: bytes, now_s: float) -> None:
        if not raw:
            return  # a retained allocation cleared by the upstream: nothing to book
        try:
            allocation = decode(raw, (Allocation,)).payload
        except ProtocolError as error:
            self.received["allocation invalid"] += 1
            self._once(f"allocation-{error.status}", logging.WARNING, "upstream allocation refused: %s", error)
            return
        trade = UpstreamTrade.from_allocation(allocation)
        if self._latest_trade(trade.slot_start_s) == trade:
            self.received["allocation repeated"] += 1  # retained, or re-published after a restart
            return
        self.received["allocation"] += 1
        body = trade.to_body() | {"upstream": self.topics.community if self.topics else "",
                                  "mechanism": allocation.mechanism}
        self.state.ledger.append(RecordKind.UPSTREAM_ALLOCATION, body, slot_start_s=trade.slot_start_s,
                                 home=UPSTREAM_PARTICIPANT, at_s=now_s)
        mapping = self.mapping
        cleared = [slot_s for slot_s in mapping.our_slots(trade.slot_start_s) if self.state.slot(slot_s) is not None] \
            if mapping is not None and trade.duration_s == mapping.upstream_slot_s else []
        if cleared:
            logger.warning("upstream allocation for %s arrived after our slot(s) %s cleared: the community's part "
                           "of it is reported upstream as not taken", trade.slot_start_s, cleared)
        logger.info("upstream allocation for %s: bought %d Wh, sold %d Wh, net cost %d n¤", trade.slot_start_s,
                    trade.bought_wh, trade.sold_wh, trade.net_cost_nano)

    def _take_ack(self, raw: bytes) -> None:
        try:
            ack = decode(raw, (Ack,)).payload
        except ProtocolError:
            return
        self.last_ack = ack
        self.received[f"ack {ack.status}"] += 1
        if ack.status is not ReceptionStatus.OK:
            self._once(f"ack-{ack.status}-{ack.diagnostic_label}", logging.WARNING,
                       "the upstream market refused our %s: %s %s", ack.acked_message_type, ack.status,
                       ack.diagnostic_label)
        for slot in ack.slots:
            if slot.status is OrderStatus.REJECTED:
                self._once(f"slot-{slot.reason}", logging.WARNING, "the upstream market refused our bid for %s: %s",
                           slot.slot_start.isoformat(), slot.reason)

    # -- outgoing -----------------------------------------------------------------------------

    def _submission_due(self, now_s: float) -> list[Outgoing]:
        calendar, market, section = self.upstream_calendar, self.market, self.section
        assert calendar is not None and market is not None and section is not None and self.mapping is not None
        slot_s = calendar.first_open_slot_s(now_s)
        if slot_s in self.submitted or now_s < calendar.submit_at_s(slot_s, section.submit_lead_s):
            return []
        quantities = upstream_quantities(self.mapping, slot_s, self._curves_of, market.price_grid_micro, self.band)
        bid = residual_bid(slot_s, market.slot_duration_s, market.price_grid_micro, quantities, market.bid_format)
        self._last_sequence = max(self._last_sequence + 1, int(now_s * 1000))
        self.submitted[slot_s] = self._last_sequence
        while len(self.submitted) > SUBMISSIONS_REMEMBERED:
            del self.submitted[min(self.submitted)]
        logger.info("residual for upstream slot %s submitted: %+d Wh at %d µ¤/kWh … %+d Wh at %d µ¤/kWh", slot_s,
                    quantities[0], market.price_grid_micro[0], quantities[-1], market.price_grid_micro[-1])
        return [self._out(HomeTopic.ORDERS, OrderSubmission(sequence=self._last_sequence, slots=[bid]), now_s)]

    def _reports_due(self, now_s: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        mapping = self.mapping
        assert mapping is not None
        duration_s = mapping.upstream_slot_s
        while self._next_report_s is not None and self._next_report_s + duration_s <= now_s:
            slot_s = self._next_report_s
            our_start_s = slot_s // mapping.our_slot_s * mapping.our_slot_s
            trades = self._trades(mapping.upstream_slots(our_start_s))
            net_wh = reported_exchange_wh(mapping, slot_s, self._position_of, trades)
            report = MeterReport(slot_start=utc(slot_s), duration_s=duration_s, import_wh=max(net_wh, 0),
                                 export_wh=max(-net_wh, 0))
            out.append(self._out(HomeTopic.METER, report, now_s))
            self._next_report_s += duration_s
        return out

    def _out(self, leaf: HomeTopic, payload: OrderSubmission | MeterReport, now_s: float) -> Outgoing:
        assert self.topics is not None
        return Outgoing(self.topics.home(self.member_id, leaf),
                        encode(payload, sender=self.member_id, sent_at=utc(round(now_s, 3))))

    # -- helpers ------------------------------------------------------------------------------

    def _curves_of(self, our_slot_s: int) -> list[Curve]:
        """The homes' bids of one of our slots read as our mechanism reads them: curves (orders as step
        curves on our grid) for the curve mechanisms; for the order mechanisms the exact step curve of
        the orders (curves converted to orders first), sampled on the upstream grid."""
        bids = self.state.bids_for_slot(our_slot_s)
        if self.reads_orders:
            grid = tuple(self.market.price_grid_micro) if self.market is not None else self.our_grid
            return [curve_from_orders(bid.home, orders_of(bid.home, bid.bid), grid, bid.sequence) for bid in bids]
        return [curve_of(bid.home, bid.bid, self.our_grid, bid.sequence) for bid in bids]

    def _trades(self, upstream_slots: list[int]) -> dict[int, UpstreamTrade]:
        """The latest booked upstream allocation of each slot (of the current slot length)."""
        trades = {}
        for slot_s in upstream_slots:
            trade = self._latest_trade(slot_s)
            if trade is not None and (self.mapping is None or trade.duration_s == self.mapping.upstream_slot_s):
                trades[slot_s] = trade
        return trades

    def _latest_trade(self, upstream_slot_s: int) -> UpstreamTrade | None:
        records = self.state.ledger.records(kind=RecordKind.UPSTREAM_ALLOCATION, slot_start_s=upstream_slot_s)
        return UpstreamTrade.from_body(records[-1].body) if records else None

    def _position_of(self, our_slot_s: int) -> int:
        """The community's net import from upstream as cleared in our slot: what the participant sold."""
        records = self.state.ledger.records(kind=RecordKind.ALLOCATION, slot_start_s=our_slot_s,
                                            home=UPSTREAM_PARTICIPANT)
        return records[-1].body["sold_wh"] - records[-1].body["bought_wh"] if records else 0

    def _once(self, key: str, level: int, message: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            logger.log(level, message, *args)
