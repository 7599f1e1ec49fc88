"""Build a home's devices from its configuration: map clients and capability views."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.devices import CAPABILITIES, Capability, CapabilityMissing, MapClient
from drivers.maps import RegisterMap, load_map
from drivers.readings import Reading
from drivers.transport import ConnectionPool, RtuEndpoint, parse_endpoint
from hems.config import DeviceConfig, HomeConfig

logger = logging.getLogger(__name__)

#: The ``map`` value that asks for SunSpec discovery instead of a fixed map.
SUNSPEC_DISCOVERY = "sunspec"


class DeviceSetupError(RuntimeError):
    """A configured device cannot be set up (unknown map, missing capability, no SunSpec models)."""


@dataclass
class SiteDevices:
    """Every device of a home, with each capability it was configured for."""

    pool: ConnectionPool
    clients: dict[str, MapClient] = field(default_factory=dict)
    capabilities: dict[str, list[Capability]] = field(default_factory=dict)

    def of_kind(self, kind: type[Capability]) -> list[Capability]:
        """Every capability of one class (all batteries, all meters ...)."""
        return [capability for capabilities in self.capabilities.values() for capability in capabilities
                if isinstance(capability, kind)]

    async def poll_all(self) -> dict[str, dict[str, Reading]]:
        """Poll every device once; faults are counted in each client's health."""
        return {name: await client.poll() for name, client in self.clients.items()}

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()


async def build_site_devices(config: HomeConfig, pool: ConnectionPool | None = None,
                             wall_clock: Callable[[], float] = time.time,
                             backoff_clock: Callable[[], float] = time.monotonic) -> SiteDevices:
    """Connect nothing yet, but resolve maps (SunSpec: discover) and capabilities.
    ``wall_clock`` stamps the readings and ``backoff_clock`` times the reconnect backoff (the
    runtime's clock, real or simulated)."""
    site = SiteDevices(pool or ConnectionPool(backoff_clock=backoff_clock))
    for device in config.device:
        connection = site.pool.get(_endpoint(device), device.timeout_s)
        register_map = await _resolve_map(device, connection)
        client = MapClient(connection, register_map, unit_id=device.unit_id, name=device.name,
                           device_id_overrides=device.unit_id_overrides, wall_clock=wall_clock)
        kinds = device.capabilities or list(register_map.spec.device.kinds)
        views = []
        for kind in kinds:
            try:
                views.append(CAPABILITIES[kind](client))
            except CapabilityMissing as error:
                raise DeviceSetupError(f"device {device.name}: {error}") from error
        site.clients[device.name] = client
        site.capabilities[device.name] = views
    return site


def _endpoint(device: DeviceConfig):
    if device.tcp is not None:
        return parse_endpoint(device.tcp)
    assert device.rtu is not None
    return RtuEndpoint(device.rtu.port, device.rtu.baudrate, device.rtu.parity, device.rtu.stopbits,
                       device.rtu.bytesize)


async def _resolve_map(device: DeviceConfig, connection) -> RegisterMap:
    if device.map != SUNSPEC_DISCOVERY:
        try:
            return load_map(device.map)
        except ValueError as error:
            raise DeviceSetupError(f"device {device.name}: {error}") from error
    from drivers.sunspec.discovery import discover

    unit_id = 1 if device.unit_id is None else device.unit_id
    found = await discover(connection, unit_id)
    if found is None:
        raise DeviceSetupError(f"device {device.name}: no SunSpec device at {connection.endpoint} unit {unit_id}")
    return found.register_map
