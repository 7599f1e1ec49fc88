"""Rounding exact shares to whole units by largest remainder: the one implementation every mechanism uses.

Values are given as integer numerators over one common denominator, so ordering remainders is integer
arithmetic (numpy int64 while products are safe, Python integers beyond). Exact ties between remainders
are broken by a rank per value (a seeded permutation, never arrival order). Two tie-break orders exist
and are published with results, so both stay: :func:`tie_break_ranks` (``random.Random(seed).shuffle``,
used by the bid curves and the sharing rules) and the numpy permutation of the order book
(:mod:`~hems.community.mechanisms.book`), which passes its own ranks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import numpy as np

#: Integers handled in int64 arithmetic stay below this; beyond it Python integers are used.
INT64_SAFE = 2**62


@lru_cache(maxsize=64)
def _ranks(count: int, seed: int) -> tuple[int, ...]:
    order = list(range(count))
    random.Random(seed).shuffle(order)
    ranks = [0] * count
    for rank, index in enumerate(order):
        ranks[index] = rank
    return tuple(ranks)


def argsort_pairs(primary: np.ndarray, secondary: np.ndarray, secondary_bound: int) -> np.ndarray:
    """The indices that sort by ``primary``, then ``secondary`` (each in [0, ``secondary_bound``)), like
    ``np.lexsort((secondary, primary))``: one argsort of a combined int64 key when it fits (numpy's
    lexsort is an order of magnitude slower on a few thousand rows)."""
    primary, secondary = np.asarray(primary), np.asarray(secondary)
    largest = int(np.abs(primary).max(initial=0)) + 1
    if (primary.dtype == object or secondary.dtype == object or largest * (secondary_bound + 1) >= INT64_SAFE
            or int(secondary.min(initial=0)) < 0 or int(secondary.max(initial=0)) >= secondary_bound):
        return np.lexsort((secondary, primary))
    return np.argsort(primary.astype(np.int64) * secondary_bound + secondary, kind="stable")


def tie_break_ranks(count: int, seed: int) -> list[int]:
    """A seeded permutation rank for each of ``count`` items: who wins an exact tie (never arrival)."""
    return list(_ranks(count, seed))


def round_shares(numerators: np.ndarray, denominator: int, total: int, tie_rank: Sequence[int] | np.ndarray,
                 *, check: bool = True) -> np.ndarray:
    """Whole numbers, each the floor or ceiling of ``numerators[i] / denominator`` ,
    that add up to ``total``: the units above the floors go to the largest remainders, equal remainders
    in ``tie_rank`` order (lowest first). ValueError when ``total`` lies outside the floors' and the
    ceilings' sums (with ``check``). Returns int64 (object when a share does not fit)."""
    if denominator <= 0:
        raise ValueError("the denominator must be positive")
    numerators = np.asarray(numerators)
    if numerators.size == 0:
        if check and total != 0:
            raise ValueError(f"cannot round 0 values to total {total}")
        return np.zeros(0, np.int64)
    if (numerators.dtype != object and denominator < INT64_SAFE
            and int(np.abs(numerators).max()) * len(numerators) < INT64_SAFE):
        floors, remainders = numerators // denominator, numerators % denominator
        extra = total - int(floors.sum())
        if check and not 0 <= extra <= int(np.count_nonzero(remainders)):
            raise ValueError(f"cannot round {len(numerators)} values to total {total}")
        floors = floors.astype(np.int64)
        if extra:
            ranks = np.asarray(tie_rank, dtype=np.int64)
            floors[argsort_pairs(-remainders, ranks, int(ranks.max(initial=0)) + 1)[:extra]] += 1
        return floors
    values = [int(value) for value in numerators.tolist()]
    floors_list = [value // denominator for value in values]
    remainder_list = [value % denominator for value in values]
    extra = total - sum(floors_list)
    if check and not 0 <= extra <= sum(1 for remainder in remainder_list if remainder):
        raise ValueError(f"cannot round {len(values)} values to total {total}")
    ranks = list(np.asarray(tie_rank).tolist())
    order = sorted(range(len(values)), key=lambda index: (-remainder_list[index], ranks[index]))
    for index in order[:extra]:
        floors_list[index] += 1
    if all(abs(value) < INT64_SAFE for value in floors_list):
        return np.array(floors_list, dtype=np.int64)
    return np.array(floors_list, dtype=object)


def largest_remainder(values: Sequence[Fraction | int], total: int, seed: int = 0) -> list[int]:
    """Whole numbers, each the floor or ceiling of its value, that add up to ``total``.

    The units above the floors go to the largest fractional parts; exact ties by a seeded permutation
    (:func:`tie_break_ranks`). ``total`` must lie between the sum of the floors and the sum of the ceilings.
    """
    fractions = [Fraction(value) for value in values]
    denominator = math.lcm(*(value.denominator for value in fractions)) if fractions else 1
    numerators = [value.numerator * (denominator // value.denominator) for value in fractions]
    array = (np.array(numerators, dtype=np.int64) if all(abs(value) < INT64_SAFE for value in numerators)
             else np.array(numerators, dtype=object))
    return [int(value) for value in round_shares(array, denominator, total, _ranks(len(values), seed)).tolist()]
