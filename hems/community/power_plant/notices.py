"""The power plant's messages and ledger bodies, built from a request's state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hems.community.flexibility.delivery import DeliveryReport
from hems.community.flexibility.model import FlexibilityRequest, HomeFlexibility
from hems.community.flexibility.offers import aggregate_offers
from hems.community.flexibility.revenue import HomeSettlement, Settlement
from hems.community.power_plant.request import ActiveRequest, HomeShare
from hems.community.records import utc
from hems.protocol.power_plant import (
    MAX_OFFERS,
    Commitment,
    CommittedSlot,
    FlexibilityOffers,
    FlexibilityResponse,
    OfferDirection,
    OfferItem,
    PowerPlantNotice,
    RequestedSlot,
    RequestState,
    ResponseSlot,
)


def refused(request_id: str, reason: str) -> FlexibilityResponse:
    return FlexibilityResponse(request_id=request_id, state=RequestState.REFUSED, reason=reason[:200])


def notice(active: ActiveRequest, state: RequestState) -> PowerPlantNotice:
    """The public notice on ``vpp/request``: the request as the operator stated it, nobody's share."""
    request = active.request
    slots = [RequestedSlot(slot_start=utc(start), duration_s=active.duration_s, delta_w=delta_w)
             for start, delta_w in zip(request.slot_starts_s, active.delta_w)]
    return PowerPlantNotice(request_id=request.request_id, slots=slots, price_micro=request.price_micro, state=state)


def commitment(active: ActiveRequest, home: str, share: HomeShare) -> Commitment:
    """One home's share as its private commitment message."""
    baselines = {flex.slot_start_s: flex.baseline_wh for flex in active.flexibilities if flex.home == home}
    cost = sum(item.cost_nano for slot in active.dispatch.slots for item in slot.commitments
               if item.home == home and slot.slot_start_s in share.share)
    answer_by = active.answer_by_s
    return Commitment(
        request_id=active.request_id, revision=share.revision, state=share.state,
        slots=[CommittedSlot(slot_start=utc(start), duration_s=active.duration_s, baseline_wh=baselines[start],
                             change_wh=change) for start, change in sorted(share.share.items())],
        compensation_nano=cost, answer_by=None if answer_by is None else utc(round(answer_by, 3)))


def dispatched(active: ActiveRequest) -> FlexibilityResponse:
    """The operator's answer once the shares are agreed."""
    dispatch = active.dispatch
    slots = [ResponseSlot(slot_start=utc(slot.slot_start_s), duration_s=active.duration_s,
                          requested_wh=slot.requested_wh, committed_wh=slot.committed_wh, homes=len(slot.commitments))
             for slot in dispatch.slots]
    unmet = dispatch.unmet_wh
    return FlexibilityResponse(request_id=active.request_id, state=RequestState.DISPATCHED, slots=slots,
                               reason=f"{unmet} Wh could not be committed" if unmet else "")


def settled(active: ActiveRequest, delivery: DeliveryReport, settlement: Settlement) -> FlexibilityResponse:
    """The operator's answer after delivery was measured."""
    slots = [ResponseSlot(slot_start=utc(slot.slot_start_s), duration_s=active.duration_s,
                          requested_wh=slot.requested_wh, committed_wh=slot.committed_wh,
                          homes=len(slot.commitments), delivered_wh=delivery.slot(slot.slot_start_s).delivered_wh)
             for slot in active.dispatch.slots]
    return FlexibilityResponse(request_id=active.request_id, state=RequestState.SETTLED, slots=slots,
                               revenue_nano=settlement.revenue_nano, penalty_nano=settlement.penalty_nano)


def offers(flexibilities: Iterable[HomeFlexibility], minimum_offer_wh: int, duration_s: int,
           opted_out: frozenset[str]) -> FlexibilityOffers:
    """The pooled flexibility as offers of at least ``minimum_offer_wh``."""
    pooled = aggregate_offers(flexibilities, minimum_offer_wh=max(minimum_offer_wh, 1), slot_duration_s=duration_s,
                              opted_out=opted_out)
    return FlexibilityOffers(offers=[
        OfferItem(slot_start=utc(item.slot_start_s), duration_s=duration_s, direction=OfferDirection(item.direction),
                  energy_wh=item.energy_wh, power_w=item.power_w, price_micro=item.price_micro)
        for item in pooled.offers][:MAX_OFFERS])


def home_settlement_body(request: FlexibilityRequest, delivery: DeliveryReport, home: HomeSettlement,
                         baseline_source: str) -> dict[str, Any]:
    """A home's FLEXIBILITY_SETTLEMENT record (what its statement shows)."""
    committed = sum(abs(item.committed_wh) for slot in delivery.slots for item in slot.homes if item.home == home.home)
    return {"request_id": request.request_id, "committed_wh": committed, "delivered_wh": home.delivered_wh,
            "revenue_nano": home.revenue_nano, "penalty_nano": home.penalty_nano, "baseline": baseline_source}


def settlement_body(settlement: Settlement, delivery: DeliveryReport) -> dict[str, Any]:
    """The request's summary FLEXIBILITY_SETTLEMENT record."""
    return {"request_id": settlement.request_id, "policy": str(settlement.policy),
            "revenue_nano": settlement.revenue_nano, "penalty_nano": settlement.penalty_nano,
            "community_nano": settlement.community_nano,
            "slots": [{"slot_start_s": slot.slot_start_s, "requested_wh": slot.requested_wh,
                       "delivered_wh": slot.delivered_wh, "shortfall_wh": slot.shortfall_wh} for slot in delivery.slots],
            "missing_meters": [[slot, home] for slot, home in delivery.missing_meters]}
