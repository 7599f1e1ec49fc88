"""Pay-as-bid (discriminatory) double auction, markets.md §3.

The same book, walk, Q* and per-order fills as the uniform-price auction
(:mod:`~hems.community.mechanisms.uniform`: one-sided clamping, own crossing orders netted, fee off
the buy limit, pro-rata at the marginal level). The filled volumes are then paired in walk order (buys
by p̃ descending, sells ascending, at one price homes first and homes in the seeded tie-break order),
and each segment (b, o, q) trades at

    π = k·p̃_b + (1 − k)·p_o, rounded half-even to a whole µ¤/kWh

(k = 1: the bid, Grid Singularity; k = 1/2: the pair's midpoint, lemlab). The buyer pays q·π (+ q·φ in
fees), the seller gets q·π: budget-balanced per pair, and homes pay different prices in one slot.
Since pairing follows the sorted order, **the tie-break decides money**; its seed and the hash of the
permutation are published in ``details``.

Every segment has p_o ≤ π ≤ p̃_b, so no buyer pays above its limit and no seller gets below its own.
The retailer (booked as in the uniform auction: only with φ = 0, else unmatched volume is settled
with the retailer later) only pairs with bids at λ⁺ or asks at λ⁻, so its segments trade at λ⁺ or λ⁻.
``trade_prices_micro`` lists the price of every home-to-home segment in walk order; an order's
``OrderFill.price_micro`` is its volume-weighted average price, rounded half-even (display only:
the money is exact).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from hems.community.mechanisms.base import ClearingInput, ClearingResult, InputKind
from hems.community.mechanisms.book import (assemble, build_book, energy_money_nano, match, pair_segments,
                                            rule_prices)


class PayAsBidAuction:
    """Discriminatory double auction: each matched pair trades at its own price."""

    name: ClassVar[str] = "pay_as_bid"
    input_kind: ClassVar[InputKind] = InputKind.ORDERS
    description: ClassVar[str] = ("pay-as-bid double auction: each matched pair trades at "
                                  "k·its bid + (1 − k)·its ask")

    def __init__(self, *, book_retailer: bool = True) -> None:
        """``book_retailer``: book the retailer at λ⁺/λ⁻ when there is no fee (never with a fee)."""
        self.book_retailer = book_retailer

    def clear(self, market: ClearingInput) -> ClearingResult:
        """Clear one slot, pricing every matched segment (pure: same input, same result)."""
        book = build_book(market, book_retailer=self.book_retailer)
        matching = match(book)
        buy_rows, sell_rows, segment_wh = pair_segments(book, matching)
        segment_price = rule_prices(market.parameters.k, book.limit_micro[buy_rows], book.limit_micro[sell_rows])
        segment_money = energy_money_nano(segment_wh, segment_price)
        rows = len(book.quantity_wh)
        money_nano = np.zeros(rows, segment_money.dtype)
        np.add.at(money_nano, buy_rows, segment_money)
        np.add.at(money_nano, sell_rows, segment_money)
        fill_price = _average_price(money_nano, matching.filled_wh)
        homes = book.order_count
        between_homes = (buy_rows < homes) & (sell_rows < homes)
        return assemble(self.name, book, matching, money_nano, fill_price, price_micro=None,
                        trade_prices_micro=tuple(segment_price[between_homes].tolist()),
                        details={"segments": int(segment_wh.size)})


def _average_price(money_nano: np.ndarray, filled_wh: np.ndarray) -> np.ndarray:
    """Money / energy per row, rounded half-even (0 where nothing was filled)."""
    energy = np.where(filled_wh > 0, filled_wh, 1).astype(money_nano.dtype)
    quotients, remainders = money_nano // energy, money_nano % energy
    round_up = (2 * remainders > energy) | ((2 * remainders == energy) & (quotients % 2 == 1))
    return np.asarray(np.where(filled_wh > 0, quotients + round_up, 0), dtype=np.int64)
