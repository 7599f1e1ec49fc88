"""Committed trades: what the community allocated to the home, slot by slot, as the MPC sees it.

An allocation fixes the home's net trade of one slot (``bought_wh - sold_wh``; + buy, - sell)
and what it costs: energy paid minus received plus fees, in exact n¤. Its price per kWh is that
amount over the net energy (n¤ per Wh is µ¤ per kWh), so the MPC's trade cost equals the money
the allocation says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hems.mpc.inputs import Trades
from hems.protocol.messages import Allocation
from hems.protocol.units import MICRO_PER_UNIT

#: Committed trades are kept this long after their slot ended (a re-plan never looks back).
KEEP_AFTER_S = 86_400.0


@dataclass(frozen=True)
class CommittedTrade:
    """One slot's committed net trade."""

    slot_start_s: float
    duration_s: int
    net_wh: int  # + bought from peers, - sold to peers
    cost_nano: int  # paid + fees - received (negative: the home earns)
    sequence: int | None = None

    @property
    def price_per_kwh(self) -> float:
        """Currency per kWh of the net trade (0 when nothing was traded net)."""
        if self.net_wh == 0:
            return 0.0
        return self.cost_nano / self.net_wh / MICRO_PER_UNIT


def committed_trade(allocation: Allocation) -> CommittedTrade:
    """The committed trade an allocation states."""
    return CommittedTrade(
        slot_start_s=allocation.slot_start.timestamp(), duration_s=allocation.duration_s,
        net_wh=allocation.bought_wh - allocation.sold_wh,
        cost_nano=allocation.paid_nano + allocation.fees_nano - allocation.received_nano,
        sequence=allocation.sequence)


class Commitments:
    """The committed trades by slot start."""

    def __init__(self) -> None:
        self._by_slot: dict[float, CommittedTrade] = {}

    def __len__(self) -> int:
        return len(self._by_slot)

    def get(self, slot_start_s: float) -> CommittedTrade | None:
        """The committed trade of the slot starting at ``slot_start_s``, if any."""
        return self._by_slot.get(slot_start_s)

    def record(self, trade: CommittedTrade) -> bool:
        """Keep ``trade`` (replacing the slot's earlier one); True when it changed anything."""
        if self._by_slot.get(trade.slot_start_s) == trade:
            return False  # QoS 1 delivers at least once: a duplicate changes nothing
        self._by_slot[trade.slot_start_s] = trade
        return True

    def prune(self, now_s: float) -> None:
        """Forget trades of slots that ended more than a day ago."""
        for start_s in [s for s, t in self._by_slot.items() if s + t.duration_s < now_s - KEEP_AFTER_S]:
            del self._by_slot[start_s]

    def trades(self, start: datetime, n_steps: int, step_s: int) -> Trades | None:
        """Per-slot quantities and prices aligned with a horizon; None when no slot of it has a trade
        (the plan is then against the retail tariff alone)."""
        first_s = start.timestamp()
        quantity_wh = [0.0] * n_steps
        price_per_kwh = [0.0] * n_steps
        found = False
        for index in range(n_steps):
            trade = self._by_slot.get(first_s + index * step_s)
            if trade is not None and trade.duration_s == step_s:
                quantity_wh[index] = float(trade.net_wh)
                price_per_kwh[index] = trade.price_per_kwh
                found = True
        return Trades(quantity_wh=quantity_wh, price_per_kwh=price_per_kwh) if found else None
