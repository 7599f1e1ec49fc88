"""The energy-sharing price rules (markets.md §5): pinned vectors, degenerate slots, invariants."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.mechanisms.base import ClearingInput, InputKind, MarketParameters, Position
from hems.community.mechanisms.registry import create_mechanism
from hems.community.mechanisms.sharing import BillSharing, MidMarketRate, SharingRule, SupplyDemandRatio

RETAIL, FEED_IN = 300_000, 80_000  # λ_b = 0.30, λ_s = 0.08 per kWh
PARAMETERS = MarketParameters(retail_price_micro=RETAIL, feed_in_price_micro=FEED_IN)
RULES = ("supply_demand_ratio", "mid_market_rate", "bill_sharing")


def clear(rule: str, *positions: Position, parameters: MarketParameters = PARAMETERS):
    return create_mechanism(rule).clear(ClearingInput(parameters, positions=positions))


def deficit_slot() -> tuple[Position, ...]:
    """G = 3 kWh from one seller, D = 10 kWh from two buyers."""
    return (Position("a", 7000, 0), Position("b", 0, 3000), Position("c", 3000, 0))


def test_registered_as_position_mechanisms():
    for rule, cls in zip(RULES, (SupplyDemandRatio, MidMarketRate, BillSharing)):
        mechanism = create_mechanism(rule)
        assert isinstance(mechanism, cls) and mechanism.name == rule
        assert mechanism.input_kind is InputKind.POSITIONS


def test_sdr_pinned_vector():
    """Liu et al.'s formula, not D/G or a linear blend: λ_b 0.30, λ_s 0.08, G 3, D 10."""
    buy, sell = SupplyDemandRatio.exact_prices(RETAIL, FEED_IN, 3, 10)
    assert round(float(sell) / 1e6, 5) == 0.16438
    assert round(float(buy) / 1e6, 5) == 0.25932
    assert sell == Fraction(12_000_000, 73) and buy == Fraction(18_930_000, 73)
    assert 10 * buy == 3 * sell + RETAIL * (10 - 3)  # D·P_buy = G·P_sell + λ_b·(D − G)

    result = clear("supply_demand_ratio", *deficit_slot())
    assert (result.sell_price_micro, result.buy_price_micro) == (164_384, 259_315)
    assert result.allocation("a").paid_nano == 7000 * 259_315
    assert result.allocation("b").received_nano == 3000 * 164_384
    assert result.retailer_nano == 7000 * RETAIL
    assert result.rounding_nano == 10_000 * 259_315 - 3000 * 164_384 - 7000 * RETAIL == -2000
    assert result.balance_error_nano() == 0


def test_sdr_at_or_above_one_sells_at_feed_in():
    assert SupplyDemandRatio.exact_prices(RETAIL, FEED_IN, 10, 10) == (FEED_IN, FEED_IN)
    assert SupplyDemandRatio.exact_prices(RETAIL, FEED_IN, 12, 3) == (FEED_IN, FEED_IN)
    assert SupplyDemandRatio.exact_prices(RETAIL, FEED_IN, 5, 0) == (FEED_IN, FEED_IN)  # D = 0: all exported


def test_sdr_without_supply_is_retail():
    assert SupplyDemandRatio.exact_prices(RETAIL, FEED_IN, 0, 7) == (RETAIL, RETAIL)
    assert SupplyDemandRatio.exact_prices(RETAIL, 0, 0, 7) == (RETAIL, RETAIL)  # no division by λ_s = 0


def test_sdr_needs_a_non_negative_feed_in():
    parameters = MarketParameters(retail_price_micro=RETAIL, feed_in_price_micro=-10_000)
    with pytest.raises(ValueError, match="feed-in"):
        clear("supply_demand_ratio", *deficit_slot(), parameters=parameters)


def test_mid_market_pinned_vector():
    buy, sell = MidMarketRate.exact_prices(RETAIL, FEED_IN, 3, 10)
    assert (sell, buy) == (190_000, 267_000)
    result = clear("mid_market_rate", *deficit_slot())
    assert (result.sell_price_micro, result.buy_price_micro) == (190_000, 267_000)
    assert result.rounding_nano == 0 and result.balance_error_nano() == 0


def test_mid_market_surplus_blends_the_feed_in_price():
    buy, sell = MidMarketRate.exact_prices(RETAIL, FEED_IN, 10, 3)
    assert buy == 190_000
    assert sell == Fraction(190_000 * 3 + FEED_IN * 7, 10) == 113_000


def test_bill_sharing_reading():
    """Local energy at λ_s, the import bill shared by d_i/D (module docstring)."""
    buy, sell = BillSharing.exact_prices(RETAIL, FEED_IN, 3, 10)
    assert sell == FEED_IN
    assert buy == Fraction(RETAIL * 7 + FEED_IN * 3, 10) == 234_000
    assert BillSharing.exact_prices(RETAIL, FEED_IN, 10, 3) == (FEED_IN, FEED_IN)
    result = clear("bill_sharing", *deficit_slot())
    # the community's bill at the point of common coupling is paid in full, and nothing else
    assert result.retailer_nano == RETAIL * 7000
    homes_net = sum(item.paid_nano - item.received_nano for item in result.allocations)
    assert homes_net == result.retailer_nano + result.rounding_nano


@pytest.mark.parametrize("rule", RULES)
def test_no_homes(rule):
    result = clear(rule)
    assert result.allocations == () and result.traded_wh == 0 and result.balance_error_nano() == 0


@pytest.mark.parametrize("rule", RULES)
def test_only_buyers_pay_retail(rule):
    result = clear(rule, Position("a", 1200, 0), Position("b", 800, 0))
    assert result.buy_price_micro == RETAIL
    assert result.traded_wh == 0 and result.grid_import_wh == 2000 and result.grid_export_wh == 0
    assert result.retailer_nano == 2000 * RETAIL and result.balance_error_nano() == 0


@pytest.mark.parametrize("rule", RULES)
def test_only_sellers_get_feed_in(rule):
    result = clear(rule, Position("a", 0, 1200), Position("b", 0, 800))
    assert result.sell_price_micro == FEED_IN
    assert result.grid_export_wh == 2000 and result.retailer_nano == -2000 * FEED_IN
    assert result.allocation("a").received_nano == 1200 * FEED_IN and result.balance_error_nano() == 0


@pytest.mark.parametrize("rule", RULES)
def test_all_zero(rule):
    result = clear(rule, Position("a", 0, 0), Position("b", 0, 0))
    assert [item.net_import_wh for item in result.allocations] == [0, 0]
    assert result.retailer_nano == result.rounding_nano == 0 and result.traded_wh == 0


@pytest.mark.parametrize("rule", RULES)
def test_one_home_nets_its_own_import_and_export(rule):
    """Metered gross: 500 Wh in, 200 Wh out is a net demand of 300 Wh (module docstring)."""
    result = clear(rule, Position("a", 500, 200))
    (home,) = result.allocations
    assert (home.bought_wh, home.sold_wh) == (300, 0)
    assert home.paid_nano == 300 * RETAIL and result.traded_wh == 0 and result.balance_error_nano() == 0


@pytest.mark.parametrize("rule", RULES)
def test_balanced_slot_needs_no_retailer(rule):
    result = clear(rule, Position("a", 2000, 0), Position("b", 0, 2000))
    assert result.traded_wh == 2000 and result.grid_import_wh == result.grid_export_wh == 0
    assert result.retailer_nano == 0 and result.balance_error_nano() == 0


@pytest.mark.parametrize("rule", RULES)
def test_fees_on_home_to_home_share(rule):
    """D > G: the 3 kWh other homes supplied are shared 7:3 among the buyers; they pay the fee on it."""
    parameters = MarketParameters(retail_price_micro=RETAIL, feed_in_price_micro=FEED_IN,
                                  network_fee_micro=10_000, community_fee_micro=2_000)
    result = clear(rule, *deficit_slot(), parameters=parameters)
    assert result.allocation("a").network_fee_nano == 2100 * 10_000
    assert result.allocation("c").community_fee_nano == 900 * 2_000
    assert result.allocation("b").fees_nano == 0
    assert result.network_fees_nano == 3000 * 10_000 and result.balance_error_nano() == 0


@pytest.mark.parametrize("positions, message", [
    ((Position("a", -1, 0),), "≥ 0"),
    ((Position("a", 1, 0), Position("a", 0, 1)), "more than one"),
])
def test_invalid_positions(positions, message):
    with pytest.raises(ValueError, match=message):
        clear("mid_market_rate", *positions)


def test_feed_in_must_be_below_retail():
    with pytest.raises(ValueError, match="below the retail"):
        clear("bill_sharing", Position("a", 1, 0),
              parameters=MarketParameters(retail_price_micro=100, feed_in_price_micro=100))


@st.composite
def slots(draw):
    retail = draw(st.integers(1, 600_000))
    feed_in = draw(st.integers(0, retail - 1))
    fee = draw(st.integers(1, 50_000))
    parameters = MarketParameters(retail_price_micro=retail, feed_in_price_micro=feed_in, network_fee_micro=fee,
                                  seed=draw(st.integers(0, 2**16)))
    metered = draw(st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 20_000)), max_size=12))
    return parameters, tuple(Position(f"h{index}", imported, exported)
                             for index, (imported, exported) in enumerate(metered))


@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=150, deadline=None)
@given(slot=slots())
def test_invariants(rule, slot):
    parameters, positions = slot
    result = clear(rule, *positions, parameters=parameters)
    assert result.balance_error_nano() == 0
    if not positions:
        return
    low, high = parameters.feed_in_price_micro, parameters.retail_price_micro
    assert low <= result.sell_price_micro <= high and low <= result.buy_price_micro <= high
    supply = sum(max(item.export_wh - item.import_wh, 0) for item in positions)
    demand = sum(max(item.import_wh - item.export_wh, 0) for item in positions)
    assert result.traded_wh == min(supply, demand)
    assert result.grid_import_wh - result.grid_export_wh == demand - supply
    for position in positions:
        home = result.allocation(position.home)
        assert home.net_import_wh == position.import_wh - position.export_wh
        assert home.bought_wh == 0 or home.sold_wh == 0
    # home-to-home: the fee is paid on exactly what sellers supplied to buyers
    assert result.network_fees_nano == result.traded_wh * parameters.network_fee_micro
    # rounding a price moves at most half a µ¤/kWh per kWh
    assert 2 * abs(result.rounding_nano) <= supply + demand
    # the exact prices reproduce the retailer's bill: the rule itself is budget-balanced
    rule_class: type[SharingRule] = type(create_mechanism(rule))
    buy, sell = rule_class.exact_prices(high, low, supply, demand)
    assert demand * buy - supply * sell == result.retailer_nano
