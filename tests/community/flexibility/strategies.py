"""Hypothesis strategies and independent reference computations for the flexibility tests."""

from __future__ import annotations

from hypothesis import strategies as st

from hems.community.flexibility.model import Direction, FlexibilityRequest, FlexibilitySegment, HomeFlexibility

SLOTS = (0, 900)
# A coarse price set makes equal prices at the margin (the pro-rata case) common.
PRICES = tuple(range(0, 100_001, 10_000))


@st.composite
def merit_orders(draw) -> tuple[FlexibilitySegment, ...]:
    prices = sorted(draw(st.sets(st.sampled_from(PRICES), max_size=4)))
    return tuple(FlexibilitySegment(draw(st.integers(1, 500)), price) for price in prices)


@st.composite
def communities(draw, max_homes: int = 6) -> list[HomeFlexibility]:
    """Flexibilities of up to ``max_homes`` homes in the two slots (a home may lack a slot)."""
    count = draw(st.integers(1, max_homes))
    flexibilities = []
    for index in range(count):
        for slot in SLOTS:
            if draw(st.integers(0, 9)) == 0:
                continue
            flexibilities.append(HomeFlexibility(f"home-{index:02d}", slot, draw(st.integers(-800, 800)),
                                                 draw(merit_orders()), draw(merit_orders())))
    return flexibilities


@st.composite
def requests(draw) -> FlexibilityRequest:
    deltas = tuple(draw(st.integers(-2500, 2500)) for _ in SLOTS)
    return FlexibilityRequest("req-1", SLOTS, deltas, draw(st.sampled_from(PRICES)), draw(st.integers(0, 200_000)))


def eligible_segments(flexibilities, slot: int, delta_wh: int, barred, limit_micro: int):
    """(home, segment) of every block a dispatch of ``delta_wh`` may use in ``slot``."""
    direction = Direction.UP if delta_wh > 0 else Direction.DOWN
    return [(flex.home, segment) for flex in flexibilities
            if flex.slot_start_s == slot and flex.home not in barred
            for segment in flex.segments(direction) if segment.price_micro <= limit_micro]


def prefix_cost_nano(segments: tuple[FlexibilitySegment, ...], energy_wh: int) -> int:
    """Pay-as-bid cost of using ``energy_wh`` of a merit order cheapest first (a plain loop)."""
    cost, left = 0, energy_wh
    for segment in segments:
        used = min(left, segment.energy_wh)
        cost += used * segment.price_micro
        left -= used
    assert left == 0, "more energy than the merit order holds"
    return cost
