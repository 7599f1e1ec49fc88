"""Clipping bids to the approval's caps, and re-clearing with them: positions stay inside the caps."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hems.community.grid import approve, check, clip_curve, clip_orders
from hems.community.mechanisms.base import ClearingInput, Curve, MarketParameters, Order
from hems.community.mechanisms.bid_curve import BidCurveEquilibrium
from hems.community.mechanisms.uniform import UniformPriceAuction
from hems.protocol.messages import Side

from .strategies import feeders, operator_limits

GRID = (80_000, 124_000, 168_000, 212_000, 256_000, 300_000)
PARAMETERS = MarketParameters(300_000, 80_000, price_grid_micro=GRID)
CAP = st.integers(0, 3_000)


@st.composite
def curves(draw, home: str = "h") -> Curve:
    steps = draw(st.lists(st.integers(0, 800), min_size=len(GRID) - 1, max_size=len(GRID) - 1))
    start = draw(st.integers(-1_500, 3_000))
    quantities = [start]
    for step in steps:
        quantities.append(quantities[-1] - step)  # non-increasing in price
    return Curve(home, GRID, tuple(quantities), sequence=draw(st.integers(0, 9)))


@st.composite
def home_orders(draw, home: str = "h", prices: tuple[int, ...] = GRID) -> list[Order]:
    specs = draw(st.lists(st.tuples(st.sampled_from(Side), st.integers(1, 900), st.sampled_from(prices)), max_size=8))
    return [Order(f"{home}-{index}", home, side, wh, price) for index, (side, wh, price) in enumerate(specs)]


def totals(orders: list[Order]) -> tuple[int, int]:
    return (sum(o.energy_wh for o in orders if o.side is Side.BUY), sum(o.energy_wh for o in orders if o.side is Side.SELL))


@settings(max_examples=100, deadline=None)
@given(curves(), CAP, CAP)
def test_a_clipped_curve_stays_non_increasing_and_inside_the_caps(curve, max_import, max_export):
    clipped = clip_curve(curve, max_import, max_export)
    assert (clipped.home, clipped.prices_micro, clipped.sequence) == (curve.home, curve.prices_micro, curve.sequence)
    assert all(a >= b for a, b in zip(clipped.net_import_wh, clipped.net_import_wh[1:]))
    for before, after in zip(curve.net_import_wh, clipped.net_import_wh):
        assert -max_export <= after <= max_import
        assert after == before or after in (max_import, -max_export)


@settings(max_examples=150, deadline=None)
@given(home_orders(), CAP, CAP)
def test_clipped_orders_keep_their_ids_and_cut_the_least_wanted_volume(orders, max_import, max_export):
    clipped = clip_orders(orders, max_import, max_export)
    bought, sold = totals(orders)
    assert totals(clipped) == (min(bought, max_import), min(sold, max_export))  # exactly the excess is cut
    by_id = {order.order_id: order for order in orders}
    assert [o.order_id for o in clipped] == [o.order_id for o in orders if o.order_id in {c.order_id for c in clipped}]
    kept = {order.order_id: order for order in clipped}
    for order in clipped:
        assert order.energy_wh > 0 and order.energy_wh <= by_id[order.order_id].energy_wh
        assert (order.side, order.limit_price_micro, order.home) == (
            by_id[order.order_id].side, by_id[order.order_id].limit_price_micro, by_id[order.order_id].home)
    for cut in (order for order in orders if kept.get(order.order_id) != order):
        # whatever was cut, every order the home values less on the same side was cut entirely first
        worse = [o for o in orders if o.side is cut.side and (
            o.limit_price_micro < cut.limit_price_micro if cut.side is Side.BUY
            else o.limit_price_micro > cut.limit_price_micro)]
        assert all(o.order_id not in kept for o in worse)


def test_equal_prices_cut_the_later_order_first_and_caps_must_be_whole():
    orders = [Order("x", "h", Side.BUY, 500, 200_000), Order("y", "h", Side.BUY, 500, 200_000),
              Order("z", "h", Side.SELL, 300, 100_000)]
    assert clip_orders(orders, 700, 300) == [orders[0], Order("y", "h", Side.BUY, 200, 200_000), orders[2]]
    assert clip_orders(orders, 0, 0) == []
    with pytest.raises(ValueError):
        clip_orders(orders, -1, 0)
    with pytest.raises(ValueError):
        clip_orders(orders, 1.5, 0)
    with pytest.raises(ValueError, match="one home"):
        clip_orders([*orders, Order("w", "other", Side.BUY, 1, 1)], 5, 5)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(home_orders(), CAP, CAP), min_size=1, max_size=5))
def test_a_re_clear_of_clipped_orders_lands_inside_every_cap(homes):
    book, caps = [], {}
    for index, (orders, max_import, max_export) in enumerate(homes):
        home = f"h{index}"
        orders = [Order(f"{home}-{o.order_id}", home, o.side, o.energy_wh, o.limit_price_micro) for o in orders]
        book += clip_orders(orders, max_import, max_export)
        caps[home] = (max_import, max_export)
    result = UniformPriceAuction().clear(ClearingInput(PARAMETERS, tuple(book)))
    assert result.balance_error_nano() == 0
    for allocation in result.allocations:
        max_import, max_export = caps[allocation.home]
        assert -max_export <= allocation.net_import_wh <= max_import


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(curves(), CAP, CAP), min_size=1, max_size=5))
def test_a_re_clear_of_clipped_curves_lands_inside_every_cap(homes):
    clipped, caps = [], {}
    for index, (curve, max_import, max_export) in enumerate(homes):
        home = f"h{index}"
        clipped.append(clip_curve(Curve(home, curve.prices_micro, curve.net_import_wh), max_import, max_export))
        caps[home] = (max_import, max_export)
    result = BidCurveEquilibrium().clear(ClearingInput(PARAMETERS, curves=tuple(clipped)))
    assert result.balance_error_nano() == 0
    for allocation in result.allocations:
        max_import, max_export = caps[allocation.home]
        assert -max_export <= allocation.net_import_wh <= max_import


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_approve_clip_and_re_clear_keeps_every_limit(data):
    """The lead's loop: clear, approve, clip every home's orders to its cap, clear again, check."""
    feeder = data.draw(feeders(max_homes=5, unplaced=1))
    limits = data.draw(operator_limits())
    book = []
    for home in (*feeder.homes, *feeder.unplaced_homes):
        book += [Order(f"{home}-{o.order_id}", home, o.side, 10 * o.energy_wh, o.limit_price_micro)
                 for o in data.draw(home_orders(prices=(80_000, 168_000, 300_000)))]  # often the retailer's
    auction = UniformPriceAuction()  # the retailer is booked: a home's whole bid clears
    first = auction.clear(ClearingInput(PARAMETERS, tuple(book)))
    cleared = {allocation.home: allocation.net_import_wh for allocation in first.allocations}
    approval = approve(feeder, limits, cleared, 900)
    event("approved as cleared" if approval.approved else "capped and re-cleared")
    if approval.approved:
        assert not check(feeder, limits, cleared, 900).congested
        return
    clipped = []
    for home in sorted({order.home for order in book}):
        cap = approval.cap(home)
        clipped += clip_orders([order for order in book if order.home == home], cap.max_import_wh,
                               cap.max_export_wh)
    second = auction.clear(ClearingInput(PARAMETERS, tuple(clipped)))
    assert second.balance_error_nano() == 0
    again = {allocation.home: allocation.net_import_wh for allocation in second.allocations}
    assert all(approval.cap(home).contains(wh) for home, wh in again.items())
    assert check(feeder, limits, again, 900).violations == ()
