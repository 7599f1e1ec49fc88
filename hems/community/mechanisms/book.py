"""The order book the double auctions clear (docs: /work/shared/notes/markets.md §2, §3).

Shared by :mod:`~hems.community.mechanisms.uniform` and :mod:`~hems.community.mechanisms.pay_as_bid`:

- :func:`build_book` puts one slot's orders into integer numpy arrays: orders with ``energy_wh ≤ 0``
  are dropped, each home's own crossing orders are netted (below), limits are clamped towards the
  retail band and the fee is taken off buy limits (p̃ = min(p, λ⁺) − φ, sell limits max(p, λ⁻)), and
  the retailer is booked as two "unlimited" orders (sell at λ⁺, buy at λ⁻) when asked and φ = 0.
- :func:`match` sorts both sides (buys by p̃ descending, sells ascending; at one price homes before
  the retailer and homes in the seeded tie-break order, never by arrival), finds the volume Q* of the
  walk and the marginal pair, and fills every order: better than the marginal level fully, the
  marginal level pro-rata to q (whole Wh, largest remainder, leftovers in tie-break order).
- :func:`pair_segments` pairs the filled volumes in walk order (what pay-as-bid prices),
  :func:`rule_prices` applies k·bid + (1 − k)·ask rounded half-even, and :func:`assemble` turns
  per-order fills and money into a :class:`ClearingResult`.

Clamping is one-sided on purpose: a buy limit above λ⁺ becomes λ⁺ and a sell limit below λ⁻ becomes
λ⁻ (nobody pays more than retail or takes less than feed-in), but a buy below λ⁻ or a sell above λ⁺
keeps its limit. Such an order can never cross (every ask is ≥ λ⁻, every bid ≤ λ⁺), so it ends
UNMATCHED instead of trading against its own limit, and every matched pair still has
λ⁻ ≤ ask ≤ bid ≤ λ⁺, hence every price in [λ⁻, λ⁺].

Self-matches are prevented by **netting first**: where a home's own buy limit is at or above its own
sell limit (raw limits, since using its own energy costs no fee), the crossing volume is taken out of
both orders before clearing (the home uses its own energy). Netted Wh are not market volume: they
appear in no ``filled_wh`` and are reported in total as ``details["self_netted_wh"]``. After netting a
home's bids are all below its asks, so the walk can never pair a home with itself.

The tie-break permutation is ``numpy.random.default_rng(seed).permutation`` over the sorted home ids
(a home's own orders at one price follow their order ids); its SHA-256 (of the ids in that order, one
per line) is published with the seed. Nothing depends on the order in which orders arrived.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hems.community.mechanisms.base import ClearingInput, ClearingResult, HomeAllocation, OrderFill
from hems.community.mechanisms.rounding import INT64_SAFE, argsort_pairs, round_shares
from hems.protocol.messages import OrderStatus, Side


@dataclass(frozen=True)
class Book:
    """One slot's orders as arrays indexed by row: the input orders in input order, then the
    retailer's sell and buy rows when it is booked."""

    market: ClearingInput
    order_ids: tuple[str, ...]  # per input order
    energy_wh: np.ndarray  # per input order: the quantity asked for
    homes: tuple[str, ...]  # sorted home ids
    home_index: np.ndarray  # per row; len(homes) for the retailer's rows
    is_buy: np.ndarray  # per row
    quantity_wh: np.ndarray  # per row: what goes to the market (after dropping and netting)
    limit_micro: np.ndarray  # per row: p̃ for buys, the clamped ask for sells
    tie_rank: np.ndarray  # per row: position in the tie-break order (retailer rows last)
    id_rank: np.ndarray  # per input order: rank of its order_id
    retailer_booked: bool
    self_netted_wh: int
    tie_break_hash: str

    @property
    def order_count(self) -> int:
        """The number of input orders (rows before the retailer's)."""
        return len(self.market.orders)

    @property
    def retailer_sell_row(self) -> int | None:
        return self.order_count if self.retailer_booked else None

    @property
    def retailer_buy_row(self) -> int | None:
        return self.order_count + 1 if self.retailer_booked else None


@dataclass(frozen=True)
class Matching:
    """The walk's outcome: Q*, the marginal pair's limits and every row's filled Wh."""

    cleared_wh: int
    buy_sequence: np.ndarray  # rows with volume, in priority order
    sell_sequence: np.ndarray
    filled_wh: np.ndarray  # per row
    marginal_bid_micro: int | None  # p̃ of the buy that traded the last Wh
    marginal_ask_micro: int | None  # p of the sell that traded the last Wh


def tie_break_permutation(home_count: int, seed: int) -> np.ndarray:
    """Indices into the sorted home ids, in tie-break order (first = wins ties)."""
    return np.random.default_rng(seed).permutation(home_count)


def tie_break_homes(homes: list[str] | tuple[str, ...], seed: int) -> tuple[str, ...]:
    """The homes in tie-break order: a permutation of the sorted ids drawn from ``seed``."""
    ordered = sorted(homes)
    return tuple(ordered[index] for index in tie_break_permutation(len(ordered), seed).tolist())


def tie_break_hash(ordered_homes: tuple[str, ...]) -> str:
    """The public fingerprint of a tie-break order: SHA-256 of the ids in that order, one a line."""
    return "sha256:" + hashlib.sha256("\n".join(ordered_homes).encode()).hexdigest()


def build_book(market: ClearingInput, *, book_retailer: bool) -> Book:
    """The arrays :func:`match` works on (see the module docstring for clamping and netting)."""
    parameters = market.parameters
    retail, feed_in = parameters.retail_price_micro, parameters.feed_in_price_micro
    if not feed_in < retail:
        raise ValueError("feed_in_price_micro must be below retail_price_micro")
    if not 0 <= Fraction(parameters.k) <= 1:
        raise ValueError("k must lie in [0, 1]")
    orders, count, buy = market.orders, len(market.orders), Side.BUY
    order_ids = [order.order_id for order in orders]
    sorted_ids = np.array(order_ids, dtype=str)
    by_id = np.argsort(sorted_ids, kind="stable")
    sorted_ids = sorted_ids[by_id]
    if np.any(sorted_ids[1:] == sorted_ids[:-1]):
        raise ValueError("order ids must be unique within a slot")
    id_rank = np.empty(count, np.int64)
    id_rank[by_id] = np.arange(count)
    first_seen: dict[str, int] = {}
    seen_index = np.array([first_seen.setdefault(order.home, len(first_seen)) for order in orders], np.int64)
    homes = tuple(sorted(first_seen))
    sorted_position = np.empty(len(homes), np.int64)
    sorted_position[list(map(first_seen.__getitem__, homes))] = np.arange(len(homes))
    home_index = sorted_position[seen_index] if count else seen_index
    is_buy = np.fromiter((order.side is buy for order in orders), bool, count)
    energy = np.fromiter((order.energy_wh for order in orders), np.int64, count)
    raw_limit = np.fromiter((order.limit_price_micro for order in orders), np.int64, count)

    quantity, netted_wh = _net_own_crossings(home_index, is_buy, raw_limit, energy.clip(min=0), id_rank,
                                             len(homes))

    fee = parameters.fee_micro
    limit = np.where(is_buy, np.minimum(raw_limit, retail) - fee, np.maximum(raw_limit, feed_in))
    permutation = tie_break_permutation(len(homes), parameters.seed)
    home_rank = np.empty(len(homes), np.int64)
    home_rank[permutation] = np.arange(len(homes))
    tie_rank = np.empty(count, np.int64)
    tie_rank[argsort_pairs(home_rank[home_index], id_rank, count)] = np.arange(count)
    permutation_hash = tie_break_hash(tuple(map(homes.__getitem__, permutation.tolist())))

    retailer_booked = book_retailer and fee == 0
    if retailer_booked:
        # "Unlimited": each retailer order is as large as everything the other side offers.
        sell_for_buys, buy_for_sells = int(quantity[is_buy].sum()), int(quantity[~is_buy].sum())
        home_index = np.append(home_index, [len(homes), len(homes)])
        is_buy = np.append(is_buy, [False, True])
        quantity = np.append(quantity, [sell_for_buys, buy_for_sells])
        limit = np.append(limit, [retail, feed_in])
        tie_rank = np.append(tie_rank, [count, count + 1])
    return Book(market, tuple(order_ids), energy, homes, home_index, is_buy, quantity, limit, tie_rank, id_rank,
                retailer_booked, netted_wh, permutation_hash)


def _net_own_crossings(home_index: np.ndarray, is_buy: np.ndarray, raw_limit: np.ndarray,
                       quantity: np.ndarray, id_rank: np.ndarray, home_count: int) -> tuple[np.ndarray, int]:
    """Each home's own crossing volume taken out of its orders; returns (quantities, netted Wh)."""
    live = quantity > 0
    best_bid = np.full(home_count, np.iinfo(np.int64).min)
    best_ask = np.full(home_count, np.iinfo(np.int64).max)
    np.maximum.at(best_bid, home_index[live & is_buy], raw_limit[live & is_buy])
    np.minimum.at(best_ask, home_index[live & ~is_buy], raw_limit[live & ~is_buy])
    crossing = np.flatnonzero(best_bid >= best_ask)
    if crossing.size == 0:
        return quantity, 0
    quantity = quantity.copy()
    netted_wh = 0
    for home in crossing.tolist():
        rows = np.flatnonzero((home_index == home) & live).tolist()
        bids = sorted((row for row in rows if is_buy[row]), key=lambda row: (-raw_limit[row], id_rank[row]))
        asks = sorted((row for row in rows if not is_buy[row]), key=lambda row: (raw_limit[row], id_rank[row]))
        bid_at = ask_at = 0
        # Bounded: every step exhausts a bid or an ask.
        while bid_at < len(bids) and ask_at < len(asks) and raw_limit[bids[bid_at]] >= raw_limit[asks[ask_at]]:
            bid, ask = bids[bid_at], asks[ask_at]
            volume = int(min(quantity[bid], quantity[ask]))
            quantity[bid] -= volume
            quantity[ask] -= volume
            netted_wh += volume
            bid_at += int(quantity[bid] == 0)
            ask_at += int(quantity[ask] == 0)
    return quantity, netted_wh


def _sequence(book: Book, buy: bool) -> np.ndarray:
    """The rows of one side with volume, in priority order (price, then tie-break rank)."""
    rows = np.flatnonzero((book.is_buy == buy) & (book.quantity_wh > 0))
    price_key = -book.limit_micro[rows] if buy else book.limit_micro[rows]
    return rows[argsort_pairs(price_key, book.tie_rank[rows], len(book.tie_rank))]


def match(book: Book) -> Matching:
    """Q* of the walk (trade while p̃_b ≥ p_o), the marginal pair, and every row's fill."""
    buys, sells = _sequence(book, True), _sequence(book, False)
    filled = np.zeros(len(book.quantity_wh), np.int64)
    if buys.size == 0 or sells.size == 0:
        return Matching(0, buys, sells, filled, None, None)
    bid_prices, ask_prices = book.limit_micro[buys], book.limit_micro[sells]
    bid_cumulative, ask_cumulative = np.cumsum(book.quantity_wh[buys]), np.cumsum(book.quantity_wh[sells])
    # The walk's unit x trades iff bid(x) ≥ ask(x); both are step functions of x (bid falling, ask
    # rising), so checking the last unit of every step finds the largest such x.
    ends = np.concatenate((bid_cumulative, ask_cumulative))
    ends = ends[ends <= min(bid_cumulative[-1], ask_cumulative[-1])]
    crossing = bid_prices[np.searchsorted(bid_cumulative, ends)] >= ask_prices[np.searchsorted(ask_cumulative, ends)]
    cleared = int(ends[crossing].max()) if crossing.any() else 0
    if cleared == 0:
        return Matching(0, buys, sells, filled, None, None)
    marginal_bid = int(bid_prices[np.searchsorted(bid_cumulative, cleared)])
    marginal_ask = int(ask_prices[np.searchsorted(ask_cumulative, cleared)])
    _fill_side(book, buys, -bid_prices, bid_cumulative, cleared, filled)
    _fill_side(book, sells, ask_prices, ask_cumulative, cleared, filled)
    return Matching(cleared, buys, sells, filled, marginal_bid, marginal_ask)


def _fill_side(book: Book, sequence: np.ndarray, price_key: np.ndarray, cumulative: np.ndarray,
               cleared: int, filled: np.ndarray) -> None:
    """Fill ``cleared`` Wh of one side: better levels fully, the marginal level pro-rata."""
    marginal = int(np.searchsorted(cumulative, cleared))
    low = int(np.searchsorted(price_key, price_key[marginal], "left"))
    high = int(np.searchsorted(price_key, price_key[marginal], "right"))
    # The retailer is its own level after the homes at its price (it sorts last at any price).
    retailer_last = book.retailer_booked and sequence[high - 1] >= book.order_count
    if retailer_last and high - 1 > low:
        if sequence[marginal] >= book.order_count:
            low = high - 1
        else:
            high -= 1
    filled[sequence[:low]] = book.quantity_wh[sequence[:low]]
    rest = cleared - (int(cumulative[low - 1]) if low > 0 else 0)
    level = sequence[low:high]
    filled[level] = ration(book.quantity_wh[level], rest, book.tie_rank[level])


def ration(quantity_wh: np.ndarray, total_wh: int, tie_rank: np.ndarray) -> np.ndarray:
    """``total_wh`` shared pro-rata to ``quantity_wh`` in whole Wh: floors first, then one Wh each
    to the largest remainders, equal remainders in ``tie_rank`` order. Never exceeds a quantity."""
    level_wh = int(quantity_wh.sum())
    if not 0 <= total_wh <= level_wh:
        raise ValueError(f"cannot ration {total_wh} Wh over {level_wh} Wh")
    if total_wh == level_wh:
        return quantity_wh.copy()
    if total_wh * int(quantity_wh.max(initial=0)) >= INT64_SAFE:
        numerators = quantity_wh.astype(object) * total_wh
    else:
        numerators = quantity_wh * total_wh
    return round_shares(numerators, level_wh, total_wh, tie_rank, check=False)


def pair_segments(book: Book, matching: Matching) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filled volumes paired in walk order: (buy rows, sell rows, Wh) of every segment."""
    if matching.cleared_wh == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    buy_cumulative = np.cumsum(matching.filled_wh[matching.buy_sequence])
    sell_cumulative = np.cumsum(matching.filled_wh[matching.sell_sequence])
    ends = np.union1d(buy_cumulative, sell_cumulative)
    ends = ends[ends > 0]
    # "left" lands on the first row whose cumulative fill reaches the end: one with a fill there.
    buy_rows = matching.buy_sequence[np.searchsorted(buy_cumulative, ends, "left")]
    sell_rows = matching.sell_sequence[np.searchsorted(sell_cumulative, ends, "left")]
    return buy_rows, sell_rows, np.diff(ends, prepend=0)


def rule_prices(k: Fraction, bids_micro: np.ndarray, asks_micro: np.ndarray) -> np.ndarray:
    """k·bid + (1 − k)·ask per element, rounded half-even to whole µ¤/kWh, exactly."""
    k = Fraction(k)
    if not 0 <= k <= 1:
        raise ValueError("k must lie in [0, 1]")
    weight, denominator = k.numerator, k.denominator
    bids, asks = np.asarray(bids_micro, np.int64), np.asarray(asks_micro, np.int64)
    if denominator * int(max(np.abs(bids).max(initial=0), np.abs(asks).max(initial=0)) + 1) >= INT64_SAFE:
        bids, asks = bids.astype(object), asks.astype(object)
    numerators = weight * bids + (denominator - weight) * asks
    quotients, remainders = numerators // denominator, numerators % denominator
    round_up = (2 * remainders > denominator) | ((2 * remainders == denominator) & (quotients % 2 == 1))
    return np.asarray(quotients + round_up, dtype=np.int64)


def rule_price(k: Fraction, bid_micro: int, ask_micro: int) -> int:
    """k·bid + (1 − k)·ask rounded half-even (one pair)."""
    return int(rule_prices(k, np.array([bid_micro]), np.array([ask_micro]))[0])


def energy_money_nano(energy_wh: np.ndarray, price_micro: np.ndarray) -> np.ndarray:
    """Wh × µ¤/kWh per element, exact (Python integers where int64 could overflow)."""
    largest = int(np.abs(energy_wh).max(initial=0)) * int(np.abs(price_micro).max(initial=0))
    if largest * max(len(energy_wh), 1) >= INT64_SAFE:
        return np.asarray(energy_wh).astype(object) * np.asarray(price_micro).astype(object)
    return energy_wh * price_micro


def home_to_home_wh(book: Book, matching: Matching) -> int:
    """The volume homes bought from homes (= sold to homes)."""
    count = book.order_count
    bought = int(matching.filled_wh[:count][book.is_buy[:count]].sum())
    return bought - (int(matching.filled_wh[book.retailer_sell_row]) if book.retailer_booked else 0)


#: OrderFill status by code: 0 nothing filled, 1 all of it, 2 part of it.
_STATUSES = (OrderStatus.UNMATCHED, OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED)


def assemble(mechanism: str, book: Book, matching: Matching, money_nano: np.ndarray,
             fill_price_micro: np.ndarray, *, price_micro: int | None,
             trade_prices_micro: tuple[int, ...], details: dict[str, object]) -> ClearingResult:
    """The result from per-row fills, per-row energy money (paid by a buy row, received by a sell
    row) and per-row fill prices. Fees are charged on home rows' bought Wh (the retailer is never
    booked when there is a fee). Homes and their fills come sorted by id, so input order never shows."""
    parameters = book.market.parameters
    network_fee, community_fee = parameters.network_fee_micro, parameters.community_fee_micro
    count = book.order_count
    canonical = argsort_pairs(book.home_index[:count], book.id_rank, max(count, 1))
    filled = matching.filled_wh[canonical]
    status = np.where(filled <= 0, 0, np.where(filled >= book.energy_wh[canonical], 1, 2))
    filled_list = filled.tolist()
    prices = [price if volume else None
              for price, volume in zip(np.asarray(fill_price_micro)[canonical].tolist(), filled_list)]
    fills = list(map(OrderFill, map(book.order_ids.__getitem__, canonical.tolist()),
                     map(_STATUSES.__getitem__, status.tolist()), filled_list, prices))
    money = np.asarray(money_nano)[canonical]
    buying = book.is_buy[canonical]
    starts = np.concatenate(([0], np.cumsum(np.bincount(book.home_index[:count], minlength=len(book.homes)))))
    allocations: list[HomeAllocation] = []
    if count:
        heads = starts[:-1]
        bought = np.add.reduceat(np.where(buying, filled, 0), heads).tolist()
        sold = np.add.reduceat(np.where(buying, 0, filled), heads).tolist()
        paid = np.add.reduceat(np.where(buying, money, 0), heads).tolist()
        received = np.add.reduceat(np.where(buying, 0, money), heads).tolist()
        bounds = starts.tolist()
        allocations = [
            HomeAllocation(home, wh_in, wh_out, money_in, money_out, wh_in * network_fee, wh_in * community_fee,
                           tuple(fills[first:end]))
            for home, wh_in, wh_out, money_in, money_out, first, end
            in zip(book.homes, bought, sold, paid, received, bounds, bounds[1:])]
    grid_import = grid_export = retailer = 0
    if book.retailer_booked:
        sell_row, buy_row = book.retailer_sell_row, book.retailer_buy_row
        grid_import, grid_export = int(matching.filled_wh[sell_row]), int(matching.filled_wh[buy_row])
        retailer = int(money_nano[sell_row]) - int(money_nano[buy_row])
    public = {"seed": parameters.seed, "tie_break_hash": book.tie_break_hash, "k": str(parameters.k),
              "fee_micro": parameters.fee_micro, "retailer_booked": book.retailer_booked,
              "cleared_wh": matching.cleared_wh, "marginal_bid_micro": matching.marginal_bid_micro,
              "marginal_ask_micro": matching.marginal_ask_micro, "self_netted_wh": book.self_netted_wh}
    return ClearingResult(
        mechanism=mechanism, allocations=tuple(allocations), price_micro=price_micro,
        traded_wh=home_to_home_wh(book, matching), grid_import_wh=grid_import, grid_export_wh=grid_export,
        retailer_nano=retailer, rounding_nano=0, trade_prices_micro=trade_prices_micro,
        details=public | details)
