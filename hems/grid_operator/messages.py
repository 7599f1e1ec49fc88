"""The operator's messages built from command-line values: a ``grid_limits`` publication over a run of
slots, a ``flexibility_request`` and its id. Every function raises ValueError with a sentence that says
what is wrong and what is allowed; the command line puts the option's name in front."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from hems.grid_operator.quantities import (
    MAX_POWER_KW,
    MAX_PRICE_PER_KWH,
    exact_price_micro,
    is_aligned,
    kw_to_w,
    parse_instant,
    to_decimal,
    utc_from_s,
)
from hems.protocol.messages import MAX_SLOTS_PER_MESSAGE
from hems.protocol.power_plant import FlexibilityCall, GridLimitsPublication, LimitSlot, RequestedSlot
from hems.protocol.topics import IDENTIFIER


def power_w(text: str, *, signed: bool = False) -> int:
    """A power in kW (decimal text) -> whole W within the wire's range; a signed one must not be 0."""
    watts = kw_to_w(text)
    low = -MAX_POWER_KW if signed else 0
    if not low <= to_decimal(text) <= MAX_POWER_KW:
        raise ValueError(f"{text} kW is out of range: allowed [{low}, {MAX_POWER_KW}] kW")
    if signed and watts == 0:
        raise ValueError("0 kW asks for nothing: give + for more import, − for less")
    return watts


def price_micro(text: str) -> int:
    """A price in currency per kWh (decimal text) -> integer µ¤/kWh within the wire's range."""
    micro = exact_price_micro(text)
    if not 0 <= to_decimal(text) <= MAX_PRICE_PER_KWH:
        raise ValueError(f"{text} per kWh is out of range: allowed [0, {MAX_PRICE_PER_KWH}]")
    return micro


def first_slot(text: str, slot_minutes: int) -> datetime:
    """``--from``: an ISO instant with an offset, on a slot boundary of the market's calendar (UTC)."""
    start = parse_instant(text)
    check_slot_minutes(slot_minutes)
    if not is_aligned(start, slot_minutes * 60):
        raise ValueError(f"{text} is not on a {slot_minutes}-minute slot boundary (slots are multiples of "
                         "their length in UTC)")
    return start


def check_slot_minutes(slot_minutes: int) -> int:
    """A slot length the protocol carries (1 minute … 1 day)."""
    if not 1 <= slot_minutes <= 1440:
        raise ValueError(f"{slot_minutes}-minute slots: allowed 1 … 1440 minutes")
    return slot_minutes


def check_slots(slots: int, slot_minutes: int) -> None:
    """The run of slots fits in one message and the slot length is the protocol's."""
    if not 1 <= slots <= MAX_SLOTS_PER_MESSAGE:
        raise ValueError(f"{slots} slots: allowed 1 … {MAX_SLOTS_PER_MESSAGE} in one message")
    check_slot_minutes(slot_minutes)


def slot_starts(start: datetime, slots: int, slot_minutes: int) -> list[datetime]:
    """``slots`` consecutive slot starts from ``start``."""
    return [start + timedelta(minutes=slot_minutes * index) for index in range(slots)]


def uniform_limits(start: datetime, slots: int, slot_minutes: int, *, import_limit_w: int | None,
                   export_limit_w: int | None, fee_micro: int) -> GridLimitsPublication:
    """The same limits and fee over ``slots`` slots from ``start`` (None: no limit)."""
    check_slots(slots, slot_minutes)
    return GridLimitsPublication(slots=[
        LimitSlot(slot_start=slot_start, duration_s=slot_minutes * 60, import_limit_w=import_limit_w,
                  export_limit_w=export_limit_w, locational_fee_micro=fee_micro)
        for slot_start in slot_starts(start, slots, slot_minutes)])


def flexibility_call(request_id: str, start: datetime, slots: int, slot_minutes: int, *, delta_w: int,
                     price_micro: int, penalty_micro: int = 0) -> FlexibilityCall:
    """A request to change the community's net import by ``delta_w`` in each of ``slots`` slots."""
    check_slots(slots, slot_minutes)
    if not IDENTIFIER.match(request_id):
        raise ValueError(f"{request_id!r} is not an id: use 1-64 letters, digits, '-' or '_'")
    return FlexibilityCall(
        request_id=request_id, price_micro=price_micro, penalty_micro=penalty_micro,
        slots=[RequestedSlot(slot_start=slot_start, duration_s=slot_minutes * 60, delta_w=delta_w)
               for slot_start in slot_starts(start, slots, slot_minutes)])


def new_request_id(now_s: float) -> str:
    """A fresh request id: ``req-<UTC time>-<4 random hex digits>`` (two in one second still differ)."""
    return f"req-{utc_from_s(int(now_s)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
