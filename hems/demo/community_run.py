"""One run of the demo community: every home's real runtime against its emulators, the real
community manager and an MQTT broker, all on one simulated clock in this process.

Time is a :class:`~hems.clock.VirtualClock`: it stands still while any daemon works and jumps
to the next wake-up when all sleep. Messages travel through a real broker in real time, so a
conductor (this module) holds the clock at the market's moments until what must have arrived
has arrived: the bids before the gate closes, the allocations before the slot starts, the meter
readings before the settlement deadline. It also reads every home's emulated meter at each slot
boundary: the ground truth the report bills from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.emulators import SitePlant
from drivers.emulators.modbus_server import EmulatorServer
from hems.clock import VirtualClock
from hems.community.config import CommunityConfig, NegotiationSection, parse_community_config
from hems.community.service import CommunityService
from hems.demo.broker import EmbeddedBroker
from hems.demo.baselines import build_plant
from hems.demo.home_site import home_config, seed_history, start_emulator
from hems.demo.model import DemoHome, HomeOutcome, HomeProfiles, RunOutcome, Scenario, SlotEnergy
from hems.demo.mosquitto import MOSQUITTO, MosquittoProcess
from hems.demo.open_files import DESCRIPTORS_PER_HOME, open_files, raise_open_file_limit
from hems.demo.settings import DemoSettings
from hems.demo.sites import FEED_IN_PRICE_PER_KWH, RETAIL_PRICE_PER_KWH
from hems.runtime.home import HomeRuntime
from hems.store import Store

logger = logging.getLogger(__name__)

#: The daemons start this long before the first slot: first polls, first plan, first bid.
WARM_UP_S = 1800
#: Real seconds the conductor waits for messages at one market moment before it lets time go on.
MESSAGE_TIMEOUT_S = 20.0  # without progress
POLL_FIRST_S, POLL_MAX_S = 0.002, 0.05
#: The conductor looks this much simulated time after a market moment (the daemons act at it).
AFTER_S = 1.0
#: Progress callback: (fraction of the simulated period done, a short detail).
Progress = Callable[[float, str], None]


@dataclass
class DemoHomeRun:
    """One home in a run: its site, its emulator and its daemon."""

    home: DemoHome
    plant: SitePlant
    server: EmulatorServer
    runtime: HomeRuntime
    task: asyncio.Task[None]
    state_directory: Path


@dataclass(frozen=True)
class MarketMoment:
    """A simulated instant at which the conductor checks the market's messages."""

    at_s: float
    kind: str  # "negotiated" (admm), "bids", "allocations", "meters" or "settled"
    slot_start_s: int


def community_config(settings: DemoSettings, homes: Sequence[DemoHome], community_id: str,
                     broker_url: str, state_directory: Path) -> CommunityConfig:
    """The manager's configuration for the demo community."""
    members = "\n".join(f'[[member]]\nid = "{home.home_id}"' for home in homes)
    return parse_community_config(f"""
[community]
id = "{community_id}"
state_directory = "{state_directory.as_posix()}"
[broker]
broker = "{broker_url}"
[market]
mechanism = "{settings.mechanism}"
slot_duration_s = {settings.runtime.slot_s}
gate_closure_lead_s = {settings.gate_closure_lead_s}
horizon_slots = 4
retail_price = {RETAIL_PRICE_PER_KWH}
feed_in_price = {FEED_IN_PRICE_PER_KWH}
price_grid_points = {settings.price_grid_points}
tie_break_seed = {settings.seed}
{members}
""", "<demo community>")


def market_moments(settings: DemoSettings, meter_deadline_s: int) -> list[MarketMoment]:
    """When the bids, the allocations, the meter readings and the settlement of each slot must have
    arrived. The readings are awaited just before the manager's deadline (``meter_deadline_s`` after
    the slot): past it, the manager settles a slot provisionally, from the allocations. They leave
    with each home's first poll after the slot, but nothing else holds simulated time before the
    deadline of the run's last slot, and with hundreds of homes their delivery takes real seconds."""
    runtime = settings.runtime
    moments = []
    for slot_start_s in settings.slot_starts_s:
        gate_s = slot_start_s - settings.gate_closure_lead_s
        if settings.mechanism == "admm":  # the negotiation starts before the bids
            moments.append(MarketMoment(gate_s - NegotiationSection().lead_s + AFTER_S, "negotiated", slot_start_s))
        moments.append(MarketMoment(gate_s - runtime.submit_lead_s + AFTER_S, "bids", slot_start_s))
        moments.append(MarketMoment(gate_s + AFTER_S, "allocations", slot_start_s))
        deadline_s = slot_start_s + runtime.slot_s + meter_deadline_s
        moments.append(MarketMoment(deadline_s - AFTER_S, "meters", slot_start_s))
        moments.append(MarketMoment(deadline_s + AFTER_S, "settled", slot_start_s))
    return sorted(moments, key=lambda moment: moment.at_s)


async def until(missing: Callable[[], int], timeout_s: float, what: str) -> bool:
    """Wait in real time (the clock held) until ``missing()`` is 0; False, logged, when it has not
    dropped for ``timeout_s``. A count rather than a yes/no: with hundreds of homes in one worker, the
    last allocations can take longer than the time-out to be processed while the others arrive steadily,
    and time must not go on while they still do. The poll interval grows, because each poll reads the
    manager's state and takes the interpreter lock from the homes it waits for."""
    deadline = time.monotonic() + timeout_s
    interval_s, left = POLL_FIRST_S, missing()
    while left > 0:
        if time.monotonic() > deadline:
            logger.warning("demo: %s did not happen within %.0f s (%d missing); time goes on", what, timeout_s, left)
            return False
        await asyncio.sleep(interval_s)
        interval_s = min(interval_s * 1.5, POLL_MAX_S)
        now_left = missing()
        if now_left < left:
            deadline = time.monotonic() + timeout_s
        left = now_left
    return True


class Conductor:
    """Holds simulated time at the market moments and reads the meters at slot boundaries."""

    def __init__(self, settings: DemoSettings, clock: VirtualClock, homes: list[DemoHomeRun],
                 service: CommunityService | None, progress: Progress | None) -> None:
        self.settings = settings
        self.clock = clock
        self.homes = homes
        self.service = service
        self.progress = progress
        self.readings: list[list[tuple[float, ...]]] = []  # per boundary, per home: the counters
        self.message_wait_s = 0.0  # real time the clock was held for messages in flight

    async def run(self) -> None:
        """Walk the simulated period; return after its last slot has been read (and settled)."""
        boundaries = [*self.settings.slot_starts_s, self.settings.start_s + self.settings.duration_s]
        moments = ([] if self.service is None
                   else market_moments(self.settings, self.service.config.market.meter_deadline_s))
        events = sorted([(float(at_s), 0, None) for at_s in boundaries]
                        + [(moment.at_s, 1, moment) for moment in moments], key=lambda event: event[:2])
        for at_s, _, moment in events:
            await self.clock.sleep_until_s(at_s)
            self._check_daemons()
            if moment is None:
                self._read_meters(at_s)
            else:
                await self._await_messages(moment)

    def _check_daemons(self) -> None:
        for home in self.homes:
            if home.task.done():
                home.task.result()  # raises what stopped it
                raise RuntimeError(f"demo: the daemon of {home.home.home_id} stopped")

    def _read_meters(self, at_s: float) -> None:
        counters = []
        for home in self.homes:
            home.plant.advance(at_s)
            energy = home.plant.energy
            counters.append((energy.grid_import_wh, energy.grid_export_wh, energy.pv_wh, energy.load_wh,
                             energy.ev_wh, energy.heat_pump_wh, energy.battery_charge_wh,
                             energy.battery_discharge_wh))
        self.readings.append(counters)
        if self.progress is not None:
            done = (at_s - self.settings.start_s) / self.settings.duration_s
            self.progress(done, time.strftime("%H:%M", time.localtime(at_s)))

    async def _await_messages(self, moment: MarketMoment) -> None:
        assert self.service is not None
        started = time.monotonic()
        try:
            await self._await_moment(moment)
        finally:
            self.message_wait_s += time.monotonic() - started

    async def _await_moment(self, moment: MarketMoment) -> None:
        assert self.service is not None
        await self.service.catch_up()  # the manager's clearing or settlement due now happens now
        slot_s = moment.slot_start_s
        state = self.service.manager.state
        if moment.kind == "negotiated":
            driver = self.service.manager.negotiation
            assert driver is not None

            def rounds_missing() -> int:
                """0 once the negotiation ended; each round that closes counts as progress."""
                active = driver.active  # read once: the manager's thread replaces it
                if driver.started(slot_s) and active is None:
                    return 0
                return 1 + driver.settings.max_rounds - (active.coordinator.round if active is not None else 0)
            await until(rounds_missing, MESSAGE_TIMEOUT_S, f"the negotiation for {_hhmm(slot_s)}")
        elif moment.kind == "bids":
            def bids_missing() -> int:
                bidders = {bid.home for bid in state.bids_for_slot(slot_s)}
                return sum(home.home.home_id not in bidders for home in self.homes if _submitted(home, slot_s))
            await until(bids_missing, MESSAGE_TIMEOUT_S, f"bids for {_hhmm(slot_s)} at the manager")
        elif moment.kind == "allocations":
            bidders = {bid.home for bid in state.bids_for_slot(slot_s)}

            def allocations_missing() -> int:
                return sum(home.runtime.market.commitments.get(slot_s) is None
                           for home in self.homes if home.home.home_id in bidders and home.runtime.market)
            await until(allocations_missing, MESSAGE_TIMEOUT_S, f"allocations for {_hhmm(slot_s)} at the homes")
        elif moment.kind == "meters":
            reporters = {home.home.home_id for home in self.homes
                         if home.runtime.market is not None and home.runtime.market.link.connected}

            def readings_missing() -> int:
                return len(reporters - state.meters_for_slot(slot_s).keys())
            await until(readings_missing, MESSAGE_TIMEOUT_S, f"meter readings for {_hhmm(slot_s)} at the manager")
        else:
            members = sum(1 for home in self.homes if home.runtime.market)

            def settlement_missing() -> int:
                record = state.slot(slot_s)
                if record is not None and record.state == "SETTLED":
                    return 0
                return max(1, members - len(state.meters_for_slot(slot_s)))
            await until(settlement_missing, MESSAGE_TIMEOUT_S, f"settlement of {_hhmm(slot_s)}")

    def slot_energy(self, index: int) -> SlotEnergy:
        """Home ``index``'s energy per slot: differences of its counters between boundaries."""
        counters = np.array([boundary[index] for boundary in self.readings])
        per_slot = np.diff(counters, axis=0)
        return SlotEnergy(*(per_slot[:, column].copy() for column in range(per_slot.shape[1])))


def _submitted(home: DemoHomeRun, slot_start_s: int) -> bool:
    """Has the home's agent sent a bid that covers ``slot_start_s``?"""
    agent = home.runtime.market
    bid = None if agent is None else agent.last_submission
    return bid is not None and any(int(slot.slot_start.timestamp()) == slot_start_s for slot in bid.slots)


def _hhmm(instant_s: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(instant_s))


@contextlib.asynccontextmanager
async def broker_for(settings: DemoSettings, trading: bool, directory: Path,
                     log_path: Path | None = None) -> AsyncIterator[str | None]:
    """The broker URL of this run: none without a market; the one given; or a broker of this run's
    own, embedded or a mosquitto child (its configuration under ``directory``, its log at ``log_path``)."""
    if not trading:
        yield None
    elif settings.broker_url is not None:
        yield settings.broker_url
    elif settings.broker == MOSQUITTO:
        mosquitto = MosquittoProcess(directory, log_path=log_path)
        await asyncio.to_thread(mosquitto.start)
        logger.info("demo: mosquitto (PID %s) on %s", mosquitto.pid, mosquitto.url)
        try:
            yield mosquitto.url
        finally:
            await asyncio.to_thread(mosquitto.stop)
    else:
        broker = EmbeddedBroker()
        await broker.start()
        try:
            yield broker.url
        finally:
            await broker.stop()


async def run_community(settings: DemoSettings, homes: Sequence[DemoHome], profiles: dict[str, HomeProfiles],
                        scenario: Scenario, work_directory: Path, *, community_id: str = "demo",
                        progress: Progress | None = None, broker_log: Path | None = None) -> RunOutcome:
    """Run the community for the settings' period under ``scenario`` (MPC or MPC_TRADING); a mosquitto
    of the run's own logs to ``broker_log`` (default: under ``work_directory``)."""
    if scenario not in (Scenario.MPC, Scenario.MPC_TRADING):
        raise ValueError(f"run_community runs the hems runtime; {scenario.value} is an offline baseline")
    trading = scenario is Scenario.MPC_TRADING
    raise_open_file_limit(len(homes))
    started = time.monotonic()
    clock = VirtualClock(settings.start_s - WARM_UP_S)
    conductor: Conductor | None = None
    runs: list[DemoHomeRun] = []
    service: CommunityService | None = None
    stop_manager = asyncio.Event()
    manager_task: asyncio.Task[None] | None = None
    manager_stats = None
    async with broker_for(settings, trading, work_directory / "broker", broker_log) as broker_url:
        with clock.participant():
            try:
                if broker_url is not None:
                    config = community_config(settings, homes, community_id, broker_url, work_directory / "manager")
                    service = CommunityService(config, clock)
                    await service.start()
                    manager_task = asyncio.ensure_future(service.run(stop_manager))
                market = None if broker_url is None else {"broker": broker_url, "community": community_id}
                for home in homes:
                    runs.append(await _start_home(settings, home, profiles[home.home_id], clock,
                                                  work_directory / home.home_id, market))
                if service is not None and not await until(
                        lambda: sum(run.runtime.market is None or run.runtime.market.market_config is None
                                    for run in runs), MESSAGE_TIMEOUT_S, "the market configuration at every home"):
                    _report_unconnected(runs)
                conductor = Conductor(settings, clock, runs, service, progress)
                await conductor.run()
            finally:
                await _stop_homes(runs)
                if manager_task is not None:
                    stop_manager.set()
                    await manager_task
                manager_stats = None if service is None else service.link.stats
                if service is not None:
                    await service.stop()  # before the broker goes
    assert conductor is not None
    outcomes = {}
    for index, run in enumerate(runs):
        agent = run.runtime.market
        stats = None if agent is None else agent.link.stats
        outcomes[run.home.home_id] = HomeOutcome(
            run.home.home_id, conductor.slot_energy(index), solve_ms=_solve_times_ms(run.state_directory),
            messages_sent=0 if stats is None else stats.messages_sent,
            messages_received=0 if stats is None else stats.messages_received)
    return RunOutcome(scenario, settings.mechanism if trading else None, settings.slot_starts_s,
                      settings.runtime.slot_s, outcomes,
                      ledger_path=None if service is None else service.config.community.database_path,
                      wall_s=time.monotonic() - started, message_wait_s=conductor.message_wait_s,
                      manager_messages_received=0 if manager_stats is None else manager_stats.messages_received,
                      manager_messages_sent=0 if manager_stats is None else manager_stats.messages_sent)


async def _start_home(settings: DemoSettings, home: DemoHome, profiles: HomeProfiles, clock: VirtualClock,
                      state_directory: Path, market: dict[str, str] | None) -> DemoHomeRun:
    plant = build_plant(home, profiles, clock.now_s(), clock)
    server = await start_emulator(home, plant)
    state_directory.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(seed_history, state_directory, profiles, int(clock.now_s()),
                            settings.runtime.store_bucket_s)
    assert server.port is not None
    config = home_config(home, server.port, state_directory, settings.runtime, market=market)
    runtime = HomeRuntime(config, clock, environ={}, start_metrics_exporter=False)
    task = asyncio.create_task(runtime.run(), name=f"demo-{home.home_id}")
    return DemoHomeRun(home, plant, server, runtime, task, state_directory)


async def _stop_homes(runs: list[DemoHomeRun]) -> None:
    for run in runs:
        run.runtime.request_stop()
    results = await asyncio.gather(*(run.task for run in runs), return_exceptions=True)
    for run in runs:
        await run.server.stop()
    for run, result in zip(runs, results):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            logger.error("demo: the daemon of %s failed: %r", run.home.home_id, result)


def _report_unconnected(runs: list[DemoHomeRun]) -> None:
    """Say which homes have no connection to the broker, and whether the process ran out of files."""
    unconnected = [run.home.home_id for run in runs if run.runtime.market is not None
                   and not run.runtime.market.link.connected]
    if not unconnected:
        return
    files = open_files()
    why = (f"; this process has {files[0]} files open and may open {files[1]}"
           if files is not None and files[0] >= files[1] - DESCRIPTORS_PER_HOME else "")
    logger.error("demo: %d of %d homes are not connected to the broker (first: %s); they run retail only%s",
                 len(unconnected), len(runs), ", ".join(unconnected[:3]), why)


def _solve_times_ms(state_directory: Path) -> list[float]:
    with Store.in_directory(state_directory) as store:
        return [record.solve_time_s * 1000.0 for record in store.plans(since_s=0.0, limit=100_000)]
