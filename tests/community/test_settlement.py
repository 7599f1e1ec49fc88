"""Settlement arithmetic: hand-computed slots and the invariants on random clearings and meters."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.ledger import canonical_json
from hems.community.mechanisms.base import ClearingResult, HomeAllocation
from hems.community.settlement import (HomeSettlement, MeteredEnergy, SettlementPrices, combine, correction,
                                       settle_slot, settlement_from_body, settlement_to_body)

SLOT = 1_700_000_100
# 0.30 retail, 0.08 feed-in (µ¤/kWh); imbalance at the same prices (retailer as residual balancer).
PRICES = SettlementPrices(retail_price_micro=300_000, feed_in_price_micro=80_000,
                          imbalance_import_price_micro=300_000, imbalance_export_price_micro=80_000)


def two_home_trade() -> ClearingResult:
    """a sells 1 kWh to b at 0.19; b pays a 0.01/kWh network fee on top."""
    return ClearingResult(
        mechanism="uniform_auction", price_micro=190_000, traded_wh=1000,
        allocations=(HomeAllocation("a", sold_wh=1000, received_nano=190_000_000),
                     HomeAllocation("b", bought_wh=1000, paid_nano=190_000_000, network_fee_nano=10_000_000)))


def test_hand_computed_slot():
    meters = {"a": MeteredEnergy("a", import_wh=0, export_wh=1200), "b": MeteredEnergy("b", import_wh=900, export_wh=0)}
    result = settle_slot(SLOT, two_home_trade(), meters, ["a", "b", "c"], PRICES)
    a, b, c = result.homes
    # a exported 200 Wh more than it sold: credited at feed-in.
    assert (a.imbalance_wh, a.imbalance_credit_nano, a.imbalance_charge_nano) == (-200, 16_000_000, 0)
    assert a.bill_nano == -190_000_000 - 16_000_000
    assert a.retail_only_bill_nano == -1200 * 80_000 and a.savings_nano == 110_000_000
    # b used 100 Wh less than it bought: the surplus goes back to the retailer at feed-in.
    assert (b.imbalance_wh, b.imbalance_credit_nano) == (-100, 8_000_000)
    assert b.bill_nano == 190_000_000 + 10_000_000 - 8_000_000
    assert b.retail_only_bill_nano == 270_000_000 and b.savings_nano == 78_000_000
    # c is a member without trades or a reading: provisional, all zero.
    assert c == HomeSettlement("c", SLOT, 0, 0, True, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert (result.retailer_nano, result.network_fees_nano, result.community_fees_nano) == (-24_000_000, 10_000_000, 0)
    assert result.balance_error_nano() == 0


def test_missing_reading_settles_at_the_cleared_position():
    result = settle_slot(SLOT, two_home_trade(), {"a": MeteredEnergy("a", 0, 1000)}, ["a", "b"], PRICES)
    b = result.home("b")
    assert b is not None and b.estimated and (b.import_wh, b.export_wh, b.imbalance_wh) == (1000, 0, 0)
    assert b.bill_nano == 200_000_000 and b.savings_nano == 300_000_000 - 200_000_000
    assert result.balance_error_nano() == 0


def test_nothing_traded_everyone_settles_with_the_retailer():
    meters = {"a": MeteredEnergy("a", 0, 500), "b": MeteredEnergy("b", 700, 0)}
    result = settle_slot(SLOT, None, meters, ["a", "b"], PRICES)
    assert [home.bill_nano for home in result.homes] == [-500 * 80_000, 700 * 300_000]
    assert [home.savings_nano for home in result.homes] == [0, 0]
    assert result.retailer_nano == 700 * 300_000 - 500 * 80_000 and result.balance_error_nano() == 0


def test_homes_outside_the_member_list_are_still_settled():
    result = settle_slot(SLOT, two_home_trade(), {"z": MeteredEnergy("z", 10, 0)}, ["b"], PRICES)
    assert [home.home for home in result.homes] == ["b", "a", "z"]
    assert result.balance_error_nano() == 0


def test_imbalance_prices_differ_from_retail():
    prices = replace(PRICES, imbalance_import_price_micro=400_000, imbalance_export_price_micro=50_000)
    result = settle_slot(SLOT, two_home_trade(), {"a": MeteredEnergy("a", 0, 700), "b": MeteredEnergy("b", 1100, 0)},
                         ["a", "b"], prices)
    a, b = result.homes
    assert (a.imbalance_wh, a.imbalance_charge_nano) == (300, 300 * 400_000)  # a sold 300 Wh it did not export
    assert (b.imbalance_wh, b.imbalance_charge_nano) == (100, 100 * 400_000)
    assert result.retailer_nano == 400 * 400_000 and result.balance_error_nano() == 0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="export_wh"):
        settle_slot(SLOT, None, {"a": MeteredEnergy("a", 0, -1)}, ["a"], PRICES)
    with pytest.raises(ValueError, match="reading of 'b'"):
        settle_slot(SLOT, None, {"a": MeteredEnergy("b", 0, 0)}, ["a"], PRICES)
    with pytest.raises(TypeError, match="retail_price_micro"):
        settle_slot(SLOT, None, {}, ["a"], replace(PRICES, retail_price_micro=0.3))
    with pytest.raises(ValueError, match="cannot correct"):
        correction(settle_slot(SLOT, None, {}, ["a"], PRICES).homes[0], MeteredEnergy("b", 1, 0), PRICES)


def test_body_round_trip_and_strict_reading():
    home = settle_slot(SLOT, two_home_trade(), {}, ["a", "b"], PRICES).homes[1]
    body = settlement_to_body(home)
    canonical_json(body)  # ledger-safe: no floats
    assert settlement_from_body(body) == home
    assert settlement_from_body({**body, "future_key": "x"}) == home
    with pytest.raises(ValueError, match="'bill_nano' is missing"):
        settlement_from_body({k: v for k, v in body.items() if k != "bill_nano"})
    with pytest.raises(ValueError, match="bill_nano = '1' is not an integer"):
        settlement_from_body({**body, "bill_nano": "1"})
    with pytest.raises(ValueError, match="estimated"):
        settlement_from_body({**body, "estimated": 1})


# -- properties ---------------------------------------------------------------------------------

HOMES = ("h0", "h1", "h2", "h3", "h4")
prices_strategy = st.builds(
    lambda feed_in, spread, imbalance_import, imbalance_export: SettlementPrices(
        feed_in + spread, feed_in, imbalance_import, imbalance_export),
    st.integers(0, 500_000), st.integers(1, 500_000), st.integers(0, 1_000_000), st.integers(0, 1_000_000))
energy = st.integers(0, 20_000)


@st.composite
def clearings(draw) -> ClearingResult:
    """Random allocations; the retailer takes whatever balances the books (as every mechanism must)."""
    homes = draw(st.lists(st.sampled_from(HOMES), unique=True, max_size=len(HOMES)))
    money = st.integers(0, 10**10)
    allocations = tuple(HomeAllocation(home, bought_wh=draw(energy), sold_wh=draw(energy), paid_nano=draw(money),
                                       received_nano=draw(money), network_fee_nano=draw(money),
                                       community_fee_nano=draw(money)) for home in homes)
    rounding = draw(st.integers(-1000, 1000))
    homes_in = sum(item.paid_nano + item.fees_nano - item.received_nano for item in allocations)
    fees = sum(item.fees_nano for item in allocations)
    return ClearingResult("random", allocations, retailer_nano=homes_in - fees - rounding, rounding_nano=rounding)


meters_strategy = st.dictionaries(st.sampled_from(HOMES), st.tuples(energy, energy)).map(
    lambda readings: {home: MeteredEnergy(home, imported, exported) for home, (imported, exported) in readings.items()})


@settings(max_examples=200, deadline=None)
@given(clearing=st.none() | clearings(), meters=meters_strategy,
       members=st.lists(st.sampled_from(HOMES), unique=True), prices=prices_strategy)
def test_books_balance(clearing, meters, members, prices):
    result = settle_slot(SLOT, clearing, meters, members, prices)
    assert result.balance_error_nano() == 0
    settled = {home.home for home in result.homes}
    assert set(members) | set(meters) <= settled and len(settled) == len(result.homes)
    for home in result.homes:
        assert home.imbalance_charge_nano >= 0 and home.imbalance_credit_nano >= 0
        assert home.savings_nano == home.retail_only_bill_nano - home.bill_nano
        assert home.estimated == (home.home not in meters)


@settings(max_examples=200, deadline=None)
@given(imported=energy, exported=energy, prices=prices_strategy)
def test_retail_only_home_saves_nothing_unless_it_nets_within_the_slot(imported, exported, prices):
    prices = replace(prices, imbalance_import_price_micro=prices.retail_price_micro,
                     imbalance_export_price_micro=prices.feed_in_price_micro)
    [home] = settle_slot(SLOT, None, {"h0": MeteredEnergy("h0", imported, exported)}, ["h0"], prices).homes
    # Imbalance is netted per slot, so a home that imports and exports in one slot saves
    # exactly its netted energy at the retail/feed-in spread, and nothing otherwise.
    netted_wh = min(imported, exported)
    assert home.savings_nano == netted_wh * (prices.retail_price_micro - prices.feed_in_price_micro)
    if netted_wh == 0:
        assert home.savings_nano == 0


@settings(max_examples=200, deadline=None)
@given(clearing=clearings(), home=st.sampled_from(HOMES), first=st.tuples(energy, energy),
       second=st.tuples(energy, energy), prices=prices_strategy)
def test_corrections_add_up_to_settling_with_the_actual_reading(clearing, home, first, second, prices):
    provisional = settle_slot(SLOT, clearing, {}, [home], prices).home(home)
    assert provisional is not None and provisional.estimated and provisional.imbalance_wh == 0
    late = MeteredEnergy(home, *first)
    fix = correction(provisional, late, prices)
    assert (fix.bought_wh, fix.sold_wh, fix.energy_paid_nano, fix.energy_received_nano, fix.fees_nano) == (0,) * 5
    assert combine(provisional, fix) == settle_slot(SLOT, clearing, {home: late}, [home], prices).home(home)
    # A second, different reading corrects the corrected figures.
    later = MeteredEnergy(home, *second)
    second_fix = correction(combine(provisional, fix), later, prices)
    assert combine(provisional, fix, second_fix) == settle_slot(SLOT, clearing, {home: later}, [home], prices).home(home)
    assert settlement_from_body(settlement_to_body(second_fix)) == second_fix
