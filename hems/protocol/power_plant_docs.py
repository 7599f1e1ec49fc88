"""The power plant's and the grid operator's part of docs/protocol.md: routes, examples and the meaning
of the enumerations (hems/protocol/docs.py merges them with the market's)."""

from __future__ import annotations

from datetime import datetime, timezone

from hems.protocol import power_plant as plant
from hems.protocol.messages import Payload

SLOT_1 = datetime(2026, 11, 21, 17, 0, tzinfo=timezone.utc)
SLOT_2 = datetime(2026, 11, 21, 17, 15, tzinfo=timezone.utc)
ANSWER_BY = datetime(2026, 11, 21, 16, 30, tzinfo=timezone.utc)

#: message type -> (topic key, direction, retained, example sender, carries correlation_id)
ROUTES: dict[str, tuple[str, str, bool, str, bool]] = {
    "grid_limits": ("grid/limits", "GO → CM", True, "grid-operator", False),
    "flexibility_request": ("grid/request", "GO → CM", False, "grid-operator", False),
    "flexibility_response": ("grid/response", "CM → GO", False, "manager", True),
    "flexibility_offers": ("grid/offers", "CM → GO", True, "manager", False),
    "vpp_request": ("vpp/request", "CM → all", False, "manager", False),
    "vpp_commitment": ("home/<home>/commitment", "CM → home (private)", False, "manager", False),
    "vpp_answer": ("home/<home>/commitment_answer", "home → CM", False, "home-01", False),
}

#: Topics that carry a message type routed elsewhere: the operator's acks are the market's ``ack``.
SHARED_TOPICS = {"grid/ack": "CM → GO: `ack` of a `grid_limits` publication, or of a message it could not read"}

ENUM_NOTES: dict[str, dict[str, str]] = {
    "RequestState": {"REFUSED": "Not taken; the reason says why.",
                     "DISPATCHED": "Split among the homes; committed volumes per slot.",
                     "SETTLED": "Delivery measured, money shared."},
    "OfferDirection": {"up": "More import into the community.", "down": "Less import into the community."},
    "CommitmentState": {"PROPOSED": "Answer by answer_by.", "CONFIRMED": "Binding: the home delivers it.",
                        "CANCELLED": "Nothing is asked of the home any more."},
}

RULES: dict[str, tuple[str, ...]] = {
    "GridLimitsPublication": ("slot_start strictly ascending.",),
    "FlexibilityCall": ("slot_start strictly ascending.",),
    "RequestedSlot": ("delta_w is not 0.",),
    "Commitment": ("slot_start strictly ascending.",),
}


def example_payloads() -> list[Payload]:
    """One realistic payload per message type of the power plant (fixed values)."""
    requested = [plant.RequestedSlot(slot_start=SLOT_1, duration_s=900, delta_w=-20_000),
                 plant.RequestedSlot(slot_start=SLOT_2, duration_s=900, delta_w=-20_000)]
    return [
        plant.GridLimitsPublication(slots=[
            plant.LimitSlot(slot_start=SLOT_1, duration_s=900, import_limit_w=60_000, export_limit_w=40_000,
                            locational_fee_micro=15_000)]),
        plant.FlexibilityCall(request_id="peak-2026-11-21", slots=requested, price_micro=250_000,
                              penalty_micro=100_000),
        plant.FlexibilityResponse(request_id="peak-2026-11-21", state=plant.RequestState.DISPATCHED, slots=[
            plant.ResponseSlot(slot_start=SLOT_1, duration_s=900, requested_wh=-5000, committed_wh=-4600, homes=7),
            plant.ResponseSlot(slot_start=SLOT_2, duration_s=900, requested_wh=-5000, committed_wh=-5000, homes=8)]),
        plant.FlexibilityOffers(offers=[
            plant.OfferItem(slot_start=SLOT_1, duration_s=900, direction=plant.OfferDirection.DOWN, energy_wh=2500,
                            power_w=10_000, price_micro=55_000)]),
        plant.PowerPlantNotice(request_id="peak-2026-11-21", slots=requested, price_micro=250_000,
                               state=plant.RequestState.DISPATCHED),
        plant.Commitment(request_id="peak-2026-11-21", revision=1, state=plant.CommitmentState.PROPOSED, slots=[
            plant.CommittedSlot(slot_start=SLOT_1, duration_s=900, baseline_wh=900, change_wh=-700)],
            compensation_nano=700 * 55_000, answer_by=ANSWER_BY),
        plant.CommitmentAnswer(request_id="peak-2026-11-21", revision=1, accepted=True),
    ]
