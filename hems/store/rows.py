"""Typed rows of the store's tables. Times are UTC epoch seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReadingBucket:
    """The readings of one device role in one time bucket (downsampled history)."""

    device: str
    role: str  # a role of drivers/maps/roles.py, e.g. "grid_power_w"; it fixes the unit
    bucket_start_s: int
    mean: float
    min: float
    max: float
    count: int


@dataclass(frozen=True)
class PlanRecord:
    """One stored plan: the slot it starts at, its horizon and how the solve went."""

    id: int
    slot_start_s: float
    status: str  # "optimal", "fallback", ...
    solve_time_s: float
    horizon: Any  # the JSON-decoded horizon (per-slot setpoints and flows)
    created_at_s: float


@dataclass(frozen=True)
class SetpointRecord:
    """One setpoint written to a device, and whether its read-back matched."""

    id: int
    device: str
    role: str
    value: float
    written_at_s: float
    readback_ok: bool | None  # None: not read back (yet)


@dataclass(frozen=True)
class OutboxMessage:
    """One message waiting to be (or already) published."""

    seq: int  # the send order
    message_id: str
    topic: str
    payload: str
    created_at_s: float
    sent_at_s: float | None
    acked_at_s: float | None


@dataclass(frozen=True)
class PruneResult:
    """How many rows one prune removed, per table."""

    readings: int
    plans: int
    setpoints: int
    outbox: int
