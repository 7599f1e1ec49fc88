"""The demo's knobs: what ``hems demo`` runs and how each home's daemon is set up for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from hems.demo.mosquitto import EMBEDDED, MOSQUITTO
from hems.demo.sites import TIMEZONE

#: Local midnight of a Friday in June: long days, PV to share, a working day's load.
DEFAULT_START_S = int(datetime(2026, 6, 19, tzinfo=ZoneInfo(TIMEZONE)).timestamp())


@dataclass(frozen=True)
class RuntimeSettings:
    """How the demo runs each home's daemon: loops, plan and market parameters.

    The loops are slower than a daemon's defaults (5 s / 10 s): the household and weather data
    change every 15 minutes, so reading and deciding every 5 minutes sees everything there is
    to see, and a simulated day of ten homes fits in about a minute of CPU.
    """

    slot_s: int = 900
    #: 9 h ahead (the daemon's default is 24 h): the plans of ten homes, re-solved for every bid,
    #: are the demo's largest cost, and it scales with the horizon. Nine hours still see the
    #: evening from noon and the morning sun from the evening.
    horizon_steps: int = 36
    telemetry_period_s: float = 300.0
    control_period_s: float = 300.0
    #: Each bid is a curve of this many re-solves (feed-in, the middle, retail): with the plans,
    #: the re-solves are most of a trading day's work (4 points: 125 s for ten homes' day, 3: under
    #: two minutes; bench/RESULTS.md).
    bid_points: int = 3
    submit_lead_s: float = 120.0
    store_bucket_s: int = 300


@dataclass(frozen=True)
class DemoSettings:
    """One demo: the community, its market and the simulated period."""

    homes: int = 10
    hours: float = 24.0
    mechanism: str = "bid_curve"
    start_s: int = DEFAULT_START_S
    seed: int = 1
    #: The trading runs' MQTT broker: ``"embedded"`` (amqtt in each run's process), ``"mosquitto"``
    #: (a mosquitto child process per run, :mod:`hems.demo.mosquitto`) or the URL of a running broker
    #: (``mqtt://host:port``), which all runs share. ``hems demo`` resolves its ``auto`` before.
    broker: str = EMBEDDED
    gate_closure_lead_s: int = 300
    price_grid_points: int = 11
    #: Days of past readings each home starts with, so its forecaster has learnt the household.
    history_days: int = 14
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    @property
    def broker_url(self) -> str | None:
        """The running broker named by :attr:`broker`; None for one the demo starts itself."""
        return None if self.broker in (EMBEDDED, MOSQUITTO) else self.broker

    @property
    def slots(self) -> int:
        """Market slots in the simulated period."""
        return max(1, round(self.hours * 3600 / self.runtime.slot_s))

    @property
    def duration_s(self) -> int:
        """The simulated period, whole slots."""
        return self.slots * self.runtime.slot_s

    @property
    def slot_starts_s(self) -> list[int]:
        """The start of every market slot of the period."""
        return [self.start_s + index * self.runtime.slot_s for index in range(self.slots)]
