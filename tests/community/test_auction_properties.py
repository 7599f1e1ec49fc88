"""Invariants of both double auctions on random books (hypothesis), and Q* against an independent
pure-Python walk."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.mechanisms.base import ClearingInput, ClearingResult, MarketParameters, Order
from hems.community.mechanisms.book import rule_price
from hems.community.mechanisms.pay_as_bid import PayAsBidAuction
from hems.community.mechanisms.uniform import UniformPriceAuction
from hems.protocol.messages import OrderStatus, Side

RETAIL, FEED_IN = 300_000, 80_000
# Few distinct prices make ties, equal steps and the band's edges common; outside values test clamping.
PRICES = st.one_of(st.sampled_from([20_000, FEED_IN, 120_000, 150_000, 200_000, RETAIL, 350_000]),
                   st.integers(0, 400_000))
FEES = st.sampled_from([(0, 0), (0, 0), (6_000, 4_000), (0, 25_000)])
KS = st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1), Fraction(1, 3), Fraction(5, 7)])


@st.composite
def markets(draw, one_side_per_home: bool = False) -> tuple[ClearingInput, bool]:
    """A random slot: up to 8 homes with up to 4 orders each, random k, fees, seed, retailer."""
    specs = []
    for home in range(draw(st.integers(0, 8))):
        home_side = draw(st.sampled_from(Side))
        for _ in range(draw(st.integers(0, 4))):
            side = home_side if one_side_per_home else draw(st.sampled_from(Side))
            specs.append((f"h{home}", side, draw(st.integers(0, 60)), draw(PRICES)))
    network_fee, community_fee = draw(FEES)
    parameters = MarketParameters(RETAIL, FEED_IN, k=draw(KS), network_fee_micro=network_fee,
                                  community_fee_micro=community_fee, seed=draw(st.integers(0, 2**32)))
    book = tuple(Order(f"o{index:02d}", *spec) for index, spec in enumerate(specs))
    return ClearingInput(parameters, book), draw(st.booleans())


def check_invariants(market: ClearingInput, result: ClearingResult) -> None:
    """What must hold for any book: markets.md §2, §3, §9."""
    parameters = market.parameters
    fee = parameters.fee_micro
    assert result.balance_error_nano() == 0
    by_id = {order.order_id: order for order in market.orders}
    fills = {fill.order_id: (allocation, fill) for allocation in result.allocations for fill in allocation.fills}
    assert fills.keys() == by_id.keys()  # every order exactly once
    assert [allocation.home for allocation in result.allocations] == sorted({o.home for o in market.orders})
    prices = list(result.trade_prices_micro) + [result.price_micro] * (result.price_micro is not None)
    for order_id, (allocation, fill) in fills.items():
        order = by_id[order_id]
        assert allocation.home == order.home
        assert 0 <= fill.filled_wh <= max(order.energy_wh, 0)
        expected = (OrderStatus.UNMATCHED if fill.filled_wh == 0 else
                    OrderStatus.FILLED if fill.filled_wh == order.energy_wh else OrderStatus.PARTIALLY_FILLED)
        assert fill.status is expected
        if fill.filled_wh:
            prices.append(fill.price_micro)
            if order.side is Side.BUY:  # never above the limit, fees included
                assert fill.price_micro + fee <= order.limit_price_micro
            else:
                assert fill.price_micro >= order.limit_price_micro
        else:
            assert fill.price_micro is None
    assert all(FEED_IN <= price <= RETAIL for price in prices)
    bought = sold = 0
    for allocation in result.allocations:
        mine = [(by_id[fill.order_id], fill) for fill in allocation.fills]
        assert allocation.bought_wh == sum(fill.filled_wh for order, fill in mine if order.side is Side.BUY)
        assert allocation.sold_wh == sum(fill.filled_wh for order, fill in mine if order.side is Side.SELL)
        assert not (allocation.bought_wh and allocation.sold_wh)  # never matched with itself
        assert allocation.network_fee_nano == allocation.bought_wh * parameters.network_fee_micro
        assert allocation.community_fee_nano == allocation.bought_wh * parameters.community_fee_micro
        # Money within the limits: what a buyer pays never exceeds its orders' limits at their fills.
        assert allocation.paid_nano + allocation.fees_nano <= sum(
            fill.filled_wh * order.limit_price_micro for order, fill in mine if order.side is Side.BUY)
        assert allocation.received_nano >= sum(
            fill.filled_wh * order.limit_price_micro for order, fill in mine if order.side is Side.SELL)
        bought, sold = bought + allocation.bought_wh, sold + allocation.sold_wh
    # Home-to-home volume: bought from homes = sold to homes.
    assert bought - result.grid_import_wh == sold - result.grid_export_wh == result.traded_wh >= 0
    assert not (result.grid_import_wh and result.grid_export_wh)
    if fee:
        assert (result.grid_import_wh, result.grid_export_wh, result.retailer_nano) == (0, 0, 0)
    assert result.rounding_nano == 0


@settings(max_examples=150, deadline=None)
@given(markets(), st.randoms(use_true_random=False))
def test_uniform_price_invariants(drawn, random):
    market, retailer = drawn
    auction = UniformPriceAuction(book_retailer=retailer)
    result = auction.clear(market)
    check_invariants(market, result)
    for allocation in result.allocations:  # one price for all
        assert allocation.paid_nano == allocation.bought_wh * (result.price_micro or 0)
        assert allocation.received_nano == allocation.sold_wh * (result.price_micro or 0)
    assert auction.clear(market) == result  # deterministic
    shuffled = list(market.orders)
    random.shuffle(shuffled)
    assert auction.clear(ClearingInput(market.parameters, tuple(shuffled))) == result  # no arrival order


@settings(max_examples=150, deadline=None)
@given(markets(), st.randoms(use_true_random=False))
def test_pay_as_bid_invariants_and_same_volumes_as_uniform(drawn, random):
    market, retailer = drawn
    auction = PayAsBidAuction(book_retailer=retailer)
    result = auction.clear(market)
    check_invariants(market, result)
    uniform = UniformPriceAuction(book_retailer=retailer).clear(market)
    volumes = lambda outcome: {fill.order_id: fill.filled_wh  # noqa: E731
                               for allocation in outcome.allocations for fill in allocation.fills}
    assert volumes(result) == volumes(uniform)
    assert (result.traded_wh, result.grid_import_wh, result.grid_export_wh) == (
        uniform.traded_wh, uniform.grid_import_wh, uniform.grid_export_wh)
    assert auction.clear(market) == result
    shuffled = list(market.orders)
    random.shuffle(shuffled)
    assert auction.clear(ClearingInput(market.parameters, tuple(shuffled))) == result


def reference_walk(market: ClearingInput, retailer: bool) -> tuple[int, int | None, int | None]:
    """markets.md §2 steps 2-5 literally, one order at a time: (Q*, p̃ of b_m, p of o_m).
    Homes are one-sided here, so there is nothing to net."""
    parameters = market.parameters
    fee = parameters.fee_micro
    bids = [[min(o.limit_price_micro, RETAIL) - fee, o.energy_wh] for o in market.orders
            if o.side is Side.BUY and o.energy_wh > 0]
    asks = [[max(o.limit_price_micro, FEED_IN), o.energy_wh] for o in market.orders
            if o.side is Side.SELL and o.energy_wh > 0]
    if retailer and fee == 0:
        home_bids, home_asks = sum(quantity for _, quantity in bids), sum(quantity for _, quantity in asks)
        bids.append([FEED_IN, home_asks])
        asks.append([RETAIL, home_bids])
    bids.sort(key=lambda bid: -bid[0])  # stable: the retailer stays after homes at its price
    asks.sort(key=lambda ask: ask[0])
    cleared, last, b, o = 0, (None, None), 0, 0
    while b < len(bids) and o < len(asks) and bids[b][0] >= asks[o][0]:
        volume = min(bids[b][1], asks[o][1])
        if volume:
            cleared, last = cleared + volume, (bids[b][0], asks[o][0])
        bids[b][1] -= volume
        asks[o][1] -= volume
        b, o = b + (bids[b][1] == 0), o + (asks[o][1] == 0)
    return cleared, *last


@settings(max_examples=150, deadline=None)
@given(markets(one_side_per_home=True))
def test_cleared_volume_and_price_match_a_literal_walk(drawn):
    market, retailer = drawn
    result = UniformPriceAuction(book_retailer=retailer).clear(market)
    cleared, bid, ask = reference_walk(market, retailer)
    assert result.details["cleared_wh"] == cleared
    assert result.price_micro == (rule_price(market.parameters.k, bid, ask) if cleared else None)
    assert sum(allocation.bought_wh for allocation in result.allocations) + result.grid_export_wh == cleared
