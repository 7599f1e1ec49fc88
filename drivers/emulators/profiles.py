"""Daily shapes the plant falls back to when no profile callable is given, and clocks.

Both shapes are smooth functions of the local time of day, good enough to make the
emulated site move like a real one (a PV bell around noon, a household with a
morning and an evening peak) without pvlib or data files.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

SECONDS_PER_DAY = 86_400.0


def time_of_day_h(time_s: float, utc_offset_s: float = 0.0) -> float:
    """Local hour of day in [0, 24) for UTC ``time_s`` at ``utc_offset_s``."""
    return ((time_s + utc_offset_s) % SECONDS_PER_DAY) / 3600.0


def clear_sky_fraction(hour: float, sunrise_h: float = 6.0, sunset_h: float = 20.0) -> float:
    """Fraction of peak PV output at local ``hour``: a smooth bell, 0 at night.

    ``sin(pi x) ** 1.5`` over the day length is close to a clear-sky PV curve
    (steeper flanks than a plain sine: low sun also means more air mass).
    """
    if not sunrise_h < hour < sunset_h:
        return 0.0
    x = (hour - sunrise_h) / (sunset_h - sunrise_h)
    return math.sin(math.pi * x) ** 1.5


def household_load_w(hour: float, base_w: float = 250.0) -> float:
    """A household's demand at local ``hour``: base load plus morning, noon and evening peaks."""

    def bump(centre_h: float, width_h: float, height_w: float) -> float:
        return height_w * math.exp(-0.5 * ((hour - centre_h) / width_h) ** 2)

    return base_w + bump(7.5, 1.0, 600.0) + bump(12.5, 1.5, 250.0) + bump(19.0, 1.5, 1200.0)


@dataclass
class ManualClock:
    """A clock the test moves by hand (seconds)."""

    now_s: float = 0.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> float:
        """Move the clock forward; returns the new time."""
        self.now_s += seconds
        return self.now_s


@dataclass
class ScaledClock:
    """Simulated time running ``factor`` times faster than the monotonic clock.

    Starts at ``start_s`` (UTC seconds, default: now), so an emulator can run a day
    in minutes (``hems emulate --speed 60``).
    """

    factor: float = 1.0
    start_s: float = field(default_factory=time.time)
    _origin_monotonic_s: float = field(default_factory=time.monotonic, repr=False)

    def __call__(self) -> float:
        return self.start_s + (time.monotonic() - self._origin_monotonic_s) * self.factor
