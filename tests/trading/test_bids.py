"""The pure parts of bidding: the calendar, the grid, curves to wire bids and step orders,
committed trades for the MPC, sequence numbers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.mechanisms.base import Order as BookOrder
from hems.community.mechanisms.base import curve_from_orders
from hems.mpc.bid_curve import BidCurve
from hems.mpc.inputs import PlanInputs
from hems.protocol.messages import MAX_ORDERS_PER_SLOT, Allocation, BidFormat, Curve, EnergyClass, Side
from hems.protocol.units import money_nano
from hems.trading.bids import (BidTerms, DonationTerms, SequenceCounter, price_grid_micro, slot_bid, slot_indices,
                               step_orders, submission)
from hems.protocol.calendar import MarketCalendar
from hems.trading.commitments import Commitments, committed_trade
from tests.trading.conftest import GRID_MICRO, SLOT0_S, STEP_S, market_config, utc


@settings(max_examples=300)
@given(now_s=st.floats(min_value=1.6e9, max_value=2.0e9), lead_s=st.integers(0, 3600),
       slot_s=st.sampled_from([300, 900, 1800, 3600]))
def test_the_first_open_slot_is_the_earliest_whose_gate_is_still_open(now_s, lead_s, slot_s):
    calendar = MarketCalendar(slot_s, lead_s, horizon_slots=4)
    slot = calendar.first_open_slot_s(now_s)
    assert slot % slot_s == 0
    assert calendar.gate_closure_s(slot) > now_s >= calendar.gate_closure_s(slot - slot_s)


def test_bid_slots_stop_at_the_market_horizon():
    calendar = MarketCalendar(900, 120, horizon_slots=2)
    assert calendar.bid_slots_s(9000.0, 5) == [9000.0, 9900.0]
    assert calendar.submit_at_s(9000.0, 60) == 9000.0 - 180


def test_the_published_grid_is_the_bid_grid():
    assert price_grid_micro(market_config(), points=11) == tuple(GRID_MICRO)


def inputs_from(start_s: float, steps: int) -> PlanInputs:
    return PlanInputs(start=utc(start_s), load_w=[0.0] * steps, pv_w=[0.0] * steps, import_price=[0.3] * steps,
                      export_price=[0.08] * steps, soc_initial=0.5)


def test_slot_indices_inside_the_horizon_only():
    inputs = inputs_from(SLOT0_S, 4)
    slots = [SLOT0_S + k * STEP_S for k in (1, 3, 4)] + [SLOT0_S + 100]
    assert slot_indices(inputs, STEP_S, slots) == [1, 3]


non_increasing_curves = st.lists(st.integers(-5000, 5000), min_size=2, max_size=12).map(
    lambda values: sorted(values, reverse=True))


@settings(max_examples=300)
@given(quantities=non_increasing_curves)
def test_step_orders_are_the_curve(quantities):
    """The orders' step curve on the same grid is the curve itself (the mechanisms' own conversion)."""
    grid = [80_000 + 20_000 * k for k in range(len(quantities))]
    orders = step_orders("h", Curve(prices_micro=grid, net_import_wh=quantities))
    book = [BookOrder(str(o.order_id), "h", o.side, o.energy_wh, o.limit_price_micro) for o in orders]
    assert list(curve_from_orders("h", book, tuple(grid)).net_import_wh) == quantities
    assert len({o.order_id for o in orders}) == len(orders)


def test_a_fine_grid_is_thinned_to_the_orders_a_slot_may_carry():
    grid = [10_000 + 1000 * k for k in range(101)]
    quantities = [5000 - 100 * k for k in range(101)]  # a step at every price: 100 orders
    orders = step_orders("h", Curve(prices_micro=grid, net_import_wh=quantities))
    assert 0 < len(orders) <= MAX_ORDERS_PER_SLOT
    assert all(o.limit_price_micro in grid for o in orders)
    bought = sum(o.energy_wh for o in orders if o.side is Side.BUY)
    sold = sum(o.energy_wh for o in orders if o.side is Side.SELL)
    assert (bought, sold) == (5000, 5000)  # the ends of the curve are kept


def test_a_curve_becomes_a_slot_bid_in_either_format():
    curve = BidCurve(slot_start=utc(SLOT0_S), duration_s=STEP_S, prices=(0.08, 0.3),
                     net_import_wh=(300, -200))
    as_curve = slot_bid("h", curve, [80_000, 300_000], BidFormat.CURVE)
    assert as_curve.curve.prices_micro == [80_000, 300_000] and as_curve.curve.net_import_wh == [300, -200]
    as_orders = slot_bid("h", curve, [80_000, 300_000], BidFormat.ORDERS)
    assert sorted((o.side, o.energy_wh, o.limit_price_micro) for o in as_orders.orders) == [
        (Side.BUY, 300, 80_000), (Side.SELL, 200, 300_000)]
    with pytest.raises(ValueError):
        slot_bid("h", curve, [80_000, 190_000, 300_000], BidFormat.CURVE)
    with pytest.raises(ValueError):
        slot_bid("h", curve, [80_000, 300_000], BidFormat.NONE)
    assert submission("h", 5, [curve], [80_000, 300_000], BidFormat.CURVE).sequence == 5


TERMS = BidTerms(EnergyClass.GREEN_LOCAL, 20_000, ("p1",), (DonationTerms(("r1", "r2"), 150, 0),))


def test_the_homes_terms_go_on_the_side_they_qualify():
    curve = BidCurve(slot_start=utc(SLOT0_S), duration_s=STEP_S, prices=(0.08, 0.3), net_import_wh=(300, -200))
    as_orders = slot_bid("h", curve, [80_000, 300_000], BidFormat.ORDERS, TERMS)
    buy, = [order for order in as_orders.orders if order.side is Side.BUY]
    sell, = [order for order in as_orders.orders if order.side is Side.SELL]
    assert (buy.energy_class, buy.green_premium_micro, buy.partners) == (None, 20_000, ["p1"])
    assert (sell.energy_class, sell.green_premium_micro, sell.partners) == (EnergyClass.GREEN_LOCAL, None, None)
    donation, = as_orders.donations
    assert (donation.recipients, donation.energy_wh, donation.price_micro) == (["r1", "r2"], 150, 0)
    as_curve = slot_bid("h", curve, [80_000, 300_000], BidFormat.CURVE, TERMS)
    assert (as_curve.curve.energy_class, as_curve.curve.green_premium_micro) == (EnergyClass.GREEN_LOCAL, 20_000)
    assert as_curve.donations[0].donation_id != donation.donation_id  # a fresh id per bid


def test_a_bid_that_sells_nothing_gives_nothing_and_states_no_class():
    buying = BidCurve(slot_start=utc(SLOT0_S), duration_s=STEP_S, prices=(0.08, 0.3), net_import_wh=(300, 100))
    bid = slot_bid("h", buying, [80_000, 300_000], BidFormat.CURVE, TERMS)
    assert bid.donations == [] and bid.curve.energy_class is None and bid.curve.green_premium_micro == 20_000
    plain = slot_bid("h", buying, [80_000, 300_000], BidFormat.ORDERS)
    assert b"green" not in plain.model_dump_json(exclude_none=True).encode()  # the wire stays as it was


def test_sequence_numbers_increase_even_when_the_clock_stands_still():
    counter = SequenceCounter()
    numbers = [counter.next(SLOT0_S) for _ in range(3)] + [counter.next(SLOT0_S - 10)]
    assert numbers == sorted(set(numbers)) and numbers[0] == int(SLOT0_S * 1000)
    assert SequenceCounter().next(SLOT0_S + 1) > numbers[0]  # a restart later on continues above


def allocation(slot_s: float, bought: int, sold: int, price_micro: int, fees_nano: int = 0) -> Allocation:
    return Allocation(slot_start=utc(slot_s), duration_s=STEP_S, mechanism="bid_curve", bought_wh=bought,
                      sold_wh=sold, paid_nano=money_nano(bought, price_micro),
                      received_nano=money_nano(sold, price_micro), fees_nano=fees_nano)


def test_committed_trades_line_up_with_a_horizon_and_carry_their_price():
    book = Commitments()
    assert book.record(committed_trade(allocation(SLOT0_S + STEP_S, 400, 0, 150_000, fees_nano=400 * 20_000)))
    assert book.record(committed_trade(allocation(SLOT0_S + 3 * STEP_S, 0, 250, 100_000)))
    assert not book.record(committed_trade(allocation(SLOT0_S + 3 * STEP_S, 0, 250, 100_000)))  # duplicate
    trades = book.trades(utc(SLOT0_S), 4, STEP_S)
    assert trades.quantity_wh == [0.0, 400.0, 0.0, -250.0]
    assert trades.price_per_kwh == pytest.approx([0.0, 0.17, 0.0, 0.10])  # fees are part of the price paid
    assert book.trades(utc(SLOT0_S + 4 * STEP_S), 4, STEP_S) is None
    book.prune(SLOT0_S + 3 * STEP_S + 86_400)  # the first ended more than a day before, the second not
    assert len(book) == 1


def test_utc_slot_starts_round_trip():
    start = datetime(2025, 6, 21, 12, tzinfo=timezone.utc)
    assert slot_indices(inputs_from(start.timestamp(), 3), STEP_S,
                        [(start + timedelta(minutes=15)).timestamp()]) == [1]
