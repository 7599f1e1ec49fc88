"""The shared largest-remainder rounding: its int64 and Python-integer paths agree, its fast sort is lexsort."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hems.community.mechanisms.rounding import argsort_pairs, largest_remainder, round_shares, tie_break_ranks


@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(0, 49)), max_size=60))
def test_argsort_pairs_is_lexsort(pairs):
    primary = np.array([pair[0] for pair in pairs], np.int64)
    secondary = np.array([pair[1] for pair in pairs], np.int64)
    assert argsort_pairs(primary, secondary, 50).tolist() == np.lexsort((secondary, primary)).tolist()


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=40), st.integers(1, 997), st.integers(0, 100))
def test_round_shares_int64_and_python_integers_agree(numerators, denominator, seed):
    floors = sum(value // denominator for value in numerators)
    ceilings = sum(-(-value // denominator) for value in numerators)
    ranks = tie_break_ranks(len(numerators), seed)
    for total in {floors, ceilings, (floors + ceilings) // 2}:
        fast = round_shares(np.array(numerators, np.int64), denominator, total, ranks)
        exact = round_shares(np.array(numerators, dtype=object), denominator, total, ranks)
        assert fast.tolist() == exact.tolist() and sum(fast.tolist()) == total
        assert all(value // denominator <= share <= -(-value // denominator)
                   for value, share in zip(numerators, fast.tolist()))


def test_largest_remainder_beyond_int64_is_exact():
    values = [Fraction(10**30, 3), Fraction(10**30 + 1, 3), Fraction(1, 3)]  # remainders 1/3, 2/3, 1/3
    rounded = largest_remainder(values, sum(value.numerator // value.denominator for value in values) + 1)
    assert rounded == [10**30 // 3, (10**30 + 1) // 3 + 1, 0]
