"""The home's side of exchange ADMM: answer a round with the MPC (hems.community.negotiation).

Each round the home re-plans with the round's proximity term on its net import in the negotiated
slots (:class:`hems.mpc.inputs.Negotiation`) and answers with that net import. The planner is the
home's own, built once: a round changes only parameter values (the target; the weight once per
negotiation), so each answer is a warm OSQP re-solve.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hems.mpc.inputs import Negotiation, PlanInputs
from hems.mpc.plan import Plan
from hems.mpc.planner import Planner


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
        self.last_plan: Plan | None = None

    def best_response(self, target_wh: np.ndarray, rho_per_kwh2: float) -> np.ndarray:
        """Re-plan with the round's term; the net import (Wh) per negotiated slot."""
        negotiation = Negotiation(self.first_slot, tuple(np.asarray(target_wh, dtype=float)), rho_per_kwh2)
        plan = self.planner.plan(dataclasses.replace(self.inputs, negotiation=negotiation))
        self.last_plan = plan
        hours = self.planner.step_s / 3600.0
        steps = plan.steps[self.first_slot:self.first_slot + self.n_slots]
        return np.array([(step.grid_import_w - step.grid_export_w) * hours for step in steps])
