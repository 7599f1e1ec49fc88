"""The EV charger's minimum power in a convex model: relax, choose the on-slots, re-solve.

A charger cannot run between zero and its minimum (IEC 61851: 6 A, about 1.4 kW on one phase,
4.1 kW on three), so each slot's power is *semi-continuous*: ``0`` or ``[min, max]``. That set is
not convex and the model has no binary variables, so the planner:

1. solves the relaxation ``0 <= ev_t <= max_t`` (the regularisation spreads energy thinly, so
   the relaxed plan often has slots below the minimum);
2. rounds the relaxed powers to on/off patterns in two ways (:func:`candidate_patterns`): a
   sigma-delta pass that gathers the energy of thin slots into whole minimum-power slots where
   it accumulates (the hours the relaxation chose stay the charging hours), and rounding each
   slot to the nearer of off and its minimum (thin energy moves to slots that run anyway);
3. re-solves the same convex problem with each distinct pattern fixed (``min_t <= ev_t <= max_t``
   in on slots, ``ev_t = 0`` in the others) and keeps the cheaper plan. Only bounds change, so
   OSQP re-uses its factorisation and warm-starts, and the battery and grid re-optimise around
   the rounded charging. Neither rounding dominates: on random days each was the better one
   about half the time (tests/mpc/test_mpc_ev_minimum.py compares with a MILP optimum).

:func:`round_to_minimum` is the safety net in the realisation (solver tolerance, the rule-based
fallback, a failed re-solve): no plan ever leaves a power between zero and the minimum.
A minimum in a slot the car is connected for only part of is that fraction of the minimum
(the charger runs at its minimum for the connected part).
"""

from __future__ import annotations

import numpy as np

#: Powers below this are solver noise, not charging (W).
OFF_TOLERANCE_W = 10.0


def minimum_per_slot(min_charge_w: float, available: np.ndarray) -> np.ndarray:
    """The lowest non-zero average power of each slot (W): the minimum times the connected fraction."""
    return min_charge_w * np.asarray(available, dtype=float)


def needs_pattern(relaxed_w: np.ndarray, floor_w: np.ndarray, max_w: np.ndarray, dt_h: float, efficiency: float,
                  needed_wh: float) -> bool:
    """True when some slot charges noticeably yet below its minimum, or when the slots that
    charge at least the minimum could not deliver the need even at full power (a need spread
    in powers below :data:`OFF_TOLERANCE_W` would otherwise be rounded away)."""
    if np.any((relaxed_w > OFF_TOLERANCE_W) & (relaxed_w < floor_w - OFF_TOLERANCE_W)):
        return True
    running = (relaxed_w >= floor_w - OFF_TOLERANCE_W) & (floor_w > 0)
    return bool(np.sum(max_w[running]) * dt_h * efficiency < needed_wh - 1e-6)


def candidate_patterns(relaxed_w: np.ndarray, floor_w: np.ndarray, max_w: np.ndarray, dt_h: float,
                       efficiency: float, needed_wh: float, room_wh: float) -> list[np.ndarray]:
    """The distinct on/off patterns (bool per slot) worth a re-solve; see the module docstring.

    Each rounding is completed the same way: while the on-slots at full power could not deliver
    ``needed_wh``, the connected off-slot the relaxation charged most in (the earliest on a tie)
    is added, so the re-solve can always meet a need the window allows; then minimum-power
    slots that would force more than ``room_wh`` into the car are dropped from the end."""
    relaxed = np.maximum(np.asarray(relaxed_w, dtype=float), 0.0)
    patterns: list[np.ndarray] = []
    for rounded in (sigma_delta_rounding(relaxed, floor_w), nearest_rounding(relaxed, floor_w)):
        on = _complete_for_need(rounded, relaxed, floor_w, max_w * dt_h * efficiency, needed_wh)
        on &= np.cumsum(np.where(on, floor_w, 0.0)) * dt_h * efficiency <= room_wh + 1e-6
        if not any(np.array_equal(on, known) for known in patterns):
            patterns.append(on)
    return patterns


def sigma_delta_rounding(relaxed: np.ndarray, floor_w: np.ndarray) -> np.ndarray:
    """Slots at or above the minimum stay on; thin slots' energy is carried forward and a slot
    is switched on at its minimum as soon as the carry reaches half of it, so the rounded
    energy never strays more than half a minimum-power slot from the relaxation's."""
    on = np.zeros(relaxed.size, dtype=bool)
    carry_w = 0.0  # relaxed energy not yet placed, as average power over one slot
    for slot in np.flatnonzero(floor_w > 0):
        floor = floor_w[slot]
        carry_w += relaxed[slot]
        if relaxed[slot] >= floor - OFF_TOLERANCE_W:
            on[slot] = True
            carry_w -= relaxed[slot]
        elif carry_w >= 0.5 * floor:
            on[slot] = True
            carry_w -= floor
    return on


def nearest_rounding(relaxed: np.ndarray, floor_w: np.ndarray) -> np.ndarray:
    """Each slot on when its relaxed power is at least half its minimum: thin slots' energy
    goes to the slots that run anyway (which may run above their minimum)."""
    return (relaxed >= 0.5 * floor_w) & (floor_w > 0)


def _complete_for_need(on: np.ndarray, relaxed: np.ndarray, floor_w: np.ndarray, deliverable_wh: np.ndarray,
              needed_wh: float) -> np.ndarray:
    on = on.copy()
    while np.sum(deliverable_wh[on]) < needed_wh:
        candidates = np.flatnonzero(~on & (floor_w > 0))
        if candidates.size == 0:
            break
        on[candidates[np.argmax(relaxed[candidates])]] = True
    return on


def pattern_bounds(on: np.ndarray, floor_w: np.ndarray, max_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) power bounds per slot (W) that fix the on/off pattern ``on``."""
    return np.where(on, floor_w, 0.0), np.where(on, max_w, 0.0)


def round_to_minimum(ev_w: np.ndarray, floor_w: np.ndarray) -> tuple[np.ndarray, int]:
    """Move every power strictly between zero and its slot's minimum to the nearer of the two.

    Returns the powers and how many slots moved by more than solver tolerance (the larger of
    :data:`OFF_TOLERANCE_W` and 1 % of the minimum: OSQP's relative tolerance on a kW-scale
    bound)."""
    below = (ev_w > 0) & (ev_w < floor_w)
    rounded = np.where(below, np.where(ev_w >= 0.5 * floor_w, floor_w, 0.0), ev_w)
    moved = int(np.sum(np.abs(rounded - ev_w) > np.maximum(OFF_TOLERANCE_W, 0.01 * floor_w)))
    return rounded, moved
