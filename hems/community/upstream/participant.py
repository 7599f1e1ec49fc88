"""The upstream market as one participant of our own clearings, and what we report back to it.

The upstream allocation fixes the community's trade with the upstream market per upstream slot:
bought b (or sold s) for some money. In our clearing of each slot the upstream takes part as one
participant, :data:`~hems.community.config.UPSTREAM_PARTICIPANT`: it SELLS its share of b at a limit
equal to what a Wh cost the community upstream, or BUYS its share of s at what a Wh earned there,
and the mechanism shares it among the homes. Its bid is flat at −b: the order mechanisms read it
as the one limit order it is; the curve mechanisms read it as a flat curve, so there the
participant's quantity is firm and the price comes from the homes' curves, whose sum
is what the upstream cleared (so they cross b at the upstream price, up to rounding, as long as
the homes keep their bids) — a limit ramp there would leave the participant a fraction of a Wh
short whenever rounding put b a hair above the homes' demand at the limit. The order mechanisms
read the homes' bids as steps, which the upstream cannot see on its grid (it interpolates our
residual between its prices), so there the limit gives way as far as needed, and no further, for the
homes' orders to take the whole trade (:func:`placing_limit_micro`): the trade is the community's
already, and an unplaced rest would only come back as an imbalance upstream.

Its share of an upstream slot follows the slot lengths. When ours holds several upstream slots the
shares are summed (the limit is then the net money over the net energy). When the upstream slot
holds several of ours, the trade is shared out slot by slot at our gates: each slot gets what is
left of it (the trade minus what our earlier slots cleared) in proportion to its residual at the
limit against the residuals of the slots still to come (evenly when none wants it), and the last
slot the rest; the homes' demand within a long upstream slot is rarely flat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from hems.community.mechanisms.base import Order
from hems.community.upstream.slots import SlotMapping, split_wh
from hems.protocol.messages import MAX_PRICE_MICRO, Allocation, Side
from hems.protocol.units import round_half_even


@dataclass(frozen=True)
class UpstreamTrade:
    """The community's allocation in one upstream slot (the upstream market's figures, n¤)."""

    slot_start_s: int
    duration_s: int
    bought_wh: int
    sold_wh: int
    paid_nano: int
    received_nano: int
    fees_nano: int
    sequence: int | None = None

    @property
    def net_import_wh(self) -> int:
        """What the community takes from the upstream market (+) or gives to it (−)."""
        return self.bought_wh - self.sold_wh

    @property
    def net_cost_nano(self) -> int:
        """What the community pays the upstream market (−: what it receives)."""
        return self.paid_nano + self.fees_nano - self.received_nano

    @classmethod
    def from_allocation(cls, allocation: Allocation) -> UpstreamTrade:
        """The trade an upstream allocation message states."""
        return cls(int(allocation.slot_start.timestamp()), allocation.duration_s, allocation.bought_wh,
                   allocation.sold_wh, allocation.paid_nano, allocation.received_nano, allocation.fees_nano,
                   allocation.sequence)

    def to_body(self) -> dict[str, Any]:
        """The ledger body (integers only)."""
        return asdict(self)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> UpstreamTrade:
        """The inverse of :meth:`to_body` (unknown keys ignored)."""
        return cls(**{name: body.get(name) for name in cls.__dataclass_fields__})


def limit_price_micro(net_import_wh: int, net_cost_nano: int) -> int:
    """What one Wh of the trade cost the community (bought) or earned it (sold), in µ¤/kWh, rounded
    half-even and kept within the protocol's price range."""
    if net_import_wh == 0:
        raise ValueError("no energy, no price")
    price = round_half_even(Fraction(net_cost_nano, net_import_wh))
    return max(0, min(MAX_PRICE_MICRO, price))


def upstream_share(remaining_wh: int, weights_wh: Sequence[int]) -> int:
    """This slot's share of what is left of an upstream slot's trade: ``weights_wh`` are this slot's
    and the later slots' residuals at the limit in the trade's direction (≥ 0); the last slot takes
    the rest; evenly (remainder first) when no slot wants any."""
    if not weights_wh:
        raise ValueError("at least this slot's weight")
    if len(weights_wh) == 1:
        return remaining_wh
    total = sum(weights_wh)
    if total <= 0:
        return split_wh(remaining_wh, len(weights_wh))[0]
    return round_half_even(Fraction(remaining_wh * weights_wh[0], total))


def participant_position(mapping: SlotMapping, our_start_s: int, trades: Mapping[int, UpstreamTrade],
                         taken_wh: int = 0, weights_wh: Sequence[int] = ()) -> tuple[int, int] | None:
    """The upstream participant in our slot: (the community's net import from upstream, Wh; the
    limit price, µ¤/kWh), or None when there is nothing to trade. When the upstream slot holds
    several of ours: ``taken_wh`` is what our earlier slots inside it cleared, ``weights_wh`` as
    :func:`upstream_share` wants them (empty: an even split of what is left)."""
    if mapping.upstream_per_ours > 1:
        mine = [trades[slot_s] for slot_s in mapping.upstream_slots(our_start_s) if slot_s in trades]
        net = sum(trade.net_import_wh for trade in mine)
        cost = sum(trade.net_cost_nano for trade in mine)
        return None if net == 0 else (net, limit_price_micro(net, cost))
    trade = trades.get(mapping.upstream_slots(our_start_s)[0])
    if trade is None or trade.net_import_wh == 0:
        return None
    left = mapping.ours_per_upstream - mapping.index_in_upstream(our_start_s)
    share = upstream_share(trade.net_import_wh - taken_wh, list(weights_wh) or [0] * left)
    if share == 0:
        return None
    return share, limit_price_micro(trade.net_import_wh, trade.net_cost_nano)


def placing_limit_micro(orders: Sequence[Order], net_import_wh: int, limit_micro: int, feed_in_micro: int,
                        retail_micro: int) -> int:
    """The participant's limit in an order market: the upstream price if the homes' orders take the
    whole trade there, else the nearest price that does (the highest below it for a sale to the homes,
    the lowest above it for a purchase); our feed-in or retail price if none does.

    The homes' net import at p is what their buys with limit ≥ p exceed their sells with limit ≤ p
    by; it changes only at their limits, so the candidates are those limits (a buy at its limit, a
    sell just below it, and the mirror for a purchase)."""
    def net_import(price: int) -> int:
        bought = sum(o.energy_wh for o in orders if o.side is Side.BUY and o.limit_price_micro >= price)
        sold = sum(o.energy_wh for o in orders if o.side is Side.SELL and o.limit_price_micro <= price)
        return bought - sold

    if net_import_wh > 0:  # the participant sells: the highest price ≤ the limit where the homes take it all
        candidates = {limit_micro} | {o.limit_price_micro for o in orders if o.side is Side.BUY} \
            | {o.limit_price_micro - 1 for o in orders if o.side is Side.SELL}
        fitting = [p for p in candidates if p <= limit_micro and net_import(p) >= net_import_wh]
        return max(fitting) if fitting else feed_in_micro
    candidates = {limit_micro} | {o.limit_price_micro for o in orders if o.side is Side.SELL} \
        | {o.limit_price_micro + 1 for o in orders if o.side is Side.BUY}
    fitting = [p for p in candidates if p >= limit_micro and -net_import(p) >= -net_import_wh]
    return min(fitting) if fitting else retail_micro


def participant_bid(net_import_wh: int, limit_micro: int) -> dict[str, Any]:
    """The participant's bid as a stored bid body: flat at −(net import) on two prices one µ¤/kWh
    apart, placed so that its one step order sits exactly at the limit (a sell at the lower price, a
    buy at the upper one; two points because some mechanisms want a slope's worth of grid). The
    community importing b means the participant SELLS b (and buys s when it exported s)."""
    if net_import_wh == 0:
        raise ValueError("the upstream participant has nothing to trade")
    low = limit_micro if net_import_wh > 0 else max(limit_micro - 1, 0)
    return {"curve": {"prices_micro": [low, low + 1], "net_import_wh": [-net_import_wh, -net_import_wh]}}


def reported_exchange_wh(mapping: SlotMapping, upstream_start_s: int, position_of: Callable[[int], int],
                         trades: Mapping[int, UpstreamTrade]) -> int:
    """The community's net import from the upstream market in one upstream slot, as cleared in our
    slots (``position_of(our_slot_s)``: what the upstream participant sold minus bought there).

    Summed over our slots inside the upstream slot; when one of ours holds several upstream slots,
    each gets its own allocation plus an even share of whatever our clearing did not take of their
    sum, so a fully taken allocation is reported exactly."""
    if mapping.upstream_per_ours == 1:
        return sum(position_of(slot_s) for slot_s in mapping.our_slots(upstream_start_s))
    our_start_s = upstream_start_s // mapping.our_slot_s * mapping.our_slot_s
    allocated = [trades[slot_s].net_import_wh if slot_s in trades else 0
                 for slot_s in mapping.upstream_slots(our_start_s)]
    index = mapping.index_in_ours(upstream_start_s)
    difference = position_of(our_start_s) - sum(allocated)
    return allocated[index] + split_wh(difference, mapping.upstream_per_ours)[index]
