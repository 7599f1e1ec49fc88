"""``admm``: the slot clears at the price and positions the homes negotiated (exchange ADMM), or,
when the negotiation did not converge in time, from the curves they submitted (``bid_curve``).

The negotiation itself runs in the manager before gate closure (hems/community/negotiation/driver.py);
this module turns its outcome into the books of one slot, with the money conventions of every
mechanism (base.py):

- buyers' total B = Σ max(x_i, 0), sellers' S = Σ max(−x_i, 0); home-to-home volume min(B, S);
- the short side trades all of its energy in the community; the long side shares the community's
  volume pro rata (whole Wh, largest remainder) and trades the rest with the retailer at retail
  (buyers) or feed-in (sellers);
- home-to-home energy is priced at the negotiated price (µ¤/kWh, clamped to [feed-in, retail]);
  buyers pay the fees on it on top. The products are exact integers, so nothing is left to rounding.
"""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

from hems.community.mechanisms.base import ClearingInput, ClearingResult, HomeAllocation, InputKind, MarketParameters
from hems.community.mechanisms.bid_curve import bid_curve_fallback
from hems.community.mechanisms.rounding import largest_remainder
from hems.community.negotiation.exchange import ExchangeResult


class ExchangeAdmm:
    """Negotiated clearing with the bid-curve equilibrium as its fallback."""

    name: ClassVar[str] = "admm"
    input_kind: ClassVar[InputKind] = InputKind.CURVES
    description: ClassVar[str] = ("exchange ADMM negotiated over market/signal before gate closure; "
                                  "bid-curve equilibrium when it does not converge")

    def clear(self, market: ClearingInput) -> ClearingResult:
        """The fallback: the bid-curve equilibrium of the submitted curves, marked as such."""
        return bid_curve_fallback(market, self.name)

    def clear_negotiated(self, parameters: MarketParameters, negotiated: ExchangeResult) -> ClearingResult:
        """The books of the first negotiated slot (whole Wh, the price in µ¤/kWh, the rounds and
        residuals in the public details)."""
        positions = {home: int(round(float(values[0]))) for home, values in negotiated.positions_wh.items()}
        last = negotiated.history[-1] if negotiated.history else None
        details: dict[str, object] = {
            "negotiated": True, "rounds": negotiated.rounds,
            "primal_residual_wh": None if last is None else round(last.primal_residual_wh, 3),
            "dual_residual_micro": None if last is None else round(last.dual_residual_per_kwh * 1_000_000)}
        return self.clear_positions(parameters, positions, int(round(float(negotiated.price_per_kwh[0]) * 1_000_000)),
                                    details)

    def clear_positions(self, parameters: MarketParameters, positions_wh: dict[str, int], price_micro: int,
                        details: dict[str, object]) -> ClearingResult:
        """The books of one slot from net imports (Wh, + import) and a price (µ¤/kWh)."""
        price = min(max(price_micro, parameters.feed_in_price_micro), parameters.retail_price_micro)
        buyers = {home: wh for home, wh in sorted(positions_wh.items()) if wh > 0}
        sellers = {home: -wh for home, wh in sorted(positions_wh.items()) if wh < 0}
        bought, sold = sum(buyers.values()), sum(sellers.values())
        traded = min(bought, sold)
        local_buy = _shares(buyers, traded)
        local_sell = _shares(sellers, traded)
        allocations, retailer = [], 0
        for home in sorted(positions_wh):
            if home in buyers:
                local, from_grid = local_buy[home], buyers[home] - local_buy[home]
                retailer += from_grid * parameters.retail_price_micro
                allocations.append(HomeAllocation(
                    home, bought_wh=buyers[home], paid_nano=local * price + from_grid * parameters.retail_price_micro,
                    network_fee_nano=local * parameters.network_fee_micro,
                    community_fee_nano=local * parameters.community_fee_micro))
            elif home in sellers:
                local, to_grid = local_sell[home], sellers[home] - local_sell[home]
                retailer -= to_grid * parameters.feed_in_price_micro
                allocations.append(HomeAllocation(
                    home, sold_wh=sellers[home], received_nano=local * price + to_grid * parameters.feed_in_price_micro))
            else:
                allocations.append(HomeAllocation(home))
        return ClearingResult(
            mechanism=self.name, allocations=tuple(allocations), price_micro=price, traded_wh=traded,
            grid_import_wh=bought - traded, grid_export_wh=sold - traded, retailer_nano=retailer,
            trade_prices_micro=(price,) if traded else (), details=details)


def _shares(volumes: dict[str, int], total: int) -> dict[str, int]:
    """``total`` Wh shared pro rata to ``volumes`` in whole Wh (everything when the side is short)."""
    if total >= sum(volumes.values()):
        return dict(volumes)
    homes, side = list(volumes), sum(volumes.values())
    shares = largest_remainder([Fraction(volumes[home] * total, side) for home in homes], total)
    return dict(zip(homes, shares))
