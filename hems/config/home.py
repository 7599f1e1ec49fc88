"""The home daemon's configuration (``hems run``, ``hems read``).

Devices are listed as ``[[device]]`` tables: a register map (bundled name or a
path to a TOML file), where to reach it (``tcp`` or ``rtu``) and its unit id.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.transport import parse_endpoint

from hems.config.errors import ConfigError, describe_validation_error

CapabilityName = Literal["grid_meter", "pv_inverter", "battery", "ev_charger", "heat_pump"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RtuConfig(_Section):
    """A serial RS-485 line."""

    port: str
    baudrate: int = Field(default=9600, ge=1200, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class DeviceConfig(_Section):
    """One Modbus device of the site."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    #: A bundled map name (``hems emulate --list``) or a path to a map file.
    map: str
    tcp: str | None = None
    rtu: RtuConfig | None = None
    unit_id: int | None = Field(default=None, ge=0, le=255)
    #: Which capabilities to use; default: every kind the map declares.
    capabilities: list[CapabilityName] | None = None
    #: Unit ids that differ from the map's per-point ``device_id``, e.g.
    #: ``{ "227" = 228 }`` for a Victron VE.Bus inverter on the second port.
    unit_id_overrides: dict[int, int] = {}
    timeout_s: float = Field(default=1.0, gt=0, le=30)

    @field_validator("tcp")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parse_endpoint(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> DeviceConfig:
        if (self.tcp is None) == (self.rtu is None):
            raise ValueError(f"device {self.name}: give exactly one of 'tcp' or 'rtu'")
        return self


class P1Config(_Section):
    """A DSMR/P1 smart meter on a serial port."""

    port: str
    dsmr_version: str = "5"


class HomeSection(_Section):
    """Identity and storage of the home."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    state_directory: Path = Path("/var/lib/hems")


class HomeConfig(_Section):
    """The whole file."""

    home: HomeSection
    device: list[DeviceConfig] = []
    p1: P1Config | None = None

    @model_validator(mode="after")
    def _unique_device_names(self) -> HomeConfig:
        names = [device.name for device in self.device]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"device names must be unique: {', '.join(duplicates)}")
        return self


def load_config(path: str | Path) -> HomeConfig:
    """Read and validate a home configuration; raises :class:`ConfigError`."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(str(path), ["file not found"]) from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), [f"not valid TOML: {error}"]) from error
    try:
        return HomeConfig.model_validate(document)
    except ValidationError as error:
        raise ConfigError(str(path), describe_validation_error(error)) from error
