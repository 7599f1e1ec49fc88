"""The home's devices: ``[[device]]`` tables (Modbus TCP or RS-485) and the ``[p1]`` smart meter.

A device names a register map (a bundled name such as ``eastron_sdm630``, a path to a map file
ending in ``.toml``, or ``sunspec`` for SunSpec discovery at start-up), where to reach it
(``tcp`` or ``rtu``) and its unit id.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from drivers.transport import RtuEndpoint, TcpEndpoint, parse_endpoint
from hems.config.base import Section
from hems.config.errors import config_problem, invalid

CapabilityName = Literal["grid_meter", "pv_inverter", "battery", "ev_charger", "heat_pump"]
#: The ``map`` value that asks for SunSpec discovery instead of a fixed map.
SUNSPEC_MAP = "sunspec"
_MAP_NAME = re.compile(r"^[a-z0-9_]+$")
UnitId = Annotated[int, Field(ge=0, le=255)]


class RtuConfig(Section):
    """A serial RS-485 line. Every device on one port shares these settings (one bus)."""

    port: str = Field(min_length=1)
    baudrate: int = Field(default=9600, ge=1200, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    def describe(self) -> str:
        """``/dev/ttyUSB0 9600 8N1``."""
        return f"{self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class DeviceConfig(Section):
    """One Modbus device of the site."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    #: A bundled map name (``hems emulate --list``), a path to a map file (``*.toml``), or
    #: ``sunspec`` to discover the SunSpec models when the daemon starts.
    map: str
    tcp: str | None = None
    rtu: RtuConfig | None = None
    #: None: the map's ``default_unit_id`` (SunSpec: 1).
    unit_id: int | None = Field(default=None, ge=0, le=255)
    #: Which capabilities to use; default: every kind the map declares.
    capabilities: list[CapabilityName] | None = Field(default=None, min_length=1)
    #: Unit ids that differ from the map's per-point ``device_id``, e.g.
    #: ``{ 227 = 228 }`` for a Victron VE.Bus inverter on another port.
    unit_id_overrides: dict[UnitId, UnitId] = {}
    timeout_s: float = Field(default=1.0, gt=0, le=30)

    @field_validator("map")
    @classmethod
    def _valid_map(cls, value: str) -> str:
        if not (_MAP_NAME.match(value) or (value.endswith(".toml") and len(value) > 5)):
            raise config_problem(("", invalid(value, 'a bundled map name such as "eastron_sdm630", '
                                                     '"sunspec", or a path ending in .toml')))
        return value

    @field_validator("tcp")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parse_endpoint(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> DeviceConfig:
        if (self.tcp is None) == (self.rtu is None):
            raise config_problem(("", ": give exactly one of 'tcp' or 'rtu'"))
        return self

    @property
    def is_sunspec(self) -> bool:
        """True when the map is discovered from the device at start-up."""
        return self.map == SUNSPEC_MAP

    def endpoint(self) -> TcpEndpoint | RtuEndpoint:
        """The transport endpoint (the connection pool's key)."""
        if self.tcp is not None:
            return parse_endpoint(self.tcp)
        assert self.rtu is not None
        return RtuEndpoint(self.rtu.port, self.rtu.baudrate, self.rtu.parity, self.rtu.stopbits,
                           self.rtu.bytesize)

    def describe_endpoint(self) -> str:
        """``tcp 192.0.2.10:502`` or ``rtu /dev/ttyUSB0 9600 8N1``."""
        return f"tcp {self.tcp}" if self.tcp is not None else f"rtu {self.rtu.describe()}"  # type: ignore[union-attr]


class P1Config(Section):
    """A DSMR/P1 smart meter on a serial port."""

    port: str = Field(min_length=1)
    #: A :data:`drivers.p1.VARIANTS` name: "2.2", "3", "4", "4+", "5", "5B", "5L", "5S".
    dsmr_version: str = "5"

    @field_validator("dsmr_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        from drivers.p1.specs import VARIANTS  # cheap: dsmr-parser itself is imported lazily

        if value not in VARIANTS:
            raise config_problem(("", invalid(value, " or ".join(f'"{name}"' for name in VARIANTS))))
        return value
