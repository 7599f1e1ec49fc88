"""The home daemon's configuration (``hems run``, ``hems read``, ``hems check-config``).

One TOML file describes a whole home: who it is and where (``[home]``), its devices
(``[[device]]``, ``[p1]``), the MPC's view of the site (``[battery]``, ``[grid]``, ``[pv]``,
``[ev]``, ``[heat_pump]``, ``[mpc]``), the tariff, and how the daemon runs (``[loops]``,
``[control]``, ``[forecast]``, ``[store]``, ``[metrics]``, ``[logging]``, ``[home_assistant]``) and
the community market (``[market]``). Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, InstanceOf, PrivateAttr, ValidationInfo, field_validator, model_validator

from hems.config.base import Section
from hems.config.devices import DeviceConfig, P1Config, RtuConfig
from hems.config.errors import (
    config_problem,
    invalid,
    out_of_range,
    read_config_file,
    show,
    validate_toml,
)
from hems.config.market import MarketSection
from hems.config.operations import (
    ControlConfig,
    ForecastConfig,
    HomeAssistantConfig,
    LoggingConfig,
    LoopsConfig,
    MetricsConfig,
    StoreConfig,
)
from hems.config.site_sections import build_site_section
from hems.config.tariff import Tariff
from hems.mpc.site import (
    BatteryConfig,
    EvConfig,
    GridConfig,
    HeatPumpConfig,
    MpcSettings,
    PvConfig,
    SiteConfig,
    SiteConfigError,
)

if TYPE_CHECKING:
    from hems.forecast.load import LoadForecastConfig
    from hems.forecast.pv import PvForecastConfig

__all__ = ["DeviceConfig", "HomeConfig", "HomeSection", "P1Config", "RtuConfig", "load_config", "parse_config"]


class HomeSection(Section):
    """``[home]``: identity, storage and location of the home."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: Where the SQLite history lives; a relative path is relative to the working directory.
    state_directory: Path = Path("/var/lib/hems")
    latitude_deg: float = Field(default=51.0, ge=-90, le=90)
    longitude_deg: float = Field(default=10.0, ge=-180, le=180)
    #: IANA time zone of the home: local days for the tariff, the load profile and the plan.
    timezone: str = "Europe/Berlin"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise config_problem(("", invalid(value, 'an IANA time zone name such as "Europe/Berlin"'))) from None
        return value


class HomeConfig(Section):
    """The whole file. ``site`` is the MPC's :class:`SiteConfig`, built from the site sections."""

    home: HomeSection
    device: list[DeviceConfig] = []
    p1: P1Config | None = None
    battery: InstanceOf[BatteryConfig]
    grid: InstanceOf[GridConfig]
    pv: InstanceOf[PvConfig] = PvConfig()
    ev: InstanceOf[EvConfig] | None = None
    heat_pump: InstanceOf[HeatPumpConfig] | None = None
    mpc: InstanceOf[MpcSettings] = MpcSettings()
    tariff: Tariff = Tariff()
    loops: LoopsConfig = LoopsConfig()
    control: ControlConfig = ControlConfig()
    forecast: ForecastConfig = ForecastConfig()
    store: StoreConfig = StoreConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    home_assistant: HomeAssistantConfig = HomeAssistantConfig()
    market: MarketSection = MarketSection()
    _site: SiteConfig = PrivateAttr()

    @field_validator("battery", "grid", "pv", "ev", "heat_pump", "mpc", mode="before")
    @classmethod
    def _site_section(cls, value: Any, info: ValidationInfo) -> Any:
        return build_site_section(info.field_name, value)

    @model_validator(mode="after")
    def _consistent(self) -> HomeConfig:
        problems = _device_problems(self.device, self.p1) + _timing_problems(self) + _market_problems(self)
        if problems:
            raise config_problem(*problems)
        # Trading means committed trades: the MPC must take them into account.
        mpc = dataclasses.replace(self.mpc, market_enabled=True) if self.market.enabled else self.mpc
        try:
            self._site = SiteConfig(
                battery=self.battery, grid=self.grid, pv=self.pv, ev=self.ev, heat_pump=self.heat_pump,
                mpc=mpc, latitude_deg=self.home.latitude_deg, longitude_deg=self.home.longitude_deg,
                timezone=self.home.timezone)
        except SiteConfigError as error:  # the sections passed one by one; this is a safety net
            raise config_problem(("", f": {error}")) from None
        return self

    @property
    def site(self) -> SiteConfig:
        """The MPC's site parameters (battery, grid, pv, ev, heat pump, mpc, location, zone)."""
        return self._site

    @property
    def reading_max_age_s(self) -> float:
        """How old a reading may be and still drive a setpoint (``control.stale_after_s``, by
        default two telemetry periods)."""
        configured = self.control.stale_after_s
        return 2 * self.loops.telemetry_period_s if configured is None else configured

    def load_forecast_config(self) -> LoadForecastConfig:
        """The load forecaster's settings from ``[forecast]`` and ``[home] timezone``."""
        from hems.forecast.load import LoadForecastConfig

        return LoadForecastConfig(annual_kwh=self.forecast.annual_load_kwh, timezone=self.home.timezone,
                                  history_days=self.forecast.load_history_days,
                                  holiday_country=self.forecast.holiday_country or None,
                                  holiday_subdivision=self.forecast.holiday_subdivision)

    def pv_forecast_config(self) -> PvForecastConfig:
        """The PV forecaster's settings from ``[home]``, ``[[pv.arrays]]`` and ``[forecast]``."""
        from hems.forecast.pv import PvForecastConfig

        return PvForecastConfig(latitude_deg=self.home.latitude_deg, longitude_deg=self.home.longitude_deg,
                                arrays=self.pv.arrays, initial_scale=self.forecast.pv_initial_scale)

    def normalised(self) -> dict[str, Any]:
        """The configuration with every default filled in, as JSON-compatible data."""
        return self.model_dump(mode="json")


def _device_problems(devices: list[DeviceConfig], p1: P1Config | None) -> list[tuple[str, str]]:
    """Names unique, one line setting per RS-485 port, one device per unit id, P1 on its own port."""
    problems: list[tuple[str, str]] = []
    first_name: dict[str, int] = {}
    first_on_port: dict[str, int] = {}
    first_at_unit: dict[tuple[str, int], int] = {}
    for index, device in enumerate(devices):
        key = f"device[{index}]"
        if device.name in first_name:
            problems.append((f"{key}.name", invalid(
                device.name, f"a name not used by device[{first_name[device.name]}]: device names must be unique")))
        first_name.setdefault(device.name, index)
        if device.rtu is not None:
            other = first_on_port.setdefault(device.rtu.port, index)
            # One port is one bus: pyserial opens it once, with one set of line settings.
            if devices[other].rtu != device.rtu:
                problems.append((f"{key}.rtu", f": {device.rtu.describe()} differs from device[{other}] "
                                 f"({devices[other].rtu.describe()}): devices on one port share its settings"))
        if device.unit_id is not None:
            place = (device.tcp or device.rtu.port, device.unit_id)  # type: ignore[union-attr]
            other = first_at_unit.setdefault(place, index)
            if other != index:
                problems.append((f"{key}.unit_id", invalid(
                    device.unit_id, f"a unit id not used by device[{other}] on the same endpoint")))
    if p1 is not None and p1.port in first_on_port:
        problems.append(("p1.port", invalid(
            p1.port, f"a serial port of its own (device[{first_on_port[p1.port]}] uses it for RS-485)")))
    return problems


def _market_problems(config: HomeConfig) -> list[tuple[str, str]]:
    """A home cannot be its own partner or give to itself."""
    market, home = config.market, config.home.id
    problems = [(f"market.donation[{index}].recipients", f": {home!r} is this home; a home cannot give to itself")
                for index, donation in enumerate(market.donation) if home in donation.recipients]
    if market.green_partners and home in market.green_partners:
        problems.append(("market.green_partners", f": {home!r} is this home; list other homes"))
    return problems


def _timing_problems(config: HomeConfig) -> list[tuple[str, str]]:
    """Limits that involve two sections; each names the key to change."""
    problems: list[tuple[str, str]] = []
    # One failed poll must not make every reading stale, so allow two telemetry periods.
    stale_minimum = 2 * config.loops.telemetry_period_s
    if config.control.stale_after_s is not None and config.control.stale_after_s < stale_minimum:
        problems.append(("control.stale_after_s", out_of_range(
            config.control.stale_after_s, f">= 2 x loops.telemetry_period_s ({show(stale_minimum)})")))
    # A margin this wide would leave no room between the import and the export limit.
    grid = config.grid
    if 2 * config.control.export_margin_w >= grid.import_limit_w + grid.export_limit_w:
        problems.append(("control.export_margin_w", out_of_range(
            config.control.export_margin_w,
            f"< (grid.import_limit_w + grid.export_limit_w) / 2 ({show((grid.import_limit_w + grid.export_limit_w) / 2)})")))
    # The device must keep a setpoint across one missed refresh, or it flaps to its own mode.
    timeout_minimum = 2 * config.loops.control_period_s
    if config.control.setpoint_timeout_s < timeout_minimum:
        problems.append(("control.setpoint_timeout_s", out_of_range(
            config.control.setpoint_timeout_s, f">= 2 x loops.control_period_s ({show(timeout_minimum)})")))
    return problems


def parse_config(text: str, source: str = "<config>") -> HomeConfig:
    """Validate a configuration given as TOML text; raises :class:`ConfigError` naming ``source``."""
    return validate_toml(text, source, HomeConfig)


def load_config(path: str | Path) -> HomeConfig:
    """Read and validate a home configuration file; raises :class:`ConfigError`."""
    text = read_config_file(path)
    return parse_config(text, str(path))
