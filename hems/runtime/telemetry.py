"""Telemetry: poll the devices, estimate the site state, and account for it.

One cycle polls every device once, builds the snapshot, updates the metrics, stores the
readings (the store keeps them downsampled into buckets) and averages load and PV over the
current market slot, which the forecasts learn from when the slot is over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from drivers.p1 import P1Reader
from hems.observability.metrics import HomeMetrics
from hems.runtime.estimation import StateEstimator, availability, readings_from_devices
from hems.runtime.site_devices import SiteDevices
from hems.runtime.snapshot import Quantity, SiteSnapshot
from hems.store import AsyncStore

logger = logging.getLogger(__name__)

#: Device name the site-level quantities are stored under.
SITE = "site"
HOUSE_LOAD_W = "house_load_w"


@dataclass
class SlotAverage:
    """Time-weighted averages of load and PV over one slot."""

    slot_start_s: float
    load_wh: float = 0.0
    pv_wh: float = 0.0
    covered_s: float = 0.0

    def add(self, load_w: float, pv_w: float, duration_s: float) -> None:
        """Add ``duration_s`` seconds at the given powers."""
        self.load_wh += load_w * duration_s / 3600.0
        self.pv_wh += pv_w * duration_s / 3600.0
        self.covered_s += duration_s

    def averages_w(self) -> tuple[float, float]:
        """Average load and PV over the covered time."""
        hours = self.covered_s / 3600.0
        return self.load_wh / hours, self.pv_wh / hours


@dataclass(frozen=True)
class HeldReading:
    """A poll's house load and PV, held until the next poll."""

    at_s: float
    load_w: float
    pv_w: float


class SlotAverager:
    """Per-slot averages of house load and PV from polls, for the forecasters to learn from.

    Each reading holds until the next poll; the time before a slot boundary counts for the slot
    it was in, so a slot is covered to its end however long the telemetry period. (Counting a
    slot only from its own first poll left 600 of 900 s covered with 5-minute polls, and no
    slot was ever learned from.) A missing reading ends the hold: an outage is not bridged.
    """

    def __init__(self, slot_s: int) -> None:
        self.slot_s = slot_s
        self._slot: SlotAverage | None = None
        self._last: HeldReading | None = None

    def add(self, at_s: float, load_w: float | None, pv_w: float) -> SlotAverage | None:
        """Take a poll; returns the slot it finished when that slot was mostly (80 %) covered."""
        slot_start_s = at_s - at_s % self.slot_s
        previous, self._last = self._last, None
        finished = None
        if previous is not None and self._slot is not None:
            held_until_s = min(at_s, self._slot.slot_start_s + self.slot_s)
            self._slot.add(previous.load_w, previous.pv_w, max(0.0, held_until_s - previous.at_s))
        if self._slot is not None and slot_start_s > self._slot.slot_start_s:
            if self._slot.covered_s >= 0.8 * self.slot_s:
                finished = self._slot
            self._slot = None
        if self._slot is None:
            self._slot = SlotAverage(slot_start_s)
            if previous is not None:  # the last reading also held from the boundary until now
                self._slot.add(previous.load_w, previous.pv_w, max(0.0, at_s - max(slot_start_s, previous.at_s)))
        if load_w is not None:
            self._last = HeldReading(at_s, load_w, pv_w)
        return finished


class TelemetryService:
    """Polls and estimates; keeps the latest snapshot for the other loops."""

    def __init__(self, devices: SiteDevices, estimator: StateEstimator, metrics: HomeMetrics,
                 store: AsyncStore | None, slot_s: int, p1: P1Reader | None = None,
                 on_slot_finished: Callable[[float, float, float], None] | None = None) -> None:
        self.devices = devices
        self.estimator = estimator
        self.metrics = metrics
        self.store = store
        self.slot_s = slot_s
        self.p1 = p1
        self._on_slot_finished = on_slot_finished
        self.snapshot = SiteSnapshot(taken_at_s=0.0)
        self.cycles = 0
        self._averager = SlotAverager(slot_s)
        self._last_at_s: float | None = None
        self._last_counters: tuple[float, float] | None = None

    async def cycle(self, now_s: float) -> SiteSnapshot:
        """Poll, estimate, account. Never raises for device faults (they are counted)."""
        await self.devices.poll_all()
        readings = readings_from_devices(self.devices, self.p1)
        snapshot = self.estimator.update(readings, availability(self.devices, self.p1), now_s)
        self.snapshot = snapshot
        self.cycles += 1
        self._export_metrics(snapshot)
        self._account_energy(snapshot, now_s)
        self._average_slot(snapshot, now_s)
        await self._store(snapshot, now_s)
        return snapshot

    def _export_metrics(self, snapshot: SiteSnapshot) -> None:
        soc = snapshot.value(Quantity.BATTERY_SOC)
        self.metrics.set_site(
            grid_import_w=snapshot.value(Quantity.GRID_IMPORT_W),
            pv_power_w=snapshot.value(Quantity.PV_POWER_W),
            battery_charge_w=snapshot.value(Quantity.BATTERY_CHARGE_W),
            battery_soc_ratio=None if soc is None else min(max(soc, 0.0), 1.0),
        )
        for name, client in self.devices.clients.items():
            self.metrics.update_device_health(name, client.health)

    def _account_energy(self, snapshot: SiteSnapshot, now_s: float) -> None:
        """Grid energy for the counters: from the meter's registers where it has them, else the
        power integrated over the cycle."""
        imported = snapshot.value(Quantity.GRID_IMPORT_ENERGY_WH)
        exported = snapshot.value(Quantity.GRID_EXPORT_ENERGY_WH)
        if imported is not None and exported is not None:
            if self._last_counters is not None:
                self.metrics.add_energy(max(0.0, imported - self._last_counters[0]),
                                        max(0.0, exported - self._last_counters[1]))
            self._last_counters = (imported, exported)
        elif self._last_at_s is not None:
            grid = snapshot.value(Quantity.GRID_IMPORT_W)
            if grid is not None:
                hours = (now_s - self._last_at_s) / 3600.0
                self.metrics.add_energy(max(grid, 0.0) * hours, max(-grid, 0.0) * hours)

    def _average_slot(self, snapshot: SiteSnapshot, now_s: float) -> None:
        self._last_at_s = now_s
        load_w = snapshot.house_load_w()
        pv_w = snapshot.value(Quantity.PV_POWER_W) or 0.0
        finished = self._averager.add(now_s, load_w, pv_w)
        if finished is not None and self._on_slot_finished is not None:
            self._on_slot_finished(finished.slot_start_s, *finished.averages_w())

    async def _store(self, snapshot: SiteSnapshot, now_s: float) -> None:
        if self.store is None:
            return
        samples = [(SITE, quantity.value, measurement.value, measurement.measured_at_s)
                   for quantity, measurement in snapshot.values.items()
                   if measurement.measured_at_s >= now_s - 1.0]
        load_w = snapshot.house_load_w()
        if load_w is not None:
            samples.append((SITE, HOUSE_LOAD_W, load_w, now_s))
        if samples:
            await self.store.add_readings(samples)
