"""Protocol v1 messages of the federated power plant and the grid operator (issue 8, docs/flexibility.md).

Two parties talk to the community manager here:

- the **grid operator** (or an aggregator; ``hems grid`` simulates one) under ``grid/``: its day-ahead
  limits and locational fees (``grid_limits``), its flexibility requests (``flexibility_request``), and
  the manager's answers (``flexibility_response``) and standing offers (``flexibility_offers``);
- the **homes**: the public notice of a request on ``vpp/request``, each home's private commitment on
  ``home/<home>/commitment`` and its answer on ``home/<home>/commitment_answer``.

Energy is signed as everywhere: + more import into the community (or the home), − less. A home's
commitment is a change of its net import from the baseline it declared (the value of its bid curve at
the reference price); the home may decline, and an owner's opt-out always wins.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from hems.protocol.envelope import Identifier, UtcInstant, WireModel
from hems.protocol.messages import (
    MAX_ENERGY_WH,
    MAX_SLOTS_PER_MESSAGE,
    Payload,
    PriceMicro,
    SignedEnergyWh,
    SlotDuration,
)

#: 10 MW: far above any community's connection, small enough that W × s stays exact.
MAX_POWER_W = 10_000_000
MAX_OFFERS = 4 * MAX_SLOTS_PER_MESSAGE
MAX_REASON = 200

PowerW = Annotated[int, Field(ge=0, le=MAX_POWER_W)]
SignedPowerW = Annotated[int, Field(ge=-MAX_POWER_W, le=MAX_POWER_W)]


def _ascending_distinct(starts: list, what: str) -> None:
    if any(later <= earlier for earlier, later in zip(starts, starts[1:])):
        raise ValueError(f"{what}: slot_start must be strictly ascending")


class LimitSlot(WireModel):
    """The operator's word on one slot: the connection's import and export limits (None: no limit)
    and the locational fee per kWh on home-to-home trades."""

    slot_start: UtcInstant = Field(description="The slot's UTC start.")
    duration_s: SlotDuration = Field(description="The slot's length.")
    import_limit_w: PowerW | None = Field(None, description="Most power into the community; null: no limit.")
    export_limit_w: PowerW | None = Field(None, description="Most power out of the community; null: no limit.")
    locational_fee_micro: PriceMicro = Field(0, description="Fee per kWh traded home to home, paid by the buyer.")


class GridLimitsPublication(Payload):
    """``grid/limits`` (retained, operator → CM): per-slot limits and fees, published ahead of the day.
    A new publication replaces the slots it names; slots it does not name keep what was said."""

    MESSAGE_TYPE: ClassVar[str] = "grid_limits"

    slots: Annotated[list[LimitSlot], Field(min_length=1, max_length=MAX_SLOTS_PER_MESSAGE,
                                            description="The slots the operator speaks about, ascending.")]

    @model_validator(mode="after")
    def _ascending(self) -> GridLimitsPublication:
        _ascending_distinct([slot.slot_start for slot in self.slots], "slots")
        return self


class RequestedSlot(WireModel):
    """One slot of a request: change the community's net import by ``delta_w`` (+ more, − less)."""

    slot_start: UtcInstant = Field(description="The slot's UTC start.")
    duration_s: SlotDuration = Field(description="The slot's length.")
    delta_w: SignedPowerW = Field(description="Change of the community's mean net import: + more, − less.")

    @model_validator(mode="after")
    def _not_zero(self) -> RequestedSlot:
        if self.delta_w == 0:
            raise ValueError("delta_w must not be 0 (leave the slot out instead)")
        return self


class FlexibilityCall(Payload):
    """``grid/request`` (operator → CM): change the community's import over the given slots, paid
    ``price_micro`` per kWh delivered, with ``penalty_micro`` per kWh requested and not delivered."""

    MESSAGE_TYPE: ClassVar[str] = "flexibility_request"

    request_id: Identifier = Field(description="The operator's name for the request; unique per community.")
    slots: Annotated[list[RequestedSlot], Field(min_length=1, max_length=MAX_SLOTS_PER_MESSAGE,
                                                description="The requested change per slot, ascending.")]
    price_micro: PriceMicro = Field(description="Paid per kWh delivered.")
    penalty_micro: PriceMicro = Field(0, description="Owed per kWh requested and not delivered.")

    @model_validator(mode="after")
    def _ascending(self) -> FlexibilityCall:
        _ascending_distinct([slot.slot_start for slot in self.slots], "slots")
        return self


class RequestState(StrEnum):
    """Where a request stands, as the manager tells the operator."""

    REFUSED = "REFUSED"  # not taken at all (reason given)
    DISPATCHED = "DISPATCHED"  # split among the homes; committed volumes per slot
    SETTLED = "SETTLED"  # delivery measured and money shared


class ResponseSlot(WireModel):
    """One slot of a response: what was asked, committed by the homes and (once settled) delivered."""

    slot_start: UtcInstant = Field(description="The slot's UTC start.")
    duration_s: SlotDuration = Field(description="The slot's length.")
    requested_wh: SignedEnergyWh = Field(description="The request's change in this slot, as energy.")
    committed_wh: SignedEnergyWh = Field(description="What the homes committed to (confirmed commitments).")
    homes: Annotated[int, Field(ge=0, description="How many homes committed in this slot.")]
    delivered_wh: SignedEnergyWh | None = Field(None, description="Measured against the baselines; once settled.")


class FlexibilityResponse(Payload):
    """``grid/response`` (CM → operator; ``correlation_id`` = the request's message id)."""

    MESSAGE_TYPE: ClassVar[str] = "flexibility_response"

    request_id: Identifier = Field(description="The request answered.")
    state: RequestState = Field(description="Where the request stands.")
    reason: Annotated[str, Field(max_length=MAX_REASON, description="Why it was refused, or a remark.")] = ""
    slots: Annotated[list[ResponseSlot], Field(max_length=MAX_SLOTS_PER_MESSAGE,
                                               description="Per slot: requested, committed, delivered.")] = []
    revenue_nano: int | None = Field(None, ge=0, description="Owed by the operator for delivered energy.")
    penalty_nano: int | None = Field(None, ge=0, description="Owed by the community for the shortfall.")


class OfferDirection(StrEnum):
    UP = "up"  # more import into the community
    DOWN = "down"  # less import


class OfferItem(WireModel):
    """One block the community offers: ``energy_wh`` in one slot and direction at ``price_micro``."""

    slot_start: UtcInstant = Field(description="The slot's UTC start.")
    duration_s: SlotDuration = Field(description="The slot's length.")
    direction: OfferDirection = Field(description="More or less import into the community.")
    energy_wh: Annotated[int, Field(ge=1, le=MAX_ENERGY_WH, description="The block's energy in the slot.")]
    power_w: PowerW = Field(description="The block's mean power over the slot.")
    price_micro: PriceMicro = Field(description="The price per kWh the community asks for the block.")


class FlexibilityOffers(Payload):
    """``grid/offers`` (retained, CM → operator): the pooled flexibility of the open slots, as
    offers no smaller than the community's minimum offer size."""

    MESSAGE_TYPE: ClassVar[str] = "flexibility_offers"

    offers: Annotated[list[OfferItem], Field(max_length=MAX_OFFERS,
                                            description="Per slot and direction, cheapest first.")] = []


class PowerPlantNotice(Payload):
    """``vpp/request`` (CM → all): a request the community took, without anyone's share of it."""

    MESSAGE_TYPE: ClassVar[str] = "vpp_request"

    request_id: Identifier = Field(description="The operator's request id.")
    slots: Annotated[list[RequestedSlot], Field(min_length=1, max_length=MAX_SLOTS_PER_MESSAGE,
                                                description="The requested change per slot.")]
    price_micro: PriceMicro = Field(description="What the operator pays per kWh delivered.")
    state: RequestState = Field(description="Where the request stands.")


class CommitmentState(StrEnum):
    """A home's commitment as the manager sees it."""

    PROPOSED = "PROPOSED"  # answer with a commitment_answer before answer_by
    CONFIRMED = "CONFIRMED"  # binding: the home plans to deliver it
    CANCELLED = "CANCELLED"  # nothing is asked of the home any more (declined, re-dispatched or opted out)


class CommittedSlot(WireModel):
    """What one slot asks of the home: net import ``baseline_wh + change_wh`` instead of ``baseline_wh``."""

    slot_start: UtcInstant = Field(description="The slot's UTC start.")
    duration_s: SlotDuration = Field(description="The slot's length.")
    baseline_wh: SignedEnergyWh = Field(description="The home's declared net import without the request.")
    change_wh: SignedEnergyWh = Field(description="The change asked of the home: + more import, − less.")


class Commitment(Payload):
    """``home/<home>/commitment`` (CM → home, private): the home's share of a request.

    ``revision`` grows with every change (a re-dispatch); an answer names the revision it answers.
    ``compensation_nano`` is what the home is paid if it delivers it all (its own blocks' prices)."""

    MESSAGE_TYPE: ClassVar[str] = "vpp_commitment"

    request_id: Identifier = Field(description="The request this commitment is a share of.")
    revision: Annotated[int, Field(ge=1, description="Grows with every change of this home's share.")]
    state: CommitmentState = Field(description="Proposed, confirmed or cancelled.")
    slots: Annotated[list[CommittedSlot], Field(max_length=MAX_SLOTS_PER_MESSAGE,
                                                description="The slots with a change, ascending.")]
    compensation_nano: Annotated[int, Field(ge=0, description="Paid to the home if it delivers all of it.")]
    answer_by: UtcInstant | None = Field(None, description="A proposal not answered by then counts as declined.")

    @model_validator(mode="after")
    def _ascending(self) -> Commitment:
        _ascending_distinct([slot.slot_start for slot in self.slots], "slots")
        return self


class CommitmentAnswer(Payload):
    """``home/<home>/commitment_answer`` (home → CM): accept or decline one revision of a commitment."""

    MESSAGE_TYPE: ClassVar[str] = "vpp_answer"

    request_id: Identifier = Field(description="The request answered.")
    revision: Annotated[int, Field(ge=1, description="The commitment revision answered.")]
    accepted: bool = Field(description="True: the home will deliver it; false: declined.")
    reason: Annotated[str, Field(max_length=MAX_REASON, description="Why declined (owner's opt-out, limits).")] = ""


POWER_PLANT_PAYLOADS: tuple[type[Payload], ...] = (
    GridLimitsPublication, FlexibilityCall, FlexibilityResponse, FlexibilityOffers, PowerPlantNotice, Commitment,
    CommitmentAnswer)
