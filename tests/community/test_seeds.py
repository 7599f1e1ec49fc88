"""Tie-break seeds are reproducible from the configured base, so an audit can replay a clearing."""

from __future__ import annotations

import hashlib

from hems.community.seeds import tie_break_seed


def test_a_configured_base_gives_the_seed_the_ledgers_of_earlier_versions_recorded() -> None:
    # The formula is part of the audit trail: a replay of an old slot must find the same seed.
    expected = int.from_bytes(hashlib.sha256(b"42:sunny-street:1781820000").digest()[:8], "big") >> 1
    assert tie_break_seed(42, "sunny-street", "1781820000") == expected
    first, second = (tie_break_seed(42, "sunny-street", f"flexibility:{request}") for request in ("r-1", "r-2"))
    assert first != second
    assert tie_break_seed(42, "other-street", "1781820000") != expected


def test_without_a_base_seeds_are_random_and_63_bits() -> None:
    seeds = {tie_break_seed(None, "sunny-street", "1781820000") for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= seed < 2**63 for seed in seeds)
