"""Tie-break seeds: reproducible from the configured ``tie_break_seed``, random without one."""

from __future__ import annotations

import hashlib
import secrets


def tie_break_seed(base: int | None, community_id: str, key: str) -> int:
    """A 63-bit seed for one decision of one community (``key``: a slot start, a request id):
    a hash of the configured base, so an audit can replay the clearing; random when it is None."""
    if base is None:
        return secrets.randbits(63)
    digest = hashlib.sha256(f"{base}:{community_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
