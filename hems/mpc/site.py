"""Typed site and device parameters of one home, as the MPC sees them.

Everything here is static configuration: it fixes the *shape* of the optimisation problem
(which devices exist, their limits and efficiencies). Values that change from one solve to the
next (forecasts, prices, measured state) live in :class:`hems.mpc.inputs.PlanInputs`.

Units: power W, energy Wh, price currency/kWh, temperature degC, time s. State of charge is a
fraction of ``capacity_wh`` in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class SiteConfigError(ValueError):
    """A site parameter is missing, unknown or out of range; the message names the key."""


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise SiteConfigError(f"{key}: {message}")


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class BatteryConfig:
    """A stationary battery behind the home's meter (AC-coupled powers)."""

    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min: float = 0.05
    soc_max: float = 0.95
    soc_initial: float = 0.5
    soc_final_min: float = 0.0
    backup_reserve_soc: float = 0.0
    degradation_cost_per_kwh: float = 0.02
    terminal_value_per_kwh: float = 0.0
    # Linear taper of the charge power near full (CV phase): above ``charge_taper_start_soc``
    # the charge power limit falls linearly to ``charge_w_at_full`` at SoC 1.0. None: no taper.
    charge_taper_start_soc: float | None = None
    charge_w_at_full: float = 0.0

    def validate(self, prefix: str = "battery") -> None:
        """Raise :class:`SiteConfigError` on any out-of-range value."""
        for name in ("capacity_wh", "max_charge_w", "max_discharge_w"):
            _check(_finite(getattr(self, name)) and getattr(self, name) > 0, f"{prefix}.{name}", "must be > 0")
        for name in ("charge_efficiency", "discharge_efficiency"):
            value = getattr(self, name)
            _check(_finite(value) and 0.5 <= value <= 1.0, f"{prefix}.{name}", "must be in [0.5, 1]")
        for name in ("soc_min", "soc_max", "soc_initial", "soc_final_min", "backup_reserve_soc"):
            value = getattr(self, name)
            _check(_finite(value) and 0.0 <= value <= 1.0, f"{prefix}.{name}", "must be a fraction in [0, 1]")
        _check(self.soc_min < self.soc_max, f"{prefix}.soc_max", "must be greater than soc_min")
        _check(_finite(self.degradation_cost_per_kwh) and self.degradation_cost_per_kwh >= 0,
               f"{prefix}.degradation_cost_per_kwh", "must be >= 0")
        _check(_finite(self.terminal_value_per_kwh), f"{prefix}.terminal_value_per_kwh", "must be finite")
        if self.charge_taper_start_soc is not None:
            _check(_finite(self.charge_taper_start_soc) and 0.0 < self.charge_taper_start_soc < 1.0,
                   f"{prefix}.charge_taper_start_soc", "must be in (0, 1)")
            _check(_finite(self.charge_w_at_full) and 0 <= self.charge_w_at_full <= self.max_charge_w,
                   f"{prefix}.charge_w_at_full", "must be in [0, max_charge_w]")


@dataclass(frozen=True)
class GridConfig:
    """The grid connection: fuse and export limit, optional demand charge."""

    import_limit_w: float
    export_limit_w: float
    # Currency per kW of the highest import over the billing period; 0 leaves it out of the model.
    demand_charge_per_kw: float = 0.0

    def validate(self, prefix: str = "grid") -> None:
        """Raise :class:`SiteConfigError` on any out-of-range value."""
        _check(_finite(self.import_limit_w) and self.import_limit_w > 0, f"{prefix}.import_limit_w", "must be > 0")
        _check(_finite(self.export_limit_w) and self.export_limit_w >= 0, f"{prefix}.export_limit_w", "must be >= 0")
        _check(_finite(self.demand_charge_per_kw) and self.demand_charge_per_kw >= 0,
               f"{prefix}.demand_charge_per_kw", "must be >= 0")


@dataclass(frozen=True)
class PvArrayConfig:
    """One PV array, for the clear-sky forecast."""

    peak_power_w: float
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0  # pvlib convention: 180 = south
    temperature_coefficient_per_k: float = -0.004
    inverter_limit_w: float | None = None
    system_efficiency: float = 0.9

    def validate(self, prefix: str) -> None:
        """Raise :class:`SiteConfigError` on any out-of-range value."""
        _check(_finite(self.peak_power_w) and self.peak_power_w > 0, f"{prefix}.peak_power_w", "must be > 0")
        _check(_finite(self.tilt_deg) and 0 <= self.tilt_deg <= 90, f"{prefix}.tilt_deg", "must be in [0, 90]")
        _check(_finite(self.azimuth_deg) and 0 <= self.azimuth_deg < 360, f"{prefix}.azimuth_deg", "must be in [0, 360)")
        _check(_finite(self.system_efficiency) and 0 < self.system_efficiency <= 1,
               f"{prefix}.system_efficiency", "must be in (0, 1]")


@dataclass(frozen=True)
class PvConfig:
    """PV generation; ``curtailable`` means the inverter accepts an active-power limit."""

    curtailable: bool = True
    arrays: tuple[PvArrayConfig, ...] = ()

    def validate(self, prefix: str = "pv") -> None:
        """Raise :class:`SiteConfigError` on any out-of-range value."""
        _check(isinstance(self.curtailable, bool), f"{prefix}.curtailable", "must be true or false")
        for index, array in enumerate(self.arrays):
            array.validate(f"{prefix}.arrays[{index}]")


@dataclass(frozen=True)
class EvConfig:
    """An EV charger. The session fields are defaults for ``hems plan``; the daemon passes
    the live session in :class:`hems.mpc.inputs.EvSession`."""

    max_charge_w: float
    min_charge_w: float = 0.0
    charge_efficiency: float = 0.92
    capacity_wh: float = 60_000.0
    shortfall_penalty_per_kwh: float = 1.0
    arrival: str | None = None  # ISO 8601, for hems plan only
    departure: str | None = None
    energy_needed_wh: float = 0.0

    def validate(self, prefix: str = "ev") -> None:
        """Raise :class:`SiteConfigError` on any out-of-range value."""
        _check(_finite(self.max_charge_w) and self.max_charge_w > 0, f"{prefix}.max_charge_w", "must be > 0")
        _check(_finite(self.min_charge_w) and 0 <= self.min_charge_w <= self.max_charge_w,
               f"{prefix}.min_charge_w", "must be in [0, max_charge_w]")
        _check(_finite(self.charge_efficiency) and 0.5 <= self.charge_efficiency <= 1,
               f"{prefix}.charge_efficiency", "must be in [0.5, 1]")
        _check(_finite(self.capacity_wh) and self.capacity_wh > 0, f"{prefix}.capacity_wh", "must be > 0")
        _check(_finite(self.energy_needed_wh) and self.energy_needed_wh >= 0, f"{prefix}.energy_needed_wh", "must be >= 0")
        _check(_finite(self.shortfall_penalty_per_kwh) and self.shortfall_penalty_per_kwh > 0,
               f"{prefix}.shortfall_penalty_per_kwh", "must be > 0")


@dataclass(frozen=True)
class HeatPumpConfig:
    """A heat pump heating a first-order thermal store: the house (``kind="space"``, ambient =
    outdoor air) or a hot-water tank (``kind="tank"``, ambient = ``tank_ambient_c``)."""

    max_electric_w: float
    kind: str = "space"
    cop_at_7c: float = 3.5
    cop_slope_per_k: float = 0.08  # COP change per K of outdoor temperature (linear model)
    cop_min: float = 1.5
    thermal_capacity_wh_per_k: float = 10_000.0
    heat_loss_w_per_k: float = 200.0
    comfort_min_c: float = 20.0
    comfort_max_c: float = 23.0
    initial_temp_c: float = 21.0
    tank_ambient_c: float = 18.0
    outdoor_temp_c: float = 5.0  # default forecast for hems plan when the CSV has no column
    discomfort_penalty_per_kh: float = 0.5  # currency per K*h outside the comfort band

    def validate(self, prefix: str = "heat_pump") -> None:
        """Raise :class:`SiteConfigError` on any out-of-range value."""
        _check(self.kind in ("space", "tank"), f"{prefix}.kind", "must be 'space' or 'tank'")
        for name in ("max_electric_w", "cop_at_7c", "cop_min", "thermal_capacity_wh_per_k",
                     "heat_loss_w_per_k", "discomfort_penalty_per_kh"):
            _check(_finite(getattr(self, name)) and getattr(self, name) > 0, f"{prefix}.{name}", "must be > 0")
        for name in ("cop_slope_per_k", "comfort_min_c", "comfort_max_c", "initial_temp_c",
                     "tank_ambient_c", "outdoor_temp_c"):
            _check(_finite(getattr(self, name)), f"{prefix}.{name}", "must be finite")
        _check(self.comfort_min_c <= self.comfort_max_c, f"{prefix}.comfort_max_c", "must be >= comfort_min_c")


@dataclass(frozen=True)
class MpcSettings:
    """Solver-side settings: horizon, step, penalties and the time budget."""

    step_s: int = 900
    horizon_steps: int = 96
    # Limits and reserve goals that cannot be met; raised automatically to twice the highest
    # price of the horizon so that a slack never pays.
    slack_penalty_per_kwh: float = 2.0
    # Currency per kW^2 h on device powers: models current-dependent losses and keeps OSQP off
    # pure LPs (below ~0.01 OSQP needs several times more iterations).
    regularisation: float = 0.01
    throughput_tie_break_per_kwh: float = 1e-3  # strict preference for no charge/discharge overlap
    time_budget_s: float = 1.0
    osqp_eps: float = 1e-3  # OSQP eps_abs = eps_rel (kW / kWh / currency): docs/mpc.md
    market_enabled: bool = False

    def validate(self, prefix: str = "mpc") -> None:
        """Raise :class:`SiteConfigError` on any out-of-range value."""
        _check(isinstance(self.step_s, int) and 300 <= self.step_s <= 3600, f"{prefix}.step_s",
               "must be an integer number of seconds in [300, 3600]")
        _check(isinstance(self.horizon_steps, int) and 2 <= self.horizon_steps <= 2000,
               f"{prefix}.horizon_steps", "must be an integer in [2, 2000]")
        for name in ("slack_penalty_per_kwh", "time_budget_s", "osqp_eps"):
            _check(_finite(getattr(self, name)) and getattr(self, name) > 0, f"{prefix}.{name}", "must be > 0")
        for name in ("regularisation", "throughput_tie_break_per_kwh"):
            _check(_finite(getattr(self, name)) and getattr(self, name) >= 0, f"{prefix}.{name}", "must be >= 0")


@dataclass(frozen=True)
class SiteConfig:
    """Everything that fixes the shape of one home's MPC problem."""

    battery: BatteryConfig
    grid: GridConfig
    pv: PvConfig = field(default_factory=PvConfig)
    ev: EvConfig | None = None
    heat_pump: HeatPumpConfig | None = None
    mpc: MpcSettings = field(default_factory=MpcSettings)
    latitude_deg: float = 51.0
    longitude_deg: float = 10.0
    timezone: str = "Europe/Berlin"

    def __post_init__(self) -> None:
        self.battery.validate()
        self.grid.validate()
        self.pv.validate()
        if self.ev is not None:
            self.ev.validate()
        if self.heat_pump is not None:
            self.heat_pump.validate()
        self.mpc.validate()
        _check(_finite(self.latitude_deg) and -90 <= self.latitude_deg <= 90, "latitude_deg", "must be in [-90, 90]")
        _check(_finite(self.longitude_deg) and -180 <= self.longitude_deg <= 180, "longitude_deg",
               "must be in [-180, 180]")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteConfig:
        """Build from parsed JSON/TOML; unknown keys and bad values raise, naming the key."""
        _check(isinstance(data, dict), "<site>", "must be an object")
        sections = {
            "battery": BatteryConfig, "grid": GridConfig, "ev": EvConfig,
            "heat_pump": HeatPumpConfig, "mpc": MpcSettings,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in sections:
                kwargs[key] = None if value is None else _build(sections[key], value, key)
            elif key == "pv":
                _check(isinstance(value, dict), "pv", "must be an object")
                pv_fields = dict(value)
                arrays = tuple(
                    _build(PvArrayConfig, item, f"pv.arrays[{index}]")
                    for index, item in enumerate(pv_fields.pop("arrays", []))
                )
                kwargs["pv"] = _build(PvConfig, {**pv_fields, "arrays": arrays}, "pv")
            elif key in ("latitude_deg", "longitude_deg", "timezone"):
                kwargs[key] = value
            else:
                raise SiteConfigError(f"{key}: unknown key")
        for required in ("battery", "grid"):
            _check(kwargs.get(required) is not None, required, "is required")
        return cls(**kwargs)


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate a config dataclass from a dict, naming unknown or missing keys."""
    _check(isinstance(data, dict), prefix, "must be an object")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        _check(key in names, f"{prefix}.{key}", "unknown key")
    try:
        return cls(**data)
    except TypeError as error:  # a missing required field
        raise SiteConfigError(f"{prefix}: {error}") from None
