"""What the community manager checks before it takes a home's message: pure functions of the
message, the market's rules and the time, each returning the reason for a refusal ("" to take it)."""

from __future__ import annotations

from typing import Any

from hems.community.bids import crossing_reason, orders_of, preference_problem
from hems.community.config import MarketSection
from hems.community.mechanisms.base import InputKind
from hems.community.settlement import SettlementPrices
from hems.protocol.calendar import MarketCalendar
from hems.protocol.codec import Message
from hems.protocol.messages import BidFormat, MeterReport, SlotBid

#: A message stamped further ahead of the manager's clock than this is refused (a wrong clock).
MAX_CLOCK_AHEAD_S = 300
#: Meter reports for slots older than this are refused; the dedupe memo is kept as long.
METER_RETENTION_S = 7 * 86_400


def envelope_problem(home: str, message: Message[Any], now_s: float) -> str:
    """The sender must be the topic's home, and its clock must not run ahead of ours."""
    if message.sender != home:
        return f"sender {message.sender!r} does not match the topic's home {home!r}"
    ahead_s = message.envelope.sent_at.timestamp() - now_s
    if ahead_s > MAX_CLOCK_AHEAD_S:
        return f"sent_at is {ahead_s:.0f} s ahead of the manager's clock (limit {MAX_CLOCK_AHEAD_S} s)"
    return ""


def bid_problem(home: str, bid: SlotBid, slot_start_s: int, now_s: float, *, market: MarketSection,
                calendar: MarketCalendar, prices: SettlementPrices, members: frozenset[str],
                input_kind: InputKind) -> str:
    """One slot's bid: its duration, the trading window, what the mechanism takes, prices within
    [feed-in, retail], preferences and orders that do not cross themselves."""
    if bid.duration_s != market.slot_duration_s:
        return f"duration_s must be {market.slot_duration_s}"
    reason = calendar.window_reason(slot_start_s, now_s)
    if reason:
        return f"outside the trading window: {reason}"
    if market.effective_bid_format is BidFormat.NONE and (bid.orders or bid.curve is not None):
        return f"{market.mechanism} clears from metered energy: send meter reports, no bids"
    if bid.curve is not None and not (prices.feed_in_price_micro <= bid.curve.prices_micro[0]
                                      and bid.curve.prices_micro[-1] <= prices.retail_price_micro):
        return "curve prices must lie within [feed-in, retail]"
    reason = preference_problem(home, bid, members, input_kind, prices.retail_price_micro)
    if not reason and bid.orders:
        reason = crossing_reason(orders_of(home, bid.model_dump(mode="json")))
    return reason


def meter_report_problem(report: MeterReport, now_s: float, *, calendar: MarketCalendar,
                         market_start_s: int) -> str:
    """One aligned slot that has ended, since this market started and within the retention."""
    slot_start_s = int(report.slot_start.timestamp())
    duration = calendar.slot_duration_s
    if report.duration_s != duration or not calendar.is_aligned(slot_start_s):
        return f"a meter report covers one aligned slot of {duration} s"
    if slot_start_s + duration > now_s:
        return "the slot has not ended yet"
    if slot_start_s < market_start_s:
        return "the slot is before this market started"
    if slot_start_s < now_s - METER_RETENTION_S:
        return f"the slot is older than {METER_RETENTION_S // 86_400} days"
    return ""
