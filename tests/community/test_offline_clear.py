"""Offline clearing of a JSON book with every mechanism: exact decimal prices and money, conversions
between orders and curves, and bad input refused with the key path."""

from __future__ import annotations

import importlib
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems.community.config import MarketSection
from hems.community.mechanisms.base import InputKind
from hems.community.mechanisms.registry import input_kind, mechanism_names
from hems.community.offline import (
    OfflineInputError,
    clear_offline,
    clearing_input,
    decimal_text,
    describe_mechanisms,
    grid_prices_micro,
    parse_book,
)

MODULES = {"uniform_auction": "uniform", "pay_as_bid": "pay_as_bid", "bid_curve": "bid_curve",
           "supply_demand_ratio": "sharing", "mid_market_rate": "sharing", "bill_sharing": "sharing",
           "energy_collective": "collective", "admm": "admm", "differentiated": "differentiated",
           "bilateral": "bilateral"}


def available(name: str) -> bool:
    try:
        importlib.import_module(f"hems.community.mechanisms.{MODULES[name]}")
    except ModuleNotFoundError:
        return False
    return True


def mechanisms(*kinds: InputKind) -> list:
    """Every registered mechanism of ``kinds`` as a parameter, skipped while its module is missing."""
    return [pytest.param(name, marks=pytest.mark.skipif(not available(name), reason=f"{name}'s module not written yet"))
            for name in mechanism_names() if input_kind(name) in kinds]


BIDDING = mechanisms(InputKind.ORDERS, InputKind.CURVES)
SHARING = mechanisms(InputKind.POSITIONS)

BOOK = """{
  "retail_price": 0.30, "feed_in_price": "0.08", "seed": 7,
  "orders": [{"home": "a", "side": "buy", "energy_wh": 1200, "limit_price": 0.25},
             {"home": "b", "side": "sell", "energy_wh": 800, "limit_price": 0.12},
             {"home": "c", "side": "sell", "energy_wh": 600, "limit_price": "0.2"}],
  "curves": [{"home": "d", "prices": [0.08, 0.19, 0.30], "net_import_wh": [500, 0, -900]}],
  "positions": [{"home": "a", "import_wh": 1200, "export_wh": 0}, {"home": "b", "import_wh": 0, "export_wh": 800},
                {"home": "c", "import_wh": 100, "export_wh": 500}]
}"""


def clear(mechanism: str, book: str | dict) -> dict:
    return clear_offline(mechanism, parse_book(book) if isinstance(book, str) else book)


def money(result: dict, key: str) -> Decimal:
    return sum((Decimal(item[key]) for item in result["allocations"]), Decimal(0))


def assert_books_balance(result: dict) -> None:
    """Money and energy add up, in exact decimals parsed from the output strings."""
    net_paid = money(result, "paid") - money(result, "received")
    assert net_paid == Decimal(result["retailer"]) + Decimal(result["rounding"])
    bought = sum(item["bought_wh"] for item in result["allocations"])
    sold = sum(item["sold_wh"] for item in result["allocations"])
    assert bought - sold == result["grid_import_wh"] - result["grid_export_wh"]
    for item in result["allocations"]:
        for key in ("paid", "received", "fees"):
            assert Decimal(item[key]) >= 0 and -Decimal(item[key]).as_tuple().exponent <= 9


@pytest.mark.parametrize("mechanism", BIDDING + SHARING)
def test_every_mechanism_clears_the_same_book(mechanism):
    result = clear(mechanism, BOOK)
    assert result["mechanism"] == mechanism
    assert result["seed"] == 7
    assert result["traded_wh"] > 0
    assert [item["home"] for item in result["allocations"]] == sorted(item["home"] for item in result["allocations"])
    assert_books_balance(result)
    json.dumps(result)  # plain JSON: no Decimal, Fraction or enum left


@pytest.mark.parametrize("mechanism", BIDDING)
def test_a_bidding_mechanism_reports_one_price_or_none(mechanism):
    result = clear(mechanism, BOOK)
    assert "price" in result and "buy_price" not in result
    if result["price"] is not None:
        assert Decimal("0.08") <= Decimal(result["price"]) <= Decimal("0.30")


@pytest.mark.parametrize("mechanism", SHARING)
def test_a_sharing_rule_reports_buy_and_sell_prices(mechanism):
    result = clear(mechanism, BOOK)
    assert "price" not in result
    assert Decimal("0.08") <= Decimal(result["sell_price"]) <= Decimal(result["buy_price"]) <= Decimal("0.30")
    assert {item["home"] for item in result["allocations"]} == {"a", "b", "c"}


@pytest.mark.parametrize("mechanism", [item for item in mechanisms(InputKind.ORDERS)
                                       if item.values[0] != "energy_collective"])  # indifferent at λ⁺: buys 0
def test_scarcity_clears_at_exactly_the_retail_price(mechanism):
    # 0.3 as a binary float is 0.29999999999999998889…; read as a Decimal it is exactly 300000 µ¤/kWh.
    result = clear(mechanism, '{"retail_price": 0.3, "feed_in_price": 0.1, '
                              '"orders": [{"home": "a", "side": "buy", "energy_wh": 1000, "limit_price": 0.3}]}')
    buyer = result["allocations"][0]
    assert (buyer["paid"], buyer["orders"][0]["price"]) == ("0.3", "0.3")
    assert result["price"] in ("0.3", None)  # pay-as-bid has no single price
    assert result["grid_import_wh"] == 1000


@pytest.mark.parametrize(("k", "fee", "price", "fees"), [
    (None, None, "0.2", "0"), ("1", None, "0.25", "0"), (0, None, "0.15", "0"),
    (Decimal("0.5"), "0.01", "0.195", "0.01"),
])
def test_the_uniform_auction_applies_k_and_the_fee(k, fee, price, fees):
    if not available("uniform_auction"):
        pytest.skip("uniform.py not written yet")
    book = {"retail_price": Decimal("0.3"), "feed_in_price": Decimal("0.08"),
            "orders": [{"home": "a", "side": "buy", "energy_wh": 1000, "limit_price": Decimal("0.25")},
                       {"home": "b", "side": "sell", "energy_wh": 1000, "limit_price": "0.15"}]}
    if k is not None:
        book["k"] = k
    if fee is not None:
        book["fee_per_kwh"] = fee
    result = clear("uniform_auction", book)
    buyer, seller = result["allocations"]
    assert (result["price"], buyer["paid"], seller["received"], buyer["fees"]) == (price, price, price, fees)
    assert buyer["orders"] == [{"order_id": "a:0", "status": "FILLED", "filled_wh": 1000, "price": price}]


def test_supply_demand_ratio_test_vector():
    """markets.md §5: λ_b = 0.30, λ_s = 0.08, G = 3, D = 10 → P_sell = 0.16438, P_buy = 0.25932."""
    if not available("supply_demand_ratio"):
        pytest.skip("sharing.py not written yet")
    result = clear("supply_demand_ratio", '{"retail_price": 0.30, "feed_in_price": 0.08, "positions": ['
                                          '{"home": "s", "import_wh": 0, "export_wh": 3000},'
                                          '{"home": "d", "import_wh": 10000, "export_wh": 0}]}')
    assert (result["buy_price"], result["sell_price"]) == ("0.259315", "0.164384")
    assert (result["traded_wh"], result["grid_import_wh"]) == (3000, 7000)
    assert_books_balance(result)


def test_mid_market_rate_test_vector():
    if not available("mid_market_rate"):
        pytest.skip("sharing.py not written yet")
    result = clear("mid_market_rate", '{"retail_price": 0.30, "feed_in_price": 0.08, "positions": ['
                                      '{"home": "s", "import_wh": 0, "export_wh": 3000},'
                                      '{"home": "d", "import_wh": 10000, "export_wh": 0}]}')
    assert (result["buy_price"], result["sell_price"]) == ("0.267", "0.19")


@pytest.mark.parametrize("mechanism", mechanisms(InputKind.ORDERS))
def test_a_curve_clears_like_the_step_orders_it_stands_for(mechanism):
    seller = {"home": "s", "side": "sell", "energy_wh": 700, "limit_price": "0.1"}
    as_orders = {"retail_price": "0.3", "feed_in_price": "0.08", "orders": [
        seller, {"home": "b", "side": "buy", "energy_wh": 400, "limit_price": "0.2"},
        {"home": "b", "side": "buy", "energy_wh": 600, "limit_price": "0.15"}]}
    as_curve = {"retail_price": "0.3", "feed_in_price": "0.08", "orders": [seller], "curves": [
        {"home": "b", "prices": ["0.15", "0.2", "0.3"], "net_import_wh": [1000, 400, 0]}]}
    from_orders, from_curve = clear(mechanism, as_orders), clear(mechanism, as_curve)
    for key in ("price", "traded_wh", "grid_import_wh", "grid_export_wh"):
        assert from_orders[key] == from_curve[key]
    assert [(a["bought_wh"], a["paid"]) for a in from_orders["allocations"]] == \
           [(a["bought_wh"], a["paid"]) for a in from_curve["allocations"]]


@pytest.mark.parametrize("mechanism", mechanisms(InputKind.CURVES))
def test_orders_become_curves_on_the_price_grid(mechanism):
    market = clearing_input(mechanism, parse_book(BOOK))
    by_home = {curve.home: curve for curve in market.curves}
    assert set(by_home) == {"a", "b", "c", "d"}
    assert by_home["a"].prices_micro == market.parameters.price_grid_micro
    assert by_home["a"].net_import_wh[0] == 1200 and by_home["a"].net_import_wh[-1] == 0
    assert by_home["d"].prices_micro == (80_000, 190_000, 300_000)  # a given curve keeps its own grid


def test_order_ids_are_home_and_index_unless_given():
    book = parse_book(BOOK)
    book["orders"][1]["order_id"] = "mine"
    ids = [order.order_id for order in clearing_input("uniform_auction", book).orders]
    assert ids[:3] == ["a:0", "mine", "c:2"]
    assert set(ids[3:]) == {"d:b0", "d:s2"}  # the curve's step orders


@given(low=st.integers(0, 10**8 - 1), span=st.integers(1, 10**8), points=st.integers(2, 101))
def test_the_grid_is_the_one_the_manager_publishes(low, span, points):
    high = min(low + span, 10**8)
    section = MarketSection(mechanism="bid_curve", retail_price=Decimal(high).scaleb(-6),
                            feed_in_price=Decimal(low).scaleb(-6), price_grid_points=points)
    assert list(grid_prices_micro(low, high, points)) == section.price_grid_micro()


def test_a_sharing_rule_needs_positions():
    with pytest.raises(OfflineInputError, match=r"^positions: required key is missing \(supply_demand_ratio"):
        clearing_input("supply_demand_ratio", parse_book('{"retail_price": 0.3, "feed_in_price": 0.08}'))


def test_bid_curve_takes_one_curve_a_home():
    book = parse_book(BOOK)
    book["curves"][0]["home"] = "a"
    with pytest.raises(OfflineInputError, match="home 'a' has a curve too"):
        clearing_input("bid_curve", book)


def test_the_same_result_for_the_same_seed():
    assert clear("pay_as_bid", BOOK) == clear("pay_as_bid", BOOK)


def test_describe_names_every_mechanism_and_what_it_clears_from():
    described = {item["name"]: item for item in describe_mechanisms()}
    assert list(described) == list(mechanism_names())
    assert described["bid_curve"]["clears_from"] == "curves"
    assert described["mid_market_rate"]["clears_from"] == "positions"
    assert all(item["description"] for item in described.values())


@pytest.mark.parametrize(("value", "text"), [(Decimal("0.190000"), "0.19"), (Decimal("1E+1"), "10"),
                                             (Decimal("-0.000"), "0"), (Decimal("1.000000001"), "1.000000001")])
def test_decimal_text(value, text):
    assert decimal_text(value) == text


ORDER = {"home": "a", "side": "buy", "energy_wh": 1000, "limit_price": "0.2"}
BASE = {"retail_price": "0.3", "feed_in_price": "0.08"}


MISSING = object()


@pytest.mark.parametrize(("change", "path"), [
    ({"retail_price": MISSING}, "retail_price: required key is missing"),
    ({"retail_price": None}, "retail_price: must be a price"),
    ({"k": 0.5}, "k: must be a number"),  # a binary float from a Python caller: never for prices or k
    ({"retail_price": 0.3}, "retail_price: must be a price"),  # a binary float from a Python caller
    ({"retail_price": "thirty"}, "retail_price: 'thirty' is not a decimal number"),
    ({"retail_price": "-0.3"}, "retail_price: -0.3 is out of range"),
    ({"feed_in_price": "0.3"}, "feed_in_price: 0.3 must be below retail_price"),
    ({"k": "1.5"}, "k: 1.5 is out of range"),
    ({"k": True}, "k: must be a number"),
    ({"fee_per_kwh": "-0.01"}, "fee_per_kwh: -0.01 is out of range"),
    ({"seed": -1}, "seed: -1 is out of range"),
    ({"seed": "7"}, "seed: must be an integer"),
    ({"price_grid_points": 1}, "price_grid_points: 1 is out of range"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"orders": {"home": "a"}}, "orders: must be a list"),
    ({"orders": ["a"]}, "orders[0]: must be an object"),
    ({"orders": [{**ORDER, "energy_wh": -5}]}, "orders[0].energy_wh: -5 is out of range"),
    ({"orders": [{**ORDER, "energy_wh": 0}]}, "orders[0].energy_wh: 0 is out of range"),
    ({"orders": [ORDER, {**ORDER, "energy_wh": Decimal("1.5")}]}, "orders[1].energy_wh: must be an integer"),
    ({"orders": [{**ORDER, "energy_wh": True}]}, "orders[0].energy_wh: must be an integer"),
    ({"orders": [{**ORDER, "side": "hold"}]}, "orders[0].side: must be \"buy\" or \"sell\""),
    ({"orders": [{**ORDER, "limit_price": "abc"}]}, "orders[0].limit_price: 'abc' is not a decimal number"),
    ({"orders": [{**ORDER, "home": "a/b"}]}, "orders[0].home: must be a home id"),
    ({"orders": [{key: ORDER[key] for key in ("home", "side", "limit_price")}]},
     "orders[0].energy_wh: required key is missing"),
    ({"orders": [{**ORDER, "good_till": 5}]}, "orders[0].good_till: unknown key"),
    ({"orders": [{**ORDER, "order_id": "x"}, {**ORDER, "order_id": "x"}]}, "orders: order_id 'x' is used twice"),
    ({"curves": [{"home": "a", "prices": ["0.1", "0.2"], "net_import_wh": [0, 5]}]},
     "curves[0].net_import_wh: must not increase"),
    ({"curves": [{"home": "a", "prices": ["0.2", "0.1"], "net_import_wh": [5, 0]}]},
     "curves[0].prices: must be strictly ascending"),
    ({"curves": [{"home": "a", "prices": ["0.1", "0.2", "0.3"], "net_import_wh": [5, 0]}]},
     "curves[0].net_import_wh: 2 values for 3 prices"),
    ({"curves": [{"home": "a", "prices": ["0.1"], "net_import_wh": [5]}]}, "curves[0].prices: must be a list of 2"),
    ({"curves": [{"home": "a", "prices": ["0.1", "0.2"], "net_import_wh": [5, 0.5]}]},
     "curves[0].net_import_wh[1]: must be an integer"),
])
def test_bad_books_name_the_key(change, path):
    book = {key: value for key, value in {**BASE, **change}.items() if value is not MISSING}
    with pytest.raises(OfflineInputError) as caught:
        clearing_input("uniform_auction", book)
    assert str(caught.value).startswith(path), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("positions", "path"), [
    ([{"home": "a", "import_wh": -1, "export_wh": 0}], "positions[0].import_wh: -1 is out of range"),
    ([{"home": "a", "import_wh": 1, "export_wh": 0}, {"home": "a", "import_wh": 0, "export_wh": 2}],
     "positions[1].home: 'a' has a position already"),
    ([{"home": "a", "import_wh": 1}], "positions[0].export_wh: required key is missing"),
])
def test_bad_positions_name_the_key(positions, path):
    with pytest.raises(OfflineInputError, match="^" + path.replace("[", r"\[").replace("]", r"\]")):
        clearing_input("bill_sharing", {**BASE, "positions": positions})


@pytest.mark.parametrize(("text", "message"), [("{", "input: not JSON"), ("[1]", "input: must be a JSON object"),
                                               ('{"a": 1' + "0" * 5000 + "}", "input: not JSON")])
def test_a_book_that_is_not_a_json_object(text, message):
    with pytest.raises(OfflineInputError, match=f"^{message}"):
        parse_book(text)


def test_an_unknown_mechanism():
    with pytest.raises(OfflineInputError, match="^mechanism: unknown 'lottery'; choose one of uniform_auction"):
        clear_offline("lottery", parse_book(BOOK))


side = st.sampled_from(["buy", "sell"])
orders = st.lists(st.fixed_dictionaries({
    "home": st.sampled_from(["a", "b", "c", "d"]), "side": side, "energy_wh": st.integers(1, 5000),
    "limit_price": st.decimals(min_value=Decimal("0.05"), max_value=Decimal("0.35"), places=3)}), max_size=8)
fast_mechanisms = [name for name in ("uniform_auction", "pay_as_bid", "bid_curve") if available(name)]


@settings(max_examples=60, deadline=None)
@given(orders=orders, k=st.sampled_from(["0", "0.5", "1"]), fee=st.sampled_from(["0", "0.01"]),
       seed=st.integers(0, 2**32))
def test_random_books_balance_with_every_auction(orders, k, fee, seed):
    book = {**BASE, "k": k, "fee_per_kwh": fee, "seed": seed, "orders": orders}
    for mechanism in fast_mechanisms:
        result = clear(mechanism, book)
        assert_books_balance(result)
        for item in result["allocations"]:
            offered = sum(o["energy_wh"] for o in orders if o["home"] == item["home"])
            assert item["bought_wh"] + item["sold_wh"] <= offered
