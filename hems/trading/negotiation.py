"""The home's side of exchange ADMM: answer a round with the MPC (hems.community.negotiation).

Each round the home re-plans with the round's proximity term on its net import in the negotiated
slots (:class:`hems.mpc.inputs.Negotiation`) and answers with that net import. The planner is the
home's own, built once: a round changes only parameter values (the target; the weight once per
negotiation), so each answer is a warm OSQP re-solve.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from hems.clock import Clock, holding
from hems.mpc.inputs import Negotiation, PlanInputs
from hems.mpc.planner import Planner
from hems.protocol.codec import encode
from hems.protocol.messages import NegotiationAnswer, NegotiationSignal, NegotiationState
from hems.trading.bids import slot_indices

logger = logging.getLogger(__name__)


class NegotiationMismatch(ValueError):
    """The negotiated slots do not fit the planner's horizon or step."""


class MpcNegotiator:
    """A :class:`~hems.community.negotiation.homes.NegotiatingHome` backed by a home's planner.

    ``inputs`` is the plan's input of this negotiation (forecasts, SoC, committed trades);
    ``first_slot`` is the horizon index of the first negotiated slot and ``n_slots`` their number.
    The market slot must equal the planner's step (the demo's and the default configuration's 15
    minutes); a negotiation on a coarser market would need the term on sums of steps."""

    def __init__(self, home: str, planner: Planner, inputs: PlanInputs, first_slot: int, n_slots: int,
                 slot_s: int) -> None:
        if slot_s != planner.step_s:
            raise NegotiationMismatch(f"market slot {slot_s} s differs from the planner's step {planner.step_s} s")
        if first_slot < 0 or first_slot + n_slots > planner.n_steps:
            raise NegotiationMismatch(f"slots {first_slot}..{first_slot + n_slots - 1} are outside the "
                                      f"planner's {planner.n_steps}-step horizon")
        self.home = home
        self.planner = planner
        self.inputs = inputs
        self.first_slot = first_slot
        self.n_slots = n_slots

    def best_response(self, target_wh: np.ndarray, rho_per_kwh2: float) -> np.ndarray:
        """Re-plan with the round's term; the net import (Wh) per negotiated slot."""
        negotiation = Negotiation(self.first_slot, tuple(np.asarray(target_wh, dtype=float)), rho_per_kwh2)
        plan = self.planner.plan(dataclasses.replace(self.inputs, negotiation=negotiation))
        hours = self.planner.step_s / 3600.0
        steps = plan.steps[self.first_slot:self.first_slot + self.n_slots]
        return np.array([(step.grid_import_w - step.grid_export_w) * hours for step in steps])


def answer_round(planner: Planner, *, home: str, inputs: PlanInputs, first_slot: int, n_slots: int, slot_s: int,
                 target_wh: list[float], rho_per_kwh2: float) -> np.ndarray:
    """One round's answer, computed with the home's planner (blocking: run it in a worker thread)."""
    negotiator = MpcNegotiator(home, planner, inputs, first_slot, n_slots, slot_s)
    return negotiator.best_response(np.asarray(target_wh, dtype=float), rho_per_kwh2)


@dataclass
class _Open:
    negotiation_id: str
    last_answer_wh: list[float]
    answered_round: int = -1


class NegotiationResponder:
    """Answers the manager's negotiation rounds (``market/signal``) with the home's MPC.

    A round is answered once; a signal for an older round, or one that arrives while an answer is
    being computed for a newer one, is stale and dropped. Simulated time is held while the answer is
    computed (as for bids). Without a plan, or when the negotiated slots leave the plan's horizon,
    the home does not answer: the manager keeps its last position."""

    def __init__(self, home: str, clock: Clock, slot_s: int, inputs: Callable[[], PlanInputs | None],
                 run_with_planner: Callable[[Callable[[Planner], np.ndarray]], Awaitable[np.ndarray]],
                 publish: Callable[[bytes], Awaitable[bool]]) -> None:
        self.home = home
        self.clock = clock
        self.slot_s = slot_s
        self._inputs = inputs
        self._run_with_planner = run_with_planner
        self._publish = publish
        self._open: _Open | None = None
        self.answers = 0
        self.skipped = 0

    async def on_signal(self, signal: NegotiationSignal) -> None:
        """Answer ``signal`` if it is an open round this home has not answered yet."""
        if signal.state is not NegotiationState.ROUND:
            if self._open is not None and self._open.negotiation_id == signal.negotiation_id:
                self._open = None
            return
        n_slots = len(signal.mean_wh)
        if self._open is None or self._open.negotiation_id != signal.negotiation_id:
            self._open = _Open(signal.negotiation_id, [0.0] * n_slots)
        current = self._open
        if signal.round <= current.answered_round or signal.duration_s != self.slot_s:
            return
        inputs = self._inputs()
        first = self._first_slot(inputs, signal, n_slots)
        if inputs is None or first is None:
            self.skipped += 1
            logger.debug("negotiation %s round %d: no plan covering the slots; not answered",
                         signal.negotiation_id, signal.round)
            return
        current.answered_round = signal.round
        with holding(self.clock):
            answer = await self._run_with_planner(functools.partial(
                answer_round, home=self.home, inputs=inputs, first_slot=first, n_slots=n_slots, slot_s=self.slot_s,
                target_wh=signal.target_wh(current.last_answer_wh), rho_per_kwh2=signal.rho_micro_per_kwh2 / 1e6))
            if self._open is not current or current.answered_round != signal.round:
                return  # a newer round or negotiation came in meanwhile
            current.last_answer_wh = [float(value) for value in answer]
            payload = NegotiationAnswer(negotiation_id=signal.negotiation_id, round=signal.round,
                                        net_import_wh=[int(round(value)) for value in answer])
            message = encode(payload, sender=self.home, sent_at=datetime.fromtimestamp(self.clock.now_s(), timezone.utc))
            if await self._publish(message):
                self.answers += 1

    def _first_slot(self, inputs: PlanInputs | None, signal: NegotiationSignal, n_slots: int) -> int | None:
        if inputs is None:
            return None
        starts = [signal.slot_start.timestamp() + index * self.slot_s for index in range(n_slots)]
        indices = slot_indices(inputs, self.slot_s, starts)
        return indices[0] if len(indices) == n_slots else None
