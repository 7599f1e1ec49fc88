"""One flexibility request as the manager follows it: the split, each home's share and answers, and the
ledger bodies that let a restarted manager carry on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from hems.community.flexibility.dispatch import Dispatch, HomeCommitment, SlotDispatch
from hems.community.flexibility.model import FlexibilityRequest, FlexibilitySegment, HomeFlexibility
from hems.protocol.power_plant import CommitmentState

#: A home's share of a request: slot start -> signed Wh (only slots with a change).
Share = dict[int, int]


@dataclass
class HomeShare:
    """What one home was asked and what it said."""

    revision: int = 0  # of the last commitment message sent
    share: Share = field(default_factory=dict)  # as in that message
    state: CommitmentState | None = None
    accepted_revision: int = 0
    declined: str = ""  # the home's reason, when it declined

    @property
    def pending(self) -> bool:
        """A proposal is out and not answered."""
        return self.state is CommitmentState.PROPOSED and self.accepted_revision != self.revision \
            and not self.declined


@dataclass
class ActiveRequest:
    """A request from the moment it is taken until it is settled."""

    request: FlexibilityRequest
    message_id: UUID  # the operator's message: the correlation_id of every response
    duration_s: int
    flexibilities: tuple[HomeFlexibility, ...]
    reference_micro: dict[int, int]  # slot -> the price the flexibility was read at
    dispatch: Dispatch  # the split being proposed, or the binding one once confirmed
    confirmed: bool = False
    rounds: int = 0
    answer_by_s: float | None = None
    shares: dict[str, HomeShare] = field(default_factory=dict)
    delta_w: tuple[int, ...] = ()  # the request's change per slot as the operator stated it (W)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def pending_homes(self) -> list[str]:
        return sorted(home for home, share in self.shares.items() if share.pending)

    def declared_baselines(self, slot_start_s: int) -> dict[str, int]:
        return {flex.home: flex.baseline_wh for flex in self.flexibilities if flex.slot_start_s == slot_start_s}


def share_of(dispatch: Dispatch, home: str) -> Share:
    """One home's share of a dispatch."""
    return {slot.slot_start_s: wh for slot in dispatch.slots if (wh := slot.committed_by(home))}


def homes_of(dispatch: Dispatch) -> set[str]:
    return {item.home for slot in dispatch.slots for item in slot.commitments}


def within(smaller: Share, larger: Share) -> bool:
    """Every change of ``smaller`` is one of ``larger`` or a part of it (same sign, no more): a
    home that accepted ``larger`` has nothing new to agree to."""
    return all(slot in larger and 0 < wh / larger[slot] and abs(wh) <= abs(larger[slot])
               for slot, wh in smaller.items())


def keep_only(dispatch: Dispatch, homes: set[str]) -> Dispatch:
    """The dispatch with only ``homes``' commitments; the others count as failed from now on."""
    dropped = homes_of(dispatch) - homes
    slots = []
    for slot in dispatch.slots:
        kept = tuple(item for item in slot.commitments if item.home in homes)
        committed = abs(sum(item.energy_wh for item in kept))
        slots.append(replace(slot, commitments=kept, unmet_wh=max(abs(slot.requested_wh) - committed, 0),
                             marginal_price_micro=slot.marginal_price_micro if kept else None))
    return replace(dispatch, slots=tuple(slots), failed_homes=dispatch.failed_homes | frozenset(dropped))


# -- ledger bodies ------------------------------------------------------------------------------


def request_body(active: ActiveRequest, opted_out: frozenset[str]) -> dict[str, Any]:
    """The FLEXIBILITY_REQUEST record: the request and everything its split was computed from."""
    request = active.request
    return {
        "request_id": request.request_id, "message_id": str(active.message_id), "duration_s": active.duration_s,
        "slot_starts_s": list(request.slot_starts_s), "delta_wh": list(request.delta_wh),
        "price_micro": request.price_micro, "penalty_micro": request.penalty_micro, "delta_w": list(active.delta_w),
        "reference_micro": {str(slot): price for slot, price in sorted(active.reference_micro.items())},
        "flexibilities": [_flexibility_body(flex) for flex in active.flexibilities],
        "opted_out": sorted(opted_out), "seed": active.dispatch.seed,
    }


def dispatch_body(dispatch: Dispatch) -> dict[str, Any]:
    """The FLEXIBILITY_DISPATCH record: the binding commitments."""
    return {
        "request_id": dispatch.request_id, "seed": dispatch.seed,
        "excluded": sorted(dispatch.excluded_homes), "failed": sorted(dispatch.failed_homes),
        "slots": [{"slot_start_s": slot.slot_start_s, "requested_wh": slot.requested_wh,
                   "marginal_price_micro": slot.marginal_price_micro, "unmet_wh": slot.unmet_wh,
                   "commitments": [[item.home, item.energy_wh, item.cost_nano] for item in slot.commitments]}
                  for slot in dispatch.slots],
    }


def restore(request_record: dict[str, Any], dispatch_record: dict[str, Any]) -> ActiveRequest:
    """A confirmed request from its two records (a manager restarting)."""
    request = FlexibilityRequest(request_record["request_id"], tuple(request_record["slot_starts_s"]),
                                 tuple(request_record["delta_wh"]), request_record["price_micro"],
                                 request_record["penalty_micro"])
    dispatch = Dispatch(
        dispatch_record["request_id"], dispatch_record["seed"],
        tuple(SlotDispatch(slot["slot_start_s"], slot["requested_wh"],
                           tuple(HomeCommitment(home, wh, cost) for home, wh, cost in slot["commitments"]),
                           slot["marginal_price_micro"], slot["unmet_wh"]) for slot in dispatch_record["slots"]),
        frozenset(dispatch_record["excluded"]), frozenset(dispatch_record["failed"]))
    active = ActiveRequest(request, UUID(request_record["message_id"]), request_record["duration_s"],
                           tuple(_flexibility_of(body) for body in request_record["flexibilities"]),
                           {int(slot): price for slot, price in request_record["reference_micro"].items()},
                           dispatch, confirmed=True, delta_w=tuple(request_record["delta_w"]))
    for home in homes_of(dispatch):
        active.shares[home] = HomeShare(share=share_of(dispatch, home), state=CommitmentState.CONFIRMED)
    return active


def _flexibility_body(flex: HomeFlexibility) -> dict[str, Any]:
    return {"home": flex.home, "slot_start_s": flex.slot_start_s, "baseline_wh": flex.baseline_wh,
            "up": [[item.energy_wh, item.price_micro] for item in flex.up],
            "down": [[item.energy_wh, item.price_micro] for item in flex.down]}


def _flexibility_of(body: dict[str, Any]) -> HomeFlexibility:
    return HomeFlexibility(body["home"], body["slot_start_s"], body["baseline_wh"],
                           tuple(FlexibilitySegment(wh, price) for wh, price in body["up"]),
                           tuple(FlexibilitySegment(wh, price) for wh, price in body["down"]))
