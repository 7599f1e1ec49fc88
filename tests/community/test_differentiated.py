"""Differentiated energy: green-local priority by premium, partners, donations to designated homes only,
prices inside [λ⁻, λ⁺ + premium], provenance per class, and the invariants on random books (hypothesis)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.mechanisms.base import ClearingInput, MarketParameters, Order, Provenance
from hems.community.mechanisms.differentiated import (STAGE_DONATION, STAGE_GREEN, STAGE_RESIDUAL, ClassedOrder,
                                                      DifferentiatedAuction, DifferentiatedInput,
                                                      DifferentiatedResult, Donation, EnergyClass)
from hems.community.mechanisms.uniform import UniformPriceAuction
from hems.protocol.messages import OrderStatus, Side

RETAIL, FEED_IN = 300_000, 80_000
GREEN = EnergyClass.GREEN_LOCAL


def buy(order_id: str, home: str, wh: int, limit: int, premium: int = 0,
        partners: frozenset[str] | None = None) -> ClassedOrder:
    return ClassedOrder(Order(order_id, home, Side.BUY, wh, limit), None, premium, partners)


def sell(order_id: str, home: str, wh: int, limit: int, energy_class: EnergyClass | None = None) -> ClassedOrder:
    return ClassedOrder(Order(order_id, home, Side.SELL, wh, limit), energy_class)


def clear(orders: tuple[ClassedOrder, ...], donations: tuple[Donation, ...] = (), *, retailer: bool = True,
          **parameters) -> DifferentiatedResult:
    market = DifferentiatedInput(MarketParameters(RETAIL, FEED_IN, **parameters), orders, donations)
    result = DifferentiatedAuction(book_retailer=retailer).clear_classed(market)
    check_invariants(market, result)
    return result


def bought(result: DifferentiatedResult) -> dict[str, tuple[int, int, int, int]]:
    """Per home with purchases: (donated, green_local, local, grid) Wh."""
    return {home: (item.donated_wh, item.green_local_wh, item.local_wh, item.grid_wh)
            for home, item in provenances(result) if item.bought_wh}


def provenances(result: DifferentiatedResult) -> list[tuple[str, Provenance]]:
    """(home, provenance) of every home of the slot, from its allocation."""
    return [(allocation.home, allocation.provenance) for allocation in result.clearing.allocations]


def test_a_green_preferring_home_gets_green_local_energy_first_when_there_is_enough():
    # L bids higher and C's local energy is cheaper, yet G's premium puts it on S's green energy.
    orders = (buy("g", "G", 5, 250_000, premium=20_000), buy("l", "L", 5, 300_000),
              sell("s", "S", 5, 150_000, GREEN), sell("c", "C", 5, 100_000))
    result = clear(orders)
    assert bought(result) == {"G": (0, 5, 0, 0), "L": (0, 0, 5, 0)}
    green = [fill for fill in result.fills if fill.stage == STAGE_GREEN]
    assert {(fill.order_id, fill.energy_wh, fill.price_micro, fill.premium_micro) for fill in green} == {
        ("g", 5, 200_000, 20_000), ("s", 5, 200_000, 20_000)}  # (250k + 150k)/2, premium on top
    assert result.clearing.allocation("G").paid_nano == 5 * 220_000
    assert result.clearing.allocation("S").received_nano == 5 * 220_000  # the whole premium to S
    assert result.provenance_of("S").premium_received_nano == result.provenance_of("G").premium_paid_nano == 100_000
    assert result.provenance_of("S").sold_green_local_wh == 5 and result.provenance_of("C").sold_local_wh == 5


def test_scarce_green_energy_goes_by_premium_highest_first():
    orders = (buy("lo", "B", 5, 300_000, premium=10_000), buy("hi", "A", 5, 200_000, premium=30_000),
              sell("s", "S", 6, 100_000, GREEN), sell("c", "C", 10, 100_000))
    result = clear(orders)
    assert [(item.premium_micro, item.energy_wh) for item in result.green_rounds] == [(30_000, 5), (10_000, 1)]
    assert bought(result) == {"A": (0, 5, 0, 0), "B": (0, 1, 4, 0)}


@pytest.mark.parametrize("seed", range(4))
def test_scarce_green_energy_at_one_premium_is_shared_pro_rata(seed):
    orders = (buy("a", "A", 6, 300_000, premium=10_000), buy("b", "B", 12, 300_000, premium=10_000),
              sell("s", "S", 7, 100_000, GREEN), sell("c", "C", 20, 100_000))
    result = clear(orders, seed=seed)
    # 7 × 6/18 = 2.33 and 7 × 12/18 = 4.67: floors 2 and 4, the leftover Wh to the larger remainder.
    assert {home: green for home, (_, green, _, _) in bought(result).items()} == {"A": 2, "B": 5}
    assert len(result.green_rounds) == 1 and result.green_rounds[0].energy_wh == 7


def test_a_partner_list_limits_whose_green_energy_earns_the_premium():
    orders = (buy("p", "P", 5, 300_000, premium=20_000, partners=frozenset({"F"})),
              sell("f", "F", 2, 100_000, GREEN), sell("x", "X", 5, 100_000, GREEN))
    result = clear(orders, retailer=False)
    green = {fill.order_id: fill.energy_wh for fill in result.fills if fill.stage == STAGE_GREEN}
    assert green == {"p": 2, "f": 2}  # X's green energy earns no premium from P
    assert result.provenance_of("X").premium_received_nano == 0
    # The rest of P's need comes from the residual pool, which is X's green energy: no premium there.
    assert bought(result) == {"P": (0, 5, 0, 0)}
    assert result.provenance_of("P").premium_paid_nano == 2 * 20_000


def test_at_one_premium_the_partner_restricted_group_is_served_first():
    orders = (buy("open", "O", 5, 300_000, premium=10_000),
              buy("tied", "T", 5, 300_000, premium=10_000, partners=frozenset({"F"})),
              sell("f", "F", 5, 100_000, GREEN))
    result = clear(orders, retailer=False)
    assert [item.partners for item in result.green_rounds] == [frozenset({"F"}), None]
    assert bought(result) == {"T": (0, 5, 0, 0)}


def test_a_donation_reaches_its_designated_household_and_no_one_else():
    # H bids retail for 20 Wh; R (low-income) bids little. The donation still goes to R only.
    orders = (buy("h", "H", 20, 300_000), buy("r", "R", 6, 120_000), sell("d", "D", 10, 100_000))
    donation = Donation("gift", "D", ("R",), 4, price_micro=0)
    result = clear(orders, (donation,))
    assert bought(result) == {"H": (0, 0, 6, 14), "R": (4, 0, 0, 0)}
    given = [fill for fill in result.fills if fill.stage == STAGE_DONATION]
    assert {(fill.home, fill.energy_wh, fill.price_micro) for fill in given} == {("R", 4, 0), ("D", 4, 0)}
    outcome, = result.donations
    assert outcome.delivered == (("R", 4),) and outcome.price_micro == 0
    # H's residual buys exhaust the local energy and the retailer (λ⁺) is marginal: p* = λ⁺.
    assert outcome.reference_price_micro == RETAIL and outcome.gift_nano == 4 * RETAIL
    assert result.clearing.allocation("R").paid_nano == 0
    assert result.clearing.allocation("D").received_nano == 6 * RETAIL  # the donor bears the gift
    assert result.provenance_of("D").given_wh == 4


def test_a_donation_is_shared_pro_rata_between_recipients_and_the_rest_stays_on_the_market():
    orders = (buy("r1", "R1", 6, 300_000), buy("r2", "R2", 3, 300_000), buy("x", "X", 10, 300_000),
              sell("d", "D", 20, 90_000))
    result = clear(orders, (Donation("gift", "D", ("R1", "R2"), 5, price_micro=30_000),), retailer=False)
    # 5 × 6/9 = 3.33, 5 × 3/9 = 1.67: R2 has the larger remainder.
    assert result.donations[0].delivered == (("R1", 3), ("R2", 2)) and result.donations[0].price_micro == 30_000
    assert result.provenance_of("X").donated_wh == 0
    assert result.provenance_of("D").given_wh == 5 and result.provenance_of("D").sold_local_wh == 14


def test_a_donation_only_fills_recipient_orders_that_accept_its_price_and_is_charged_at_most_the_market():
    orders = (buy("cheap", "R", 3, 40_000), buy("dear", "R", 3, 300_000), buy("x", "X", 3, 300_000),
              sell("d", "D", 10, 100_000), sell("c", "C", 10, 100_000))
    # Stated 250k exceeds the residual price (300k + 100k)/2 = 200k: the gift is never dearer than the market.
    result = clear(orders, (Donation("gift", "D", ("R",), 10, price_micro=250_000),), retailer=False)
    given = {fill.order_id: fill.energy_wh for fill in result.fills if fill.stage == STAGE_DONATION}
    assert given == {"dear": 3, "d": 3}  # "cheap" bids below the stated price
    assert result.donations[0].price_micro == result.donations[0].reference_price_micro == 200_000


def test_without_a_residual_trade_a_donation_is_charged_at_most_feed_in():
    result = clear((buy("r", "R", 4, 300_000), sell("d", "D", 4, 100_000)),
                   (Donation("gift", "D", ("R",), 4, price_micro=100_000),), retailer=False)
    outcome, = result.donations
    assert (outcome.delivered_wh, outcome.price_micro, outcome.reference_price_micro) == (4, FEED_IN, FEED_IN)


def test_donated_energy_carries_fees_paid_by_the_recipient():
    result = clear((buy("r", "R", 4, 300_000), sell("d", "D", 4, 100_000)),
                   (Donation("gift", "D", ("R",), 4),), network_fee_micro=6_000, community_fee_micro=4_000)
    allocation = result.clearing.allocation("R")
    assert (allocation.paid_nano, allocation.network_fee_nano, allocation.community_fee_nano) == (0, 24_000, 16_000)


@pytest.mark.parametrize("premium", [1, 50_000, 400_000])
def test_premiums_keep_every_price_inside_feed_in_and_retail_plus_premium(premium):
    # k = 1: the green base price is the marginal bid, λ⁺ after clamping 500k, so the bound is reached.
    orders = (buy("g", "G", 5, 500_000, premium=premium), sell("s", "S", 8, 10_000, GREEN),
              buy("l", "L", 5, 500_000))
    result = clear(orders, k=Fraction(1))
    paid_per_kwh = Fraction(result.clearing.allocation("G").paid_nano, 5)
    assert paid_per_kwh == RETAIL + premium
    assert all(FEED_IN <= price <= RETAIL for price in result.clearing.trade_prices_micro)
    assert FEED_IN <= result.clearing.price_micro <= RETAIL


def test_scarcity_and_surplus_show_the_retailer_in_the_provenance():
    scarce = clear((buy("a", "A", 10, 300_000), sell("s", "S", 4, 100_000, GREEN), sell("t", "T", 2, 100_000)))
    assert bought(scarce) == {"A": (0, 4, 2, 4)} and scarce.clearing.price_micro == RETAIL
    surplus = clear((buy("b", "B", 4, 300_000), sell("s", "S", 10, 50_000, GREEN)))
    assert bought(surplus) == {"B": (0, 4, 0, 0)} and surplus.clearing.price_micro == FEED_IN
    assert (surplus.provenance_of("S").sold_green_local_wh, surplus.provenance_of("S").sold_grid_wh) == (4, 6)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: sell("s", "S", 1, 1, EnergyClass.GRID), "cannot sell grid"),
    (lambda: ClassedOrder(Order("s", "S", Side.SELL, 1, 1), None, 5), "belong to buy orders"),
    (lambda: ClassedOrder(Order("b", "B", Side.BUY, 1, 1), GREEN), "not a class"),
    (lambda: buy("b", "B", 1, 1, partners=frozenset({"F"})), "only qualify a green premium"),
    (lambda: buy("b", "B", 1, 1, premium=-1), "≥ 0"),
    (lambda: Donation("d", "D", ("D", "R"), 1), "donor cannot be a recipient"),
    (lambda: Donation("d", "D", (), 1), "distinct and not empty"),
    (lambda: Donation("d", "D", ("R",), 1, price_micro=-1), "≥ 0"),
])
def test_malformed_inputs_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_duplicate_or_overpriced_donations_are_refused():
    with pytest.raises(ValueError, match="unique"):
        clear((), (Donation("d", "D", ("R",), 1), Donation("d", "E", ("R",), 1)))
    with pytest.raises(ValueError, match="more than retail"):
        clear((), (Donation("d", "D", ("R",), 1, price_micro=RETAIL + 1),))


# ---------------------------------------------------------------------------------------------- properties

PRICES = st.one_of(st.sampled_from([20_000, FEED_IN, 120_000, 150_000, 200_000, RETAIL, 350_000]),
                   st.integers(0, 400_000))
HOMES = [f"h{index}" for index in range(7)]


@st.composite
def markets(draw) -> tuple[DifferentiatedInput, bool]:
    """Up to 7 homes with up to 3 classed orders each, up to 3 donations, random k, fees, seed, retailer."""
    homes = HOMES[:draw(st.integers(0, len(HOMES)))]
    orders = []
    for home in homes:
        for _ in range(draw(st.integers(0, 3))):
            order = Order(f"o{len(orders):02d}", home, draw(st.sampled_from(Side)), draw(st.integers(0, 40)),
                          draw(PRICES))
            if order.side is Side.SELL:
                orders.append(ClassedOrder(order, draw(st.sampled_from([None, EnergyClass.LOCAL, GREEN, GREEN]))))
                continue
            premium = draw(st.sampled_from([0, 0, 5_000, 20_000, 20_000, 150_000]))
            partners = None
            if premium and draw(st.booleans()):
                partners = frozenset(draw(st.lists(st.sampled_from(HOMES), max_size=3)))
            orders.append(ClassedOrder(order, None, premium, partners))
    donations = []
    for index in range(draw(st.integers(0, 3)) if len(homes) > 1 else 0):
        donor = draw(st.sampled_from(homes))
        recipients = draw(st.lists(st.sampled_from([home for home in homes if home != donor]), min_size=1,
                                   max_size=3, unique=True))
        donations.append(Donation(f"d{index}", donor, tuple(recipients), draw(st.integers(0, 30)),
                                  draw(st.sampled_from([0, 0, 50_000, FEED_IN, 150_000, RETAIL]))))
    network_fee, community_fee = draw(st.sampled_from([(0, 0), (0, 0), (6_000, 4_000)]))
    k = draw(st.sampled_from([Fraction(0), Fraction(1, 2), Fraction(1), Fraction(1, 3)]))
    parameters = MarketParameters(RETAIL, FEED_IN, k=k, network_fee_micro=network_fee,
                                  community_fee_micro=community_fee, seed=draw(st.integers(0, 2**32)))
    return DifferentiatedInput(parameters, tuple(orders), tuple(donations)), draw(st.booleans())


def check_invariants(market: DifferentiatedInput, result: DifferentiatedResult) -> None:
    """What must hold for any classed book and any donations."""
    parameters, clearing = market.parameters, result.clearing
    fee = parameters.fee_micro
    assert result.balance_error_nano() == 0 and clearing.rounding_nano == 0
    by_id = {item.order.order_id: item for item in market.orders}
    donations = {donation.donation_id: donation for donation in market.donations}
    fills = {fill.order_id: (allocation, fill) for allocation in clearing.allocations for fill in allocation.fills}
    assert fills.keys() == by_id.keys()
    stage_wh, stage_money = Counter(), Counter()
    for fill in result.fills:
        classed = by_id[fill.order_id]
        order = classed.order
        assert (fill.home, fill.side) == (order.home, order.side) and fill.energy_wh > 0
        stage_wh[fill.order_id] += fill.energy_wh
        stage_money[fill.order_id] += fill.money_nano
        if fill.stage == STAGE_DONATION:
            donation = donations[fill.donation_id]
            outcome = next(item for item in result.donations if item.donation_id == fill.donation_id)
            # Only the donor gives and only its recipients receive, at most at the stated and the market price.
            assert order.home == donation.donor if order.side is Side.SELL else order.home in donation.recipients
            assert 0 <= fill.price_micro == outcome.price_micro <= min(donation.price_micro,
                                                                       outcome.reference_price_micro)
            assert order.side is Side.SELL or min(order.limit_price_micro, RETAIL) - fee >= donation.price_micro
            assert fill.premium_micro == 0
            continue
        assert FEED_IN <= fill.price_micro <= RETAIL
        if fill.stage == STAGE_GREEN:
            round_ = result.green_rounds[fill.green_round]
            assert fill.premium_micro == round_.premium_micro and fill.price_micro == round_.price_micro
            if order.side is Side.BUY:  # the premium paid is the stated one
                assert fill.premium_micro == classed.green_premium_micro > 0
                assert classed.partners == round_.partners
            else:  # only green-local energy, and only the buyers' partners'
                assert classed.energy_class is GREEN
                assert round_.partners is None or order.home in round_.partners
        else:
            assert fill.stage == STAGE_RESIDUAL and fill.premium_micro == 0
        if order.side is Side.BUY:
            assert fill.price_micro + fee <= min(order.limit_price_micro, RETAIL)
            assert fill.price_micro + fill.premium_micro + fee <= RETAIL + classed.green_premium_micro
        else:
            assert fill.price_micro + fill.premium_micro >= order.limit_price_micro
    # Never matched with itself: within one green round or the residual a home is on one side only (it
    # may sell green-local at a premium in a round and buy local in the residual: different trades).
    sides = {}
    for fill in result.fills:
        if fill.stage != STAGE_DONATION:
            assert sides.setdefault((fill.stage, fill.green_round, fill.home), fill.side) is fill.side
    for round_ in result.green_rounds:
        assert round_.price_micro is None or FEED_IN <= round_.price_micro <= RETAIL
    for order_id, (allocation, fill) in fills.items():
        order = by_id[order_id].order
        assert allocation.home == order.home
        assert 0 <= fill.filled_wh == stage_wh[order_id] <= max(order.energy_wh, 0)  # never beyond its volume
        expected = (OrderStatus.UNMATCHED if fill.filled_wh == 0 else
                    OrderStatus.FILLED if fill.filled_wh == order.energy_wh else OrderStatus.PARTIALLY_FILLED)
        assert fill.status is expected
    for allocation in clearing.allocations:
        mine = [by_id[fill.order_id].order for fill in allocation.fills]
        assert allocation.paid_nano == sum(stage_money[o.order_id] for o in mine if o.side is Side.BUY)
        assert allocation.received_nano == sum(stage_money[o.order_id] for o in mine if o.side is Side.SELL)
        provenance = result.provenance_of(allocation.home)
        assert provenance.bought_wh == allocation.bought_wh and provenance.sold_wh == allocation.sold_wh
        assert allocation.network_fee_nano == (allocation.bought_wh - provenance.grid_wh) * parameters.network_fee_micro
        assert provenance.premium_paid_nano == sum(f.energy_wh * f.premium_micro for f in result.fills
                                                   if f.home == allocation.home and f.side is Side.BUY)
    total = lambda name: sum(getattr(item, name) for _, item in provenances(result))  # noqa: E731
    # Home-to-home bought equals sold, class by class; the retailer's Wh are the grid columns.
    assert total("donated_wh") == total("given_wh") == sum(item.delivered_wh for item in result.donations)
    assert total("green_local_wh") == total("sold_green_local_wh")
    assert total("local_wh") == total("sold_local_wh")
    assert (total("grid_wh"), total("sold_grid_wh")) == (clearing.grid_import_wh, clearing.grid_export_wh)
    assert total("bought_wh") - clearing.grid_import_wh == total("sold_wh") - clearing.grid_export_wh
    assert clearing.traded_wh == total("bought_wh") - clearing.grid_import_wh >= 0
    assert total("premium_paid_nano") == total("premium_received_nano")
    for home, item in provenances(result):  # a seller's class columns follow its orders' classes
        classes = {by_id[fill.order_id].energy_class for fill in result.fills
                   if fill.home == home and fill.side is Side.SELL and fill.stage != STAGE_DONATION}
        assert item.sold_green_local_wh == 0 or GREEN in classes
        assert item.sold_local_wh == 0 or classes - {GREEN}
    if fee:
        assert (clearing.grid_import_wh, clearing.grid_export_wh, clearing.retailer_nano) == (0, 0, 0)


@settings(max_examples=200, deadline=None)
@given(markets(), st.randoms(use_true_random=False))
def test_differentiated_invariants(drawn, random):
    market, retailer = drawn
    auction = DifferentiatedAuction(book_retailer=retailer)
    result = auction.clear_classed(market)
    check_invariants(market, result)
    assert auction.clear_classed(market) == result  # deterministic
    orders, donations = list(market.orders), list(market.donations)
    random.shuffle(orders)
    random.shuffle(donations)
    shuffled = DifferentiatedInput(market.parameters, tuple(orders), tuple(donations))
    assert auction.clear_classed(shuffled) == result  # neither order nor donation arrival matters


@settings(max_examples=150, deadline=None)
@given(markets())
def test_without_classes_premiums_or_donations_it_is_the_uniform_auction(drawn):
    market, retailer = drawn
    plain = ClearingInput(market.parameters, tuple(item.order for item in market.orders))
    result = DifferentiatedAuction(book_retailer=retailer).clear_classed(DifferentiatedInput.from_clearing_input(plain))
    uniform = UniformPriceAuction(book_retailer=retailer).clear(plain)
    check_invariants(DifferentiatedInput.from_clearing_input(plain), result)
    mine = result.clearing
    assert [replace(item, provenance=None) for item in mine.allocations] == list(uniform.allocations)
    assert (mine.price_micro, mine.traded_wh, mine.grid_import_wh, mine.grid_export_wh, mine.retailer_nano,
            mine.trade_prices_micro) == (uniform.price_micro, uniform.traded_wh, uniform.grid_import_wh,
                                         uniform.grid_export_wh, uniform.retailer_nano, uniform.trade_prices_micro)
    assert mine.details["tie_break_hash"] == uniform.details["tie_break_hash"]
    assert all(item.green_local_wh == 0 and item.donated_wh == 0 for _, item in provenances(result))
