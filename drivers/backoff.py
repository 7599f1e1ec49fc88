"""Exponential backoff with jitter, shared by every reconnecting reader."""

from __future__ import annotations

import random


def backoff_delay_s(initial_s: float, attempt: int, max_s: float, rng: random.Random,
                    jitter_ratio: float = 0.2) -> float:
    """``initial * 2**attempt`` capped at ``max_s``, spread by +-``jitter_ratio``.

    The jitter keeps many gateways that lost the same device (or broker) at the same
    moment from retrying in lock-step.
    """
    nominal_s = min(max_s, initial_s * 2 ** min(attempt, 30))
    return nominal_s * (1 + jitter_ratio * (2 * rng.random() - 1))
