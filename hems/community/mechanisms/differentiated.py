"""Differentiated energy: a uniform-price auction that respects energy classes, green premiums,
partners and donations, and reports where each home's energy came from.

Inputs (one slot, :class:`DifferentiatedInput`). A home sell order carries an :class:`EnergyClass`:
``local`` (the default) or ``green_local``; ``grid`` is the retailer's alone, so a home sell of class
grid is refused. A home buy order may carry a green premium π ≥ 0 (µ¤/kWh it pays on top of the energy
price for green-local energy) and, with π > 0 only, a partner allow-list: the homes whose green-local
energy earns its premium (None: any home). A :class:`Donation` lets a home give part of its surplus,
at a reduced price p_d ≥ 0 (0: free), to designated recipient homes only.

Clearing, in this order (the money conventions are those of :mod:`~hems.community.mechanisms.base`):

0. **Netting.** Each home's own crossing orders are netted exactly as in the uniform auction (a home
   uses its own energy first); netted Wh are no market volume.
1. **Donations**, in ascending ``donation_id`` (never arrival). A donation moves
   V = min(cap, the donor's remaining sell Wh, D) where D is the remaining buy Wh of the recipients'
   buy orders whose effective limit p̃ = min(p, λ⁺) − φ is ≥ p_d. V goes ONLY to the recipients:
   pro rata to their D between them, pro rata to each order's remaining Wh within one recipient (whole
   Wh, largest remainder, exact ties in the slot's seeded home order). The donor gives from its sell
   orders in ascending ask (then order id), whatever their asks (it chose to give). What a donation
   cannot place stays in the donor's orders for the next stages.
2. **Green rounds.** Buy orders with π > 0 form groups of equal (π, partners). Groups are served by
   premium, highest first; at one premium, partner-restricted groups before open ones (fewest
   partners first, then by the sorted partner ids): the most constrained are served while they still
   can be. Each group is cleared against the remaining green-local sells it accepts by the uniform
   auction's own book and walk (no retailer): higher p̃ first, the marginal limit rationed pro rata
   (whole Wh, largest remainder, seeded ties), base price p_g = k·p̃_{b_m} + (1 − k)·p_{o_m} of the
   round's marginal pair. So **when green energy is scarce it goes by premium, highest first; buyers
   of equal premium (and partners) share it by the uniform rule: higher limit first, pro rata at the
   marginal limit.** Buyers pay p_g + π per kWh (+ fees), green sellers get p_g + π: the whole
   premium goes to the green seller, and the premium paid equals the stated premium. p_g comes from
   the round's own marginal pair, so it may lie above or below the residual's p*. Green energy no
   round takes goes on to the residual, without a premium. Each round rebuilds the slot's book, so
   the rounds cost O(G·n) for G distinct (π, partners) groups and n orders.
3. **Residual.** Every remaining order (local and green-local sells alike, every buy) in one uniform
   auction, exactly :class:`~hems.community.mechanisms.uniform.UniformPriceAuction`: price p*, no
   premium.
4. **The retailer**, as in the uniform auction: with φ = 0 (and ``book_retailer``) it is booked in the
   residual at λ⁺ / λ⁻ and its volume is ``grid_import_wh`` / ``grid_export_wh``; with φ > 0 unmatched
   volume goes to the retailer in settlement, not here.

**Prices.** Green and residual base prices come from clamped books, so they lie in [λ⁻, λ⁺ − φ]; a
buyer's price per kWh, premium and fees included, is ≤ min(p, λ⁺) + π ≤ λ⁺ + π, and a seller gets ≥ its
ask. A donation is charged p = min(p_d, r) with the reference r = p* when the residual traded, else λ⁻
(what unmatched surplus fetches): p ∈ [0, r], and p ≤ p_d ≤ p̃ of every recipient order it fills. The
recipient pays fees on donated Wh like on any home-to-home Wh. **The donor bears the gift**
(r − p)·V: it simply receives p instead of r (reported as :attr:`DonationOutcome.gift_nano`, not a
money account). Money balances to the n¤: every stage books what the buyer pays to the seller.

**Provenance** (:class:`~hems.community.mechanisms.base.Provenance` on each home's allocation, one slot in time and the community in place). A buyer's Wh are
donated (stage 1), green-local (stage 2, plus its share of stage 3), local (its share of stage 3) and
grid (the retailer's Wh in stage 3). Stage 3 is one anonymous pool, so a buyer's share is the pool's
mix: the Wh homes sold to homes split by class pro rata to the classes sold, each buyer takes green Wh
pro rata to its fill, the retailer's Wh pro rata to the rest, local Wh for what remains. The four add up
to ``bought_wh``; seller-side fields (given, sold green-local, sold local, sold to the retailer) add up
to ``sold_wh``, and home-to-home Wh bought equal those sold, class by class.

A home is never matched with itself within one stage, but it may trade on both sides across stages
(sell green-local at a premium in a round, buy local in the residual, or receive one donation and make
another): different trades at different prices, each within its order's limit.

Without classes, premiums and donations the result equals the uniform auction's (fills and money).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import ClassVar

from hems.community.mechanisms.base import (ClearingInput, ClearingResult, HomeAllocation, InputKind,
                                            MarketParameters, Order, OrderFill, Provenance)
from hems.community.mechanisms.differentiated_book import (DONATED, GREEN, GRID, LOCAL, STAGE_DONATION,
                                                           STAGE_GREEN, STAGE_RESIDUAL, GreenRound, Residual,
                                                           RowFill, Rows, clear_residual, give, green_rounds,
                                                           open_rows)
from hems.protocol.messages import EnergyClass, OrderStatus, Side

__all__ = ["ClassedOrder", "DifferentiatedAuction", "DifferentiatedInput", "DifferentiatedResult", "Donation",
           "DonationOutcome", "EnergyClass", "GreenRound", "StageFill", "STAGE_DONATION",
           "STAGE_GREEN", "STAGE_RESIDUAL"]


#: The stages in clearing order; fills are reported in it, then by step and order id (never input order).
_STAGES = (STAGE_DONATION, STAGE_GREEN, STAGE_RESIDUAL)


@dataclass(frozen=True)
class ClassedOrder:
    """An order with its class (sells; None means local) or its preferences (buys)."""

    order: Order
    energy_class: EnergyClass | None = None  # sells only
    green_premium_micro: int = 0  # buys only: paid on top of the energy price for green-local energy
    partners: frozenset[str] | None = None  # buys with a premium only: whose green energy earns it

    def __post_init__(self) -> None:
        if self.partners is not None and not isinstance(self.partners, frozenset):
            object.__setattr__(self, "partners", frozenset(self.partners))
        if self.order.side is Side.SELL:
            if self.energy_class is EnergyClass.GRID:
                raise ValueError(f"order {self.order.order_id}: a home cannot sell grid energy")
            if self.green_premium_micro or self.partners is not None:
                raise ValueError(f"order {self.order.order_id}: premiums and partners belong to buy orders")
        else:
            if self.energy_class is not None:
                raise ValueError(f"order {self.order.order_id}: a buy order states a premium, not a class")
            if self.green_premium_micro < 0:
                raise ValueError(f"order {self.order.order_id}: green_premium_micro must be ≥ 0")
            if self.partners is not None and self.green_premium_micro == 0:
                raise ValueError(f"order {self.order.order_id}: partners only qualify a green premium")

    @property
    def is_green(self) -> bool:
        """A sell of green-local energy."""
        return self.order.side is Side.SELL and self.energy_class is EnergyClass.GREEN_LOCAL


@dataclass(frozen=True)
class Donation:
    """Up to ``energy_wh`` of the donor's surplus, at ``price_micro`` ≥ 0 (0: free), for the recipients only."""

    donation_id: str
    donor: str
    recipients: tuple[str, ...]
    energy_wh: int
    price_micro: int = 0

    def __post_init__(self) -> None:
        if not self.recipients or len(set(self.recipients)) != len(self.recipients):
            raise ValueError(f"donation {self.donation_id}: recipients must be distinct and not empty")
        if self.donor in self.recipients:
            raise ValueError(f"donation {self.donation_id}: the donor cannot be a recipient")
        if self.energy_wh < 0 or self.price_micro < 0:
            raise ValueError(f"donation {self.donation_id}: energy_wh and price_micro must be ≥ 0")


@dataclass(frozen=True)
class DifferentiatedInput:
    """One slot's classed book and donations."""

    parameters: MarketParameters
    orders: tuple[ClassedOrder, ...] = ()
    donations: tuple[Donation, ...] = ()
    slot_start: datetime | None = None
    duration_s: int = 900

    @classmethod
    def from_clearing_input(cls, market: ClearingInput) -> DifferentiatedInput:
        """A plain book: every sell local, no premiums, no donations."""
        return cls(market.parameters, tuple(map(ClassedOrder, market.orders)), (), market.slot_start,
                   market.duration_s)


@dataclass(frozen=True)
class StageFill:
    """Energy one order traded in one stage; the buyer pays, the seller gets (price + premium) per kWh."""

    order_id: str
    home: str
    side: Side
    stage: str  # STAGE_DONATION, STAGE_GREEN or STAGE_RESIDUAL
    energy_wh: int
    price_micro: int  # the base energy price (a donation: the price charged)
    premium_micro: int = 0
    donation_id: str | None = None  # the donation of a donation fill
    green_round: int | None = None  # a green fill's round: index into DifferentiatedResult.green_rounds

    @property
    def money_nano(self) -> int:
        return self.energy_wh * (self.price_micro + self.premium_micro)


@dataclass(frozen=True)
class DonationOutcome:
    """What one donation delivered, at what price, and what the gift cost its donor."""

    donation_id: str
    donor: str
    delivered: tuple[tuple[str, int], ...]  # (recipient, Wh), recipients sorted, only those who got some
    stated_price_micro: int
    price_micro: int  # charged: min(stated, reference)
    reference_price_micro: int  # the residual's price p*, or λ⁻ when it did not trade
    green_local_wh: int  # of the delivered Wh, how many came from the donor's green-local sells

    @property
    def delivered_wh(self) -> int:
        return sum(wh for _, wh in self.delivered)

    @property
    def gift_nano(self) -> int:
        """What the donor forgoes against the reference price (borne by the donor alone)."""
        return (self.reference_price_micro - self.price_micro) * self.delivered_wh


@dataclass(frozen=True)
class DifferentiatedResult:
    """One slot, cleared: the ordinary result (all stages summed) plus stages, provenance and gifts."""

    clearing: ClearingResult
    fills: tuple[StageFill, ...]  # donations by id, green rounds as served, residual; then by order id
    donations: tuple[DonationOutcome, ...]  # by donation_id
    green_rounds: tuple[GreenRound, ...]  # in the order served
    slot_start: datetime | None = None
    duration_s: int = 900

    def balance_error_nano(self) -> int:
        """Homes' payments minus everyone's receipts, premiums and donations included: 0 when balanced."""
        return self.clearing.balance_error_nano()

    def provenance_of(self, home: str) -> Provenance | None:
        """The home's provenance (None: the home had no order in the slot)."""
        allocation = self.clearing.allocation(home)
        return None if allocation is None else allocation.provenance


class DifferentiatedAuction:
    """Donations, then green rounds by premium, then the uniform auction of the rest (module docstring)."""

    name: ClassVar[str] = "differentiated"
    input_kind: ClassVar[InputKind] = InputKind.CLASSED_ORDERS
    description: ClassVar[str] = ("differentiated energy: donations to designated homes, green-local energy "
                                  "by premium, then a uniform-price auction of the rest; provenance per class")

    def __init__(self, *, book_retailer: bool = True) -> None:
        """``book_retailer``: book the retailer at λ⁺/λ⁻ in the residual when there is no fee."""
        self.book_retailer = book_retailer

    def clear(self, market: DifferentiatedInput | ClearingInput) -> ClearingResult:
        """Clear one slot as every mechanism does; each allocation carries its home's provenance."""
        if isinstance(market, ClearingInput):
            market = DifferentiatedInput.from_clearing_input(market)
        return self.clear_classed(market).clearing

    def clear_classed(self, market: DifferentiatedInput) -> DifferentiatedResult:
        """Clear one slot with its stages, donations and green rounds (pure: the same input gives the
        same result, whatever the input order)."""
        parameters = market.parameters
        donations = sorted(market.donations, key=lambda donation: donation.donation_id)
        _check_donations(donations, parameters)
        classed = market.orders
        rows = open_rows(parameters, tuple(item.order for item in classed), [item.is_green for item in classed],
                         [item.green_premium_micro for item in classed], tuple(item.partners for item in classed))
        gifts = [give(rows, index, donation.donor, donation.recipients, donation.energy_wh, donation.price_micro)
                 for index, donation in enumerate(donations)]
        rounds = green_rounds(rows)
        residual = clear_residual(rows, book_retailer=self.book_retailer)
        reference = residual.price_micro if residual.price_micro is not None else parameters.feed_in_price_micro
        charged = [min(donation.price_micro, reference) for donation in donations]
        stage_fills = tuple(
            StageFill(rows.orders[fill.row].order_id, rows.orders[fill.row].home, rows.orders[fill.row].side,
                      fill.stage, fill.energy_wh, _stage_price(fill, charged),
                      fill.premium_micro, donations[fill.step].donation_id if fill.stage == STAGE_DONATION else None,
                      fill.step if fill.stage == STAGE_GREEN else None)
            for fill in sorted(rows.fills, key=lambda fill: (_STAGES.index(fill.stage), fill.step,
                                                             rows.orders[fill.row].order_id)))
        outcomes = tuple(
            DonationOutcome(donation.donation_id, donation.donor, _delivered(rows, gift.to_rows), donation.price_micro,
                            price, reference, sum(wh for row, wh in gift.from_rows if rows.green[row]))
            for donation, gift, price in zip(donations, gifts, charged))
        clearing = _assemble(self.name, rows, stage_fills, rounds, residual, outcomes)
        return DifferentiatedResult(clearing, stage_fills, outcomes, tuple(rounds),
                                    market.slot_start, market.duration_s)


def _check_donations(donations: list[Donation], parameters: MarketParameters) -> None:
    """Unique ids and prices within [0, λ⁺] (the rest is checked when a Donation is made)."""
    ids = [donation.donation_id for donation in donations]
    if len(set(ids)) != len(ids):
        raise ValueError("donation ids must be unique within a slot")
    for donation in donations:
        if donation.price_micro > parameters.retail_price_micro:
            raise ValueError(f"donation {donation.donation_id}: a gift cannot cost more than retail")


def _stage_price(fill: RowFill, charged: list[int]) -> int:
    """A fill's base price: a donation's is the price charged for it, known once the residual cleared."""
    if fill.stage == STAGE_DONATION:
        return charged[fill.step]
    if fill.price_micro is None:
        raise RuntimeError("a matched fill without a price")
    return fill.price_micro


def _delivered(rows: Rows, to_rows: tuple[tuple[int, int], ...]) -> tuple[tuple[str, int], ...]:
    """(recipient, Wh) from the recipients' rows, recipients sorted."""
    per_home: dict[str, int] = {}
    for row, wh in to_rows:
        home = rows.orders[row].home
        per_home[home] = per_home.get(home, 0) + wh
    return tuple(sorted(per_home.items()))


def _assemble(mechanism: str, rows: Rows, stage_fills: tuple[StageFill, ...], rounds: list[GreenRound],
              residual: Residual, outcomes: tuple[DonationOutcome, ...]) -> ClearingResult:
    """The ordinary :class:`ClearingResult`: per order, the stages' Wh and money summed; per home,
    fees on its home-to-home Wh (all but the retailer's); homes and fills sorted by id."""
    parameters = rows.parameters
    filled: dict[str, int] = {}
    money: dict[str, int] = {}
    for fill in stage_fills:
        filled[fill.order_id] = filled.get(fill.order_id, 0) + fill.energy_wh
        money[fill.order_id] = money.get(fill.order_id, 0) + fill.money_nano
    grid_bought: dict[str, int] = {}
    for row, order in enumerate(rows.orders):
        if order.side is Side.BUY:
            grid_bought[order.home] = grid_bought.get(order.home, 0) + int(rows.source_wh[row, GRID])
    by_home: dict[str, list[Order]] = {}
    for order in sorted(rows.orders, key=lambda order: order.order_id):
        by_home.setdefault(order.home, []).append(order)
    provenance = _provenance(rows, stage_fills)
    allocations = []
    for home in sorted(by_home):
        mine = by_home[home]
        fills = tuple(_order_fill(order, filled.get(order.order_id, 0), money.get(order.order_id, 0)) for order in mine)
        bought = sum(filled.get(o.order_id, 0) for o in mine if o.side is Side.BUY)
        sold = sum(filled.get(o.order_id, 0) for o in mine if o.side is Side.SELL)
        paid = sum(money.get(o.order_id, 0) for o in mine if o.side is Side.BUY)
        received = sum(money.get(o.order_id, 0) for o in mine if o.side is Side.SELL)
        local = bought - grid_bought.get(home, 0)
        allocations.append(HomeAllocation(home, bought, sold, paid, received, local * parameters.network_fee_micro,
                                          local * parameters.community_fee_micro, fills,
                                          provenance=provenance[home]))
    price = residual.price_micro or 0
    residual_bought = sum(fill.energy_wh for fill in stage_fills
                          if fill.stage == STAGE_RESIDUAL and fill.side is Side.BUY)
    trade_prices = tuple(item.price_micro for item in rounds if item.energy_wh)
    if residual_bought > residual.grid_import_wh:
        trade_prices += (residual.price_micro,)
    details = {"seed": parameters.seed, "tie_break_hash": rows.tie_break_hash, "k": str(Fraction(parameters.k)),
               "fee_micro": parameters.fee_micro, "retailer_booked": residual.retailer_booked,
               "self_netted_wh": rows.netted_wh, "cleared_wh": residual.cleared_wh,
               "marginal_bid_micro": residual.marginal_bid_micro, "marginal_ask_micro": residual.marginal_ask_micro,
               "donated_wh": sum(item.delivered_wh for item in outcomes),
               "green_round_wh": sum(item.energy_wh for item in rounds),
               "donation_prices_micro": tuple(item.price_micro for item in outcomes if item.delivered_wh)}
    return ClearingResult(
        mechanism=mechanism, allocations=tuple(allocations), price_micro=residual.price_micro,
        traded_wh=sum(item.bought_wh for item in allocations) - residual.grid_import_wh,
        grid_import_wh=residual.grid_import_wh, grid_export_wh=residual.grid_export_wh,
        retailer_nano=(residual.grid_import_wh - residual.grid_export_wh) * price, rounding_nano=0,
        trade_prices_micro=trade_prices, details=details)


def _order_fill(order: Order, filled_wh: int, money_nano: int) -> OrderFill:
    """An order's final status; its price is the volume-weighted average of its stages, premiums and
    gifts included, rounded half-even (display only: the money is exact)."""
    if filled_wh <= 0:
        return OrderFill(order.order_id, OrderStatus.UNMATCHED, 0, None)
    status = OrderStatus.FILLED if filled_wh >= order.energy_wh else OrderStatus.PARTIALLY_FILLED
    quotient, remainder = divmod(money_nano, filled_wh)  # integer half-even: Fraction is slow per order
    round_up = 2 * remainder > filled_wh or (2 * remainder == filled_wh and quotient % 2 == 1)
    return OrderFill(order.order_id, status, filled_wh, quotient + round_up)


def _provenance(rows: Rows, stage_fills: tuple[StageFill, ...]) -> dict[str, Provenance]:
    """Each home's provenance columns summed over its buy rows and its sell rows, and its premiums."""
    columns: dict[str, list[int]] = {}
    for row, order in enumerate(rows.orders):
        totals = columns.setdefault(order.home, [0] * 10)
        offset = 0 if order.side is Side.BUY else 4
        for column in (DONATED, GREEN, LOCAL, GRID):
            totals[offset + column] += int(rows.source_wh[row, column])
    for fill in stage_fills:
        if fill.premium_micro:
            columns[fill.home][8 if fill.side is Side.BUY else 9] += fill.energy_wh * fill.premium_micro
    return {home: Provenance(*totals) for home, totals in columns.items()}
