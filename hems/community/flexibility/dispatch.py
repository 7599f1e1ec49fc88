"""Split a grid operator's request among the homes: least-cost merit order, per slot (issue 8).

Per slot, every eligible home's blocks in the requested direction form one merit order, cheapest
first. Blocks are taken whole until the requested |Δ| is met or the next block's price exceeds the
request's price (never dispatched at a loss; a block priced exactly at the request price is taken).
The blocks at the marginal price share what is left pro rata to their size, in whole Wh (largest
remainder; exact ties by a seeded rank of the homes). Each home is paid its own blocks' prices
(pay-as-bid). Opted-out and declining homes are never dispatched. Because a home's blocks are
strictly ascending in price, a home's commitment always fills its own blocks cheapest first, so a
commitment alone tells which of its blocks are used; re-dispatch relies on that.

All arithmetic is int64 numpy: one sort per slot, never a loop per Wh. Values must stay within exact
int64 range (Σ energy × the highest price, and (Σ energy)², below 2⁶²), checked per slot.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from hems.community.flexibility.model import Direction, FlexibilityRequest, HomeFlexibility, direction_of
from hems.community.mechanisms.rounding import INT64_SAFE, round_shares, tie_break_ranks

__all__ = ["Dispatch", "HomeCommitment", "SlotDispatch", "redispatch", "split_request"]


@dataclass(frozen=True)
class HomeCommitment:
    """What one home is dispatched for in one slot."""

    home: str
    energy_wh: int  # signed like the request's delta, never 0
    cost_nano: int  # the compensation its own blocks ask (pay-as-bid), ≥ 0


@dataclass(frozen=True)
class SlotDispatch:
    """One slot of a dispatch."""

    slot_start_s: int
    requested_wh: int  # the request's signed delta
    commitments: tuple[HomeCommitment, ...]  # by home id; only homes with a non-zero commitment
    marginal_price_micro: int | None  # the dearest block in use; None when nothing is dispatched
    unmet_wh: int  # |requested| − |committed|, ≥ 0

    @property
    def direction(self) -> Direction | None:
        return direction_of(self.requested_wh)

    @property
    def committed_wh(self) -> int:
        """The signed total of the commitments."""
        return sum(item.energy_wh for item in self.commitments)

    @property
    def cost_nano(self) -> int:
        return sum(item.cost_nano for item in self.commitments)

    def committed_by(self, home: str) -> int:
        """One home's signed commitment (0 when it has none)."""
        return next((item.energy_wh for item in self.commitments if item.home == home), 0)


@dataclass(frozen=True)
class Dispatch:
    """A request split among the homes."""

    request_id: str
    seed: int  # the tie-break seed; published with the result
    slots: tuple[SlotDispatch, ...]
    excluded_homes: frozenset[str] = frozenset()  # opted out or declined: never dispatched
    failed_homes: frozenset[str] = frozenset()  # removed by re-dispatch: never dispatched again

    def slot(self, slot_start_s: int) -> SlotDispatch:
        """The dispatch of one slot (KeyError if the request has no such slot)."""
        for item in self.slots:
            if item.slot_start_s == slot_start_s:
                return item
        raise KeyError(slot_start_s)

    @property
    def cost_nano(self) -> int:
        return sum(item.cost_nano for item in self.slots)

    @property
    def unmet_wh(self) -> int:
        return sum(item.unmet_wh for item in self.slots)


@dataclass(frozen=True)
class _Book:
    """One slot's eligible blocks in one direction, grouped by home (homes in id order)."""

    homes: tuple[str, ...]
    starts: np.ndarray  # index of each home's first block
    price: np.ndarray  # int64, per block
    energy: np.ndarray  # int64, per block
    rank: np.ndarray  # int64, per block: its home's tie-break rank


def _index(flexibilities: Iterable[HomeFlexibility], slots: Collection[int]) -> dict[int, list[HomeFlexibility]]:
    """The flexibilities of the requested slots, per slot, by home id; ValueError on a duplicate."""
    by_slot: dict[int, dict[str, HomeFlexibility]] = {slot: {} for slot in slots}
    for item in flexibilities:
        if not isinstance(item, HomeFlexibility):
            raise TypeError(f"expected HomeFlexibility, got {type(item).__name__}")
        homes = by_slot.get(item.slot_start_s)
        if homes is None:
            continue
        if item.home in homes:
            raise ValueError(f"two flexibilities of {item.home!r} for slot {item.slot_start_s}")
        homes[item.home] = item
    return {slot: [homes[home] for home in sorted(homes)] for slot, homes in by_slot.items()}


def _home_ranks(flexibilities: Iterable[HomeFlexibility], seed: int) -> dict[str, int]:
    """The seeded tie-break rank of every home: ``tie_break_ranks`` over the sorted ids of all homes."""
    homes = sorted({item.home for item in flexibilities})
    return dict(zip(homes, tie_break_ranks(len(homes), seed)))


def _book(flexes: list[HomeFlexibility], direction: Direction, barred: Collection[str],
          ranks: dict[str, int]) -> _Book:
    up = direction is Direction.UP
    chosen = [flex for flex in flexes if (flex.up if up else flex.down) and flex.home not in barred]
    merit_orders = [flex.up if up else flex.down for flex in chosen]
    counts = [len(segments) for segments in merit_orders]
    blocks = [segment for segments in merit_orders for segment in segments]
    prices = [segment.price_micro for segment in blocks]
    energies = [segment.energy_wh for segment in blocks]
    homes = [flex.home for flex in chosen]
    starts = np.cumsum([0] + counts[:-1]) if counts else np.zeros(0, np.int64)
    block_ranks = np.repeat(np.array([ranks[home] for home in homes], np.int64), counts)
    total = sum(energies)
    if energies and (total * max(prices) >= INT64_SAFE or total * total >= INT64_SAFE):
        raise ValueError("flexibility volumes or prices too large for exact int64 arithmetic")
    return _Book(tuple(homes), starts.astype(np.int64), np.array(prices, np.int64),
                 np.array(energies, np.int64), block_ranks)


def _merit_fill(book: _Book, capacity: np.ndarray, need_wh: int, limit_micro: int) -> np.ndarray:
    """Wh taken from each block: cheapest first up to ``need_wh``, never above ``limit_micro``; the
    blocks at the marginal price share the rest pro rata (largest remainder, ties by home rank)."""
    taken = np.zeros(len(capacity), np.int64)
    if need_wh <= 0 or not len(capacity):
        return taken
    eligible = (book.price <= limit_micro) & (capacity > 0)
    candidates = np.flatnonzero(eligible)
    if not candidates.size:
        return taken
    order = candidates[np.argsort(book.price[candidates], kind="stable")]
    cumulative = np.cumsum(capacity[order])
    if int(cumulative[-1]) <= need_wh:
        taken[order] = capacity[order]
        return taken
    margin = book.price[order[int(np.searchsorted(cumulative, need_wh, side="left"))]]
    below = eligible & (book.price < margin)
    taken[below] = capacity[below]
    rest = need_wh - int(capacity[below].sum())
    at_margin = np.flatnonzero(eligible & (book.price == margin))
    sizes = capacity[at_margin]
    # rest ≤ Σ sizes, so no share exceeds its block (each is the floor or ceiling of at most the block).
    taken[at_margin] = round_shares(rest * sizes, int(sizes.sum()), rest, book.rank[at_margin])
    return taken


def _slot_result(slot_start_s: int, delta_wh: int, book: _Book, used: np.ndarray) -> SlotDispatch:
    sign = 1 if delta_wh > 0 else -1
    commitments: tuple[HomeCommitment, ...] = ()
    marginal = None
    if len(used):
        energy = np.add.reduceat(used, book.starts)
        cost = np.add.reduceat(used * book.price, book.starts)
        commitments = tuple(HomeCommitment(home, sign * int(wh), int(nano))
                            for home, wh, nano in zip(book.homes, energy.tolist(), cost.tolist()) if wh)
        in_use = used > 0
        marginal = int(book.price[in_use].max()) if in_use.any() else None
    committed = sum(abs(item.energy_wh) for item in commitments)
    return SlotDispatch(slot_start_s, delta_wh, commitments, marginal, abs(delta_wh) - committed)


def split_request(request: FlexibilityRequest, flexibilities: Iterable[HomeFlexibility], *,
                  opted_out: frozenset[str] = frozenset(), declined: frozenset[str] = frozenset(),
                  seed: int = 0) -> Dispatch:
    """The least-cost split of ``request`` among the homes' flexibility, slot by slot.

    ``opted_out``: homes whose owner opted out of the community's flexibility; ``declined``: homes that
    declined this request. Neither is dispatched in any slot. Flexibilities of slots the request does
    not ask for are ignored; two of one home in one slot are a ValueError. ``seed`` orders exact
    ties at the margin (see :func:`_home_ranks`); the same inputs always give the same dispatch.
    """
    flexibilities = tuple(flexibilities)
    by_slot = _index(flexibilities, request.slot_starts_s)
    ranks = _home_ranks(flexibilities, seed)
    barred = frozenset(opted_out) | frozenset(declined)
    slots = []
    for slot_start_s, delta_wh in zip(request.slot_starts_s, request.delta_wh):
        direction = direction_of(delta_wh)
        if direction is None:
            slots.append(SlotDispatch(slot_start_s, 0, (), None, 0))
            continue
        book = _book(by_slot[slot_start_s], direction, barred, ranks)
        used = _merit_fill(book, book.energy, abs(delta_wh), request.price_micro)
        slots.append(_slot_result(slot_start_s, delta_wh, book, used))
    return Dispatch(request.request_id, seed, tuple(slots), barred)


def _prefix_use(book: _Book, kept_wh: dict[str, int]) -> np.ndarray:
    """Wh of each block that the kept commitments use: each home's blocks filled cheapest first."""
    kept = np.array([kept_wh.get(home, 0) for home in book.homes], np.int64)
    if not len(book.energy):
        return np.zeros(0, np.int64)
    sizes = np.diff(np.append(book.starts, len(book.energy)))
    totals = np.add.reduceat(book.energy, book.starts)
    if (kept > totals).any():
        home = book.homes[int(np.flatnonzero(kept > totals)[0])]
        raise ValueError(f"the commitment of {home!r} exceeds its flexibility")
    cumulative = np.cumsum(book.energy)
    before = cumulative - book.energy - np.repeat(cumulative[book.starts] - book.energy[book.starts], sizes)
    return np.clip(np.repeat(kept, sizes) - before, 0, book.energy)


def redispatch(request: FlexibilityRequest, dispatch: Dispatch, flexibilities: Iterable[HomeFlexibility],
               failed_homes: Collection[str], *, opted_out: frozenset[str] = frozenset(),
               from_slot_s: int | None = None) -> Dispatch:
    """Replace failed homes: keep every other commitment, remove the failed homes' and fill the
    missing volume from the remaining homes' unused blocks by the same rules as :func:`split_request`.

    Homes excluded from ``dispatch`` and those failed before stay out; ``opted_out`` adds owners who
    opted out since (their commitments are removed like a failure: the opt-out always wins). Slots
    that start before ``from_slot_s`` (already under way or past) are left as they were.
    """
    if request.request_id != dispatch.request_id or request.slot_starts_s != tuple(
            item.slot_start_s for item in dispatch.slots):
        raise ValueError(f"dispatch {dispatch.request_id!r} is not a dispatch of request {request.request_id!r}")
    flexibilities = tuple(flexibilities)
    by_slot = _index(flexibilities, request.slot_starts_s)
    ranks = _home_ranks(flexibilities, dispatch.seed)
    excluded = dispatch.excluded_homes | frozenset(opted_out)
    failed = dispatch.failed_homes | frozenset(failed_homes)
    barred = excluded | failed
    slots = []
    for old in dispatch.slots:
        direction = old.direction
        if direction is None or (from_slot_s is not None and old.slot_start_s < from_slot_s):
            slots.append(old)
            continue
        kept = {item.home: abs(item.energy_wh) for item in old.commitments if item.home not in barred}
        book = _book(by_slot[old.slot_start_s], direction, barred, ranks)
        missing = set(kept) - set(book.homes)
        if missing:
            raise ValueError(f"no flexibility for committed homes {sorted(missing)} in slot {old.slot_start_s}")
        used = _prefix_use(book, kept)
        need_wh = abs(old.requested_wh) - int(used.sum())
        used = used + _merit_fill(book, book.energy - used, need_wh, request.price_micro)
        slots.append(_slot_result(old.slot_start_s, old.requested_wh, book, used))
    return Dispatch(request.request_id, dispatch.seed, tuple(slots), excluded, failed)
