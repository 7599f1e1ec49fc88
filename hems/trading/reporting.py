"""What the market agent tells people: metrics (when the home has them) and problems logged once.

A broker outage or a manager that refuses every report must not fill the log: each kind of
problem is logged once at its level, its repetitions at debug level, and all of them counted.
"""

from __future__ import annotations

import logging

from hems.observability.metrics import HomeMetrics

logger = logging.getLogger("hems.trading")


class MarketReporter:
    """Counts market messages, refusals and the outbox; logs each kind of problem once."""

    def __init__(self, metrics: HomeMetrics | None) -> None:
        self.metrics = metrics
        self._logged: set[str] = set()

    def message_in(self, message_type: str) -> None:
        """A message received (``invalid`` for one that did not decode)."""
        if self.metrics is not None:
            self.metrics.market_message("in", message_type)

    def message_out(self, message_type: str) -> None:
        """A message the broker acknowledged."""
        if self.metrics is not None:
            self.metrics.market_message("out", message_type)

    def rejected(self, status: str) -> None:
        """The manager refused a message (its ack status) or a slot's bid (REJECTED)."""
        if self.metrics is not None:
            self.metrics.market_rejection(status)

    def commitment(self, event: str) -> None:
        """A power-plant commitment proposed, accepted, declined, confirmed or cancelled."""
        if self.metrics is not None:
            self.metrics.vpp_commitment(event)

    def outbox_pending(self, count: int) -> None:
        """Messages the manager has not acknowledged yet."""
        if self.metrics is not None:
            self.metrics.set_outbox_pending(count)

    def connected(self, connected: bool) -> None:
        """The broker link went up or down."""
        if self.metrics is not None:
            self.metrics.set_market_connected(connected)

    def state(self, state: str) -> None:
        """The home's market state (trading, retail_only)."""
        if self.metrics is not None:
            self.metrics.set_market_state(state)

    def once(self, key: str, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message`` at ``level`` the first time ``key`` comes up, at debug level after."""
        if key in self._logged:
            logger.debug(message, *args)
            return
        self._logged.add(key)
        logger.log(level, message, *args, exc_info=exc_info)
