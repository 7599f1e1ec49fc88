"""The upstream allocation as a participant of our clearings, and the exchange reported back."""

from __future__ import annotations

import pytest

from hems.community.bids import clearing_input, orders_of
from hems.community.mechanisms.base import InputKind, MarketParameters, Order
from hems.community.mechanisms.bid_curve import BidCurveEquilibrium, curve_value_wh
from hems.community.mechanisms.uniform import UniformPriceAuction
from hems.community.upstream.participant import (UpstreamTrade, limit_price_micro, participant_bid,
                                                 participant_position, placing_limit_micro, reported_exchange_wh,
                                                 upstream_share)
from hems.community.upstream.slots import SlotMapping
from hems.protocol.messages import OrderStatus, Side

T = 1_795_046_400
GRID = tuple(range(80_000, 300_001, 20_000))
PARAMETERS = MarketParameters(retail_price_micro=300_000, feed_in_price_micro=80_000, price_grid_micro=GRID, seed=1)


def trade(slot_s: int, net_wh: int, price_micro: int, duration_s: int = 900) -> UpstreamTrade:
    bought, sold = max(net_wh, 0), max(-net_wh, 0)
    return UpstreamTrade(slot_s, duration_s, bought, sold, bought * price_micro, sold * price_micro, 0)


def test_the_limit_is_what_a_wh_cost_or_earned_upstream():
    assert limit_price_micro(1_000, 200_000_000) == 200_000
    assert limit_price_micro(-400, -60_000_000) == 150_000  # sold 400 Wh for 0.06
    fees = UpstreamTrade(T, 900, 1_000, 0, 180_000_000, 0, 20_000_000)
    assert limit_price_micro(fees.net_import_wh, fees.net_cost_nano) == 200_000  # fees included
    with pytest.raises(ValueError):
        limit_price_micro(0, 5)


def test_a_bought_trade_becomes_a_sell_of_the_participant_and_a_sold_one_a_buy():
    assert participant_bid(700, 177_000) == {"curve": {"prices_micro": [177_000, 177_001],
                                                       "net_import_wh": [-700, -700]}}
    (sell,) = orders_of("upstream", participant_bid(700, 177_000))
    (buy,) = orders_of("upstream", participant_bid(-250, 150_000))
    assert (sell.side, sell.energy_wh, sell.limit_price_micro) == (Side.SELL, 700, 177_000)
    assert (buy.side, buy.energy_wh, buy.limit_price_micro) == (Side.BUY, 250, 150_000)


def test_the_homes_share_the_participant_at_the_upstream_price_in_a_curve_market():
    # The homes' curves sum to 700 Wh at 177 000: what the upstream allocated to the community there.
    homes = [("a", {"curve": {"prices_micro": [80_000, 300_000], "net_import_wh": [900, 100]}}),
             ("b", {"curve": {"prices_micro": [80_000, 300_000], "net_import_wh": [300, -400]}})]
    demand = sum(curve_value_wh(curve, 153_333) for curve in
                 clearing_input(InputKind.CURVES, PARAMETERS, [(h, 1, b) for h, b in homes], {},
                                slot_start_s=T, duration_s=900).curves)
    assert round(demand) == 700
    book = [(h, 1, b) for h, b in homes] + [("upstream", 0, participant_bid(700, 153_333))]
    result = BidCurveEquilibrium().clear(clearing_input(InputKind.CURVES, PARAMETERS, book, {}, slot_start_s=T,
                                                        duration_s=900))
    assert result.allocation("upstream").sold_wh == 700 and result.allocation("upstream").bought_wh == 0
    assert abs(result.price_micro - 153_333) <= 100  # the homes' curves cross 700 Wh there
    assert result.balance_error_nano() == 0


def test_an_auction_trades_the_participant_at_its_limit():
    homes = [("a", {"orders": [{"order_id": "a1", "side": "buy", "energy_wh": 500, "limit_price_micro": 220_000}]}),
             ("b", {"orders": [{"order_id": "b1", "side": "buy", "energy_wh": 300, "limit_price_micro": 160_000}]})]
    book = [(h, 1, b) for h, b in homes] + [("upstream", 0, participant_bid(500, 177_000))]
    result = UniformPriceAuction().clear(clearing_input(InputKind.ORDERS, PARAMETERS, book, {}, slot_start_s=T,
                                                        duration_s=900))
    upstream = result.allocation("upstream")
    assert upstream.sold_wh == 500 and upstream.fills[0].status is OrderStatus.FILLED
    assert result.price_micro == (220_000 + 177_000) // 2  # the k-rule on (a's bid, the participant's ask)
    assert result.balance_error_nano() == 0


def test_in_an_order_market_the_limit_gives_way_only_as_far_as_the_homes_need():
    orders = [Order("a1", "a", Side.BUY, 300, 200_000), Order("b1", "b", Side.BUY, 200, 160_000),
              Order("c1", "c", Side.SELL, 100, 140_000), Order("d1", "d", Side.SELL, 400, 220_000)]
    place = lambda net, limit: placing_limit_micro(orders, net, limit, 80_000, 300_000)  # noqa: E731
    # The homes' net import: 200 Wh at 177 000 (a buys 300, c sells 100), 400 from 160 000 (b buys too),
    # 500 below 140 000 (c no longer sells).
    assert place(200, 177_000) == 177_000  # taken at the upstream price: it stands
    assert place(300, 177_000) == 160_000  # b's buy is needed: down to its limit
    assert place(500, 177_000) == 139_999  # and c must not sell: just below its limit
    assert place(600, 177_000) == 80_000  # no price places it all: our feed-in price
    # Buying from the homes: their net sale is −200 at 160 001, 100 above 200 000 (a no longer buys),
    # 500 from 220 000 (d sells too).
    assert place(-100, 150_000) == 200_001
    assert place(-400, 150_000) == 220_000
    assert place(-600, 150_000) == 300_000  # no price: our retail price


def test_ours_longer_sums_the_upstream_slots_at_the_net_price():
    mapping = SlotMapping(our_slot_s=900, upstream_slot_s=300)
    trades = {T: trade(T, 100, 200_000, 300), T + 300: trade(T + 300, 50, 100_000, 300),
              T + 600: trade(T + 600, -30, 300_000, 300)}
    # Net 120 Wh for 0.020 + 0.005 − 0.009 = 0.016: 133 333 µ¤/kWh.
    assert participant_position(mapping, T, trades) == (120, 133_333)
    assert participant_position(mapping, T, {}) is None


def test_an_upstream_slot_longer_than_ours_is_shared_where_the_demand_is():
    mapping = SlotMapping(our_slot_s=300, upstream_slot_s=900)
    trades = {T: trade(T, 1_000, 177_000)}
    # First of three slots, residuals at the limit 200 / 300 / 500 Wh: 1000 · 200 / 1000.
    assert participant_position(mapping, T, trades, 0, [200, 300, 500]) == (200, 177_000)
    # Second: slot one cleared 190 of it; 810 left, shared 300 : 500.
    assert participant_position(mapping, T + 300, trades, 190, [300, 500]) == (304, 177_000)
    # Last: whatever is left.
    assert participant_position(mapping, T + 600, trades, 494, [1]) == (506, 177_000)
    # Nobody wants it: evenly.
    assert participant_position(mapping, T, trades, 0, [0, 0, 0]) == (334, 177_000)
    assert participant_position(mapping, T, trades) == (334, 177_000)
    assert upstream_share(-10, [1, 1]) == -5


def test_the_report_is_the_exchange_as_cleared():
    ours_longer = SlotMapping(our_slot_s=900, upstream_slot_s=300)
    trades = {T: trade(T, 100, 1, 300), T + 300: trade(T + 300, 50, 1, 300), T + 600: trade(T + 600, -30, 1, 300)}
    fully_taken = {T: 120}.__getitem__
    assert [reported_exchange_wh(ours_longer, T + offset, fully_taken, trades) for offset in (0, 300, 600)] == \
        [100, 50, -30]
    short = {T: 117}.__getitem__  # 3 Wh were not taken: each upstream slot reports 1 Wh less
    assert [reported_exchange_wh(ours_longer, T + offset, short, trades) for offset in (0, 300, 600)] == \
        [99, 49, -31]
    upstream_longer = SlotMapping(our_slot_s=300, upstream_slot_s=900)
    positions = {T: 200, T + 300: 304, T + 600: 496}.__getitem__
    assert reported_exchange_wh(upstream_longer, T, positions, {T: trade(T, 1_000, 1)}) == 1_000


def test_a_trade_reads_back_from_its_ledger_body():
    item = UpstreamTrade(T, 900, 10, 0, 1_770_000, 0, 5, sequence=42)
    assert UpstreamTrade.from_body(item.to_body() | {"upstream": "feeder", "mechanism": "bid_curve"}) == item
