"""Uniform-price periodic double auction (pay-as-clear, k-DA), markets.md §2.

At gate closure, on the slot's book (:mod:`~hems.community.mechanisms.book` clamps, nets each home's
own crossing orders, sorts and walks it): the walk trades while p̃_b ≥ p_o, where p̃_b = min(p_b, λ⁺) − φ
is the buy limit less the fee φ = ``MarketParameters.fee_micro``. With (b_m, o_m) the pair that trades
the last Wh,

    p* = k·p̃_{b_m} + (1 − k)·p_{o_m}, rounded half-even to a whole µ¤/kWh.

Every filled order trades at p*: buyers pay p* + φ per kWh (φ split into network and community
fees), sellers get p*. Orders better than the marginal level fill fully; the marginal level on each
side shares the rest pro-rata to q (whole Wh by largest remainder, leftovers in the seeded tie-break
order). Every order gets a final :class:`~hems.community.mechanisms.base.OrderFill`.

**The retailer.** With φ = 0 (and ``book_retailer``, the default) the retailer is booked as an
unlimited seller at λ⁺ and an unlimited buyer at λ⁻, after the homes at those prices: scarcity then
clears at p* = λ⁺ and surplus at λ⁻, the retailer's volume trades at p* and is reported as
``grid_import_wh`` / ``grid_export_wh`` with its money in ``retailer_nano``. **With φ > 0 only homes
are cleared** (the local fee never applies to retailer volume): a home's unmatched volume is then
bought from or sold to the retailer in settlement (markets.md §9, Δ_i = metered − cleared), not here,
and ``grid_import_wh`` / ``grid_export_wh`` / ``retailer_nano`` are 0.

Prices rounded from a rule leave no money residual here (every fill uses the same integer price), so
``rounding_nano`` is 0 and the books balance exactly. ``details`` (public) carries the seed, the
tie-break permutation's hash, k, φ, Q*, the marginal pair's limits and the self-netted Wh.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from hems.community.mechanisms.base import ClearingInput, ClearingResult, InputKind
from hems.community.mechanisms.book import (assemble, build_book, energy_money_nano, home_to_home_wh, match,
                                            rule_price)


class UniformPriceAuction:
    """Pay-as-clear double auction: one price p* for the whole slot."""

    name: ClassVar[str] = "uniform_auction"
    input_kind: ClassVar[InputKind] = InputKind.ORDERS
    description: ClassVar[str] = ("uniform-price double auction (k-DA): one clearing price "
                                  "k·marginal bid + (1 − k)·marginal ask for every trade")

    def __init__(self, *, book_retailer: bool = True) -> None:
        """``book_retailer``: book the retailer at λ⁺/λ⁻ when there is no fee (never with a fee)."""
        self.book_retailer = book_retailer

    def clear(self, market: ClearingInput) -> ClearingResult:
        """Clear one slot at a uniform price (pure: the same input gives the same result)."""
        book = build_book(market, book_retailer=self.book_retailer)
        matching = match(book)
        price = None
        if matching.cleared_wh:
            price = rule_price(market.parameters.k, matching.marginal_bid_micro, matching.marginal_ask_micro)
        fill_price = np.full(len(matching.filled_wh), price or 0, np.int64)
        trade_prices = (price,) if home_to_home_wh(book, matching) else ()
        return assemble(self.name, book, matching, energy_money_nano(matching.filled_wh, fill_price), fill_price,
                        price_micro=price, trade_prices_micro=trade_prices, details={})
