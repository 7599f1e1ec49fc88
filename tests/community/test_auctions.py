"""The two double auctions on hand-computed books: degenerate books from markets.md §2, the price
rule for k = 0, 1/2, 1, rounding, rationing, fees, the retailer, self-netting and pay-as-bid pairing."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hems.community.mechanisms.base import ClearingInput, ClearingResult, InputKind, MarketParameters, Order
from hems.community.mechanisms.book import (build_book, ration, rule_price, rule_prices, tie_break_hash,
                                            tie_break_homes)
from hems.community.mechanisms.pay_as_bid import PayAsBidAuction
from hems.community.mechanisms.registry import create_mechanism
from hems.community.mechanisms.uniform import UniformPriceAuction
from hems.protocol.messages import OrderStatus, Side

RETAIL, FEED_IN = 300_000, 80_000  # λ⁺ = 0.30, λ⁻ = 0.08 per kWh, in µ¤/kWh
HALF = Fraction(1, 2)
AUCTIONS = (UniformPriceAuction, PayAsBidAuction)


def orders(*specs: tuple[str, str, int, int]) -> tuple[Order, ...]:
    """Orders o0, o1, … from (home, "buy" | "sell", Wh, limit µ¤/kWh)."""
    return tuple(Order(f"o{index}", home, Side(side), wh, price) for index, (home, side, wh, price) in enumerate(specs))


def clear(mechanism, book: tuple[Order, ...], *, retailer: bool = False, **parameters) -> ClearingResult:
    result = mechanism(book_retailer=retailer).clear(
        ClearingInput(MarketParameters(RETAIL, FEED_IN, **parameters), book))
    assert result.balance_error_nano() == 0
    return result


def fills(result: ClearingResult) -> dict[str, tuple[OrderStatus, int, int | None]]:
    return {fill.order_id: (fill.status, fill.filled_wh, fill.price_micro)
            for allocation in result.allocations for fill in allocation.fills}


def test_the_registry_builds_both_auctions():
    uniform, pay_as_bid = create_mechanism("uniform_auction"), create_mechanism("pay_as_bid")
    assert isinstance(uniform, UniformPriceAuction) and isinstance(pay_as_bid, PayAsBidAuction)
    assert uniform.input_kind is InputKind.ORDERS and pay_as_bid.input_kind is InputKind.ORDERS
    assert (uniform.name, pay_as_bid.name) == ("uniform_auction", "pay_as_bid")


@pytest.mark.parametrize("mechanism", AUCTIONS)
@pytest.mark.parametrize("retailer", [False, True])
def test_an_empty_book_clears_nothing(mechanism, retailer):
    result = clear(mechanism, (), retailer=retailer, seed=7)
    assert result.allocations == () and result.traded_wh == 0 and result.price_micro is None
    assert (result.grid_import_wh, result.grid_export_wh, result.retailer_nano) == (0, 0, 0)
    assert result.details["seed"] == 7 and result.details["tie_break_hash"] == tie_break_hash(())


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_one_sided_book_without_retailer_leaves_every_order_unmatched(mechanism):
    result = clear(mechanism, orders(("A", "buy", 5, 400_000), ("B", "buy", 3, 250_000)))
    assert fills(result) == {"o0": (OrderStatus.UNMATCHED, 0, None), "o1": (OrderStatus.UNMATCHED, 0, None)}
    assert result.traded_wh == 0 and result.price_micro is None


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_one_sided_buys_with_retailer_buy_at_retail_only_when_they_accept_it(mechanism):
    result = clear(mechanism, orders(("A", "buy", 5, 400_000), ("B", "buy", 3, 250_000)), retailer=True)
    assert fills(result) == {"o0": (OrderStatus.FILLED, 5, RETAIL), "o1": (OrderStatus.UNMATCHED, 0, None)}
    assert (result.traded_wh, result.grid_import_wh, result.grid_export_wh) == (0, 5, 0)
    assert result.retailer_nano == 5 * RETAIL and result.allocation("A").paid_nano == 5 * RETAIL
    assert result.trade_prices_micro == ()


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_one_sided_sells_with_retailer_sell_at_feed_in(mechanism):
    result = clear(mechanism, orders(("A", "sell", 4, 10_000), ("B", "sell", 3, 150_000)), retailer=True)
    assert fills(result) == {"o0": (OrderStatus.FILLED, 4, FEED_IN), "o1": (OrderStatus.UNMATCHED, 0, None)}
    assert (result.grid_import_wh, result.grid_export_wh, result.retailer_nano) == (0, 4, -4 * FEED_IN)


@pytest.mark.parametrize("mechanism", AUCTIONS)
@pytest.mark.parametrize("retailer", [False, True])
def test_a_book_that_does_not_cross_clears_nothing(mechanism, retailer):
    result = clear(mechanism, orders(("A", "buy", 5, 150_000), ("B", "sell", 5, 200_000)), retailer=retailer)
    assert all(status is OrderStatus.UNMATCHED for status, _, _ in fills(result).values())
    assert result.traded_wh == 0 and result.details["cleared_wh"] == 0


@pytest.mark.parametrize("mechanism", AUCTIONS)
@pytest.mark.parametrize("k", [Fraction(0), HALF, Fraction(1)])
def test_all_at_one_price_clears_there_and_rations_the_long_side_pro_rata(mechanism, k):
    book = orders(("A", "buy", 6, 200_000), ("B", "buy", 6, 200_000), ("C", "buy", 6, 200_000),
                  ("D", "sell", 10, 200_000))
    for seed in range(6):
        result = clear(mechanism, book, k=k, seed=seed)
        filled = fills(result)
        assert filled["o3"] == (OrderStatus.FILLED, 10, 200_000)
        # 10 Wh over 3 × 6 Wh: 3 each and the one leftover Wh to the buyer first in tie-break order.
        first = next(home for home in tie_break_homes("ABCD", seed) if home != "D")
        assert {home: result.allocation(home).bought_wh for home in "ABC"} == {
            home: 4 if home == first else 3 for home in "ABC"}
        assert set(result.trade_prices_micro) == {200_000}


def test_the_rationing_leftover_follows_the_seed_not_the_input_order():
    book = orders(("A", "buy", 6, 200_000), ("B", "buy", 6, 200_000), ("C", "buy", 6, 200_000),
                  ("D", "sell", 10, 200_000))
    results = [clear(UniformPriceAuction, book, seed=seed) for seed in range(12)]
    winners = {next(home for home in "ABC" if result.allocation(home).bought_wh == 4) for result in results}
    assert len(winners) > 1
    assert clear(UniformPriceAuction, book[::-1], seed=3) == clear(UniformPriceAuction, book, seed=3)


@pytest.mark.parametrize("mechanism", AUCTIONS)
@pytest.mark.parametrize(("k", "price"), [(Fraction(0), 100_000), (HALF, 175_000), (Fraction(1), 250_000)])
def test_equal_cumulative_volumes_at_a_step_price_the_last_traded_pair(mechanism, k, price):
    # Both first orders end at 5 Wh; the next pair (200k bid, 220k ask) does not cross.
    book = orders(("A", "buy", 5, 250_000), ("B", "buy", 5, 200_000), ("C", "sell", 5, 100_000),
                  ("D", "sell", 5, 220_000))
    result = clear(mechanism, book, k=k)
    assert fills(result) == {"o0": (OrderStatus.FILLED, 5, price), "o1": (OrderStatus.UNMATCHED, 0, None),
                             "o2": (OrderStatus.FILLED, 5, price), "o3": (OrderStatus.UNMATCHED, 0, None)}
    assert result.trade_prices_micro == (price,)


@pytest.mark.parametrize("retailer", [False, True])
@pytest.mark.parametrize(("k", "price"), [(Fraction(0), 240_000), (HALF, 250_000), (Fraction(1), 260_000)])
def test_uniform_price_is_k_between_the_marginal_bid_and_ask(retailer, k, price):
    # A's 400k is clamped to λ⁺. Walk: A–C 8, A–D 2, B–D 5; the last pair is (B 260k, D 240k).
    book = orders(("A", "buy", 10, 400_000), ("B", "buy", 5, 260_000), ("C", "sell", 8, 100_000),
                  ("D", "sell", 10, 240_000))
    result = clear(UniformPriceAuction, book, k=k, retailer=retailer)
    assert result.price_micro == price and result.traded_wh == 15
    assert fills(result) == {"o0": (OrderStatus.FILLED, 10, price), "o1": (OrderStatus.FILLED, 5, price),
                             "o2": (OrderStatus.FILLED, 8, price), "o3": (OrderStatus.PARTIALLY_FILLED, 7, price)}
    assert result.allocation("A").paid_nano == 10 * price and result.allocation("D").received_nano == 7 * price
    assert (result.grid_import_wh, result.grid_export_wh) == (0, 0)


def test_pay_as_bid_prices_every_segment_of_the_walk():
    book = orders(("A", "buy", 10, 400_000), ("B", "buy", 5, 260_000), ("C", "sell", 8, 100_000),
                  ("D", "sell", 10, 240_000))
    result = clear(PayAsBidAuction, book, k=HALF)
    # A–C 8 Wh at (300k + 100k)/2, A–D 2 Wh at (300k + 240k)/2, B–D 5 Wh at (260k + 240k)/2.
    assert result.trade_prices_micro == (200_000, 270_000, 250_000) and result.price_micro is None
    assert result.allocation("A").paid_nano == 8 * 200_000 + 2 * 270_000
    assert result.allocation("B").paid_nano == 5 * 250_000
    assert result.allocation("C").received_nano == 8 * 200_000
    assert result.allocation("D").received_nano == 2 * 270_000 + 5 * 250_000
    assert fills(result)["o0"] == (OrderStatus.FILLED, 10, 214_000)  # volume-weighted average
    bid_rule = clear(PayAsBidAuction, book, k=Fraction(1))
    assert bid_rule.trade_prices_micro == (300_000, 300_000, 260_000)


def test_in_pay_as_bid_the_seeded_tie_break_decides_who_pairs_with_the_high_bid():
    book = orders(("A", "buy", 5, 300_000), ("B", "buy", 5, 200_000), ("C", "sell", 5, 100_000),
                  ("D", "sell", 5, 100_000))
    firsts = set()
    for seed in range(10):
        result = clear(PayAsBidAuction, book, seed=seed)
        first, second = [home for home in tie_break_homes("ABCD", seed) if home in "CD"]
        assert result.allocation(first).received_nano == 5 * 200_000
        assert result.allocation(second).received_nano == 5 * 150_000
        firsts.add(first)
    assert firsts == {"C", "D"}


@pytest.mark.parametrize(("bid", "ask", "k", "price"), [
    (250_001, 250_000, HALF, 250_000),  # 250000.5 -> even
    (250_003, 250_000, HALF, 250_002),  # 250001.5 -> even
    (250_001, 250_000, Fraction(1, 3), 250_000),
    (250_002, 250_000, Fraction(3, 4), 250_002),  # 250001.5 -> even
])
def test_the_rule_price_rounds_half_even(bid, ask, k, price):
    assert rule_price(k, bid, ask) == price
    result = clear(UniformPriceAuction, orders(("A", "buy", 1, bid), ("B", "sell", 1, ask)), k=k)
    assert result.price_micro == price


def test_rule_prices_stay_exact_for_huge_denominators():
    k = Fraction(10**15 + 1, 2 * 10**15 + 3)
    expected = [rule_price(k, bid, ask) for bid, ask in [(300_000, 80_000), (123_457, 123_456)]]
    exact = [round(k * bid + (1 - k) * ask) for bid, ask in [(300_000, 80_000), (123_457, 123_456)]]
    assert expected == exact
    assert rule_prices(k, np.array([300_000, 123_457]), np.array([80_000, 123_456])).tolist() == exact


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_fees_come_off_the_bid_are_paid_on_top_and_keep_the_retailer_out(mechanism):
    # φ = 10k: A's 250k bid is worth 240k; D's 300k bid 290k (D first). Q* = 10, last pair (A, C).
    book = orders(("A", "buy", 10, 250_000), ("D", "buy", 5, 300_000), ("C", "sell", 10, 200_000))
    result = clear(mechanism, book, network_fee_micro=6_000, community_fee_micro=4_000, retailer=True)
    assert result.details["retailer_booked"] is False and result.grid_import_wh == 0 and result.retailer_nano == 0
    a, d = result.allocation("A"), result.allocation("D")
    assert a.bought_wh == 5 and d.bought_wh == 5 and fills(result)["o0"][0] is OrderStatus.PARTIALLY_FILLED
    assert (a.network_fee_nano, a.community_fee_nano) == (5 * 6_000, 5 * 4_000)
    assert result.network_fees_nano == 10 * 6_000 and result.community_fees_nano == 10 * 4_000
    if mechanism is UniformPriceAuction:
        assert result.price_micro == 220_000 and a.paid_nano == 5 * 220_000
    else:  # D–C at (290k + 200k)/2, A–C at (240k + 200k)/2
        assert result.trade_prices_micro == (245_000, 220_000)
    for allocation in (a, d):  # never above the limit, fee included
        limit = 250_000 if allocation.home == "A" else 300_000
        assert allocation.paid_nano + allocation.fees_nano <= allocation.bought_wh * limit


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_a_fee_larger_than_the_spread_blocks_the_trade(mechanism):
    result = clear(mechanism, orders(("A", "buy", 10, 205_000), ("C", "sell", 10, 200_000)), network_fee_micro=10_000)
    assert result.traded_wh == 0 and result.network_fees_nano == 0


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_scarcity_with_the_retailer_clears_at_retail_homes_first(mechanism):
    # The home asks λ⁺ like the retailer: it is served first at that price.
    book = orders(("A", "buy", 10, 400_000), ("S", "sell", 4, 300_000))
    result = clear(mechanism, book, retailer=True)
    assert fills(result)["o1"] == (OrderStatus.FILLED, 4, RETAIL)
    assert (result.traded_wh, result.grid_import_wh, result.retailer_nano) == (4, 6, 6 * RETAIL)
    assert result.allocation("A").paid_nano == 10 * RETAIL


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_surplus_with_the_retailer_clears_at_feed_in(mechanism):
    book = orders(("A", "buy", 4, 200_000), ("S", "sell", 10, 50_000))  # 50k is clamped up to λ⁻
    with_retailer = clear(mechanism, book, retailer=True)
    assert with_retailer.grid_export_wh == 6 and with_retailer.retailer_nano == -6 * FEED_IN
    if mechanism is UniformPriceAuction:  # the last pair is (retailer, S): p* = λ⁻ for everyone
        assert with_retailer.allocation("A").paid_nano == 4 * FEED_IN
        assert with_retailer.allocation("S").received_nano == 10 * FEED_IN
    else:  # A–S at (200k + 80k)/2, retailer–S at λ⁻
        assert with_retailer.allocation("A").paid_nano == 4 * 140_000
        assert with_retailer.allocation("S").received_nano == 4 * 140_000 + 6 * FEED_IN
    without = clear(mechanism, book)
    assert without.grid_export_wh == 0 and without.allocation("A").paid_nano == 4 * 140_000


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_a_home_on_both_sides_nets_its_own_crossing_orders(mechanism):
    book = orders(("A", "buy", 8, 250_000), ("A", "sell", 5, 200_000), ("C", "sell", 4, 100_000),
                  ("B", "buy", 3, 220_000))
    result = clear(mechanism, book)
    assert result.details["self_netted_wh"] == 5
    # A's remaining 3 Wh bid (250k) takes C's ask first; B (220k) gets C's last Wh.
    assert {order_id: fill[:2] for order_id, fill in fills(result).items()} == {
        "o0": (OrderStatus.PARTIALLY_FILLED, 3), "o1": (OrderStatus.UNMATCHED, 0),
        "o2": (OrderStatus.FILLED, 4), "o3": (OrderStatus.PARTIALLY_FILLED, 1)}
    assert result.allocation("A").sold_wh == 0
    expected = (160_000,) if mechanism is UniformPriceAuction else (175_000, 160_000)
    assert result.trade_prices_micro == expected


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_orders_that_cannot_trade_get_a_final_status(mechanism):
    # A buy below λ⁻ is not raised to λ⁻ (it would trade above its limit); 0 Wh is dropped.
    book = orders(("A", "buy", 5, 50_000), ("B", "buy", 0, 300_000), ("S", "sell", 5, 80_000))
    assert fills(clear(mechanism, book, retailer=True)) == {
        "o0": (OrderStatus.UNMATCHED, 0, None), "o1": (OrderStatus.UNMATCHED, 0, None),
        "o2": (OrderStatus.FILLED, 5, FEED_IN)}


def test_invalid_books_are_refused():
    with pytest.raises(ValueError, match="unique"):
        UniformPriceAuction().clear(ClearingInput(MarketParameters(RETAIL, FEED_IN), (
            Order("x", "A", Side.BUY, 1, 1), Order("x", "B", Side.SELL, 1, 1))))
    with pytest.raises(ValueError, match="below"):
        PayAsBidAuction().clear(ClearingInput(MarketParameters(FEED_IN, FEED_IN), ()))
    with pytest.raises(ValueError, match="k must"):
        UniformPriceAuction().clear(ClearingInput(MarketParameters(RETAIL, FEED_IN, k=Fraction(3, 2)), ()))


@pytest.mark.parametrize("mechanism", AUCTIONS)
def test_money_beyond_int64_stays_exact(mechanism):
    # 10¹⁴ Wh at 0.2 ¤/kWh is 2·10¹⁹ n¤, beyond int64: Python integers take over.
    huge = 10**14
    book = orders(("A", "buy", huge, RETAIL), ("B", "buy", huge + 1, 290_001), ("C", "sell", 2 * huge, 100_000),
                  ("D", "sell", huge, 250_000))
    result = clear(mechanism, book, retailer=True)
    assert result.details["cleared_wh"] == 2 * huge + 1
    a, b = result.allocation("A"), result.allocation("B")
    assert (a.bought_wh, b.bought_wh) == (huge, huge + 1)
    if mechanism is UniformPriceAuction:  # last pair (B 290001, D 250000): 270000.5 -> 270000
        assert result.price_micro == 270_000 and b.paid_nano == (huge + 1) * 270_000
    else:  # A–C at 200000, B–C at 195000.5 -> 195000, B–D 1 Wh at 270000.5 -> 270000
        assert a.paid_nano == huge * 200_000 and b.paid_nano == huge * 195_000 + 270_000
    assert a.paid_nano > 2**63 and result.balance_error_nano() == 0


def test_the_published_tie_break_is_the_seeded_permutation_of_sorted_homes():
    book = orders(("C", "buy", 1, 1), ("A", "sell", 1, 1), ("B", "buy", 1, 1))
    book_a = build_book(ClearingInput(MarketParameters(RETAIL, FEED_IN, seed=42), book), book_retailer=True)
    order = tuple(np.array(["A", "B", "C"])[np.random.default_rng(42).permutation(3)].tolist())
    assert tie_break_homes(["C", "B", "A"], 42) == order
    assert book_a.tie_break_hash == tie_break_hash(order)
    assert clear(UniformPriceAuction, book, seed=42).details["tie_break_hash"] == tie_break_hash(order)


@pytest.mark.parametrize(("quantities", "total", "ranks", "expected"), [
    ([5, 3, 2], 7, [0, 1, 2], [4, 2, 1]),  # 3.5, 2.1, 1.4: the .5 gets the leftover
    ([6, 6, 6], 10, [2, 0, 1], [3, 4, 3]),  # equal remainders: tie rank 0 first
    ([6, 6, 6], 11, [2, 0, 1], [3, 4, 4]),
    ([1, 1], 0, [0, 1], [0, 0]),
    ([4, 9], 13, [1, 0], [4, 9]),
])
def test_ration_is_largest_remainder_with_tie_rank_for_equal_remainders(quantities, total, ranks, expected):
    assert ration(np.array(quantities), total, np.array(ranks)).tolist() == expected


def test_ration_of_huge_quantities_is_exact():
    quantities = np.array([3 * 10**12, 10**12 + 1, 10**12 - 1])
    shares = ration(quantities, 5 * 10**12 - 7, np.array([0, 1, 2]))
    assert int(shares.sum()) == 5 * 10**12 - 7 and all(shares <= quantities)
    total, level = 5 * 10**12 - 7, 5 * 10**12
    assert all(abs(int(share) - Fraction(int(q) * total, level)) < 1 for share, q in zip(shares, quantities))
