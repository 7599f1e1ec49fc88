"""Energy collective (markets.md §6): a real LP solved by HiGHS (Clarabel as fallback), checked against
hand-worked books, a brute-force merit order, the Walrasian price interval and the uniform auction."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems.community.mechanisms.base import ClearingInput, ClearingResult, InputKind, MarketParameters, Order
from hems.community.mechanisms.collective import CollectiveSolveError, EnergyCollective
from hems.community.mechanisms.registry import create_mechanism
from hems.protocol.messages import OrderStatus, Side

RETAIL, FEED_IN = 300_000, 80_000
BUY, SELL = Side.BUY, Side.SELL


def parameters(**changes) -> MarketParameters:
    return MarketParameters(**(dict(retail_price_micro=RETAIL, feed_in_price_micro=FEED_IN) | changes))


def order(order_id: str, home: str, side: Side, energy_wh: int, limit_micro: int) -> Order:
    return Order(order_id, home, side, energy_wh, limit_micro)


def clear(*orders: Order, market: MarketParameters | None = None,
          mechanism: EnergyCollective | None = None) -> ClearingResult:
    return (mechanism or EnergyCollective()).clear(ClearingInput(market or parameters(), orders=orders))


def fills(result: ClearingResult) -> dict[str, int]:
    return {fill.order_id: fill.filled_wh for item in result.allocations for fill in item.fills}


def in_band(item: Order, market: MarketParameters) -> bool:
    if item.side is BUY:
        return item.limit_price_micro >= market.feed_in_price_micro
    return item.limit_price_micro <= market.retail_price_micro


def clamped(item: Order, market: MarketParameters) -> int:
    return min(max(item.limit_price_micro, market.feed_in_price_micro), market.retail_price_micro)


def community_cost_nano(result: ClearingResult, orders: tuple[Order, ...], market: MarketParameters) -> int:
    """(3a) at a result: orders' costs at their clamped limits, the retailer at λ±, fees on traded volume
    (preference weights left out: the tests that compare costs use δ = 0)."""
    filled = fills(result)
    energy = sum((1 if item.side is SELL else -1) * filled.get(item.order_id, 0) * clamped(item, market)
                 for item in orders)
    return (energy + result.grid_import_wh * market.retail_price_micro
            - result.grid_export_wh * market.feed_in_price_micro + result.traded_wh * market.fee_micro)


def merit_order_cost_nano(orders: tuple[Order, ...], market: MarketParameters) -> int:
    """The least community cost without fees, by brute force: walk buys (and the retailer buying at λ⁻)
    down and sells (and the retailer selling at λ⁺) up while the bid beats the ask."""
    unlimited = sum(item.energy_wh for item in orders) + 1
    bids = sorted([(clamped(o, market), o.energy_wh) for o in orders if o.side is BUY and in_band(o, market)]
                  + [(market.feed_in_price_micro, unlimited)], reverse=True)
    asks = sorted([(clamped(o, market), o.energy_wh) for o in orders if o.side is SELL and in_band(o, market)]
                  + [(market.retail_price_micro, unlimited)])
    bids, asks = [list(pair) for pair in bids], [list(pair) for pair in asks]
    cost, i, j = 0, 0, 0
    while i < len(bids) and j < len(asks) and bids[i][0] > asks[j][0]:
        volume = min(bids[i][1], asks[j][1])
        cost += (asks[j][0] - bids[i][0]) * volume
        bids[i][1] -= volume
        asks[j][1] -= volume
        i, j = i + (bids[i][1] == 0), j + (asks[j][1] == 0)
    return cost


def walrasian_interval(orders: tuple[Order, ...], market: MarketParameters) -> tuple[int, int]:
    """Every price in [λ⁻, λ⁺] at which the book (retailer included) can balance with orders better than
    the price filled and worse ones not: exactly the set of optimal LP duals of (3c) without fees."""
    low, high = market.feed_in_price_micro, market.retail_price_micro
    buys = [(clamped(o, market), o.energy_wh) for o in orders if o.side is BUY and in_band(o, market)]
    sells = [(clamped(o, market), o.energy_wh) for o in orders if o.side is SELL and in_band(o, market)]
    unlimited = float("inf")

    def balances(price: int) -> bool:
        least_demand = sum(q for p, q in buys if p > price)
        most_demand = sum(q for p, q in buys if p >= price) + (unlimited if price == low else 0)
        least_supply = sum(q for p, q in sells if p < price)
        most_supply = sum(q for p, q in sells if p <= price) + (unlimited if price == high else 0)
        return least_demand <= most_supply and least_supply <= most_demand

    candidates = sorted({low, high, *(p for p, _ in buys + sells)})
    equilibria = [price for price in candidates if balances(price)]
    return min(equilibria), max(equilibria)


def test_registered():
    mechanism = create_mechanism("energy_collective")
    assert isinstance(mechanism, EnergyCollective) and mechanism.input_kind is InputKind.ORDERS


def test_seller_is_marginal():
    """Demand 4.5 kWh above 150k meets 5 kWh offered at 100k: the only balancing price is 100k (this
    also pins the sign of the dual)."""
    result = clear(order("a1", "a", BUY, 3000, 200_000), order("b1", "b", SELL, 5000, 100_000),
                   order("c1", "c", BUY, 1500, 150_000))
    assert result.price_micro == 100_000
    assert fills(result) == {"a1": 3000, "b1": 4500, "c1": 1500}
    statuses = {fill.order_id: fill.status for item in result.allocations for fill in item.fills}
    assert statuses == {"a1": OrderStatus.FILLED, "b1": OrderStatus.PARTIALLY_FILLED, "c1": OrderStatus.FILLED}
    assert result.allocation("b").received_nano == 4500 * 100_000
    assert result.allocation("a").paid_nano == 3000 * 100_000
    assert (result.traded_wh, result.grid_import_wh, result.grid_export_wh) == (4500, 0, 0)
    assert result.trade_prices_micro == (100_000,) and result.balance_error_nano() == 0


def test_buyer_is_marginal():
    result = clear(order("a1", "a", BUY, 7000, 200_000), order("b1", "b", SELL, 5000, 100_000))
    assert result.price_micro == 200_000
    assert fills(result) == {"a1": 5000, "b1": 5000}


def test_scarcity_imports_at_retail():
    orders = (order("a1", "a", BUY, 4000, 350_000), order("b1", "b", SELL, 1000, 100_000))
    result = clear(*orders)
    assert result.price_micro == RETAIL  # a's limit is clamped to λ⁺
    assert result.allocation("b").received_nano == 1000 * RETAIL
    assert result.grid_export_wh == 0 and result.balance_error_nano() == 0
    assert result.details["community_cost_nano"] == merit_order_cost_nano(orders, parameters())


def test_surplus_exports_at_feed_in():
    orders = (order("a1", "a", BUY, 1000, 200_000), order("b1", "b", SELL, 4000, 20_000))
    result = clear(*orders)
    assert result.price_micro == FEED_IN
    assert fills(result)["a1"] == 1000 and result.allocation("a").paid_nano == 1000 * FEED_IN
    assert result.grid_import_wh == 0 and result.balance_error_nano() == 0
    assert result.details["community_cost_nano"] == merit_order_cost_nano(orders, parameters())


def test_no_orders_and_empty_orders():
    for orders in ((), (order("a1", "a", BUY, 0, 200_000),)):
        result = clear(*orders)
        assert result.allocations == () and result.price_micro is None and result.balance_error_nano() == 0


def test_only_buyers_stay_unmatched():
    orders = (order("a1", "a", BUY, 1000, 200_000), order("b1", "b", BUY, 500, 250_000))
    result = clear(*orders)
    assert fills(result) == {"a1": 0, "b1": 0}
    assert all(fill.status is OrderStatus.UNMATCHED for item in result.allocations for fill in item.fills)
    assert 250_000 <= result.price_micro <= RETAIL
    assert result.traded_wh == result.retailer_nano == 0 and result.balance_error_nano() == 0


def test_only_sellers_stay_unmatched():
    result = clear(order("a1", "a", SELL, 1000, 90_000), order("b1", "b", SELL, 500, 120_000))
    assert fills(result) == {"a1": 0, "b1": 0} and FEED_IN <= result.price_micro <= 90_000


def test_one_home_uses_its_own_energy():
    result = clear(order("a1", "a", SELL, 2000, 100_000), order("a2", "a", BUY, 3000, 200_000))
    assert fills(result) == {"a1": 2000, "a2": 2000}
    (home,) = result.allocations
    assert home.bought_wh == home.sold_wh == 0 and result.traded_wh == 0 and result.retailer_nano == 0


def test_orders_outside_the_band_never_trade():
    """A buy below λ⁻ or a sell above λ⁺ could only trade against its own limit."""
    result = clear(order("a1", "a", BUY, 1000, 50_000), order("b1", "b", SELL, 1000, FEED_IN),
                   order("c1", "c", SELL, 1000, 350_000), order("d1", "d", BUY, 1000, RETAIL))
    filled = fills(result)
    assert filled["a1"] == 0 and filled["c1"] == 0
    assert result.balance_error_nano() == 0


def test_fee_is_paid_by_the_buyer_on_top_of_the_price():
    market = parameters(network_fee_micro=20_000, community_fee_micro=10_000)
    result = clear(order("a1", "a", BUY, 2000, 200_000), order("b1", "b", SELL, 2000, 100_000), market=market)
    assert fills(result) == {"a1": 2000, "b1": 2000}
    assert 100_000 <= result.price_micro <= 200_000 - 30_000  # the seller's ask ≤ p, p + fee ≤ the bid
    buyer = result.allocation("a")
    assert (buyer.network_fee_nano, buyer.community_fee_nano) == (2000 * 20_000, 2000 * 10_000)
    assert result.allocation("b").fees_nano == 0 and result.balance_error_nano() == 0


def test_fee_above_the_spread_stops_trade():
    market = parameters(network_fee_micro=120_000)
    result = clear(order("a1", "a", BUY, 2000, 200_000), order("b1", "b", SELL, 2000, 100_000), market=market)
    assert fills(result) == {"a1": 0, "b1": 0} and result.traded_wh == 0


def test_fee_above_the_retail_spread_imports_and_exports_at_once():
    """φ > λ⁺ − λ⁻: the buyer imports and the seller exports rather than trade with each other."""
    market = parameters(network_fee_micro=RETAIL - FEED_IN + 1)
    orders = (order("a1", "a", BUY, 2000, RETAIL), order("b1", "b", SELL, 2000, FEED_IN))
    result = clear(*orders, market=market)
    assert fills(result) == {"a1": 2000, "b1": 2000}
    assert (result.traded_wh, result.grid_import_wh, result.grid_export_wh) == (0, 2000, 2000)
    assert result.allocation("a").paid_nano == 2000 * RETAIL and result.allocation("a").fees_nano == 0
    assert result.allocation("b").received_nano == 2000 * FEED_IN
    assert result.retailer_nano == 2000 * (RETAIL - FEED_IN) and result.balance_error_nano() == 0


def test_export_preference_keeps_surplus_home():
    """δ_exp > 0: exporting at λ⁻ no longer covers a seller asking λ⁻; only what homes buy is sold."""
    orders = (order("a1", "a", BUY, 2000, 250_000), order("b1", "b", SELL, 5000, 50_000))
    result = clear(*orders, market=parameters(export_preference_micro=1000))
    assert fills(result) == {"a1": 2000, "b1": 2000}
    assert result.grid_export_wh == 0 and result.price_micro == FEED_IN


def test_import_preference_keeps_retail_energy_out():
    orders = (order("a1", "a", BUY, 5000, RETAIL), order("b1", "b", SELL, 1000, 100_000))
    result = clear(*orders, market=parameters(import_preference_micro=1000))
    assert fills(result) == {"a1": 1000, "b1": 1000}
    assert result.grid_import_wh == 0 and result.price_micro == RETAIL


def test_falls_back_to_clarabel_when_highs_stops_early():
    """HiGHS with a zero time limit really returns user_limit; Clarabel then finds the same optimum."""
    orders = tuple(order(f"o{index}", f"h{index % 7}", (BUY, SELL)[index % 2], 1000 + 137 * index,
                         90_000 + 9_000 * index) for index in range(20))
    fallback = EnergyCollective(solver_options={"HIGHS": {"time_limit": 0.0}})
    result = clear(*orders, mechanism=fallback)
    assert result.details["solver"] == "CLARABEL" and result.balance_error_nano() == 0
    best = merit_order_cost_nano(orders, parameters())
    assert abs(result.details["community_cost_nano"] - best) <= 20 * RETAIL  # a few Wh of IPM rounding


def test_no_solver_reaches_optimal():
    mechanism = EnergyCollective(solvers=("HIGHS",), solver_options={"HIGHS": {"time_limit": 0.0}})
    with pytest.raises(CollectiveSolveError, match="HIGHS"):
        clear(order("a1", "a", BUY, 1000, 200_000), order("b1", "b", SELL, 1000, 100_000), mechanism=mechanism)


def test_osqp_is_refused():
    with pytest.raises(ValueError, match="OSQP"):
        EnergyCollective(solvers=("OSQP", "CLARABEL"))


@pytest.mark.parametrize("orders, market, message", [
    ((order("x", "a", BUY, 1, 1), order("x", "b", SELL, 1, 1)), parameters(), "unique"),
    ((order("x", "a", BUY, -1, 1),), parameters(), "≥ 0"),
    ((order("x", "a", BUY, 1, 1),), parameters(feed_in_price_micro=RETAIL), "below the retail"),
    ((order("x", "a", BUY, 1, 1),), parameters(export_preference_micro=-1), "≥ 0"),
])
def test_invalid_input(orders, market, message):
    with pytest.raises(ValueError, match=message):
        clear(*orders, market=market)


def test_a_thousand_homes_in_well_under_a_second():
    rng = random.Random(5)
    orders = tuple(order(f"h{home}-{index}", f"h{home:04d}", rng.choice((BUY, SELL)), rng.randint(1, 3000),
                         rng.randint(50_000, 350_000)) for home in range(1000) for index in range(rng.randint(1, 4)))
    clear(order("a1", "a", BUY, 1, 200_000))  # cvxpy's import is not the clearing
    started = time.perf_counter()
    result = clear(*orders)
    elapsed_s = time.perf_counter() - started
    assert result.balance_error_nano() == 0 and len(result.allocations) == 1000
    assert result.details["community_cost_nano"] == merit_order_cost_nano(orders, parameters())
    assert elapsed_s < 1.0


@st.composite
def books(draw, fees: bool = True, preferences: bool = True, one_side_per_home: bool = False):
    low = draw(st.integers(0, 200_000))
    high = draw(st.integers(low + 1_000, 500_000))
    orders = []
    for home in range(draw(st.integers(0, 8))):
        home_side = draw(st.sampled_from((BUY, SELL)))
        for index in range(draw(st.integers(0, 3))):
            side = home_side if one_side_per_home else draw(st.sampled_from((BUY, SELL)))
            orders.append(order(f"h{home}-{index}", f"h{home}", side, draw(st.integers(0, 5000)),
                                draw(st.integers(max(low - 30_000, 0), high + 30_000))))
    market = MarketParameters(
        retail_price_micro=high, feed_in_price_micro=low, seed=draw(st.integers(0, 99)),
        network_fee_micro=draw(st.integers(0, 30_000)) if fees and draw(st.booleans()) else 0,
        import_preference_micro=draw(st.integers(0, 20_000)) if preferences and draw(st.booleans()) else 0,
        export_preference_micro=draw(st.integers(0, 20_000)) if preferences and draw(st.booleans()) else 0)
    return market, tuple(orders)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books())
def test_invariants(book):
    market, orders = book
    result = clear(*orders, market=market)
    assert result.balance_error_nano() == 0
    if not result.allocations:
        return
    price = result.price_micro
    assert market.feed_in_price_micro <= price <= market.retail_price_micro
    filled = fills(result)
    assert len(filled) == sum(1 for item in orders if item.energy_wh > 0)
    bought = sum(item.bought_wh for item in result.allocations)
    sold = sum(item.sold_wh for item in result.allocations)
    assert bought == result.traded_wh + result.grid_import_wh and sold == result.traded_wh + result.grid_export_wh
    if result.grid_import_wh and result.grid_export_wh:  # cheaper than trading only when the fee is high
        assert market.fee_micro >= (market.retail_price_micro + market.import_preference_micro
                                    - market.feed_in_price_micro + market.export_preference_micro)
    assert result.details["community_cost_nano"] == community_cost_nano(result, orders, market) + (
        result.grid_import_wh * market.import_preference_micro + result.grid_export_wh * market.export_preference_micro)
    for home in result.allocations:
        own = [item for item in orders if item.home == home.home and item.energy_wh > 0]
        assert home.net_import_wh == sum((1 if o.side is BUY else -1) * filled[o.order_id] for o in own)
        for item in own:
            assert 0 <= filled[item.order_id] <= item.energy_wh  # never more than ordered
            if filled[item.order_id] == 0:
                continue
            assert in_band(item, market)
            if item.side is BUY:  # never against the limit, fee included for energy from other homes
                assert clamped(item, market) >= price + (market.fee_micro if home.fees_nano else 0)
            elif home.sold_wh:
                assert clamped(item, market) <= price


@settings(max_examples=60, deadline=None)
@given(book=books(fees=False, preferences=False))
def test_optimal_and_walrasian_without_fees(book):
    """Without fees the optimum is the merit order's, exactly (network LP: integral vertices), and the
    price is a Walrasian price of the book: the LP dual of (3c) is any point of that interval."""
    market, orders = book
    result = clear(*orders, market=market)
    if not result.allocations:
        return
    assert result.details["community_cost_nano"] == merit_order_cost_nano(orders, market)
    low, high = walrasian_interval(orders, market)
    assert low <= result.price_micro <= high


@settings(max_examples=40, deadline=None)
@given(book=books(preferences=False, one_side_per_home=True))
def test_never_costs_more_than_the_uniform_auction(book):
    """The uniform auction's result is feasible for (3a)–(3g), so the optimum costs at most as much; with
    no fee the collective's price lies in the auction's marginal-pair range [ask, bid] (a Walrasian price
    of the same book), and equals its price when the equilibrium price is unique."""
    uniform = pytest.importorskip("hems.community.mechanisms.uniform")
    market, orders = book
    auction = uniform.UniformPriceAuction().clear(ClearingInput(market, orders=orders))
    result = clear(*orders, market=market)
    if not result.allocations:
        return
    assert result.details["community_cost_nano"] <= community_cost_nano(auction, orders, market)
    if market.fee_micro == 0 and auction.price_micro is not None:
        ask, bid = auction.details["marginal_ask_micro"], auction.details["marginal_bid_micro"]
        assert ask <= result.price_micro <= bid
        low, high = walrasian_interval(orders, market)
        if low == high:
            assert result.price_micro == low
            if low == bid == ask:
                assert result.price_micro == auction.price_micro
