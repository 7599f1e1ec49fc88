"""A window of timed observations in numpy arrays, for the forecasters' histories."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def epoch_microseconds(instant: datetime) -> int:
    """Microseconds since the epoch of an aware instant: differences of these are exactly the
    microseconds of ``later - earlier``, so ages in seconds come out as ``timedelta`` gives them."""
    return (instant - _EPOCH) // _MICROSECOND


class ObservationWindow:
    """Timed observations in arrival order, oldest first: time (µs since the epoch) and named
    columns, in preallocated arrays. Appending writes after the newest; forgetting the oldest
    advances the start of the window; readers get slices (views, no copy). The forecasters keep
    their history in one, so that a forecast reads it with numpy instead of a Python loop."""

    def __init__(self, columns: dict[str, type], capacity: int = 1024) -> None:
        """``columns``: name -> numpy dtype of each value stored with a time."""
        capacity = max(capacity, 1)
        self._arrays = {"times_us": np.empty(capacity, dtype=np.int64)}
        self._arrays.update((name, np.empty(capacity, dtype=dtype)) for name, dtype in columns.items())
        self._names = tuple(self._arrays)
        self._head = self._tail = 0

    def __len__(self) -> int:
        return self._tail - self._head

    def append(self, time_us: int, *values: float) -> None:
        """Add an observation after the newest: its time and one value per column, in order."""
        if self._tail == len(self._arrays["times_us"]):
            self._make_room()
        for name, value in zip(self._names, (time_us, *values), strict=True):
            self._arrays[name][self._tail] = value
        self._tail += 1

    def forget_before(self, horizon_us: int) -> None:
        """Drop the oldest observations while they are older than ``horizon_us`` (as a deque's
        popleft would: it stops at the first one that is not, whatever comes after it)."""
        times, head, tail = self._arrays["times_us"], self._head, self._tail
        while head < tail and times[head] < horizon_us:
            head += 1
        self._head = head

    def _make_room(self) -> None:
        count, capacity = len(self), len(self._arrays["times_us"])
        # Grow when more than half is in use, else compact: at most one copy per capacity / 2
        # appends, amortised O(1) per observation.
        capacity *= 2 if 2 * count > capacity else 1
        for name, old in self._arrays.items():
            new = np.empty(capacity, dtype=old.dtype)
            new[:count] = old[self._head:self._tail]
            self._arrays[name] = new
        self._head, self._tail = 0, count

    def column(self, name: str) -> np.ndarray:
        """The stored values of a column (or "times_us"), oldest first; a view, valid until the
        next append."""
        return self._arrays[name][self._head:self._tail]

    def span_us(self) -> int:
        """Microseconds from the oldest to the newest observation stored (0 if fewer than two)."""
        if len(self) < 2:
            return 0
        times = self._arrays["times_us"]
        return int(times[self._tail - 1]) - int(times[self._head])
