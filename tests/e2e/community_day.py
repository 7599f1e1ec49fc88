"""A community of simplified homes trading through the real manager over a real mosquitto.

Each home is the real market agent (hems.trading) on a real MPC (hems.mpc.Planner) of its own
site; its "devices" are the plan itself: in each slot the home imports and exports what its plan,
made with the trades it committed, says, plus a small deviation, and a grid meter counts it. The
manager is the real service (hems.community.service) on its SQLite books. Time is a VirtualClock
that moves only when the driver advances it, slot by slot, waiting at each step for the messages
to arrive (real sockets, real broker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from hems.clock import VirtualClock
from hems.community.config import CommunityConfig, parse_community_config
from hems.community.service import CommunityService
from hems.mpc.inputs import PlanInputs
from hems.mpc.plan import Plan
from hems.mpc.planner import Planner
from hems.mpc.site import BatteryConfig, GridConfig, MpcSettings, PvConfig, SiteConfig
from hems.protocol.mqtt import BrokerSettings
from hems.runtime.snapshot import Measurement, Quantity, SiteSnapshot
from hems.store import AsyncStore
from hems.trading.agent import MarketAgent
from hems.protocol.messages import EnergyClass
from hems.trading.bids import BidTerms, DonationTerms, with_market_terms
from hems.trading.settings import TradingSettings, client_id
from tests.conftest import wait_for

T = TypeVar("T")

COMMUNITY = "street"
SLOT_S = 3600
GATE_LEAD_S = 600
SUBMIT_LEAD_S = 300
HORIZON_STEPS = 24
DAY_S = 1_781_827_200  # 2026-06-19 00:00 UTC: a summer day with PV to share
RETAIL, FEED_IN = 0.30, 0.08


@dataclass(frozen=True)
class HomeSpec:
    """One home's site: PV peak (W), battery (Wh, 0: none worth the name) and daily load (kWh)."""

    name: str
    pv_peak_w: float
    battery_wh: float
    daily_load_kwh: float


HOMES = (
    HomeSpec("sunny", 7_000, 10_000, 9.0),
    HomeSpec("solar", 5_000, 0, 6.0),
    HomeSpec("storage", 0, 8_000, 8.0),
    HomeSpec("plain", 0, 0, 10.0),
)
GREEN_PREMIUM_MICRO = 20_000
#: What the homes state in a differentiated market: the PV homes sell green energy, "solar" gives
#: up to 300 Wh a slot to "plain", "storage" pays a premium for green energy.
DIFFERENTIATED_TERMS = {
    "sunny": BidTerms(EnergyClass.GREEN_LOCAL),
    "solar": BidTerms(EnergyClass.GREEN_LOCAL, donations=(DonationTerms(("plain",), 300),)),
    "storage": BidTerms(green_premium_micro=GREEN_PREMIUM_MICRO),
}


def site_of(spec: HomeSpec) -> SiteConfig:
    capacity = max(spec.battery_wh, 100.0)  # the model needs a battery; 100 Wh is none in practice
    power = max(spec.battery_wh / 2, 50.0)
    return SiteConfig(battery=BatteryConfig(capacity_wh=capacity, max_charge_w=power, max_discharge_w=power),
                      grid=GridConfig(import_limit_w=15_000, export_limit_w=10_000),
                      pv=PvConfig(curtailable=True),
                      mpc=MpcSettings(step_s=SLOT_S, horizon_steps=HORIZON_STEPS, market_enabled=True))


def profiles(spec: HomeSpec, start_s: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Load and PV (W) per hour from ``start_s``: an evening-peaked load and a PV bell."""
    hours = ((start_s - DAY_S) / 3600 + np.arange(steps)) % 24
    shape = 0.6 + 0.8 * np.exp(-((hours - 19) ** 2) / 6) + 0.3 * np.exp(-((hours - 7) ** 2) / 2)
    load = shape / shape.mean() * spec.daily_load_kwh * 1000 / 24
    pv = spec.pv_peak_w * np.clip(np.sin((hours - 5) / 15 * np.pi), 0, None)
    return load, pv


class SimulatedHome:
    """The planning port of the agent, and the home's meter."""

    def __init__(self, spec: HomeSpec) -> None:
        self.spec = spec
        self.planner = Planner(site_of(spec))
        self.last_inputs: PlanInputs | None = None
        self.soc = 0.5
        self.imported_wh = 0.0
        self.exported_wh = 0.0
        self.agent: MarketAgent | None = None
        self.rng = np.random.default_rng(abs(hash(spec.name)) % 2**32)

    @property
    def step_s(self) -> int:
        return SLOT_S

    def request_replan(self, reason: str) -> None:
        """The driver re-plans at each slot anyway."""

    async def run_with_planner(self, function: Callable[[Planner], T]) -> T:
        return await asyncio.to_thread(function, self.planner)

    def inputs(self, start_s: int) -> PlanInputs:
        load, pv = profiles(self.spec, start_s, HORIZON_STEPS)
        return PlanInputs(start=datetime.fromtimestamp(start_s, tz=timezone.utc), load_w=load, pv_w=pv,
                          import_price=np.full(HORIZON_STEPS, RETAIL), export_price=np.full(HORIZON_STEPS, FEED_IN),
                          soc_initial=self.soc)

    async def plan(self, start_s: int) -> Plan:
        """A plan from ``start_s`` with the trades committed so far (what the runtime does)."""
        inputs = self.inputs(start_s)
        assert self.agent is not None
        inputs = with_market_terms(inputs, self.agent.plan_terms(inputs.start, HORIZON_STEPS, SLOT_S))
        self.last_inputs = inputs
        return await asyncio.to_thread(self.planner.plan, inputs)

    async def deliver(self, slot_s: int) -> None:
        """Run the slot as planned, off by up to 5 % (forecast error), and count it."""
        step = (await self.plan(slot_s)).steps[0]
        deviation = 1 + self.rng.uniform(-0.05, 0.05)
        self.imported_wh += step.grid_import_w * deviation
        self.exported_wh += step.grid_export_w * deviation
        self.soc = step.soc

    def snapshot(self, at_s: float) -> SiteSnapshot:
        values = {Quantity.GRID_IMPORT_ENERGY_WH: Measurement(self.imported_wh, at_s),
                  Quantity.GRID_EXPORT_ENERGY_WH: Measurement(self.exported_wh, at_s)}
        return SiteSnapshot(taken_at_s=at_s, values=values)


def community_config(directory: Path, broker_url: str, mechanism: str) -> CommunityConfig:
    members = "\n".join(f'[[member]]\nid = "{spec.name}"' for spec in HOMES)
    host_port = broker_url.removeprefix("mqtt://")
    return parse_community_config(f"""
[community]
id = "{COMMUNITY}"
state_directory = "{directory}"
[broker]
broker = "mqtt://{host_port}"
[market]
mechanism = "{mechanism}"
slot_duration_s = {SLOT_S}
gate_closure_lead_s = {GATE_LEAD_S}
horizon_slots = 2
retail_price = {RETAIL}
feed_in_price = {FEED_IN}
price_grid_points = 11
meter_deadline_s = 900
tie_break_seed = 11
{members}
""")


@dataclass
class Community:
    """The running community: the driver's handle on everything."""

    clock: VirtualClock
    config: CommunityConfig
    homes: list[SimulatedHome]
    service: CommunityService
    stop_manager: asyncio.Event
    manager_task: asyncio.Task[None]
    stores: list[AsyncStore] = field(default_factory=list)

    @property
    def bidding(self) -> bool:
        return self.config.market.effective_bid_format != "none"

    async def restart_manager(self) -> None:
        """Kill the manager (no goodbye, no tidy close of its books) and start a new one."""
        self.manager_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.manager_task
        await self.service.link.stop()  # the socket closes; the state file is simply abandoned
        self.service = CommunityService(self.config, self.clock)
        self.stop_manager = asyncio.Event()
        await self.service.start()
        self.manager_task = asyncio.ensure_future(self.service.run(self.stop_manager))

    def _state(self):
        return self.service.manager.state  # the manager may have been restarted

    async def trade_slot(self, slot_s: int) -> None:
        """Bid for and clear ``slot_s`` (during the slot before it), then run it: at its start the
        homes' meters are read (which ends the previous slot) and the homes deliver their plans."""
        self.clock.advance_to(slot_s - GATE_LEAD_S - SUBMIT_LEAD_S)
        if self.bidding:
            await wait_for(lambda: len(self._state().bids_for_slot(slot_s)) == len(self.homes), timeout_s=20)
            driver = self.service.manager.negotiation
            if driver is not None:  # admm: negotiate, with the clock held, until it ends
                self.clock.advance_to(driver.start_due_s(slot_s))
                await wait_for(lambda: driver.started(slot_s) and driver.active is None, timeout_s=60)
            self.clock.advance_to(slot_s - GATE_LEAD_S)
            await wait_for(lambda: all(home.agent.commitments.get(slot_s) is not None for home in self.homes),
                           timeout_s=20)
        await self.read_meters(slot_s)
        for home in self.homes:
            await home.deliver(slot_s)

    async def read_meters(self, at_s: int) -> None:
        """The slot ending at ``at_s`` is over: every home reports it; the manager settles it."""
        self.clock.advance_to(at_s)
        for home in self.homes:
            await home.agent.observe(home.snapshot(at_s), at_s)
        ended = at_s - SLOT_S
        if ended >= DAY_S:
            await wait_for(lambda: (record := self._state().slot(ended)) is not None
                           and record.state == "SETTLED", timeout_s=20)

    async def run_day(self, restart_after_slots: int | None = None) -> None:
        """Trade every slot of the day; optionally kill and restart the manager on the way."""
        for home in self.homes:
            await home.plan(DAY_S - SLOT_S)
        for index, slot_s in enumerate(day_slots()):
            if index == restart_after_slots:
                await self.restart_manager()
            await self.trade_slot(slot_s)
        await self.read_meters(DAY_S + 24 * SLOT_S)


class SteppedClock(VirtualClock):
    """A VirtualClock the driver moves by hand (the driver task holds it, so it never jumps)."""

    def advance_to(self, instant_s: float) -> None:
        if instant_s > self.now_s():
            self.advance(instant_s - self.now_s())

    def slot_now(self, slot_s: int) -> int:
        return int(self.now_s() // slot_s) * slot_s


@contextlib.asynccontextmanager
async def community(tmp_path: Path, broker_url: str, mechanism: str) -> AsyncIterator[Community]:
    """Start the manager and the homes at the day's start; stop everything afterwards."""
    clock = SteppedClock(DAY_S - 2 * SLOT_S)
    with clock.participant():
        config = community_config(tmp_path / "manager", broker_url, mechanism)
        service = CommunityService(config, clock)
        await service.start()
        stop = asyncio.Event()
        task = asyncio.ensure_future(service.run(stop))
        homes, stores = [], []
        for spec in HOMES:
            home = SimulatedHome(spec)
            store = await AsyncStore.in_directory(tmp_path / spec.name)
            settings = TradingSettings(home_id=spec.name, community=COMMUNITY,
                                       broker=BrokerSettings(url=broker_url, client_id=client_id(spec.name, COMMUNITY)),
                                       submit_lead_s=SUBMIT_LEAD_S, bid_points=11, ack_timeout_s=3 * SLOT_S,
                                       terms=DIFFERENTIATED_TERMS.get(spec.name, BidTerms())
                                       if mechanism == "differentiated" else BidTerms())
            home.agent = MarketAgent(settings, clock, store, home, max_gap_s=2 * SLOT_S)
            await home.agent.start()
            homes.append(home)
            stores.append(store)
        running = Community(clock, config, homes, service, stop, task, stores)
        try:
            await wait_for(lambda: all(home.agent.market_config is not None for home in homes), timeout_s=10)
            yield running
        finally:
            for home in homes:
                await home.agent.stop()
            running.stop_manager.set()
            with contextlib.suppress(asyncio.CancelledError):
                await running.manager_task
            await running.service.stop()
            for store in stores:
                await store.close()


def day_slots() -> list[int]:
    return [DAY_S + index * SLOT_S for index in range(24)]

