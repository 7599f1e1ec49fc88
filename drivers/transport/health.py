"""Per-device health: what metrics and the state estimator need to know."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger("drivers.health")


@dataclass
class DeviceHealth:
    """Health of one device (endpoint + unit id), updated on every request.

    The device is *available* until ``unavailable_after_failures`` requests in a
    row have failed, and available again on the first success. Each change of
    availability is logged once; individual failures are only counted.
    """

    name: str
    unavailable_after_failures: int = 3
    available: bool = True
    last_good_s: float | None = None
    consecutive_failures: int = 0
    requests: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    last_error: str = ""

    def record_success(self, now_s: float) -> None:
        """Count a good answer."""
        self.requests += 1
        self.last_good_s = now_s
        self.consecutive_failures = 0
        if not self.available:
            self.available = True
            logger.info("device %s available again", self.name)

    def record_failure(self, kind: str, detail: str) -> None:
        """Count a failed request of ``kind`` (timeout, exception_code_N, disconnected, ...)."""
        self.requests += 1
        self.consecutive_failures += 1
        self.failures_by_kind[kind] = self.failures_by_kind.get(kind, 0) + 1
        self.last_error = detail
        if self.available and self.consecutive_failures >= self.unavailable_after_failures:
            self.available = False
            logger.warning("device %s unavailable after %d failed requests: %s",
                           self.name, self.consecutive_failures, detail)

    @property
    def failures_total(self) -> int:
        """All failures since start."""
        return sum(self.failures_by_kind.values())

    def age_s(self, now_s: float) -> float | None:
        """Seconds since the last good answer, None if there was none."""
        return None if self.last_good_s is None else now_s - self.last_good_s
