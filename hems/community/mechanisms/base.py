"""The one interface every market mechanism implements, and the book it clears.

A mechanism clears ONE slot: it takes a :class:`ClearingInput` (parameters, and the homes' orders,
net-import curves or metered positions) and returns a :class:`ClearingResult`. All quantities are
integers: energy in Wh, prices in µ¤/kWh, money in n¤ (Wh × µ¤/kWh, exact).

Money accounts of one slot (every amount in n¤):

- each home pays ``paid_nano`` for energy bought, plus ``network_fee_nano`` and ``community_fee_nano``
  (fees are paid by buyers, on home-to-home volume only), and receives ``received_nano``;
- the retailer receives ``retailer_nano`` (negative when it pays for exported energy);
- ``rounding_nano`` is what rule-derived rounded prices leave over.

The books balance exactly: Σ(paid + fees) − Σ received = retailer + network fees + community fees
+ rounding (:meth:`ClearingResult.balance_error_nano` is 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import ClassVar, Protocol

from hems.protocol.messages import OrderStatus, Side


class InputKind(StrEnum):
    """What a mechanism clears from."""

    ORDERS = "orders"  # limit orders (curves are converted to step orders)
    CLASSED_ORDERS = "classed_orders"  # orders with energy classes and preferences, and donations
    CURVES = "curves"  # net-import curves (orders are converted to step curves)
    POSITIONS = "positions"  # metered import and export after the slot (sharing rules)


@dataclass(frozen=True)
class MarketParameters:
    """The prices and rules a slot clears under."""

    retail_price_micro: int  # λ⁺: the retailer sells at this price
    feed_in_price_micro: int  # λ⁻: the retailer buys at this price; λ⁻ < λ⁺
    k: Fraction = Fraction(1, 2)  # price rule: p* = k·bid + (1 − k)·ask
    network_fee_micro: int = 0  # per kWh traded home-to-home, paid by the buyer
    community_fee_micro: int = 0  # per kWh traded home-to-home, paid by the buyer
    seed: int = 0  # tie-break permutation seed, published with the result
    price_grid_micro: tuple[int, ...] = ()  # ascending, λ⁻ … λ⁺, for curve-based mechanisms
    import_preference_micro: int = 0  # energy collective: δ_imp, per kWh imported by a home
    export_preference_micro: int = 0  # energy collective: δ_exp, per kWh exported by a home

    @property
    def fee_micro(self) -> int:
        """Everything a buyer pays per kWh on top of the energy price for home-to-home volume."""
        return self.network_fee_micro + self.community_fee_micro


@dataclass(frozen=True)
class Order:
    """A limit order of one home: up to ``energy_wh`` at ``limit_price_micro`` or better."""

    order_id: str
    home: str
    side: Side
    energy_wh: int  # > 0
    limit_price_micro: int


@dataclass(frozen=True)
class Curve:
    """A home's net import (Wh; + buy, − sell) at each price of an ascending grid, non-increasing."""

    home: str
    prices_micro: tuple[int, ...]
    net_import_wh: tuple[int, ...]
    sequence: int = 0


@dataclass(frozen=True)
class Position:
    """A home's metered energy in the slot (both ≥ 0)."""

    home: str
    import_wh: int
    export_wh: int


@dataclass(frozen=True)
class ClearingInput:
    """One slot's book."""

    parameters: MarketParameters
    orders: tuple[Order, ...] = ()
    curves: tuple[Curve, ...] = ()
    positions: tuple[Position, ...] = ()
    slot_start: datetime | None = None
    duration_s: int = 900


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made building the
# thousands of fills and allocations of a slot half of an auction's clearing time (bench/RESULTS.md).
# Treat them as immutable (derive changed copies with dataclasses.replace); slots forbid stray
# attributes and unsafe_hash keeps them hashable by value, as they were when frozen.
@dataclass(slots=True, unsafe_hash=True)
class OrderFill:
    """The final status of one order."""

    order_id: str
    status: OrderStatus  # FILLED, PARTIALLY_FILLED or UNMATCHED
    filled_wh: int
    price_micro: int | None = None  # the energy price of the fill (before fees)


@dataclass(frozen=True)
class Provenance:
    """Where a home's energy of one slot came from and went to (Wh), and the premiums (n¤): what a
    differentiated mechanism reports (:mod:`~hems.community.mechanisms.differentiated`)."""

    donated_wh: int = 0  # received as a gift
    green_local_wh: int = 0
    local_wh: int = 0
    grid_wh: int = 0  # from the retailer
    given_wh: int = 0  # donated to others
    sold_green_local_wh: int = 0  # to homes
    sold_local_wh: int = 0  # to homes
    sold_grid_wh: int = 0  # to the retailer
    premium_paid_nano: int = 0
    premium_received_nano: int = 0

    @property
    def bought_wh(self) -> int:
        return self.donated_wh + self.green_local_wh + self.local_wh + self.grid_wh

    @property
    def sold_wh(self) -> int:
        return self.given_wh + self.sold_green_local_wh + self.sold_local_wh + self.sold_grid_wh


@dataclass(slots=True, unsafe_hash=True)  # not frozen, for speed: see OrderFill
class HomeAllocation:
    """What one home bought and sold, and the money for it."""

    home: str
    bought_wh: int = 0
    sold_wh: int = 0
    paid_nano: int = 0
    received_nano: int = 0
    network_fee_nano: int = 0
    community_fee_nano: int = 0
    fills: tuple[OrderFill, ...] = ()
    sequence: int | None = None  # the curve's sequence number, echoed
    provenance: Provenance | None = None  # differentiated mechanisms only

    @property
    def net_import_wh(self) -> int:
        """The cleared net position settlement compares with the meter."""
        return self.bought_wh - self.sold_wh

    @property
    def fees_nano(self) -> int:
        return self.network_fee_nano + self.community_fee_nano

    def average_price_micro(self, side: Side) -> int | None:
        """The average energy price of this home's purchases or sales (rounded half-even), if any."""
        energy, money = (self.bought_wh, self.paid_nano) if side is Side.BUY else (self.sold_wh, self.received_nano)
        if energy == 0:
            return None
        from hems.protocol.units import round_half_even
        return round_half_even(Fraction(money, energy))


@dataclass(frozen=True)
class ClearingResult:
    """One slot, cleared."""

    mechanism: str
    allocations: tuple[HomeAllocation, ...]
    price_micro: int | None = None  # the uniform price, where there is one
    buy_price_micro: int | None = None  # sharing rules: what buyers pay
    sell_price_micro: int | None = None  # sharing rules: what sellers get
    traded_wh: int = 0  # home-to-home volume
    grid_import_wh: int = 0  # bought from the retailer (in clearing)
    grid_export_wh: int = 0  # sold to the retailer (in clearing)
    retailer_nano: int = 0  # money to the retailer (negative: it pays)
    rounding_nano: int = 0
    trade_prices_micro: tuple[int, ...] = ()  # the price of every home-to-home trade (pay-as-bid: many)
    details: dict[str, object] = field(default_factory=dict)  # seed, permutation hash, rounds …: public

    def allocation(self, home: str) -> HomeAllocation | None:
        return next((item for item in self.allocations if item.home == home), None)

    @property
    def network_fees_nano(self) -> int:
        return sum(item.network_fee_nano for item in self.allocations)

    @property
    def community_fees_nano(self) -> int:
        return sum(item.community_fee_nano for item in self.allocations)

    def balance_error_nano(self) -> int:
        """Homes' payments minus everyone's receipts: 0 when the books balance."""
        homes_in = sum(item.paid_nano + item.fees_nano - item.received_nano for item in self.allocations)
        return homes_in - (self.retailer_nano + self.network_fees_nano + self.community_fees_nano
                           + self.rounding_nano)


class Mechanism(Protocol):
    """A market mechanism: a name, what it clears from, and the clearing of one slot."""

    name: ClassVar[str]
    input_kind: ClassVar[InputKind]
    description: ClassVar[str]

    def clear(self, market: ClearingInput) -> ClearingResult:
        """Clear one slot. Pure: the same input gives the same result."""
        ...


def orders_from_curve(curve: Curve, id_prefix: str = "") -> list[Order]:
    """The step orders equivalent to a net-import curve.

    A curve says: at price p_k the home wants d_k (non-increasing). The buy volume max(d_k, 0) that
    disappears between p_k and p_{k+1} is a buy order limited at p_k; the sell volume max(−d_k, 0) that
    appears between p_{k−1} and p_k is a sell order limited at p_k.
    """
    orders: list[Order] = []
    prices, quantities = curve.prices_micro, curve.net_import_wh
    for index, (price, quantity) in enumerate(zip(prices, quantities)):
        buy_here = max(quantity, 0) - (max(quantities[index + 1], 0) if index + 1 < len(quantities) else 0)
        if buy_here > 0:
            orders.append(Order(f"{id_prefix}{curve.home}:b{index}", curve.home, Side.BUY, buy_here, price))
        sell_here = max(-quantity, 0) - (max(-quantities[index - 1], 0) if index > 0 else 0)
        if sell_here > 0:
            orders.append(Order(f"{id_prefix}{curve.home}:s{index}", curve.home, Side.SELL, sell_here, price))
    return orders


def curve_from_orders(home: str, orders: list[Order] | tuple[Order, ...], prices_micro: tuple[int, ...],
                      sequence: int = 0) -> Curve:
    """The net-import step curve of a home's orders on a price grid: at price p the home buys every
    buy order with limit ≥ p and sells every sell order with limit ≤ p."""
    quantities = []
    for price in prices_micro:
        bought = sum(o.energy_wh for o in orders if o.home == home and o.side is Side.BUY and o.limit_price_micro >= price)
        sold = sum(o.energy_wh for o in orders if o.home == home and o.side is Side.SELL and o.limit_price_micro <= price)
        quantities.append(bought - sold)
    return Curve(home, tuple(prices_micro), tuple(quantities), sequence)
