"""The home's side of the federated power plant: answer the community's commitments, keep the
confirmed ones as bounds on net import for the MPC (issue 8, docs/flexibility.md).

The community manager sends each home its share of a grid operator's request privately on
``home/<home>/commitment`` (:class:`~hems.protocol.power_plant.Commitment`): per slot, net import
``baseline_wh + change_wh`` instead of ``baseline_wh``. The home decides, the community only asks:

- **PROPOSED**: the home answers on ``home/<home>/commitment_answer`` (accept or decline, naming
  the revision; ``correlation_id`` = the commitment's message id). It declines when its owner opted
  out (reason ``owner opt-out``, whatever else the commitment says), when a slot is not one of the
  market's slots, when a slot's target (mean power of ``|baseline + change|``) exceeds the site's
  import or export limit, or when a slot's change (mean power of ``|change|``) exceeds the home's
  own ``max_change_w``; otherwise it accepts.
- **CONFIRMED**: binding. Each slot becomes a bound on the home's net import, an upper bound
  (``change < 0``) or a lower bound (``change > 0``) at ``baseline + change``, and the planner is
  asked for a new plan. A confirmation the home would decline (its owner opted out since, say) is
  not kept, and the home says so with a declining answer.
- **CANCELLED**: the request's bounds are dropped (and the home re-plans).

A later revision of a request replaces the earlier one; an older revision, or the same revision
in an earlier state, is a late or repeated delivery (QoS 1) and changes nothing. A proposal does
not lift a confirmed earlier revision: that holds until the later one is confirmed or cancelled.
Bounds are forgotten a day after their slot. Several requests bounding the same slot: the
tightest cap and the highest floor hold (a floor above a cap gives way to it, see
:func:`hems.mpc.inputs.prepare`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from hems.clock import Clock
from hems.protocol.codec import Message, encode
from hems.protocol.power_plant import Commitment, CommitmentAnswer, CommitmentState, CommittedSlot, PowerPlantNotice
from hems.trading.reporting import MarketReporter

logger = logging.getLogger(__name__)

#: Bounds (and what is known of a request) are kept this long after their slot ended.
KEEP_AFTER_S = 86_400.0
OPT_OUT_REASON = "owner opt-out"
_STATE_ORDER = {CommitmentState.PROPOSED: 0, CommitmentState.CONFIRMED: 1, CommitmentState.CANCELLED: 2}


@dataclass(frozen=True)
class FlexibilityLimits:
    """What the home lets the power plant ask: ``[market.flexibility]`` and the site's limits
    (None: no limit of that kind)."""

    opt_out: bool = False
    max_change_w: float | None = None
    import_limit_w: float | None = None
    export_limit_w: float | None = None


@dataclass(frozen=True)
class Decision:
    """Accept or decline, and why declined."""

    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class SlotTarget:
    """One confirmed slot: net import at most (``change_wh < 0``) or at least (``> 0``) ``target_wh``."""

    slot_start_s: float
    duration_s: int
    target_wh: int  # baseline + change; + import, - export
    change_wh: int

    @property
    def end_s(self) -> float:
        """When the slot ends."""
        return self.slot_start_s + self.duration_s


def _mean_w(energy_wh: int, duration_s: int) -> float:
    return abs(energy_wh) * 3600.0 / duration_s


def decide(commitment: Commitment, limits: FlexibilityLimits, slot_s: int) -> Decision:
    """Whether the home takes ``commitment`` (see the module docstring for the rules, in order)."""
    if limits.opt_out:
        return Decision(False, OPT_OUT_REASON)
    for slot in commitment.slots:
        reason = _slot_problem(slot, limits, slot_s)
        if reason:
            return Decision(False, reason)
    return Decision(True)


def _slot_problem(slot: CommittedSlot, limits: FlexibilityLimits, slot_s: int) -> str:
    """Why the home cannot take ``slot`` ('' when it can)."""
    start_s = slot.slot_start.timestamp()
    when = slot.slot_start.astimezone(timezone.utc).isoformat()
    if slot.duration_s != slot_s or not start_s.is_integer() or int(start_s) % slot_s:
        return f"slot {when} ({slot.duration_s} s) is not a market slot of {slot_s} s"
    target_wh = slot.baseline_wh + slot.change_wh
    target_w = _mean_w(target_wh, slot.duration_s)
    if target_wh > 0 and limits.import_limit_w is not None and target_w > limits.import_limit_w:
        return f"slot {when}: importing {target_w:.0f} W exceeds the import limit of {limits.import_limit_w:.0f} W"
    if target_wh < 0 and limits.export_limit_w is not None and target_w > limits.export_limit_w:
        return f"slot {when}: exporting {target_w:.0f} W exceeds the export limit of {limits.export_limit_w:.0f} W"
    change_w = _mean_w(slot.change_wh, slot.duration_s)
    if limits.max_change_w is not None and change_w > limits.max_change_w:
        return f"slot {when}: a change of {change_w:.0f} W exceeds the owner's limit of {limits.max_change_w:.0f} W"
    return ""


def slot_targets(commitment: Commitment) -> tuple[SlotTarget, ...]:
    """The bounds a confirmed commitment sets (slots without a change set none)."""
    return tuple(SlotTarget(slot.slot_start.timestamp(), slot.duration_s, slot.baseline_wh + slot.change_wh,
                            slot.change_wh) for slot in commitment.slots if slot.change_wh != 0)


@dataclass(frozen=True)
class _Seen:
    """The latest revision and state of a request the home acted on."""

    revision: int
    state: CommitmentState
    until_s: float  # the end of its last slot (or when it arrived): forgotten a day after


@dataclass
class PowerPlantCounts:
    """What the responder did since it started."""

    proposals: int = 0
    accepted: int = 0
    declined: int = 0
    confirmed: int = 0
    cancelled: int = 0
    ignored: int = 0  # late or repeated revisions
    notices: int = 0  # vpp/request notices seen


class PowerPlantResponder:
    """Answers one home's commitments and keeps the confirmed ones; see the module docstring.

    ``publish(payload)`` sends an answer (True once the broker has it); ``request_replan(reason)``
    asks the planning service for a new plan."""

    def __init__(self, home_id: str, limits: FlexibilityLimits, slot_s: int, clock: Clock,
                 publish: Callable[[bytes], Awaitable[bool]], request_replan: Callable[[str], None],
                 report: MarketReporter) -> None:
        self.home_id = home_id
        self.limits = limits
        self.slot_s = slot_s
        self.clock = clock
        self._publish = publish
        self._request_replan = request_replan
        self.report = report
        self.counts = PowerPlantCounts()
        self.last_notice: PowerPlantNotice | None = None
        self._seen: dict[str, _Seen] = {}
        self._answered: set[tuple[str, int]] = set()  # (request, revision) answered to the broker's satisfaction
        self._confirmed: dict[str, tuple[int, tuple[SlotTarget, ...]]] = {}

    # -- incoming -----------------------------------------------------------------------------

    async def on_commitment(self, message: Message[Commitment]) -> None:
        """Act on one decoded commitment (the agent has validated it)."""
        commitment = message.payload
        now_s = self.clock.now_s()
        self.prune(now_s)
        if self._stale(commitment):
            self.counts.ignored += 1
            logger.debug("power plant: %s revision %d (%s) is late or repeated; ignored", commitment.request_id,
                         commitment.revision, commitment.state)
            return
        seen = self._seen.get(commitment.request_id)
        repeated = seen is not None and (seen.revision, seen.state) == (commitment.revision, commitment.state)
        ends = [slot.slot_start.timestamp() + slot.duration_s for slot in commitment.slots]
        self._seen[commitment.request_id] = _Seen(commitment.revision, commitment.state, max(ends, default=now_s))
        if commitment.state is CommitmentState.PROPOSED:
            if not repeated:  # a repetition is answered again, not counted again
                self.counts.proposals += 1
                self.report.commitment("proposed")
            await self._answer(message, decide(commitment, self.limits, self.slot_s), count=not repeated)
        elif commitment.state is CommitmentState.CONFIRMED:
            await self._confirm(message)
        else:
            self.counts.cancelled += 1
            self.report.commitment("cancelled")
            logger.info("power plant: request %s cancelled (revision %d)", commitment.request_id, commitment.revision)
            self._drop(commitment.request_id, "commitment cancelled")

    def on_notice(self, message: Message[PowerPlantNotice]) -> None:
        """A public notice of a request the community took: nothing to do but know it."""
        self.counts.notices += 1
        self.last_notice = message.payload
        logger.debug("power plant: request %s is %s", message.payload.request_id, message.payload.state)

    # -- what the planner gets ----------------------------------------------------------------

    def bounds(self, start: datetime, n_steps: int, step_s: int) -> tuple[list[float] | None, list[float] | None]:
        """Per-slot (cap, floor) on net import in W aligned with a horizon (None: no commitment in it;
        -inf: no floor in that slot). The cap is never above the site's import limit (inf in a slot
        without a cap when the limit is not known)."""
        first_s = start.timestamp()
        caps = [float("inf")] * n_steps
        floors = [float("-inf")] * n_steps
        found = False
        for _, targets in self._confirmed.values():
            for target in targets:
                index = (target.slot_start_s - first_s) / step_s
                if target.duration_s != step_s or not index.is_integer() or not 0 <= index < n_steps:
                    continue
                slot, power_w = int(index), target.target_wh * 3600.0 / step_s
                if target.change_wh < 0:
                    caps[slot] = min(caps[slot], power_w)
                else:
                    floors[slot] = max(floors[slot], power_w)
                found = True
        if not found:
            return None, None
        if self.limits.import_limit_w is not None:
            caps = [min(cap, float(self.limits.import_limit_w)) for cap in caps]
        return caps, floors

    def prune(self, now_s: float) -> None:
        """Forget slots (and requests) that ended more than :data:`KEEP_AFTER_S` ago."""
        horizon_s = now_s - KEEP_AFTER_S
        for request_id, (revision, targets) in list(self._confirmed.items()):
            kept = tuple(target for target in targets if target.end_s >= horizon_s)
            if kept:
                self._confirmed[request_id] = (revision, kept)
            else:
                del self._confirmed[request_id]
        for request_id in [r for r, seen in self._seen.items() if seen.until_s < horizon_s]:
            del self._seen[request_id]
            self._answered = {key for key in self._answered if key[0] != request_id}

    def describe(self) -> dict[str, object]:
        """Counts and the commitments in force, for the agent's describe()."""
        counts = self.counts
        return {"opt_out": self.limits.opt_out, "proposals": counts.proposals, "accepted": counts.accepted,
                "declined": counts.declined, "confirmed": counts.confirmed, "cancelled": counts.cancelled,
                "ignored": counts.ignored, "notices": counts.notices,
                "in_force": {request: revision for request, (revision, _) in self._confirmed.items()},
                "bounded_slots": len({t.slot_start_s for _, targets in self._confirmed.values() for t in targets})}

    # -- helpers ------------------------------------------------------------------------------

    def _stale(self, commitment: Commitment) -> bool:
        seen = self._seen.get(commitment.request_id)
        if seen is None or commitment.revision > seen.revision:
            return False
        if commitment.revision < seen.revision:
            return True
        if commitment.state is CommitmentState.PROPOSED and seen.state is CommitmentState.PROPOSED:
            # A repeated proposal whose answer did not reach the broker is answered again.
            return (commitment.request_id, commitment.revision) in self._answered
        return _STATE_ORDER[commitment.state] <= _STATE_ORDER[seen.state]

    async def _confirm(self, message: Message[Commitment]) -> None:
        commitment = message.payload
        decision = decide(commitment, self.limits, self.slot_s)
        if not decision.accepted:
            # Confirmed without the home's yes, or the owner opted out since: the home decides.
            self.report.once("confirmed-not-kept", logging.WARNING,
                             "power plant: confirmed request %s revision %d not kept: %s", commitment.request_id,
                             commitment.revision, decision.reason)
            self._drop(commitment.request_id, "commitment not kept")
            await self._answer(message, decision, count=True)
            return
        self.counts.confirmed += 1
        self.report.commitment("confirmed")
        self._confirmed[commitment.request_id] = (commitment.revision, slot_targets(commitment))
        logger.info("power plant: request %s revision %d confirmed: %d slot(s) bounded", commitment.request_id,
                    commitment.revision, len(commitment.slots))
        self._request_replan("commitment confirmed")

    def _drop(self, request_id: str, reason: str) -> None:
        if self._confirmed.pop(request_id, None) is not None:
            self._request_replan(reason)

    async def _answer(self, message: Message[Commitment], decision: Decision, *, count: bool) -> None:
        commitment = message.payload
        answer = CommitmentAnswer(request_id=commitment.request_id, revision=commitment.revision,
                                  accepted=decision.accepted, reason=decision.reason)
        if count:
            event = "accepted" if decision.accepted else "declined"
            setattr(self.counts, event, getattr(self.counts, event) + 1)
            self.report.commitment(event)
        payload = encode(answer, sender=self.home_id, sent_at=_utc(self.clock.now_s()),
                         correlation_id=message.message_id)
        if await self._publish(payload):
            self._answered.add((commitment.request_id, commitment.revision))
            self.report.message_out(CommitmentAnswer.MESSAGE_TYPE)
            logger.info("power plant: request %s revision %d %s%s", commitment.request_id, commitment.revision,
                        "accepted" if decision.accepted else "declined",
                        f" ({decision.reason})" if decision.reason else "")
        else:
            self.report.once("answer-not-sent", logging.WARNING, "power plant: the answer to request %s revision "
                             "%d was not sent (broker unreachable)", commitment.request_id, commitment.revision)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
