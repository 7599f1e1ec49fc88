"""Offline checks of a validated configuration against the register maps (``hems check-config``).

Resolves each device's map (bundled name or path) and builds the capability views exactly as
:func:`hems.runtime.site_devices.build_site_devices` does, over connections that are never
opened. ``map = "sunspec"`` is discovered from the device at start-up, so only what SunSpec
can offer at all is checked for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.devices import CAPABILITIES, Capability, CapabilityMissing, MapClient
from drivers.maps import load_map
from drivers.transport import ConnectionPool
from hems.config.devices import DeviceConfig
from hems.config.errors import show
from hems.config.home import HomeConfig

#: The capability kinds SunSpec discovery can find (inverter, meter and storage models).
SUNSPEC_KINDS = ("pv_inverter", "battery", "grid_meter")


@dataclass(frozen=True)
class DeviceReport:
    """What one device resolved to."""

    name: str
    map_id: str  # the map's id, or "sunspec" when it is discovered at start-up
    endpoint: str  # "tcp HOST:PORT" or "rtu PORT BAUD 8N1"
    unit_id: int | None
    capabilities: tuple[str, ...]  # empty for SunSpec without explicit capabilities: found at start-up


@dataclass
class CheckResult:
    """Problems (the configuration cannot work), warnings (it may not do what is meant), devices."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    devices: list[DeviceReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no problem (warnings allowed)."""
        return not self.problems


def check_devices(config: HomeConfig) -> CheckResult:
    """Resolve every device's map and check its capabilities and unit-id overrides; connects nothing."""
    result = CheckResult()
    pool = ConnectionPool()
    try:
        for index, device in enumerate(config.device):
            _check_device(index, device, pool, result)
    finally:
        pool.close()
    _check_site(config, result)
    return result


def _check_device(index: int, device: DeviceConfig, pool: ConnectionPool, result: CheckResult) -> None:
    key = f"device[{index}]"
    if device.is_sunspec:
        unsupported = [kind for kind in device.capabilities or () if kind not in SUNSPEC_KINDS]
        if unsupported:
            result.problems.append(f"{key}.capabilities = {show(device.capabilities)} is invalid: SunSpec "
                                   f"discovery finds only {', '.join(SUNSPEC_KINDS)} (not {', '.join(unsupported)})")
        if device.unit_id_overrides:
            result.problems.append(f"{key}.unit_id_overrides: not used with map = \"sunspec\" (one unit id)")
        unit_id = 1 if device.unit_id is None else device.unit_id
        result.devices.append(DeviceReport(device.name, "sunspec", device.describe_endpoint(), unit_id,
                                           tuple(device.capabilities or ())))
        return
    try:
        register_map = load_map(device.map)
    except ValueError as error:  # MapError: unknown name, bad file; the message names the file and key
        result.problems.append(f"{key}.map = {show(device.map)}: {error}")
        return
    used_ids = sorted({point.device_id for point in register_map.points.values() if point.device_id is not None})
    for original in device.unit_id_overrides:
        if original not in used_ids:
            places = ", ".join(map(str, used_ids)) if used_ids else "none: every point is at unit_id"
            result.problems.append(f"{key}.unit_id_overrides: {original} is not a unit id that map "
                                   f"{register_map.id} places points at (it uses: {places})")
    client = MapClient(pool.get(device.endpoint()), register_map, unit_id=device.unit_id, name=device.name,
                       device_id_overrides=device.unit_id_overrides)
    kinds = device.capabilities or list(register_map.spec.device.kinds)
    views: list[Capability] = []
    for kind in kinds:
        try:
            views.append(CAPABILITIES[kind](client))
        except CapabilityMissing as error:
            where = f"{key}.capabilities" if device.capabilities else f"{key}.map = {show(device.map)}"
            result.problems.append(f"{where}: {error}")
    if "battery" in kinds and register_map.spec.control.battery is None:
        result.warnings.append(f"{key} ({device.name}): map {register_map.id} has no battery control: "
                               "hems can read this battery but not command it")
    result.devices.append(DeviceReport(device.name, register_map.id, device.describe_endpoint(), client.unit_id,
                                       tuple(kinds)))


def _check_site(config: HomeConfig, result: CheckResult) -> None:
    """Warn when a site section has no device behind it (only when every device's kinds are known)."""
    if result.problems or any(device.is_sunspec and not device.capabilities for device in config.device):
        return  # a device that did not resolve, or discovery decides at start-up
    offered = {kind for report in result.devices for kind in report.capabilities}
    if "grid_meter" not in offered and config.p1 is None:
        result.warnings.append("no device provides grid_meter and there is no [p1] meter: "
                               "hems cannot see the grid connection")
    if "battery" not in offered:
        result.warnings.append("no device provides battery: [battery] describes a battery hems cannot reach")
    if config.ev is not None and "ev_charger" not in offered:
        result.warnings.append("[ev] is configured but no device provides ev_charger")
    if config.heat_pump is not None and "heat_pump" not in offered:
        result.warnings.append("[heat_pump] is configured but no device provides heat_pump")
