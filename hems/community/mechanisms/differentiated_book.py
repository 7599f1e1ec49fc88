"""The stages of the differentiated-energy clearing, on one slot's orders as rows.

The rules are specified in :mod:`~hems.community.mechanisms.differentiated`; this module carries them
out. Row ``r`` is the ``r``-th classed order of the input. Every stage that matches orders against
each other builds an ordinary order book (:func:`~hems.community.mechanisms.book.build_book`) from
ALL rows, with each row's remaining Wh where it takes part in the stage and 0 elsewhere, and walks it
with :func:`~hems.community.mechanisms.book.match`: the same clamping, fee handling, pro-rata rationing
and seeded tie-break as the uniform auction, and, since every stage sees every home, one tie-break
permutation (and one published hash) for the whole slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hems.community.mechanisms.base import ClearingInput, MarketParameters, Order
from hems.community.mechanisms.book import Book, build_book, match, ration, rule_price, tie_break_homes

STAGE_DONATION, STAGE_GREEN, STAGE_RESIDUAL = "donation", "green", "residual"
#: Provenance columns of :attr:`Rows.source_wh`. For a buy row: Wh received as a gift, bought green-local,
#: bought local, bought from the retailer. For a sell row: Wh given away, sold to homes as green-local,
#: sold to homes as local, sold to the retailer.
DONATED, GREEN, LOCAL, GRID = range(4)


@dataclass(slots=True)
class RowFill:
    """Energy one row traded in one stage. ``price_micro`` is the base energy price per kWh (None for
    a donation until the residual's price is known); the buyer pays and the seller gets
    ``price_micro + premium_micro`` per kWh."""

    row: int
    stage: str
    energy_wh: int
    price_micro: int | None
    premium_micro: int = 0
    step: int = 0  # the donation's index (in donation_id order) or the green round's; 0 in the residual


@dataclass
class Rows:
    """One slot's orders as rows and what the stages did to them. Mutable, but built afresh by every
    clearing (:func:`open_rows`) and never shared."""

    parameters: MarketParameters
    orders: tuple[Order, ...]
    is_buy: np.ndarray
    green: np.ndarray  # sell rows offering green-local energy
    premium_micro: np.ndarray  # buy rows: the stated green premium
    partners: tuple[frozenset[str] | None, ...]  # buy rows: whose green energy earns the premium
    limit_micro: np.ndarray  # p̃ = min(p, λ⁺) − φ for buys, max(p, λ⁻) for sells
    tie_rank: np.ndarray  # the slot's seeded tie-break rank of each row
    home_rank: dict[str, int]  # the slot's seeded tie-break rank of each home
    remaining_wh: np.ndarray  # after self-netting, less everything the stages filled
    netted_wh: int
    tie_break_hash: str
    home_rows: dict[str, list[int]]  # each home's rows, ascending
    source_wh: np.ndarray = field(init=False)  # (rows, 4): see DONATED … GRID
    fills: list[RowFill] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.source_wh = np.zeros((len(self.orders), 4), np.int64)

    def record(self, row: int, stage: str, energy_wh: int, price_micro: int | None, premium_micro: int = 0,
               step: int = 0) -> None:
        """Book ``energy_wh`` of ``row`` as traded in ``stage`` (it leaves the row's remaining volume)."""
        if not 0 < energy_wh <= self.remaining_wh[row]:
            raise RuntimeError(f"row {row}: cannot fill {energy_wh} Wh of {self.remaining_wh[row]}")
        self.remaining_wh[row] -= energy_wh
        self.fills.append(RowFill(row, stage, energy_wh, price_micro, premium_micro, step))


def open_rows(parameters: MarketParameters, orders: tuple[Order, ...], green: list[bool],
              premium_micro: list[int], partners: tuple[frozenset[str] | None, ...]) -> Rows:
    """The rows of a slot, each home's own crossing orders netted exactly as the uniform auction nets
    them (one :func:`build_book` of every order, without the retailer)."""
    book = build_book(ClearingInput(parameters, orders), book_retailer=False)
    count = len(orders)
    ordered_homes = tie_break_homes(book.homes, parameters.seed)
    home_rows: dict[str, list[int]] = {}
    for row, order in enumerate(orders):
        home_rows.setdefault(order.home, []).append(row)
    return Rows(parameters, orders, book.is_buy[:count].copy(), np.array(green, bool).reshape(count),
                np.array(premium_micro, np.int64).reshape(count), partners, book.limit_micro[:count].copy(),
                book.tie_rank[:count].copy(), {home: rank for rank, home in enumerate(ordered_homes)},
                book.quantity_wh[:count].copy(), book.self_netted_wh, book.tie_break_hash, home_rows)


def stage_book(rows: Rows, taking_part: np.ndarray, *, book_retailer: bool) -> Book:
    """An order book of every row: its remaining Wh where ``taking_part``, else 0 (never trades)."""
    quantity = np.where(taking_part, rows.remaining_wh, 0).tolist()
    orders = tuple(Order(order.order_id, order.home, order.side, wh, order.limit_price_micro)
                   for order, wh in zip(rows.orders, quantity))
    return build_book(ClearingInput(rows.parameters, orders), book_retailer=book_retailer)


@dataclass(frozen=True)
class Gift:
    """What one donation delivered: (row, Wh) of the recipients' buy rows and of the donor's sell rows."""

    to_rows: tuple[tuple[int, int], ...]
    from_rows: tuple[tuple[int, int], ...]


def give(rows: Rows, index: int, donor: str, recipients: tuple[str, ...], cap_wh: int, price_micro: int) -> Gift:
    """Stage 1 for one donation: min(cap, the donor's remaining sell Wh, the recipients' remaining buy
    Wh at p̃ ≥ price) goes from the donor to the recipients, pro rata to their demand between them and
    to each row's remaining Wh within one recipient (whole Wh, largest remainder, seeded ties); the
    donor's sell rows give in ascending order of ask, then order id."""
    donor_rows = sorted((row for row in rows.home_rows.get(donor, ()) if not rows.is_buy[row]
                         and rows.remaining_wh[row] > 0),
                        key=lambda row: (int(rows.limit_micro[row]), rows.orders[row].order_id))
    supply = min(cap_wh, sum(int(rows.remaining_wh[row]) for row in donor_rows))
    # A recipient without orders wants nothing (and has no tie-break rank).
    wanting = {home: [row for row in rows.home_rows[home] if rows.is_buy[row]
                      and rows.remaining_wh[row] > 0 and rows.limit_micro[row] >= price_micro]
               for home in sorted(recipients) if home in rows.home_rows}
    demand = np.array([int(rows.remaining_wh[home_rows].sum()) for home_rows in wanting.values()], np.int64)
    total = min(supply, int(demand.sum()))
    if total == 0:
        return Gift((), ())
    shares = ration(demand, total, np.array([rows.home_rank[home] for home in wanting], np.int64))
    to_rows: list[tuple[int, int]] = []
    for home_rows, share in zip(wanting.values(), shares.tolist()):
        if share:
            parts = ration(rows.remaining_wh[home_rows], share, rows.tie_rank[home_rows])
            to_rows.extend((row, part) for row, part in zip(home_rows, parts.tolist()) if part)
    from_rows: list[tuple[int, int]] = []
    left = total
    for row in donor_rows:
        part = min(left, int(rows.remaining_wh[row]))
        if part:
            from_rows.append((row, part))
        left -= part
    for row, wh in to_rows:
        rows.record(row, STAGE_DONATION, wh, None, step=index)
        rows.source_wh[row, DONATED] += wh
    for row, wh in from_rows:
        rows.record(row, STAGE_DONATION, wh, None, step=index)
        rows.source_wh[row, DONATED] += wh
    return Gift(tuple(to_rows), tuple(from_rows))


@dataclass(frozen=True)
class GreenRound:
    """One green round: a group of premium buyers against the green-local sells they accept."""

    premium_micro: int
    partners: frozenset[str] | None
    price_micro: int | None  # the base price, before the premium; None when nothing traded
    energy_wh: int


def _group_order(key: tuple[int, frozenset[str] | None]) -> tuple:
    """Highest premium first; at one premium, restricted groups before open ones, fewest partners
    first, then by the sorted partner ids (the most constrained are served while they still can be)."""
    premium, partners = key
    return (-premium, partners is None, len(partners or ()), tuple(sorted(partners or ())))


def green_rounds(rows: Rows) -> list[GreenRound]:
    """Stage 2: for each group of buy rows with one (premium, partners), in :func:`_group_order`, a
    uniform-rule clearing of the group against the remaining green-local sells of its partners (or of
    anyone): base price k·p̃_b + (1 − k)·p_o of the round's marginal pair, premium on top."""
    groups: dict[tuple[int, frozenset[str] | None], list[int]] = {}
    candidates = np.flatnonzero(rows.is_buy & (rows.premium_micro > 0) & (rows.remaining_wh > 0)).tolist()
    for row in candidates:
        groups.setdefault((int(rows.premium_micro[row]), rows.partners[row]), []).append(row)
    homes = np.array([order.home for order in rows.orders], dtype=object)
    count = len(rows.orders)
    rounds: list[GreenRound] = []
    for step, key in enumerate(sorted(groups, key=_group_order)):
        premium, partners = key
        taking_part = ~rows.is_buy & rows.green & (rows.remaining_wh > 0)
        if partners is not None:
            taking_part &= np.fromiter((home in partners for home in homes), bool, count)
        taking_part[groups[key]] = True
        matching = match(stage_book(rows, taking_part, book_retailer=False))
        price = None
        if matching.cleared_wh:
            price = rule_price(rows.parameters.k, matching.marginal_bid_micro, matching.marginal_ask_micro)
        for row in np.flatnonzero(matching.filled_wh[:count]).tolist():
            wh = int(matching.filled_wh[row])
            rows.record(row, STAGE_GREEN, wh, price, premium, step)
            rows.source_wh[row, GREEN] += wh
        rounds.append(GreenRound(premium, partners, price, matching.cleared_wh))
    return rounds


@dataclass(frozen=True)
class Residual:
    """Stage 3 and 4: the uniform auction of everything left, the retailer booked as configured."""

    price_micro: int | None
    cleared_wh: int
    grid_import_wh: int
    grid_export_wh: int
    retailer_booked: bool
    marginal_bid_micro: int | None
    marginal_ask_micro: int | None


def clear_residual(rows: Rows, *, book_retailer: bool) -> Residual:
    """Stage 3 and 4: every remaining order in one uniform auction (retailer booked as in
    :class:`~hems.community.mechanisms.uniform.UniformPriceAuction`), then provenance by pool share."""
    book = stage_book(rows, rows.remaining_wh > 0, book_retailer=book_retailer)
    matching = match(book)
    count = len(rows.orders)
    price = None
    if matching.cleared_wh:
        price = rule_price(rows.parameters.k, matching.marginal_bid_micro, matching.marginal_ask_micro)
    grid_import = int(matching.filled_wh[book.retailer_sell_row]) if book.retailer_booked else 0
    grid_export = int(matching.filled_wh[book.retailer_buy_row]) if book.retailer_booked else 0
    filled = matching.filled_wh[:count].copy()
    _attribute_residual(rows, filled, grid_import)
    for row in np.flatnonzero(filled).tolist():
        rows.record(row, STAGE_RESIDUAL, int(filled[row]), price)
    return Residual(price, matching.cleared_wh, grid_import, grid_export, book.retailer_booked,
                    matching.marginal_bid_micro, matching.marginal_ask_micro)


def _attribute_residual(rows: Rows, filled: np.ndarray, grid_import_wh: int) -> None:
    """The residual is one anonymous community pool, so provenance is its mix: the T Wh homes sold to
    homes split into green-local and local pro rata to the classes sold (ties: green first); within a
    class the sellers' Wh to homes pro rata to their fills (the rest went to the retailer); each buyer
    gets the green Wh pro rata to its fill, then the retailer's Wh pro rata to what is left, and local
    Wh for the rest. Whole Wh by largest remainder throughout, ties in the slot's tie-break order."""
    bought = np.where(rows.is_buy, filled, 0)
    sold = np.where(rows.is_buy, 0, filled)
    to_homes = int(bought.sum()) - grid_import_wh
    green_sells, local_sells = ~rows.is_buy & rows.green, ~rows.is_buy & ~rows.green
    by_class = np.array([int(sold[green_sells].sum()), int(sold[local_sells].sum())], np.int64)
    green_wh, local_wh = ration(by_class, to_homes, np.array([0, 1], np.int64)).tolist()
    for sells, class_wh, column in ((green_sells, green_wh, GREEN), (local_sells, local_wh, LOCAL)):
        selling = np.flatnonzero(sells & (sold > 0))
        homes_part = ration(sold[selling], class_wh, rows.tie_rank[selling])
        rows.source_wh[selling, column] += homes_part
        rows.source_wh[selling, GRID] += sold[selling] - homes_part
    buying = np.flatnonzero(bought > 0)
    green_part = ration(bought[buying], green_wh, rows.tie_rank[buying])
    grid_part = ration(bought[buying] - green_part, grid_import_wh, rows.tie_rank[buying])
    rows.source_wh[buying, GREEN] += green_part
    rows.source_wh[buying, GRID] += grid_part
    rows.source_wh[buying, LOCAL] += bought[buying] - green_part - grid_part
