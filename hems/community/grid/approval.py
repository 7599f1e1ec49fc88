"""Sensitivity-based trade approval: per-home caps that keep a slot inside every grid limit.

When the cleared net imports x_i (Wh) of a slot violate a limit, :func:`approve` gives each home a
cap [−max_export_wh, max_import_wh] on its position such that ANY positions inside the caps keep
every limit: the manager re-clears the slot with bids clipped to the caps (:func:`clip_curve`,
:func:`clip_orders`), and whatever the mechanism then clears lies inside them. Caps only move a
position toward zero: an importer keeps an import cap ≤ x_i and an export cap of 0, an exporter the
reverse.

Every constraint is linear in the positions with coefficients of one sign on each side (the
transformer import and the undervoltages grow with imports, the transformer export and the
overvoltages with exports; all sensitivities are ≥ 0), so over the box of caps the worst case of an
import-side constraint is every importer at its cap and every exporter at 0, and symmetrically. The
worst-case overvoltage is at the most sensitive home, because min(s_n, s_j) ≤ s_j = min(s_far, s_j)
for every n: its row dominates the others. The LP therefore has at most four rows:

    minimise   Σ_i (1 − ε·w_i) · c_i                  (c_i: Wh curtailed at home i, 0 ≤ c_i ≤ |x_i|)
    subject to Σ_i a_ri · (|x_i| − c_i) ≤ b_r          for each row r violated in the worst case

with a_ri the W (transformer) or V (voltage) per Wh of home i on row r. The tiny weight ε·w_i
(ε = 1e-6, w_i = home i's share of the rows' worst-case load, scaled to ≤ 1) breaks ties between
equally effective curtailments toward the homes that contribute most, so the LP cannot move total
curtailment by more than a millionth. Caps are then whole Wh rounded toward safety (the magnitude
floored; a value within 1e-6 Wh of an integer snapped to it) and re-checked at the two worst
corners; see :func:`approve` for the fall-backs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linprog

from hems.community.grid.check import ConstraintKind, GridCheck, check, margins, watts_per_wh
from hems.community.grid.feeder import FeederModel
from hems.community.grid.limits import EffectiveLimits, GridLimits, effective_limits
from hems.community.mechanisms.base import Curve, Order
from hems.protocol.messages import Side

#: The tie-break weight (per Wh, relative to the 1 per Wh of curtailment itself).
TIE_BREAK_EPSILON = 1e-6
#: An LP value this close to a whole Wh is taken as that Wh (solver noise, not curtailment).
SNAP_WH = 1e-6
#: The fall-back LP keeps this fraction of each limit (at least this many W or V) as a margin.
TIGHTEN_FRACTION = 1e-6


@dataclass(frozen=True)
class HomeCap:
    """The positions a home may clear at: −max_export_wh ≤ net import ≤ max_import_wh."""

    max_import_wh: int
    max_export_wh: int

    def contains(self, net_import_wh: int) -> bool:
        return -self.max_export_wh <= net_import_wh <= self.max_import_wh


@dataclass(frozen=True)
class BindingConstraint:
    """A row of the approval LP: a constraint violated in the worst case of the cleared positions."""

    kind: ConstraintKind
    home: str | None  # the most sensitive home, for voltage rows
    limit: float  # W (flow in the row's direction) or V (band edge)
    worst_case_value: float  # the row's value with every home at its cleared position, on its side only
    unit: str
    #: The LP dual, sign-flipped: Wh less curtailment per W or V the limit were relaxed (≥ 0).
    shadow_price: float
    binding: bool  # at its limit in the LP solution


@dataclass(frozen=True)
class Approval:
    """The verdict on one slot: no caps (approved as cleared), or caps and what they curtail."""

    check: GridCheck  # of the cleared positions: the congestion report
    caps: Mapping[str, HomeCap] | None  # None: the clearing keeps every limit
    curtailed_wh: Mapping[str, int]  # |cleared position| − cap, homes curtailed only
    lp_curtailed_wh: float = 0.0  # the LP's optimum before rounding to whole Wh
    constraints: tuple[BindingConstraint, ...] = ()
    solver_status: str | None = None  # None: no LP was solved
    #: How the caps were made whole and safe: "snapped" or "floor" (normal), "tightened" (LP re-solved
    #: with a margin), "zero" (every home on a violated row capped at 0: a solver failure).
    rounding: str | None = None

    @property
    def approved(self) -> bool:
        return self.caps is None

    @property
    def total_curtailed_wh(self) -> int:
        return sum(self.curtailed_wh.values())

    @property
    def binding(self) -> tuple[BindingConstraint, ...]:
        return tuple(item for item in self.constraints if item.binding)

    def cap(self, home: str) -> HomeCap | None:
        """The cap of ``home``: None when there are no caps; 0/0 for a home not in the cleared slot."""
        if self.caps is None:
            return None
        return self.caps.get(home, HomeCap(0, 0))


@dataclass(frozen=True)
class _Row:
    kind: ConstraintKind
    home: str | None
    coefficients: np.ndarray  # per Wh of each home, 0 for homes on the other side
    limit: float  # of the row's value above its zero point (W, or V of rise/drop)
    load: float  # Σ a_i |x_i|: the worst case of the cleared positions
    offset: float  # V_nom for voltage rows, 0 for flows
    reported_limit: float
    unit: str

    @property
    def worst_case_value(self) -> float:
        """The row in the units of its limit: a flow (W) or a voltage (V)."""
        if self.kind is ConstraintKind.UNDERVOLTAGE:
            return self.offset - self.load
        return self.offset + self.load


def _rows(feeder: FeederModel, effective: EffectiveLimits, homes: list[str], x: np.ndarray,
          duration_s: int) -> list[_Row]:
    """The worst-case rows over the box between 0 and the cleared positions, violated (or tight) ones."""
    w_per_wh = watts_per_wh(duration_s)
    importing, exporting = x > 0, x < 0
    magnitude = np.abs(x)
    s = np.array([feeder.sensitivity(home) for home in homes])
    v_per_wh = s * (w_per_wh / 1000.0)
    far = feeder.homes[-1] if feeder.homes else None
    nominal = feeder.nominal_voltage_v
    candidates = [
        (ConstraintKind.TRANSFORMER_IMPORT, None, np.where(importing, w_per_wh, 0.0), effective.import_limit_w,
         0.0, effective.import_limit_w, "W"),
        (ConstraintKind.TRANSFORMER_EXPORT, None, np.where(exporting, w_per_wh, 0.0), effective.export_limit_w,
         0.0, effective.export_limit_w, "W"),
    ]
    if far is not None:
        candidates += [
            (ConstraintKind.OVERVOLTAGE, far, np.where(exporting, v_per_wh, 0.0), feeder.max_voltage_v - nominal,
             nominal, feeder.max_voltage_v, "V"),
            (ConstraintKind.UNDERVOLTAGE, far, np.where(importing, v_per_wh, 0.0), nominal - feeder.min_voltage_v,
             nominal, feeder.min_voltage_v, "V"),
        ]
    rows = []
    for kind, home, coefficients, limit, offset, reported, unit in candidates:
        load = float(coefficients @ magnitude)
        # A row at its limit to within rounding noise stays in: the check, which sums in another
        # order, may see it a hair over.
        if load > 0 and load > limit - 1e-9 * max(1.0, limit):
            rows.append(_Row(kind, home, coefficients, limit, load, offset, reported, unit))
    return rows


def _round_caps(magnitude: np.ndarray, kept: np.ndarray, snap: bool) -> np.ndarray:
    """Whole-Wh magnitudes ≤ the cleared ones, rounded down (or snapped when within SNAP_WH)."""
    kept = np.clip(kept, 0.0, magnitude)
    rounded = np.floor(kept)
    if snap:
        nearest = np.round(kept)
        rounded = np.where(np.abs(kept - nearest) <= SNAP_WH, nearest, rounded)
    return np.minimum(rounded, magnitude)


def approve(feeder: FeederModel, limits: GridLimits | EffectiveLimits | None, net_import_wh: Mapping[str, int],
            duration_s: int) -> Approval:
    """Check a cleared slot and, if it violates a limit, cap the homes so that it cannot.

    Caps cover every home of ``net_import_wh`` (a home not listed should be held at 0). The LP
    (HiGHS through ``scipy.optimize.linprog``) minimises the curtailed Wh; its solution is rounded
    to whole Wh toward zero and re-checked at the two worst corners (importers at their caps with
    exporters at 0, and the reverse). Should that re-check fail (solver tolerance), the caps are
    floored without snapping, then the LP is re-solved with a margin of 1e-6 of each limit, and as
    a last resort every home on a violated row is capped at 0, which always keeps the limits.
    """
    effective = limits if isinstance(limits, EffectiveLimits) else effective_limits(feeder, limits)
    cleared = check(feeder, effective, net_import_wh, duration_s)
    if not cleared.congested:
        return Approval(check=cleared, caps=None, curtailed_wh={})
    homes = sorted(net_import_wh)
    x = np.array([net_import_wh[home] for home in homes], dtype=float)
    magnitude = np.abs(x)
    rows = _rows(feeder, effective, homes, x, duration_s)
    a = np.vstack([row.coefficients for row in rows])
    limit = np.array([row.limit for row in rows])
    load = np.array([row.load for row in rows])
    movable = np.flatnonzero(np.any(a > 0, axis=0) & (magnitude > 0))
    a_lp = a[:, movable]
    # Each home's share of each row's worst-case load (load > limit ≥ 0), summed over the rows.
    share = ((a_lp * magnitude[movable]) / load[:, None]).sum(axis=0)
    cost = 1.0 - TIE_BREAK_EPSILON * share / share.max()
    bounds = list(zip(np.zeros(len(movable)), magnitude[movable]))

    def solve(margin: np.ndarray):
        return linprog(cost, A_ub=-a_lp, b_ub=limit - margin - load, bounds=bounds, method="highs")

    def caps_of(curtailment: np.ndarray, snap: bool) -> np.ndarray:
        kept = magnitude.copy()
        kept[movable] = magnitude[movable] - curtailment
        return _round_caps(magnitude, kept, snap)

    def candidates(first):
        if first.status == 0:
            yield "snapped", caps_of(first.x, True)
            yield "floor", caps_of(first.x, False)
            tightened = solve(np.maximum(1.0, np.abs(limit)) * TIGHTEN_FRACTION)
            if tightened.status == 0:
                yield "tightened", caps_of(tightened.x, False)

    def safe(kept: np.ndarray) -> bool:
        importers = {home: int(k) for home, k, xi in zip(homes, kept, x) if xi > 0}
        exporters = {home: -int(k) for home, k, xi in zip(homes, kept, x) if xi < 0}
        return margins(feeder, effective, importers, duration_s).kept and \
            margins(feeder, effective, exporters, duration_s).kept

    result = solve(np.zeros(len(rows)))
    found = next(((name, kept) for name, kept in candidates(result) if safe(kept)), None)
    if found is None:  # y = 0 on every violated row keeps every limit (limits ≥ 0, band > 0)
        zero = magnitude.copy()
        zero[movable] = 0.0
        found = ("zero", zero)
    rounding, kept = found
    caps = {home: HomeCap(int(k) if xi > 0 else 0, int(k) if xi < 0 else 0) for home, k, xi in zip(homes, kept, x)}
    curtailed = {home: int(m - k) for home, m, k in zip(homes, magnitude, kept) if m > k}
    constraints = []
    if result.status == 0:
        duals = -np.asarray(result.ineqlin.marginals)
        slack = np.asarray(result.ineqlin.residual)
        for row, dual, residual in zip(rows, duals.tolist(), slack.tolist()):
            binding = residual <= 1e-9 * max(1.0, row.limit) or dual > 1e-12
            constraints.append(BindingConstraint(row.kind, row.home, row.reported_limit, row.worst_case_value,
                                                 row.unit, max(0.0, dual), binding))
    return Approval(check=cleared, caps=caps, curtailed_wh=curtailed,
                    lp_curtailed_wh=float(np.sum(result.x)) if result.status == 0 else float(sum(curtailed.values())),
                    constraints=tuple(constraints),
                    solver_status="optimal" if result.status == 0 else str(result.message), rounding=rounding)


def clip_curve(curve: Curve, max_import_wh: int, max_export_wh: int) -> Curve:
    """A net-import curve clipped into [−max_export_wh, max_import_wh]; clipping a non-increasing
    sequence keeps it non-increasing, and prices and sequence stay."""
    _check_caps(max_import_wh, max_export_wh)
    clipped = tuple(min(max(quantity, -max_export_wh), max_import_wh) for quantity in curve.net_import_wh)
    return replace(curve, net_import_wh=clipped)


def clip_orders(orders: Sequence[Order], max_import_wh: int, max_export_wh: int) -> list[Order]:
    """One home's orders truncated so that its buys total ≤ ``max_import_wh`` and its sells ≤
    ``max_export_wh``: buys are cut from the lowest limit price up (the energy the home values
    least), sells from the highest ask down (the energy it is least keen to sell); at equal prices
    the later order goes first. Ids and order are kept; orders cut to 0 are dropped."""
    _check_caps(max_import_wh, max_export_wh)
    if len({order.home for order in orders}) > 1:
        raise ValueError("clip_orders takes the orders of one home")
    energy = [order.energy_wh for order in orders]
    for side, cap, sign in ((Side.BUY, max_import_wh, 1), (Side.SELL, max_export_wh, -1)):
        indices = [index for index, order in enumerate(orders) if order.side is side]
        excess = sum(energy[index] for index in indices) - cap
        for index in sorted(indices, key=lambda i: (sign * orders[i].limit_price_micro, -i)):
            if excess <= 0:
                break
            cut = min(excess, energy[index])
            energy[index] -= cut
            excess -= cut
    return [order if wh == order.energy_wh else replace(order, energy_wh=wh)
            for order, wh in zip(orders, energy) if wh > 0]


def _check_caps(max_import_wh: int, max_export_wh: int) -> None:
    if not (isinstance(max_import_wh, int) and isinstance(max_export_wh, int)) \
            or max_import_wh < 0 or max_export_wh < 0:
        raise ValueError(f"caps are whole Wh >= 0 (got import {max_import_wh!r}, export {max_export_wh!r})")
