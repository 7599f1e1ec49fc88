"""Grid-aware trading (issue 8): the feeder model, the grid operator's limits, and the approval of a
cleared slot against them (docs/grid.md).

Pure and synchronous: nothing here talks to the broker, the clock or the database. The community
manager checks each clearing with :func:`check`, and when a limit would be exceeded asks
:func:`approve` for per-home caps and re-clears the slot with bids clipped by :func:`clip_curve` or
:func:`clip_orders`.
"""

from hems.community.grid.approval import (
    Approval,
    BindingConstraint,
    HomeCap,
    approve,
    clip_curve,
    clip_orders,
)
from hems.community.grid.check import ConstraintKind, ConstraintMargin, GridCheck, check
from hems.community.grid.feeder import FeederHomeSection, FeederModel, FeederSection
from hems.community.grid.limits import (
    DayAheadLimits,
    EffectiveLimits,
    GridLimits,
    SlotLimits,
    effective_limits,
    locational_fee_nano,
    with_locational_fee,
)

__all__ = [
    "Approval", "BindingConstraint", "ConstraintKind", "ConstraintMargin", "DayAheadLimits",
    "EffectiveLimits", "FeederHomeSection", "FeederModel", "FeederSection", "GridCheck", "GridLimits",
    "HomeCap", "SlotLimits", "approve", "check", "clip_curve", "clip_orders", "effective_limits",
    "locational_fee_nano", "with_locational_fee",
]
