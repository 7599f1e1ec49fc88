"""Hand-made homes, profiles and runs, and a real community ledger, for the report's tests.

The ledger is written by the real community manager (clearing, settlement, ledger), driven without
a broker on a hand-moved clock, as tests/community/test_manager.py does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hems.community.config import parse_community_config
from hems.community.manager import CommunityManager
from hems.community.state import CommunityState
from hems.config.tariff import Tariff, TariffPeriod
from hems.demo.model import (BatterySpec, DemoHome, EvSpec, HeatPumpSpec, HomeOutcome, HomeProfiles, PvSpec,
                             RunOutcome, Scenario, SlotEnergy)
from hems.protocol.codec import encode
from hems.protocol.messages import MeterReport, Order, OrderSubmission, Side, SlotBid
from hems.protocol.topics import HomeTopic, Topics

SLOT_S = 900
#: 2026-06-15 (a Monday) 14:30 UTC = 16:30 in Berlin (CEST): the peak period starts two slots in.
START_S = int(datetime(2026, 6, 15, 14, 30, tzinfo=timezone.utc).timestamp())
TOPICS = Topics("demo")

FLAT = Tariff(import_price_per_kwh=0.32, export_price_per_kwh=0.08)
TIME_OF_USE = Tariff(import_price_per_kwh=0.30, export_price_per_kwh=0.07, period=(
    TariffPeriod(start="17:00", end="21:00", import_price_per_kwh=0.42),
    TariffPeriod(start="22:00", end="06:00", import_price_per_kwh=0.22, export_price_per_kwh=0.05)))


def slot_starts(count: int, start_s: int = START_S) -> list[int]:
    """``count`` consecutive slots from ``start_s``."""
    return [start_s + index * SLOT_S for index in range(count)]


def home(home_id: str, *, pv_w: float | None = 6000, battery_wh: float | None = 10_000, ev: bool = False,
         heat_pump: bool = False, tariff: Tariff = FLAT) -> DemoHome:
    """A home with the given devices."""
    return DemoHome(
        home_id=home_id, household="family", annual_load_kwh=4200.0,
        pv=PvSpec(pv_w, 30.0, 180.0) if pv_w else None,
        battery=BatterySpec(battery_wh, battery_wh / 2) if battery_wh else None,
        ev=EvSpec(2500.0) if ev else None, heat_pump=HeatPumpSpec(4000.0) if heat_pump else None,
        tariff=tariff, tariff_name="flat" if tariff is FLAT else "time-of-use",
        inverter_map="sunspec_hybrid" if pv_w or battery_wh else None, meter_map="sunspec_meter")


def profiles(demo_home: DemoHome, start_s: int, steps: int, step_s: int = SLOT_S, seed: int = 1) -> HomeProfiles:
    """Random but plausible profiles: PV a daytime bell scaled to the array, evening-heavy demand."""
    rng = np.random.default_rng(seed)
    hours = (start_s + np.arange(steps) * step_s) % 86_400 / 3600 + 2  # CEST
    bell = np.clip(np.sin((hours - 6) / 15 * np.pi), 0, None) ** 1.5
    pv = bell * (demo_home.pv.peak_w if demo_home.pv else 0.0) * rng.uniform(0.6, 1.0, steps)
    household = rng.uniform(150, 900, steps) + 1200 * np.exp(-0.5 * ((hours - 19) / 1.5) ** 2)
    ev = np.where(rng.uniform(size=steps) < 0.3, 7400.0, 0.0) if demo_home.ev else np.zeros(steps)
    heat_pump = rng.uniform(300, 1500, steps) if demo_home.heat_pump else np.zeros(steps)
    return HomeProfiles(start_s, step_s, household, pv, ev, heat_pump)


def energy(import_wh: Sequence[float], export_wh: Sequence[float], household_wh: Sequence[float] | None = None
           ) -> SlotEnergy:
    """A slot record with the meter figures given and, unless given, household = import (no PV)."""
    imports, exports = np.asarray(import_wh, float), np.asarray(export_wh, float)
    household = np.asarray(household_wh, float) if household_wh is not None else imports.copy()
    zeros = np.zeros(len(imports))
    return SlotEnergy(imports, exports, pv_wh=np.maximum(household - imports + exports, 0), household_wh=household,
                      ev_wh=zeros, heat_pump_wh=zeros.copy(), battery_charge_wh=zeros.copy(),
                      battery_discharge_wh=zeros.copy())


def run(scenario: Scenario, starts: Sequence[int], energies: Mapping[str, SlotEnergy], *,
        mechanism: str | None = None, ledger_path: Path | None = None,
        solve_ms: Sequence[float] = ()) -> RunOutcome:
    """A run of the given homes' energies."""
    homes = {home_id: HomeOutcome(home_id, item, solve_ms=list(solve_ms), messages_sent=3 * len(starts),
                                  messages_received=2 * len(starts))
             for home_id, item in energies.items()}
    return RunOutcome(scenario, mechanism, list(starts), SLOT_S, homes, ledger_path=ledger_path, wall_s=1.5,
                      manager_messages_sent=5 * len(starts), manager_messages_received=4 * len(starts))


def _config_text(members: Sequence[str], state_dir: Path, mechanism: str) -> str:
    member_lines = "\n".join(f'[[member]]\nid = "{member}"' for member in members)
    return f"""
[community]
id = "demo"
state_directory = "{state_dir}"
[market]
mechanism = "{mechanism}"
bid_format = "orders"
slot_duration_s = {SLOT_S}
gate_closure_lead_s = 300
horizon_slots = 4
retail_price = 0.32
feed_in_price = 0.08
meter_deadline_s = 600
tie_break_seed = 7
{member_lines}
"""


#: (side, Wh, limit µ¤/kWh) per home and slot index.
Orders = Mapping[tuple[str, int], Sequence[tuple[Side, int, int]]]


def build_ledger(state_dir: Path, members: Sequence[str], starts: Sequence[int],
                 meters: Mapping[str, tuple[Sequence[int], Sequence[int]]], orders: Orders, *,
                 mechanism: str = "uniform_auction", missing: frozenset[tuple[str, int]] = frozenset(),
                 late: frozenset[tuple[str, int]] = frozenset()) -> Path:
    """Run the real manager over ``starts``: orders before each gate, meter reports after each slot.

    ``missing`` (home, slot index) readings never arrive (settled provisionally); ``late`` ones arrive
    after the slot was settled provisionally (a SETTLEMENT_CORRECTION). Returns the database path.
    """
    config = parse_community_config(_config_text(members, state_dir, mechanism))
    state = CommunityState(config.community.database_path)
    try:
        manager = CommunityManager(config, state)
        manager.start(starts[0] - 1000)

        def report(home_id: str, index: int, now_s: float) -> None:
            imports, exports = meters[home_id]
            raw = encode(MeterReport(slot_start=_utc(starts[index]), duration_s=SLOT_S,
                                     import_wh=int(imports[index]), export_wh=int(exports[index])),
                         sender=home_id, sent_at=_utc(now_s))
            manager.handle(TOPICS.home(home_id, HomeTopic.METER), raw, now_s)

        def report_slot(index: int, now_s: float) -> None:
            for home_id in members:
                if (home_id, index) not in missing and (home_id, index) not in late:
                    report(home_id, index, now_s)
            manager.tick(now_s)

        for index, slot_start_s in enumerate(starts):
            now_s = slot_start_s - 400
            for home_id in members:
                bid_orders = orders.get((home_id, index), ())
                if bid_orders:
                    bid = SlotBid(slot_start=_utc(slot_start_s), duration_s=SLOT_S, orders=[
                        Order(order_id=uuid.uuid4(), side=side, energy_wh=wh, limit_price_micro=price)
                        for side, wh, price in bid_orders])
                    raw = encode(OrderSubmission(sequence=int(now_s * 1000) + index, slots=[bid]),
                                 sender=home_id, sent_at=_utc(now_s))
                    manager.handle(TOPICS.home(home_id, HomeTopic.ORDERS), raw, now_s)
            manager.tick(slot_start_s - 300)
            if index:
                report_slot(index - 1, slot_start_s + 5)
        last_end_s = starts[-1] + SLOT_S
        report_slot(len(starts) - 1, last_end_s + 5)
        manager.tick(last_end_s + 601)  # the deadline: what is still missing settles provisionally
        for home_id, index in sorted(late):
            report(home_id, index, last_end_s + 700)
        manager.tick(last_end_s + 701)
    finally:
        state.close()
    return config.community.database_path


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
