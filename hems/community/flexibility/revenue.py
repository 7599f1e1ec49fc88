"""Who gets the requester's money and who bears its penalties (issue 8).

Per slot the requester pays the request price for the delivered energy up to the request
(min(delivered, requested) × price) and charges the penalty for the shortfall. The revenue is shared
among the homes by a policy; the penalty is borne by the homes that under-delivered their own
commitment, pro rata to their own shortfall, but never more than the shortfall they caused: the part
that comes from volume the community could not dispatch at all (the dispatch's unmet Wh) is the
community's own. Every share is an exact integer (n¤) by largest remainder, exact ties by a seeded
rank of the home ids (:func:`~hems.community.mechanisms.rounding.tie_break_ranks` over sorted ids),
so the books balance to the n¤: Σ homes' net + community = revenue − penalty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from math import lcm

import numpy as np

from hems.community.flexibility.delivery import DeliveryReport
from hems.community.flexibility.dispatch import Dispatch
from hems.community.flexibility.model import FlexibilityRequest
from hems.community.mechanisms.rounding import INT64_SAFE, round_shares, tie_break_ranks

__all__ = ["HomeSettlement", "RevenuePolicy", "Settlement", "SlotSettlement", "allocate_penalty",
           "settle_request", "share_revenue"]


class RevenuePolicy(StrEnum):
    """How a slot's revenue is shared among the homes that delivered."""

    PRO_RATA = "pro_rata"  # to the Wh each delivered in the requested direction
    EQUAL = "equal"  # the same to every home that delivered
    WEIGHTED = "weighted"  # to weight × delivered Wh


def _split(total: int, homes: list[str], parts: list[int], ranks: list[int]) -> dict[str, int]:
    """``total`` split over ``homes`` in proportion to the positive integers ``parts``: floors, then
    the units left to the largest remainders, exact ties to the lowest rank."""
    numerators = [total * part for part in parts]
    array = (np.array(numerators, np.int64) if max(numerators) * len(numerators) < INT64_SAFE
             else np.array(numerators, dtype=object))
    shares = round_shares(array, sum(parts), total, ranks)
    return dict(zip(homes, (int(value) for value in shares.tolist())))


def _ranks(homes: Mapping[str, object], seed: int) -> dict[str, int]:
    """The seeded tie-break rank of every home of a mapping (over its sorted ids, so a home's rank
    does not depend on which of them take part in a split)."""
    ordered = sorted(homes)
    return dict(zip(ordered, tie_break_ranks(len(ordered), seed)))


def share_revenue(revenue_nano: int, delivered_wh: Mapping[str, int], policy: RevenuePolicy | str,
                  weights: Mapping[str, int | Fraction] | None = None, *, seed: int = 0) -> dict[str, int]:
    """Each home's share (n¤) of ``revenue_nano``; the shares are ≥ 0 and add up to it exactly.

    ``delivered_wh``: Wh each home delivered in the requested direction (non-positive: nothing
    delivered, no share). ``weights`` (``weighted`` only): a non-negative weight per home that
    delivered. ValueError when revenue is positive but no home qualifies.
    """
    policy = RevenuePolicy(policy)
    if revenue_nano < 0:
        raise ValueError(f"revenue must not be negative, got {revenue_nano} n¤")
    homes = sorted(delivered_wh)
    result = dict.fromkeys(homes, 0)
    active = [home for home in homes if delivered_wh[home] > 0]
    if policy is RevenuePolicy.PRO_RATA:
        parts = [int(delivered_wh[home]) for home in active]
    elif policy is RevenuePolicy.EQUAL:
        parts = [1] * len(active)
    else:
        if weights is None:
            raise ValueError("the weighted policy needs weights")
        missing = [home for home in active if home not in weights]
        if missing:
            raise ValueError(f"no weight for {missing}")
        fractions = [Fraction(weights[home]) for home in active]
        if any(value < 0 for value in fractions):
            raise ValueError("weights must not be negative")
        scale = lcm(*(value.denominator for value in fractions)) if fractions else 1
        parts = [int(value * scale) * int(delivered_wh[home]) for value, home in zip(fractions, active)]
    if not sum(parts):
        if revenue_nano:
            raise ValueError(f"no home qualifies for a share of {revenue_nano} n¤ under {policy.value}")
        return result
    rank = _ranks(delivered_wh, seed)
    shared = [(home, part) for home, part in zip(active, parts) if part]
    result.update(_split(revenue_nano, [home for home, _ in shared], [part for _, part in shared],
                         [rank[home] for home, _ in shared]))
    return result


def allocate_penalty(penalty_nano: int, shortfall_wh: Mapping[str, int], *, seed: int = 0) -> dict[str, int]:
    """Each home's part (n¤, ≥ 0) of ``penalty_nano``, pro rata to its own shortfall against its
    commitment (non-positive: none); the parts add up to it exactly. ValueError when the penalty is
    positive but no home fell short."""
    if penalty_nano < 0:
        raise ValueError(f"a penalty must not be negative, got {penalty_nano} n¤")
    result = dict.fromkeys(sorted(shortfall_wh), 0)
    short = [(home, int(shortfall_wh[home])) for home in result if shortfall_wh[home] > 0]
    if not short:
        if penalty_nano:
            raise ValueError(f"no home fell short to bear a penalty of {penalty_nano} n¤")
        return result
    rank = _ranks(shortfall_wh, seed)
    result.update(_split(penalty_nano, [home for home, _ in short], [wh for _, wh in short],
                         [rank[home] for home, _ in short]))
    return result


@dataclass(frozen=True)
class SlotSettlement:
    """One slot's money (n¤)."""

    slot_start_s: int
    accepted_wh: int  # delivered up to the request: what the requester pays for
    revenue_nano: int  # accepted_wh × price
    penalty_nano: int  # the slot's shortfall × penalty
    community_penalty_nano: int  # the part of the penalty no home caused (volume never dispatched)
    revenue_shares_nano: tuple[tuple[str, int], ...]  # (home, share), by home id
    penalty_shares_nano: tuple[tuple[str, int], ...]  # (home, part), by home id


@dataclass(frozen=True)
class HomeSettlement:
    """One home's money over the whole request (n¤)."""

    home: str
    delivered_wh: int  # ≥ 0: Σ over slots of what it delivered in each slot's requested direction
    revenue_nano: int
    penalty_nano: int

    @property
    def net_nano(self) -> int:
        """What the home receives (negative: it pays)."""
        return self.revenue_nano - self.penalty_nano


@dataclass(frozen=True)
class Settlement:
    """A request settled: the slots, the homes and the community's own account."""

    request_id: str
    policy: RevenuePolicy
    slots: tuple[SlotSettlement, ...]
    homes: tuple[HomeSettlement, ...]  # every dispatched home, by id

    @property
    def revenue_nano(self) -> int:
        return sum(item.revenue_nano for item in self.slots)

    @property
    def penalty_nano(self) -> int:
        return sum(item.penalty_nano for item in self.slots)

    @property
    def community_nano(self) -> int:
        """The community's own account: minus the penalties no home caused."""
        return -sum(item.community_penalty_nano for item in self.slots)

    def home(self, home: str) -> HomeSettlement | None:
        return next((item for item in self.homes if item.home == home), None)

    def balance_error_nano(self) -> int:
        """Σ homes' net + community − (revenue − penalty): 0 when the books balance."""
        return (sum(item.net_nano for item in self.homes) + self.community_nano
                - (self.revenue_nano - self.penalty_nano))


def settle_request(request: FlexibilityRequest, dispatch: Dispatch, delivery: DeliveryReport, *,
                   policy: RevenuePolicy | str = RevenuePolicy.PRO_RATA,
                   weights: Mapping[str, int | Fraction] | None = None, seed: int | None = None) -> Settlement:
    """Settle a delivered request: per slot the revenue min(delivered, requested) × price shared by
    ``policy`` among the homes that delivered, the penalty shortfall × penalty borne by the homes
    that fell short of their own commitment (pro rata, at most their own shortfall × penalty; the
    rest is the community's), and per home the totals. ``seed`` defaults to the dispatch's seed."""
    if not request.request_id == dispatch.request_id == delivery.request_id:
        raise ValueError("the request, its dispatch and its delivery report must have the same request_id")
    policy = RevenuePolicy(policy)
    seed = dispatch.seed if seed is None else seed
    revenue_by_home: dict[str, int] = {}
    penalty_by_home: dict[str, int] = {}
    delivered_by_home: dict[str, int] = {}
    slots = []
    for slot_start_s in request.slot_starts_s:
        measured = delivery.slot(slot_start_s)
        delivered = {item.home: abs(item.delivered_wh) for item in measured.homes}
        revenue = measured.accepted_wh * request.price_micro
        shares = share_revenue(revenue, delivered, policy, weights, seed=seed)
        shortfalls = {item.home: item.shortfall_wh for item in measured.homes}
        homes_penalty = min(measured.shortfall_wh, sum(shortfalls.values())) * request.penalty_micro
        parts = allocate_penalty(homes_penalty, shortfalls, seed=seed)
        for home, wh in delivered.items():
            delivered_by_home[home] = delivered_by_home.get(home, 0) + wh
            revenue_by_home[home] = revenue_by_home.get(home, 0) + shares[home]
            penalty_by_home[home] = penalty_by_home.get(home, 0) + parts[home]
        slots.append(SlotSettlement(slot_start_s, measured.accepted_wh, revenue, measured.penalty_nano,
                                    measured.penalty_nano - homes_penalty, tuple(sorted(shares.items())),
                                    tuple(sorted(parts.items()))))
    homes = tuple(HomeSettlement(home, delivered_by_home[home], revenue_by_home[home], penalty_by_home[home])
                  for home in sorted(delivered_by_home))
    return Settlement(request.request_id, policy, tuple(slots), homes)
