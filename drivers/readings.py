"""Typed readings: what the hardware layer hands upwards.

A reading is one measured value with its unit, the instant it was taken and a
quality flag. Upper layers never see raw registers or telegram lines.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(enum.Enum):
    """How far a value can be trusted."""

    GOOD = "good"
    #: The device answered, but the value failed a plausibility check (out of the
    #: map's range, "not implemented" sentinel, NaN). Flagged, never acted on.
    IMPLAUSIBLE = "implausible"
    #: The device did not answer; the value is the last good one, kept for display.
    STALE = "stale"
    #: The device does not implement this point.
    NOT_IMPLEMENTED = "not_implemented"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value read from a device.

    ``timestamp_s`` is wall-clock UTC seconds (the clock the caller passed in), so
    readings from different devices can be aligned; ages are computed by the
    caller from the same clock.
    """

    name: str
    value: float | int | str | None
    unit: str
    timestamp_s: float
    quality: Quality = Quality.GOOD

    @property
    def usable(self) -> bool:
        """True when the value may drive a decision."""
        return self.quality is Quality.GOOD and self.value is not None
