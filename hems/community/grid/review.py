"""The manager's grid review of a cleared slot: check it against the feeder and the operator's
limits and, when it would exceed one, cap the homes (:func:`~hems.community.grid.approval.approve`),
clip their bids to the caps and clear the slot again with the same mechanism.

Any mechanism's position of a home lies between its total sell and its total buy, so after the
clipped re-clear every position is inside its cap, and positions inside the caps keep every limit.
The review covers the bidding mechanisms (orders, curves, classed orders). Positions the sharing
rules clear from are metered after the fact and cannot be curtailed, and a negotiated slot (``admm``)
books the positions the homes agreed to: both are checked and reported, not changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from hems.community.grid.approval import Approval, approve, clip_curve, clip_orders
from hems.community.grid.check import GridCheck, check
from hems.community.grid.feeder import FeederModel
from hems.community.grid.limits import DayAheadLimits, GridLimits
from hems.community.mechanisms.base import ClearingInput, ClearingResult, Order
from hems.community.mechanisms.differentiated import DifferentiatedInput

logger = logging.getLogger(__name__)

Market = ClearingInput | DifferentiatedInput


@dataclass(frozen=True)
class GridReview:
    """The feeder and the operator's day-ahead limits of one community."""

    feeder: FeederModel
    limits: DayAheadLimits | None = None

    def limits_for(self, slot_start_s: int) -> GridLimits | None:
        """The operator's limits of a slot (None: only the transformer's)."""
        return None if self.limits is None else self.limits.for_slot(datetime.fromtimestamp(slot_start_s, timezone.utc))

    def review(self, clear: Callable[[Market], ClearingResult], market: Market, result: ClearingResult,
               slot_start_s: int, duration_s: int, *, adjustable: bool) -> ClearingResult:
        """``result`` if it keeps every limit; else the slot cleared again with clipped bids (when
        ``adjustable``). Either way the details carry the grid report (``details["grid"]``)."""
        limits = self.limits_for(slot_start_s)
        positions = {item.home: item.net_import_wh for item in result.allocations}
        approval = approve(self.feeder, limits, positions, duration_s)
        if approval.caps is None or not adjustable:
            if approval.caps is not None:
                logger.warning("slot %s: the clearing exceeds grid limits and cannot be changed: %s", slot_start_s,
                               "; ".join(approval.check.report()))
            return _with_report(result, approval.check, approval if approval.caps is not None else None)
        again = clear(clipped(market, approval))
        after = check(self.feeder, limits, {item.home: item.net_import_wh for item in again.allocations}, duration_s)
        if after.congested:  # cannot happen for a mechanism that respects its bids: a bug, say so loudly
            logger.error("slot %s: still beyond grid limits after the re-clear: %s", slot_start_s,
                         "; ".join(after.report()))
        return _with_report(again, approval.check, approval, after)


def clipped(market: Market, approval: Approval) -> Market:
    """The slot's bids clipped to the approval's caps (homes without a cap are held at 0)."""
    def cap(home: str) -> tuple[int, int]:
        home_cap = approval.cap(home)
        if home_cap is None:
            raise ValueError("an approval without caps clips nothing")
        return home_cap.max_import_wh, home_cap.max_export_wh

    if isinstance(market, DifferentiatedInput):
        kept = {order.order_id: order for orders in _by_home(item.order for item in market.orders).values()
                for order in clip_orders(orders, *cap(orders[0].home))}
        return replace(market, orders=tuple(replace(item, order=kept[item.order.order_id])
                                            for item in market.orders if item.order.order_id in kept))
    curves = tuple(clip_curve(curve, *cap(curve.home)) for curve in market.curves)
    orders = tuple(order for home, mine in sorted(_by_home(market.orders).items())
                   for order in clip_orders(mine, *cap(home)))
    return replace(market, curves=curves, orders=orders)


def _by_home(orders: Iterable[Order]) -> dict[str, list[Order]]:
    """Each home's orders, in input order."""
    grouped: dict[str, list[Order]] = {}
    for order in orders:
        grouped.setdefault(order.home, []).append(order)
    return grouped


def _with_report(result: ClearingResult, before: GridCheck, approval: Approval | None,
                 after: GridCheck | None = None) -> ClearingResult:
    report: dict[str, Any] = {
        "congested": before.congested, "flow_w": round(before.flow_w),
        "violations": before.report() if before.congested else [],
    }
    if approval is not None and approval.caps is not None:
        report["curtailed_wh"] = approval.total_curtailed_wh
        report["curtailed_homes"] = len(approval.curtailed_wh)
        report["binding"] = [str(item.kind) for item in approval.binding]
    if after is not None:
        report["flow_w_after"] = round(after.flow_w)
        report["kept_after"] = not after.congested
    return replace(result, details={**result.details, "grid": report})
