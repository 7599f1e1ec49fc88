"""Energy-sharing price rules (no bidding; metered positions): markets.md §5.

Every rule turns the community's total supply G and demand D into one buy price and one sell price
(λ_b ≡ λ⁺ retail, λ_s ≡ λ⁻ feed-in). Buyers pay P_buy·d_i, sellers get P_sell·e_i, and the community
settles its imbalance with the retailer, who gets λ_b·max(D − G, 0) − λ_s·max(G − D, 0).

Positions are metered gross, so a home may both import and export in one slot. Each home is **netted
first**: d_i = max(import − export, 0), e_i = max(export − import, 0). Its own export then covers its own
import at no price (behind-the-meter self-consumption, as the notes define d_i and e_i), and the cleared
net position bought − sold equals the meter's net import, so settlement sees no imbalance.

Prices are exact rationals from the formulas, then rounded half-even to µ¤/kWh (they stay inside
[λ⁻, λ⁺] because both ends are whole µ¤/kWh); what the rounding leaves over goes to ``rounding_nano``,
which makes the books balance exactly. traded_wh = min(G, D). Buyers also pay ``fee_micro`` per kWh on
the part of their demand that other homes supplied (pro rata to d_i when D > G).

- **Supply-demand ratio** (Liu et al., IEEE Trans. Power Systems 32(5), 2017), SDR = G/D:
  SDR < 1: P_sell = λ_b·λ_s / ((λ_b − λ_s)·SDR + λ_s), P_buy = P_sell·SDR + λ_b·(1 − SDR);
  SDR ≥ 1 (and D = 0): P_sell = P_buy = λ_s. Requires λ_s ≥ 0. With G = 0 nobody sells; the rule's limit
  P_sell = P_buy = λ_b is reported.
- **Mid-market rate** (Long et al., IEEE PES GM 2017), P_m = (λ_b + λ_s)/2: G ≤ D: P_sell = P_m,
  P_buy = (P_m·G + λ_b·(D − G))/D; G > D: P_buy = P_m, P_sell = (P_m·D + λ_s·(G − D))/G.
- **Bill sharing** (reconstructed, markets.md §5; Long et al. 2017, Zhou et al. 2018 not verified). The
  community's bill at the point of common coupling, C = λ_b·max(D − G, 0) − λ_s·max(G − D, 0), is shared:
  the import cost among buyers by d_i/D, the export revenue among sellers by e_i/G. Read literally, the
  energy homes give each other is free: sellers earn nothing in a deficit slot and buyers pay nothing in a
  surplus slot, prices below λ⁻ that leave sellers worse off than exporting alone. **Reading adopted:**
  the energy shared inside the community is valued at λ_s, the least internal price that keeps every
  price within [λ⁻, λ⁺]; on top of it the bill is shared exactly as above. So D > G:
  P_sell = λ_s, P_buy = (λ_b·(D − G) + λ_s·G)/D; G ≥ D: P_buy = P_sell = λ_s. Sellers get what the
  retailer would have paid them and the consumers keep the community's whole gain, as in the literal rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from hems.community.mechanisms.base import (
    ClearingInput,
    ClearingResult,
    HomeAllocation,
    InputKind,
    MarketParameters,
    Position,
)
from hems.community.mechanisms.rounding import largest_remainder
from hems.protocol.units import round_half_even


@dataclass(frozen=True)
class NetPosition:
    """A home's net demand d_i and net supply e_i in Wh (at most one of them is positive)."""

    home: str
    demand_wh: int
    supply_wh: int


def net_positions(positions: tuple[Position, ...] | list[Position]) -> list[NetPosition]:
    """Each home's metered position netted, sorted by home; ValueError on negative or duplicate homes."""
    homes = [position.home for position in positions]
    if len(set(homes)) != len(homes):
        raise ValueError("more than one position for a home")
    netted = []
    for position in sorted(positions, key=lambda item: item.home):
        if position.import_wh < 0 or position.export_wh < 0:
            raise ValueError(f"position of {position.home!r}: import and export must be ≥ 0")
        net_import = position.import_wh - position.export_wh
        netted.append(NetPosition(position.home, max(net_import, 0), max(-net_import, 0)))
    return netted


class SharingRule:
    """The clearing every sharing rule has in common; subclasses give :meth:`exact_prices`."""

    name: ClassVar[str]
    input_kind: ClassVar[InputKind] = InputKind.POSITIONS
    description: ClassVar[str]

    @staticmethod
    def exact_prices(retail_micro: int, feed_in_micro: int, supply_wh: int,
                     demand_wh: int) -> tuple[Fraction, Fraction]:
        """(P_buy, P_sell) in µ¤/kWh, exact, for total supply G and demand D."""
        raise NotImplementedError

    def clear(self, market: ClearingInput) -> ClearingResult:
        """Price one slot's metered positions by the rule."""
        parameters = market.parameters
        retail, feed_in = parameters.retail_price_micro, parameters.feed_in_price_micro
        if feed_in >= retail:
            raise ValueError("the feed-in price must be below the retail price")
        homes = net_positions(market.positions)
        if not homes:
            return ClearingResult(mechanism=self.name, allocations=())
        supply = sum(home.supply_wh for home in homes)
        demand = sum(home.demand_wh for home in homes)
        buy_exact, sell_exact = self.exact_prices(retail, feed_in, supply, demand)
        buy_price, sell_price = round_half_even(buy_exact), round_half_even(sell_exact)
        traded = min(supply, demand)
        from_homes = _home_to_home_purchases(homes, traded, parameters)

        allocations = tuple(
            HomeAllocation(
                home=home.home,
                bought_wh=home.demand_wh,
                sold_wh=home.supply_wh,
                paid_nano=home.demand_wh * buy_price,
                received_nano=home.supply_wh * sell_price,
                network_fee_nano=shared * parameters.network_fee_micro,
                community_fee_nano=shared * parameters.community_fee_micro,
            )
            for home, shared in zip(homes, from_homes)
        )
        imported, exported = max(demand - supply, 0), max(supply - demand, 0)
        retailer = imported * retail - exported * feed_in
        rounding = demand * buy_price - supply * sell_price - retailer
        return ClearingResult(
            mechanism=self.name,
            allocations=allocations,
            buy_price_micro=buy_price,
            sell_price_micro=sell_price,
            traded_wh=traded,
            grid_import_wh=imported,
            grid_export_wh=exported,
            retailer_nano=retailer,
            rounding_nano=rounding,
            trade_prices_micro=tuple(sorted({buy_price, sell_price})) if traded else (),
            details={
                "supply_wh": supply,
                "demand_wh": demand,
                "buy_price_exact_micro": str(buy_exact),
                "sell_price_exact_micro": str(sell_exact),
                "netting": "per home",
            },
        )


def _home_to_home_purchases(homes: list[NetPosition], traded_wh: int, parameters: MarketParameters) -> list[int]:
    """Each buyer's share of the energy other homes supplied: all of d_i unless D > G, then pro rata."""
    demand = sum(home.demand_wh for home in homes)
    if traded_wh == demand:
        return [home.demand_wh for home in homes]
    shares = [Fraction(home.demand_wh * traded_wh, demand) for home in homes]
    return largest_remainder(shares, traded_wh, parameters.seed)


class SupplyDemandRatio(SharingRule):
    """Supply-demand ratio pricing (Liu et al. 2017)."""

    name: ClassVar[str] = "supply_demand_ratio"
    description: ClassVar[str] = ("Sharing prices from the supply-demand ratio G/D (Liu et al. 2017): "
                                  "scarce local supply sells dear, surplus sells at the feed-in price.")

    @staticmethod
    def exact_prices(retail_micro: int, feed_in_micro: int, supply_wh: int,
                     demand_wh: int) -> tuple[Fraction, Fraction]:
        if feed_in_micro < 0:
            raise ValueError("the supply-demand ratio needs a feed-in price ≥ 0")
        if supply_wh >= demand_wh:  # SDR ≥ 1, D = 0 included
            return Fraction(feed_in_micro), Fraction(feed_in_micro)
        if supply_wh == 0:
            return Fraction(retail_micro), Fraction(retail_micro)
        ratio = Fraction(supply_wh, demand_wh)
        sell = Fraction(retail_micro * feed_in_micro) / ((retail_micro - feed_in_micro) * ratio + feed_in_micro)
        buy = sell * ratio + retail_micro * (1 - ratio)
        return buy, sell


class MidMarketRate(SharingRule):
    """Mid-market rate pricing (Long et al. 2017)."""

    name: ClassVar[str] = "mid_market_rate"
    description: ClassVar[str] = ("Local energy at the mid-market rate (λ⁺ + λ⁻)/2 (Long et al. 2017); "
                                  "the short side's price blends in the retailer's.")

    @staticmethod
    def exact_prices(retail_micro: int, feed_in_micro: int, supply_wh: int,
                     demand_wh: int) -> tuple[Fraction, Fraction]:
        mid = Fraction(retail_micro + feed_in_micro, 2)
        if supply_wh <= demand_wh:
            buy = (mid * supply_wh + retail_micro * (demand_wh - supply_wh)) / demand_wh if demand_wh else mid
            return buy, mid
        return mid, (mid * demand_wh + feed_in_micro * (supply_wh - demand_wh)) / supply_wh


class BillSharing(SharingRule):
    """The community's bill at the point of common coupling, shared (reading in the module docstring)."""

    name: ClassVar[str] = "bill_sharing"
    description: ClassVar[str] = ("The community's grid bill shared by consumption and generation; energy "
                                  "shared inside the community valued at the feed-in price.")

    @staticmethod
    def exact_prices(retail_micro: int, feed_in_micro: int, supply_wh: int,
                     demand_wh: int) -> tuple[Fraction, Fraction]:
        if demand_wh <= supply_wh:
            return Fraction(feed_in_micro), Fraction(feed_in_micro)
        buy = Fraction(retail_micro * (demand_wh - supply_wh) + feed_in_micro * supply_wh, demand_wh)
        return buy, Fraction(feed_in_micro)
