"""Forecast error tracking: remembers what was forecast for each future slot and, when the slot
has been measured, adds the absolute error to a rolling mean absolute error (MAE)."""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta

import numpy as np


class MaeTracker:
    """Rolling MAE of one forecast (W); one instance per forecast per home."""

    def __init__(self, window: int = 96 * 7, max_pending: int = 96 * 3) -> None:
        self._errors: deque[float] = deque(maxlen=window)
        self._pending: OrderedDict[datetime, float] = OrderedDict()
        self._max_pending = max_pending

    def issue(self, start: datetime, step_s: int, values_w: np.ndarray) -> None:
        """Remember a forecast; a later forecast for the same slot replaces the earlier one."""
        for index, value in enumerate(values_w):
            slot = start + timedelta(seconds=step_s * index)
            self._pending[slot] = float(value)
            self._pending.move_to_end(slot)
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)

    def observe(self, slot_start: datetime, actual_w: float) -> float | None:
        """Score the slot's latest forecast against the measurement; returns the absolute error."""
        forecast = self._pending.pop(slot_start, None)
        if forecast is None or not np.isfinite(actual_w):
            return None
        error = abs(forecast - actual_w)
        self._errors.append(error)
        return error

    @property
    def mae_w(self) -> float:
        """Mean absolute error over the window (NaN before the first scored slot)."""
        return float(np.mean(self._errors)) if self._errors else float("nan")

    @property
    def count(self) -> int:
        """Number of scored slots in the window."""
        return len(self._errors)
