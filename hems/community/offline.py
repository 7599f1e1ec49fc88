"""Clear one slot offline, from a JSON book (``hems community clear``): for audits, what-ifs and teaching.

The input is what a person writes, so prices are in currency per kWh (JSON numbers read as Decimal, or
decimal strings) and energy in whole Wh::

    {"retail_price": 0.30, "feed_in_price": 0.08, "k": 0.5, "fee_per_kwh": 0.01, "seed": 7,
     "price_grid_points": 21,
     "orders": [{"home": "a", "side": "buy", "energy_wh": 1200, "limit_price": 0.25}],
     "curves": [{"home": "b", "prices": [0.08, 0.30], "net_import_wh": [500, -900]}],
     "positions": [{"home": "c", "import_wh": 3000, "export_wh": 0}]}

Orders and curves are converted into whatever the mechanism clears from (curves to step orders for the
auctions, orders to step curves on the price grid for the bid curve), so one book can be cleared by every
bidding mechanism; the sharing rules need ``positions``. The result is JSON with money as exact decimal
strings in currency (n¤ → Decimal, no binary floating point anywhere).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from hems.community.mechanisms.base import (
    ClearingInput,
    ClearingResult,
    Curve,
    HomeAllocation,
    InputKind,
    MarketParameters,
    Order,
    Position,
    curve_from_orders,
    orders_from_curve,
)
from hems.community.mechanisms.registry import create_mechanism, input_kind, mechanism_class, mechanism_names
from hems.protocol.messages import MAX_CURVE_POINTS, MAX_ENERGY_WH, Side
from hems.protocol.topics import IDENTIFIER
from hems.protocol.units import MICRO_PER_UNIT, nano_to_decimal, price_to_micro

MAX_PRICE = Decimal(100)  # currency per kWh, as in the manager's configuration
_TOP_LEVEL = frozenset({"retail_price", "feed_in_price", "k", "fee_per_kwh", "community_fee_per_kwh", "seed",
                        "price_grid_points", "import_preference", "export_preference", "orders", "curves",
                        "positions"})


class OfflineInputError(ValueError):
    """The book cannot be cleared as given; the message names the key path (``orders[2].energy_wh``)."""


def parse_book(text: str) -> dict[str, Any]:
    """JSON text -> the book document, numbers with a fraction read as exact Decimals."""
    try:
        document = json.loads(text, parse_float=Decimal)
    except (json.JSONDecodeError, RecursionError, ValueError) as error:
        raise OfflineInputError(f"input: not JSON: {error}") from None
    if not isinstance(document, dict):
        raise OfflineInputError("input: must be a JSON object")
    return document


def grid_prices_micro(feed_in_micro: int, retail_micro: int, points: int) -> tuple[int, ...]:
    """The price grid the manager publishes: ``points`` prices from feed-in to retail (integer µ¤/kWh)."""
    span = retail_micro - feed_in_micro
    return tuple(sorted({feed_in_micro + span * index // (points - 1) for index in range(points)}))


def _price(value: Any, path: str, *, maximum: Decimal = MAX_PRICE) -> int:
    """Currency per kWh (a JSON number read as Decimal, an integer or a decimal string) -> µ¤/kWh."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise OfflineInputError(f"{path}: must be a price in currency per kWh (a number or a decimal string)")
    try:
        decimal = Decimal(value)
    except InvalidOperation:
        raise OfflineInputError(f"{path}: {value!r} is not a decimal number") from None
    if not decimal.is_finite() or not 0 <= decimal <= maximum:
        raise OfflineInputError(f"{path}: {value} is out of range: allowed 0 … {maximum} per kWh")
    return price_to_micro(decimal)


def _integer(value: Any, path: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OfflineInputError(f"{path}: must be an integer ({what}), got {json.dumps(value, default=str)}")
    if not low <= value <= high:
        raise OfflineInputError(f"{path}: {value} is out of range: allowed {low} … {high} ({what})")
    return value


def _fraction(value: Any, path: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise OfflineInputError(f"{path}: must be a number in [0, 1]")
    try:
        decimal = Decimal(value)
    except InvalidOperation:
        raise OfflineInputError(f"{path}: {value!r} is not a decimal number") from None
    if not decimal.is_finite() or not 0 <= decimal <= 1:
        raise OfflineInputError(f"{path}: {value} is out of range: allowed [0, 1]")
    return Fraction(decimal)


def _home(value: Any, path: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise OfflineInputError(f"{path}: must be a home id of 1-64 letters, digits, '-' or '_'")
    return value


def _objects(document: Mapping[str, Any], key: str, required: Sequence[str],
             optional: Sequence[str] = ()) -> list[tuple[str, dict[str, Any]]]:
    """``document[key]`` as (path, object) pairs, each with exactly the allowed keys."""
    items = document.get(key, [])
    if not isinstance(items, list):
        raise OfflineInputError(f"{key}: must be a list")
    found = []
    for index, item in enumerate(items):
        path = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise OfflineInputError(f"{path}: must be an object")
        if missing := [name for name in required if name not in item]:
            raise OfflineInputError(f"{path}.{missing[0]}: required key is missing")
        if unknown := sorted(set(item) - set(required) - set(optional)):
            raise OfflineInputError(f"{path}.{unknown[0]}: unknown key")
        found.append((path, item))
    return found


def parse_parameters(document: Mapping[str, Any]) -> MarketParameters:
    """The market parameters of the book (prices, k, fees, seed, grid)."""
    if unknown := sorted(set(document) - _TOP_LEVEL):
        raise OfflineInputError(f"{unknown[0]}: unknown key (allowed: {', '.join(sorted(_TOP_LEVEL))})")
    for key in ("retail_price", "feed_in_price"):
        if key not in document:
            raise OfflineInputError(f"{key}: required key is missing")
    retail, feed_in = _price(document["retail_price"], "retail_price"), _price(document["feed_in_price"],
                                                                               "feed_in_price")
    if feed_in >= retail:
        raise OfflineInputError(f"feed_in_price: {document['feed_in_price']} must be below retail_price "
                                f"({document['retail_price']})")
    points = _integer(document.get("price_grid_points", 21), "price_grid_points", 2, MAX_CURVE_POINTS, "points")

    def fee(key: str) -> int:
        return _price(document.get(key, 0), key, maximum=Decimal(10))

    return MarketParameters(
        retail_price_micro=retail, feed_in_price_micro=feed_in,
        k=_fraction(document.get("k", Decimal("0.5")), "k"),
        network_fee_micro=fee("fee_per_kwh"), community_fee_micro=fee("community_fee_per_kwh"),
        seed=_integer(document.get("seed", 0), "seed", 0, 2**63 - 1, "tie-break seed"),
        price_grid_micro=grid_prices_micro(feed_in, retail, points),
        import_preference_micro=fee("import_preference"), export_preference_micro=fee("export_preference"),
    )


def parse_orders(document: Mapping[str, Any]) -> list[Order]:
    """``orders``; ids are ``home:index`` (the order's index in the list) unless given."""
    orders = []
    for path, item in _objects(document, "orders", ("home", "side", "energy_wh", "limit_price"), ("order_id",)):
        home = _home(item["home"], f"{path}.home")
        if item["side"] not in ("buy", "sell"):
            raise OfflineInputError(f"{path}.side: must be \"buy\" or \"sell\"")
        order_id = item.get("order_id", f"{home}:{len(orders)}")
        if not isinstance(order_id, str) or not order_id:
            raise OfflineInputError(f"{path}.order_id: must be a non-empty string")
        orders.append(Order(order_id, home, Side(item["side"]),
                            _integer(item["energy_wh"], f"{path}.energy_wh", 1, MAX_ENERGY_WH, "Wh, > 0"),
                            _price(item["limit_price"], f"{path}.limit_price")))
    return orders


def parse_curves(document: Mapping[str, Any]) -> list[Curve]:
    """``curves``: net import (Wh; + buy, − sell) at ascending prices, non-increasing."""
    curves: list[Curve] = []
    for path, item in _objects(document, "curves", ("home", "prices", "net_import_wh")):
        home = _home(item["home"], f"{path}.home")
        if any(curve.home == home for curve in curves):
            raise OfflineInputError(f"{path}.home: {home!r} has a curve already")
        prices, quantities = item["prices"], item["net_import_wh"]
        for key, values in (("prices", prices), ("net_import_wh", quantities)):
            if not isinstance(values, list) or not 2 <= len(values) <= MAX_CURVE_POINTS:
                raise OfflineInputError(f"{path}.{key}: must be a list of 2 … {MAX_CURVE_POINTS} values")
        if len(prices) != len(quantities):
            raise OfflineInputError(f"{path}.net_import_wh: {len(quantities)} values for {len(prices)} prices")
        prices_micro = tuple(_price(value, f"{path}.prices[{i}]") for i, value in enumerate(prices))
        net_wh = tuple(_integer(value, f"{path}.net_import_wh[{i}]", -MAX_ENERGY_WH, MAX_ENERGY_WH, "Wh")
                       for i, value in enumerate(quantities))
        if any(b <= a for a, b in zip(prices_micro, prices_micro[1:])):
            raise OfflineInputError(f"{path}.prices: must be strictly ascending")
        if any(b > a for a, b in zip(net_wh, net_wh[1:])):
            raise OfflineInputError(f"{path}.net_import_wh: must not increase with the price")
        curves.append(Curve(home, prices_micro, net_wh))
    return curves


def parse_positions(document: Mapping[str, Any]) -> list[Position]:
    """``positions``: metered import and export of each home in the slot."""
    positions: list[Position] = []
    for path, item in _objects(document, "positions", ("home", "import_wh", "export_wh")):
        home = _home(item["home"], f"{path}.home")
        if any(position.home == home for position in positions):
            raise OfflineInputError(f"{path}.home: {home!r} has a position already")
        positions.append(Position(home, _integer(item["import_wh"], f"{path}.import_wh", 0, MAX_ENERGY_WH, "Wh"),
                                  _integer(item["export_wh"], f"{path}.export_wh", 0, MAX_ENERGY_WH, "Wh")))
    return positions


def clearing_input(mechanism: str, document: Mapping[str, Any]) -> ClearingInput:
    """The book converted into what ``mechanism`` clears from."""
    try:
        kind = input_kind(mechanism)
    except KeyError:
        raise OfflineInputError(f"mechanism: unknown {mechanism!r}; choose one of "
                                f"{', '.join(mechanism_names())}") from None
    parameters = parse_parameters(document)
    orders, curves, positions = parse_orders(document), parse_curves(document), parse_positions(document)
    if kind is InputKind.POSITIONS:
        if "positions" not in document:
            raise OfflineInputError(f"positions: required key is missing ({mechanism} clears from metered "
                                    "positions, not from orders or curves)")
        return ClearingInput(parameters, positions=tuple(positions))
    if kind is InputKind.CURVES:
        with_curve = {curve.home for curve in curves}
        if both := sorted(with_curve & {order.home for order in orders}):
            raise OfflineInputError(f"orders: home {both[0]!r} has a curve too ({mechanism} takes one curve a home)")
        order_homes = sorted({order.home for order in orders})
        converted = [curve_from_orders(home, orders, parameters.price_grid_micro) for home in order_homes]
        return ClearingInput(parameters, curves=tuple(curves + converted))
    all_orders = orders + [order for curve in curves for order in orders_from_curve(curve)]
    seen: set[str] = set()
    for order in all_orders:
        if order.order_id in seen:
            raise OfflineInputError(f"orders: order_id {order.order_id!r} is used twice")
        seen.add(order.order_id)
    return ClearingInput(parameters, orders=tuple(all_orders))


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain text without exponent or trailing zeros (``0.19``, ``10``, ``0``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def price_text(price_micro: int | None) -> str | None:
    """µ¤/kWh -> currency per kWh as an exact decimal string (None stays None)."""
    return None if price_micro is None else decimal_text(Decimal(price_micro) / MICRO_PER_UNIT)


def money_text(amount_nano: int) -> str:
    """n¤ -> currency as an exact decimal string."""
    return decimal_text(nano_to_decimal(amount_nano))


def _allocation_document(allocation: HomeAllocation) -> dict[str, Any]:
    return {"home": allocation.home, "bought_wh": allocation.bought_wh, "sold_wh": allocation.sold_wh,
            "paid": money_text(allocation.paid_nano), "received": money_text(allocation.received_nano),
            "fees": money_text(allocation.fees_nano),
            "orders": [{"order_id": fill.order_id, "status": str(fill.status), "filled_wh": fill.filled_wh,
                        "price": price_text(fill.price_micro)} for fill in allocation.fills]}


def result_document(result: ClearingResult, seed: int) -> dict[str, Any]:
    """The cleared slot as JSON-ready data: prices and money as exact decimal strings in currency."""
    document: dict[str, Any] = {"mechanism": result.mechanism}
    if result.buy_price_micro is None and result.sell_price_micro is None:
        document["price"] = price_text(result.price_micro)
    else:
        document.update(buy_price=price_text(result.buy_price_micro), sell_price=price_text(result.sell_price_micro))
    document.update(
        allocations=[_allocation_document(item) for item in sorted(result.allocations, key=lambda a: a.home)],
        grid_import_wh=result.grid_import_wh, grid_export_wh=result.grid_export_wh, traded_wh=result.traded_wh,
        trade_prices=[price_text(price) for price in result.trade_prices_micro],
        retailer=money_text(result.retailer_nano), rounding=money_text(result.rounding_nano), seed=seed)
    return document


def clear_offline(mechanism: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """Clear the book ``document`` with ``mechanism``; OfflineInputError names what is wrong with it.

    A mechanism's own ValueError (an input it refuses) is an input error too; a solver failure is not
    and propagates.
    """
    market = clearing_input(mechanism, document)
    try:
        result = create_mechanism(mechanism).clear(market)
    except ValueError as error:
        raise OfflineInputError(f"{mechanism} refuses the book: {error}") from None
    return result_document(result, market.parameters.seed)


def describe_mechanisms() -> list[dict[str, str]]:
    """Every mechanism's name, what it clears from and its description (importing each one)."""
    described = []
    for name in mechanism_names():
        try:
            description = " ".join(mechanism_class(name).description.split())
        except ImportError as error:
            description = f"(not available: {error})"
        described.append({"name": name, "clears_from": str(input_kind(name)), "description": description})
    return described
