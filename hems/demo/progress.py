"""A text progress bar for simulated time, for a terminal and for CI logs alike.

On a terminal the bar redraws one line in place (``\\r``), at most about ten times a second of real
time however often it is updated. Anywhere else (a log file, CI output) carriage returns would pile up,
so it prints a plain line each time progress passes another tenth. :class:`ProgressBoard` shows several
concurrent runs (e.g. the demo's scenarios) on one such line.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

__all__ = ["ProgressBar", "ProgressBoard"]

#: Least real time between two redraws on a terminal (about ten a second).
MIN_REDRAW_INTERVAL_S = 0.1
#: A non-terminal stream gets a line each time progress passes another such step.
LOG_STEPS = 10


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


class ProgressBar:
    """Progress of one job of ``total`` units (e.g. simulated seconds), written to ``stream``
    (default: standard error, so a report on standard output stays clean).

    ``update`` as often as convenient; ``close`` writes the final line. ``clock`` gives real time in
    seconds (for the elapsed time and the redraw rate).
    """

    def __init__(self, total: float, label: str, stream: TextIO | None = None, width_chars: int = 30,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not total > 0 or not math.isfinite(total):
            raise ValueError(f"progress total {total!r}: must be a positive number")
        if width_chars < 1:
            raise ValueError(f"progress width_chars {width_chars!r}: must be at least 1")
        self.total = total
        self.label = label
        self.width_chars = width_chars
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = _is_terminal(self._stream)
        self._clock = clock
        self._started_s = clock()
        self._lock = threading.Lock()  # concurrent reporters may share one bar
        self._fraction = 0.0
        self._detail = ""
        self._last_draw_s: float | None = None
        self._drawn_chars = 0  # length of the line now on the terminal
        self._logged_step = -1  # the last step printed to a non-terminal stream
        self._closed = False

    def update(self, done: float, detail: str = "") -> None:
        """Report ``done`` units of ``total`` (clamped to 0..total) and a short ``detail``."""
        fraction = min(max(done / self.total, 0.0), 1.0) if math.isfinite(done) else 0.0
        with self._lock:
            if self._closed:
                return
            self._fraction, self._detail = fraction, detail
            now_s = self._clock()
            if self._terminal:
                if self._last_draw_s is None or now_s - self._last_draw_s >= MIN_REDRAW_INTERVAL_S:
                    self._redraw(now_s)
            else:
                step = math.floor(fraction * LOG_STEPS)
                if step > self._logged_step:
                    self._logged_step = step
                    self._write(self._render(now_s) + "\n")

    def close(self) -> None:
        """Write the final state and end the line. Later calls and updates do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            now_s = self._clock()
            if self._terminal:
                self._redraw(now_s)
                self._write("\n")
            elif self._logged_step < LOG_STEPS:  # not yet printed at 100 %
                self._write(self._render(now_s) + "\n")

    @property
    def fraction(self) -> float:
        """Progress so far, 0..1."""
        return self._fraction

    def _render(self, now_s: float) -> str:
        filled = round(self._fraction * self.width_chars)
        bar = "#" * filled + "-" * (self.width_chars - filled)
        parts = [self.label] if self.label else []
        parts += [f"{self._fraction * 100:3.0f}%", f"[{bar}]", f"{now_s - self._started_s:5.1f} s"]
        if self._detail:
            parts.append(self._detail)
        return " ".join(parts)

    def _redraw(self, now_s: float) -> None:
        line = self._render(now_s)
        padding = " " * max(self._drawn_chars - len(line), 0)  # wipe what a longer line left
        self._write("\r" + line + padding)
        self._drawn_chars = len(line)
        self._last_draw_s = now_s

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


class ProgressBoard:
    """One line for several concurrent runs, each reporting its own fraction by ``label``.

    The bar shows their mean; each run's percentage and detail follow it, in ``labels`` order.
    """

    def __init__(self, labels: Sequence[str], stream: TextIO | None = None, *, width_chars: int = 30,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not labels:
            raise ValueError("a progress board needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"progress labels {list(labels)!r}: must be distinct")
        self._fractions = {label: 0.0 for label in labels}
        self._details = {label: "" for label in labels}
        self._lock = threading.Lock()
        self._bar = ProgressBar(1.0, "", stream, width_chars, clock)

    def update(self, label: str, fraction: float, detail: str = "") -> None:
        """Report that run ``label`` is ``fraction`` (0..1) done, with a short ``detail``."""
        if label not in self._fractions:
            raise KeyError(f"progress label {label!r}: not one of {list(self._fractions)!r}")
        with self._lock:
            self._fractions[label] = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
            self._details[label] = detail
            mean = sum(self._fractions.values()) / len(self._fractions)
            self._bar.update(mean, self._summary())

    def close(self) -> None:
        """Write the final line."""
        self._bar.close()

    def _summary(self) -> str:
        runs = []
        for label, fraction in self._fractions.items():
            detail = self._details[label]
            runs.append(f"{label} {fraction * 100:.0f}%" + (f" ({detail})" if detail else ""))
        return " | ".join(runs)
