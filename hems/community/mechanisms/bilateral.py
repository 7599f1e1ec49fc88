"""``bilateral``: multi-bilateral trading with product differentiation (Sorin, Bobo & Pinson 2019;
markets.md §8), cleared by the manager on the homes' bid curves, each pair of homes at its own price.

Each home is known by its curve (a :class:`~hems.community.negotiation.local_answers.CurveHome`): its
net import at each price, linear between the grid's points. The homes trade on a seeded sparse partner
graph (``partners_per_home``; all with all in a small community); a trade between homes of different
network zones carries a preference cost (``zone_cost`` per kWh, half at each end), as does the network
and community fee φ (the buyer pays it, so the pair is φ dearer). The manager runs the bilateral ADMM of
:mod:`~hems.community.negotiation.bilateral` to convergence and books:

- per pair (i, j) its averaged trade, rounded to whole Wh, at its own price λ_ij (µ¤/kWh, rounded, held
  inside [feed-in, retail]): the seller gets it, the buyer pays it plus φ;
- per home its own net import (its curve's answer, rounded to whole Wh); the retailer takes the
  difference from its pair trades at retail (a purchase) or feed-in (a sale).

A home may buy from one partner and sell to another in the same slot (energy passing through it to a
partner that values it more): both legs are booked. Money balances exactly (integer products). When the
negotiation does not converge within ``max_rounds`` the slot clears with the bid-curve equilibrium and
says so (``details.fallback``). Without preference costs and fees every pair reaches the community's
one price and the positions are the bid-curve equilibrium's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from hems.community.mechanisms.base import ClearingInput, ClearingResult, HomeAllocation, InputKind
from hems.community.mechanisms.bid_curve import bid_curve_fallback
from hems.community.negotiation.bilateral import PairCosts, PartnerGraph, negotiate_bilateral
from hems.community.negotiation.local_answers import CurveHome

if TYPE_CHECKING:
    from hems.community.config import CommunityConfig

MICRO = 1_000_000


@dataclass(frozen=True)
class BilateralSettings:
    """The partner graph, the preference costs and ADMM's limits."""

    partners_per_home: int = 8
    zone_cost_micro: int = 10_000
    zones: dict[str, str] = field(default_factory=dict)
    rho_per_kwh2: float = 1.0
    max_rounds: int = 2_000
    eps_primal_wh: float = 0.5
    eps_dual_per_kwh: float = 1e-5


class BilateralTrading:
    """Bilateral ADMM on the submitted curves; each pair settles at its own price."""

    name: ClassVar[str] = "bilateral"
    input_kind: ClassVar[InputKind] = InputKind.CURVES
    description: ClassVar[str] = ("multi-bilateral trading on a partner graph with zone preferences "
                                  "(bilateral ADMM on the curves); each pair at its own price")

    def __init__(self, settings: BilateralSettings = BilateralSettings()) -> None:
        self.settings = settings

    @classmethod
    def for_community(cls, config: CommunityConfig) -> BilateralTrading:
        """The settings of ``[market.bilateral]`` and the members' zones."""
        section = config.market.bilateral
        return cls(BilateralSettings(
            partners_per_home=section.partners_per_home, zone_cost_micro=int(section.zone_cost * MICRO),
            zones={member.id: member.zone for member in config.member}, rho_per_kwh2=section.rho_per_kwh2,
            max_rounds=section.max_rounds))

    def clear(self, market: ClearingInput) -> ClearingResult:
        """Clear one slot (pure: the seed of the parameters fixes the partner graph)."""
        parameters = market.parameters
        curves = sorted(market.curves, key=lambda curve: curve.home)
        if len(curves) < 2:  # nobody to trade with: the bid-curve books of the retailer alone
            return bid_curve_fallback(market, self.name, reason="fewer than two homes")
        homes = [CurveHome(curve.home, np.array(curve.prices_micro, dtype=float) / MICRO,
                           np.array(curve.net_import_wh, dtype=float)) for curve in curves]
        names = [home.home for home in homes]
        graph = PartnerGraph.sparse_random(names, self.settings.partners_per_home, seed=parameters.seed)
        result = negotiate_bilateral(
            homes, graph, self._pair_costs(graph, parameters.fee_micro), rho_per_kwh2=self.settings.rho_per_kwh2,
            max_rounds=self.settings.max_rounds, eps_primal_wh=self.settings.eps_primal_wh,
            eps_dual_per_kwh=self.settings.eps_dual_per_kwh,
            retail_per_kwh=parameters.retail_price_micro / MICRO, feed_in_per_kwh=parameters.feed_in_price_micro / MICRO,
            n_slots=1)
        if not result.converged:
            return bid_curve_fallback(market, self.name, reason=f"no agreement in {result.rounds} rounds")
        low, high = parameters.feed_in_price_micro, parameters.retail_price_micro
        pair_wh = {pair: int(round(float(result.trade_wh[n, 0]))) for n, pair in enumerate(result.pairs)}
        pair_micro = {pair: min(max(int(round(float(result.price_per_kwh[n, 0]) * MICRO)), low), high)
                      for n, pair in enumerate(result.pairs)}
        sequences = {curve.home: curve.sequence for curve in curves}
        books = {name: _Book() for name in names}
        for pair, wh in pair_wh.items():
            seller, buyer = pair if wh > 0 else pair[::-1]
            if wh:
                price = pair_micro[pair]
                books[seller].sell(abs(wh), price)
                books[buyer].buy(abs(wh), price, parameters.network_fee_micro, parameters.community_fee_micro)
        grid_import = grid_export = 0
        for n, name in enumerate(names):
            rest = int(round(float(result.net_import_wh[n, 0]))) - books[name].net_wh
            if rest > 0:
                books[name].buy(rest, high, 0, 0, from_retailer=True)
                grid_import += rest
            elif rest < 0:
                books[name].sell(-rest, low)
                grid_export -= rest
        allocations = tuple(books[name].allocation(name, sequences[name]) for name in names)
        traded = sum(abs(wh) for wh in pair_wh.values())
        details: dict[str, object] = {
            "rounds": result.rounds, "converged": True, "pairs": len(result.pairs),
            "pairs_traded": sum(1 for wh in pair_wh.values() if wh),
            "partners_per_home": self.settings.partners_per_home, "seed": parameters.seed,
            "primal_residual_wh": round(result.primal_residual_wh[-1], 3),
            "dual_residual_micro": round(result.dual_residual_per_kwh[-1] * MICRO, 3)}
        return ClearingResult(
            mechanism=self.name, allocations=allocations, traded_wh=traded, grid_import_wh=grid_import,
            grid_export_wh=grid_export, retailer_nano=grid_import * high - grid_export * low,
            trade_prices_micro=tuple(sorted(pair_micro[pair] for pair, wh in pair_wh.items() if wh)),
            details=details)

    def _pair_costs(self, graph: PartnerGraph, fee_micro: int) -> PairCosts:
        """Half the fee and half the zone cost at each end (volume form: a pair costs their sum)."""
        zones = self.settings.zones
        costs = {}
        for home, partners in graph.partners.items():
            for partner in partners:
                micro = fee_micro + (self.settings.zone_cost_micro if zones.get(home, "") != zones.get(partner, "")
                                     else 0)
                costs[home, partner] = micro / 2 / MICRO
        return PairCosts(costs)

@dataclass
class _Book:
    """One home's legs of the slot (Wh, n¤)."""

    bought_wh: int = 0
    sold_wh: int = 0
    paid_nano: int = 0
    received_nano: int = 0
    network_fee_nano: int = 0
    community_fee_nano: int = 0

    @property
    def net_wh(self) -> int:
        return self.bought_wh - self.sold_wh

    def buy(self, wh: int, price_micro: int, network_fee_micro: int, community_fee_micro: int,
            from_retailer: bool = False) -> None:
        self.bought_wh += wh
        self.paid_nano += wh * price_micro
        if not from_retailer:
            self.network_fee_nano += wh * network_fee_micro
            self.community_fee_nano += wh * community_fee_micro

    def sell(self, wh: int, price_micro: int) -> None:
        self.sold_wh += wh
        self.received_nano += wh * price_micro

    def allocation(self, home: str, sequence: int) -> HomeAllocation:
        return HomeAllocation(home, self.bought_wh, self.sold_wh, self.paid_nano, self.received_nano,
                              self.network_fee_nano, self.community_fee_nano, sequence=sequence)
