"""The physical model of one emulated site: PV, household load, battery, EV, heat pump, grid.

Every emulator of a site reads and writes the same :class:`SitePlant`, so a battery
command written to the inverter shows on the grid meter. The equations (all powers
in W, energies in Wh, ``dt_h`` the step in hours):

- ``pv = min(pv_available(t), pv_cap)`` with ``pv_cap = min(peak * limit_pct / 100, limit_w)``
  while the limit is enabled (curtailment);
- ``surplus = pv - load - ev - heat_pump``; the autonomous battery target is
  ``surplus`` (self-consumption: charge from surplus, discharge to cover demand);
  a valid remote window clamps the target into ``[min_charge_w, max_charge_w]``;
- the battery power is then limited by ``max_charge_w`` / ``max_discharge_w`` and by
  the energy left before ``soc_max_pct`` / ``soc_min_pct`` in this step;
- ``soc += battery * eta_charge * dt_h / capacity * 100`` when charging,
  ``soc -= -battery / eta_discharge * dt_h / capacity * 100`` when discharging;
- ``grid = load + battery + ev + heat_pump - pv`` (import positive), so
  ``import - export == load + charge - discharge + ev + heat_pump - pv`` per step;
- counters accumulate ``max(x, 0) * dt_h`` per direction.

Powers are evaluated at the start of each step and held over it (explicit Euler);
steps are at most ``max_step_s`` long and split at a remote window's expiry, so the
result hardly depends on how often the plant is advanced.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.devices.battery_control import DEFAULT_SETPOINT_TIMEOUT_S, PowerWindow
from drivers.emulators.profiles import clear_sky_fraction, household_load_w, time_of_day_h
from drivers.maps.roles import Role

#: A profile maps UTC seconds to watts.
Profile = Callable[[float], float]


@dataclass
class PvArray:
    """PV generator and its inverter's active-power limit."""

    peak_w: float = 6000.0
    sunrise_h: float = 6.0
    sunset_h: float = 20.0
    #: Overrides the clear-sky bell: UTC seconds -> available W.
    profile: Profile | None = None
    #: Active-power limit in percent of ``peak_w`` and/or in W (None = no limit).
    limit_pct: float | None = None
    limit_w: float | None = None
    limit_enabled: bool = True
    #: DC/AC: the DC power a role ``pv_dc_power_w`` shows.
    inverter_efficiency: float = 0.97

    def available_w(self, time_s: float, utc_offset_s: float) -> float:
        """What the array could deliver at ``time_s`` without curtailment."""
        if self.profile is not None:
            return max(0.0, float(self.profile(time_s)))
        hour = time_of_day_h(time_s, utc_offset_s)
        return self.peak_w * clear_sky_fraction(hour, self.sunrise_h, self.sunset_h)

    def cap_w(self) -> float:
        """The output cap the inverter's power limit imposes."""
        if not self.limit_enabled:
            return math.inf
        cap = math.inf
        if self.limit_pct is not None:
            cap = min(cap, self.peak_w * max(0.0, self.limit_pct) / 100.0)
        if self.limit_w is not None:
            cap = min(cap, max(0.0, self.limit_w))
        return cap


@dataclass
class Battery:
    """A battery with AC-side power limits, efficiencies and SoC limits."""

    capacity_wh: float = 10_000.0
    soc_pct: float = 50.0
    max_charge_w: float = 5000.0
    max_discharge_w: float = 5000.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min_pct: float = 5.0
    soc_max_pct: float = 100.0
    voltage_v: float = 51.2
    temperature_c: float = 25.0
    soh_pct: float = 100.0

    def limit_w(self, target_charge_w: float, dt_s: float) -> float:
        """``target_charge_w`` limited by power ratings and the energy left in the SoC range."""
        charge_w = min(max(target_charge_w, -self.max_discharge_w), self.max_charge_w)
        dt_h = dt_s / 3600.0
        if charge_w > 0:
            room_wh = max(0.0, (self.soc_max_pct - self.soc_pct) / 100.0 * self.capacity_wh)
            if dt_h > 0:
                charge_w = min(charge_w, room_wh / (self.charge_efficiency * dt_h))
            elif room_wh <= 0:
                charge_w = 0.0
        elif charge_w < 0:
            stored_wh = max(0.0, (self.soc_pct - self.soc_min_pct) / 100.0 * self.capacity_wh)
            if dt_h > 0:
                charge_w = max(charge_w, -stored_wh * self.discharge_efficiency / dt_h)
            elif stored_wh <= 0:
                charge_w = 0.0
        return charge_w

    def integrate(self, charge_w: float, dt_s: float) -> None:
        """Move the SoC by ``charge_w`` (AC side) held for ``dt_s``."""
        dt_h = dt_s / 3600.0
        if charge_w >= 0:
            stored_wh = charge_w * self.charge_efficiency * dt_h
        else:
            stored_wh = charge_w / self.discharge_efficiency * dt_h
        before = self.soc_pct
        after = before + stored_wh / self.capacity_wh * 100.0
        # limit_w keeps the step inside the SoC range; this only absorbs float rounding.
        if stored_wh > 0 and before <= self.soc_max_pct:
            after = min(after, self.soc_max_pct)
        elif stored_wh < 0 and before >= self.soc_min_pct:
            after = max(after, self.soc_min_pct)
        self.soc_pct = min(max(after, 0.0), 100.0)


@dataclass
class ElectricVehicle:
    """An EV at a charger: draws ``demand_w`` (or what ``profile`` says: a charging session per
    its timetable) while connected, enabled and under the current limit."""

    connected: bool = False
    demand_w: float = 11_000.0
    #: UTC seconds -> W the car would draw now (then ``connected`` is ignored: 0 W means not charging).
    profile: Profile | None = None
    charging_enabled: bool = True
    current_limit_a: float | None = None
    phases: int = 3
    phase_voltage_v: float = 230.0

    def power_w(self, time_s: float) -> float:
        """Charging power at ``time_s``."""
        if self.profile is not None:
            power = max(0.0, float(self.profile(time_s)))
        elif self.connected:
            power = self.demand_w
        else:
            return 0.0
        if not self.charging_enabled:
            return 0.0
        if self.current_limit_a is not None:
            power = min(power, max(0.0, self.current_limit_a) * self.phases * self.phase_voltage_v)
        return power


@dataclass
class HeatPump:
    """A heat pump following a demand profile, capped by its power limit."""

    demand_w: float = 0.0
    profile: Profile | None = None
    power_limit_w: float | None = None
    sg_ready_state: int = 2
    flow_temperature_c: float = 35.0
    outdoor_temperature_c: float = 10.0

    def power_w(self, time_s: float) -> float:
        """Electrical power now."""
        power = float(self.profile(time_s)) if self.profile is not None else self.demand_w
        if self.power_limit_w is not None:
            power = min(power, max(0.0, self.power_limit_w))
        return max(0.0, power)


@dataclass(frozen=True, slots=True)
class PowerFlows:
    """Instantaneous powers of the site (W); ``grid_w`` > 0 imports, ``battery_charge_w`` > 0 charges."""

    pv_available_w: float = 0.0
    pv_w: float = 0.0
    load_w: float = 0.0
    battery_charge_w: float = 0.0
    ev_w: float = 0.0
    heat_pump_w: float = 0.0
    grid_w: float = 0.0


@dataclass
class EnergyCounters:
    """Energy totals (Wh floats) since the plant was built."""

    grid_import_wh: float = 0.0
    grid_export_wh: float = 0.0
    pv_wh: float = 0.0
    load_wh: float = 0.0
    battery_charge_wh: float = 0.0
    battery_discharge_wh: float = 0.0
    ev_wh: float = 0.0
    heat_pump_wh: float = 0.0


@dataclass(frozen=True, slots=True)
class RemoteWindow:
    """A remote battery command and when it lapses unless refreshed."""

    window: PowerWindow
    expires_at_s: float


@dataclass
class SitePlant:
    """One site's physics, advanced in simulated time; see the module docstring for the equations."""

    pv: PvArray = field(default_factory=PvArray)
    battery: Battery = field(default_factory=Battery)
    ev: ElectricVehicle = field(default_factory=ElectricVehicle)
    heat_pump: HeatPump = field(default_factory=HeatPump)
    #: Household demand: UTC seconds -> W (default: the daily shape in profiles).
    load_profile: Profile | None = None
    #: Time source in seconds (UTC); tests inject a :class:`~drivers.emulators.profiles.ManualClock`.
    clock: Callable[[], float] = time.time
    utc_offset_s: float = 0.0
    max_step_s: float = 60.0
    grid_voltage_v: float = 230.0
    grid_frequency_hz: float = 50.0
    #: Plant time (defaults to ``clock()`` at construction).
    time_s: float | None = None
    remote: RemoteWindow | None = None
    energy: EnergyCounters = field(default_factory=EnergyCounters)
    flows: PowerFlows = field(default_factory=PowerFlows)

    def __post_init__(self) -> None:
        if self.time_s is None:
            self.time_s = float(self.clock())
        self.flows = self._flows_at(self.time_s, 0.0)

    # -- inputs ------------------------------------------------------------------------------

    def load_w(self, time_s: float) -> float:
        """Household demand at ``time_s`` (without EV and heat pump)."""
        if self.load_profile is not None:
            return max(0.0, float(self.load_profile(time_s)))
        return household_load_w(time_of_day_h(time_s, self.utc_offset_s))

    def set_battery_window(self, window: PowerWindow | None, timeout_s: float | None = None) -> None:
        """Command the battery into ``window`` until ``timeout_s`` from now (None: autonomous).

        The command lapses unless it is set again in time, as a real inverter's
        remote-control timeout does; ``timeout_s`` <= 0 or None means the default 60 s.
        """
        self.advance(self.clock())
        if window is None:
            self.remote = None
        else:
            timeout = timeout_s if timeout_s and timeout_s > 0 else DEFAULT_SETPOINT_TIMEOUT_S
            self.remote = RemoteWindow(window, self._now() + float(timeout))
        self.flows = self._flows_at(self._now(), 0.0)

    def remote_active(self) -> bool:
        """True while a remote battery window is in force."""
        return self.remote is not None and self._now() < self.remote.expires_at_s

    def refresh(self) -> None:
        """Recompute the instantaneous flows after a parameter change (limits, EV, ...)."""
        self.advance(self.clock())
        self.flows = self._flows_at(self._now(), 0.0)

    # -- integration -------------------------------------------------------------------------

    def advance(self, to_time_s: float | None = None) -> PowerFlows:
        """Integrate up to ``to_time_s`` (default: the clock); earlier times are ignored."""
        target = float(self.clock() if to_time_s is None else to_time_s)
        now = self._now()
        while now < target:
            end = min(target, now + self.max_step_s)
            if self.remote is not None and now < self.remote.expires_at_s < end:
                end = self.remote.expires_at_s  # the command lapses exactly here
            self._step(now, end - now)
            now = end
            self.time_s = now
            if self.remote is not None and now >= self.remote.expires_at_s:
                self.remote = None
        self.flows = self._flows_at(now, 0.0)
        return self.flows

    def _now(self) -> float:
        assert self.time_s is not None
        return self.time_s

    def _flows_at(self, time_s: float, dt_s: float) -> PowerFlows:
        pv_available = self.pv.available_w(time_s, self.utc_offset_s)
        pv = min(pv_available, self.pv.cap_w())
        load = self.load_w(time_s)
        ev = self.ev.power_w(time_s)
        heat_pump = self.heat_pump.power_w(time_s)
        target = pv - load - ev - heat_pump  # self-consumption
        if self.remote is not None and time_s < self.remote.expires_at_s:
            target = self.remote.window.clamp(target)
        battery = self.battery.limit_w(target, dt_s)
        grid = load + battery + ev + heat_pump - pv
        return PowerFlows(pv_available, pv, load, battery, ev, heat_pump, grid)

    def _step(self, start_s: float, dt_s: float) -> None:
        flows = self._flows_at(start_s, dt_s)
        dt_h = dt_s / 3600.0
        energy = self.energy
        energy.grid_import_wh += max(flows.grid_w, 0.0) * dt_h
        energy.grid_export_wh += max(-flows.grid_w, 0.0) * dt_h
        energy.pv_wh += flows.pv_w * dt_h
        energy.load_wh += flows.load_w * dt_h
        energy.battery_charge_wh += max(flows.battery_charge_w, 0.0) * dt_h
        energy.battery_discharge_wh += max(-flows.battery_charge_w, 0.0) * dt_h
        energy.ev_wh += flows.ev_w * dt_h
        energy.heat_pump_wh += flows.heat_pump_w * dt_h
        self.battery.integrate(flows.battery_charge_w, dt_s)

    # -- what the registers show ---------------------------------------------------------------

    def role_values(self) -> dict[Role, float]:
        """The value of every role the plant knows, in the role's unit and sign convention."""
        flows, energy, battery = self.flows, self.energy, self.battery
        phase_w = flows.grid_w / 3.0
        phase_a = abs(phase_w) / self.grid_voltage_v
        values = {
            Role.GRID_POWER_W: flows.grid_w,
            Role.GRID_POWER_L1_W: phase_w, Role.GRID_POWER_L2_W: phase_w, Role.GRID_POWER_L3_W: phase_w,
            Role.GRID_IMPORT_ENERGY_WH: energy.grid_import_wh,
            Role.GRID_EXPORT_ENERGY_WH: energy.grid_export_wh,
            Role.GRID_VOLTAGE_L1_V: self.grid_voltage_v, Role.GRID_VOLTAGE_L2_V: self.grid_voltage_v,
            Role.GRID_VOLTAGE_L3_V: self.grid_voltage_v,
            Role.GRID_CURRENT_L1_A: phase_a, Role.GRID_CURRENT_L2_A: phase_a, Role.GRID_CURRENT_L3_A: phase_a,
            Role.GRID_FREQUENCY_HZ: self.grid_frequency_hz,
            Role.PV_POWER_W: flows.pv_w,
            Role.PV_DC_POWER_W: flows.pv_w / self.pv.inverter_efficiency,
            Role.PV_ENERGY_WH: energy.pv_wh,
            Role.PV_RATED_POWER_W: self.pv.peak_w,
            Role.BATTERY_SOC_PCT: battery.soc_pct,
            Role.BATTERY_SOH_PCT: battery.soh_pct,
            Role.BATTERY_POWER_W: flows.battery_charge_w,
            Role.BATTERY_CHARGE_POWER_W: max(0.0, flows.battery_charge_w),
            Role.BATTERY_DISCHARGE_POWER_W: max(0.0, -flows.battery_charge_w),
            Role.BATTERY_CAPACITY_WH: battery.capacity_wh,
            Role.BATTERY_MAX_CHARGE_W: battery.max_charge_w,
            Role.BATTERY_MAX_DISCHARGE_W: battery.max_discharge_w,
            Role.BATTERY_CHARGE_ENERGY_WH: energy.battery_charge_wh,
            Role.BATTERY_DISCHARGE_ENERGY_WH: energy.battery_discharge_wh,
            Role.BATTERY_TEMPERATURE_C: battery.temperature_c,
            Role.BATTERY_VOLTAGE_V: battery.voltage_v,
            Role.EV_POWER_W: flows.ev_w,
            Role.EV_ENERGY_WH: energy.ev_wh,
            Role.EV_CONNECTED: 1.0 if self.ev.connected else 0.0,
            Role.HEAT_PUMP_POWER_W: flows.heat_pump_w,
            Role.HEAT_PUMP_ENERGY_WH: energy.heat_pump_wh,
            Role.HEAT_PUMP_FLOW_TEMPERATURE_C: self.heat_pump.flow_temperature_c,
            Role.HEAT_PUMP_OUTDOOR_TEMPERATURE_C: self.heat_pump.outdoor_temperature_c,
        }
        return values

    def control_values(self) -> dict[Role, float]:
        """Current values of the controls the plant takes from writes (what a fresh device shows)."""
        values = {
            Role.PV_POWER_LIMIT_PCT: 100.0 if self.pv.limit_pct is None else self.pv.limit_pct,
            Role.PV_POWER_LIMIT_W: self.pv.peak_w if self.pv.limit_w is None else self.pv.limit_w,
            Role.PV_POWER_LIMIT_ENABLED: 1.0 if self.pv.limit_enabled else 0.0,
            Role.EV_CHARGING_ENABLED: 1.0 if self.ev.charging_enabled else 0.0,
            Role.EV_CURRENT_LIMIT_A: (self.ev.demand_w / (self.ev.phases * self.ev.phase_voltage_v)
                                      if self.ev.current_limit_a is None else self.ev.current_limit_a),
            Role.HEAT_PUMP_SG_READY_STATE: float(self.heat_pump.sg_ready_state),
        }
        if self.heat_pump.power_limit_w is not None:
            values[Role.HEAT_PUMP_POWER_LIMIT_W] = self.heat_pump.power_limit_w
        return values

    def apply_role(self, role: Role, value: float | None) -> bool:
        """Take a written control or nameplate value; returns False for roles the plant does not accept."""
        if value is None or not math.isfinite(float(value)):
            return False
        value = float(value)
        setters: dict[Role, Callable[[float], None]] = {
            Role.PV_POWER_LIMIT_PCT: lambda v: setattr(self.pv, "limit_pct", v),
            Role.PV_POWER_LIMIT_W: lambda v: setattr(self.pv, "limit_w", v),
            Role.PV_POWER_LIMIT_ENABLED: lambda v: setattr(self.pv, "limit_enabled", bool(v)),
            Role.PV_RATED_POWER_W: lambda v: setattr(self.pv, "peak_w", v),
            Role.BATTERY_MAX_CHARGE_W: lambda v: setattr(self.battery, "max_charge_w", v),
            Role.BATTERY_MAX_DISCHARGE_W: lambda v: setattr(self.battery, "max_discharge_w", v),
            Role.BATTERY_CAPACITY_WH: lambda v: setattr(self.battery, "capacity_wh", max(v, 1.0)),
            Role.BATTERY_VOLTAGE_V: lambda v: setattr(self.battery, "voltage_v", v),
            Role.EV_CURRENT_LIMIT_A: lambda v: setattr(self.ev, "current_limit_a", v),
            Role.EV_CHARGING_ENABLED: lambda v: setattr(self.ev, "charging_enabled", bool(v)),
            Role.EV_CONNECTED: lambda v: setattr(self.ev, "connected", bool(v)),
            Role.HEAT_PUMP_POWER_LIMIT_W: lambda v: setattr(self.heat_pump, "power_limit_w", v),
            Role.HEAT_PUMP_SG_READY_STATE: lambda v: setattr(self.heat_pump, "sg_ready_state", int(v)),
        }
        setter = setters.get(role)
        if setter is None:
            return False
        self.advance(self.clock())  # integrate the past under the old parameters
        setter(value)
        self.flows = self._flows_at(self._now(), 0.0)
        return True


#: Roles whose register the plant overwrites on every read (measurements and nameplate values).
SERVED_ROLES = frozenset(SitePlant().role_values())
#: Counters: a map's ``initial`` is the meter reading the plant's counter adds to.
ENERGY_ROLES = frozenset(role for role in Role if role.value.endswith("_energy_wh"))
#: Roles the plant takes from writes (and from the map's initial values at start).
SETTABLE_ROLES = frozenset({
    Role.PV_POWER_LIMIT_PCT, Role.PV_POWER_LIMIT_W, Role.PV_POWER_LIMIT_ENABLED, Role.PV_RATED_POWER_W,
    Role.BATTERY_MAX_CHARGE_W, Role.BATTERY_MAX_DISCHARGE_W, Role.BATTERY_CAPACITY_WH, Role.BATTERY_VOLTAGE_V,
    Role.EV_CURRENT_LIMIT_A, Role.EV_CHARGING_ENABLED, Role.EV_CONNECTED, Role.HEAT_PUMP_POWER_LIMIT_W,
    Role.HEAT_PUMP_SG_READY_STATE,
})
