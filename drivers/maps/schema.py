"""The register-map format: a TOML file per device family, validated on load.

See docs/maps.md for the format with an example. The models here are the
boundary: a map that loads is internally consistent (addresses in range, no
overlapping points, scale-factor points exist, writable points have a range).
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.maps.roles import Role
from drivers.registers import SUNSPEC_NOT_IMPLEMENTED, RegisterType

WordOrder = Literal["big", "little"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Table(str, enum.Enum):
    """The Modbus register table a point lives in."""

    HOLDING = "holding"
    INPUT = "input"


class PointSpec(_Strict):
    """One named value in a device's register space."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    #: Protocol (0-based) address, as sent on the wire.
    address: int = Field(ge=0, le=65535)
    table: Table = Table.HOLDING
    type: RegisterType
    #: Registers of a string point (other types know their own size).
    length: int | None = Field(default=None, ge=1, le=125)
    word_order: WordOrder | None = None
    #: value = raw * scale * 10 ** (scale-factor register)
    scale: float = 1.0
    scale_factor_point: str | None = None
    #: Engineering unit after scaling.
    unit: str = ""
    access: Literal["r", "rw", "w"] = "r"
    #: Allowed write range for writable points; plausible range for read points.
    min: float | None = None
    max: float | None = None
    #: Raw bit pattern meaning "not implemented"; defaults to SunSpec's per type
    #: when the map sets ``sunspec_sentinels``.
    not_implemented: int | None = None
    role: Role | None = None
    sign: Literal[1, -1] = 1
    #: Enum labels and bit names; TOML keys are strings ("0" = "off").
    enum: dict[str, str] | None = None
    bits: dict[str, str] | None = None
    #: Modbus unit id, when this point lives behind another id than the device's
    #: (Victron GX serves system, VE.Bus and battery values on different ids).
    device_id: int | None = Field(default=None, ge=0, le=255)
    description: str = ""
    #: What an emulator serves before its plant sets the point: identification
    #: strings, scale factors, nameplate values, fixed SunSpec headers.
    initial: float | int | str | None = None

    @model_validator(mode="after")
    def _check(self) -> PointSpec:
        if self.type is RegisterType.STRING and self.length is None:
            raise ValueError(f"point {self.name}: a string needs 'length' (registers)")
        if self.type is not RegisterType.STRING and self.length is not None:
            raise ValueError(f"point {self.name}: 'length' is only for strings")
        if self.access != "r" and self.type is not RegisterType.STRING and (self.min is None or self.max is None):
            raise ValueError(f"point {self.name}: a writable point needs 'min' and 'max' (the allowed write range)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"point {self.name}: min {self.min} > max {self.max}")
        if self.scale == 0:
            raise ValueError(f"point {self.name}: scale must not be 0")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError(f"point {self.name}: runs past address 65535")
        return self

    @property
    def register_count(self) -> int:
        """Registers the point occupies."""
        return self.length if self.type is RegisterType.STRING else self.type.register_count  # type: ignore[return-value]

    @property
    def end_address(self) -> int:
        """The first address after the point."""
        return self.address + self.register_count

    @property
    def writable(self) -> bool:
        """True when the point may be written."""
        return self.access != "r"


class DeviceSpec(_Strict):
    """What the device is and where its map comes from."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    manufacturer: str
    models: list[str]
    kinds: list[Literal["grid_meter", "pv_inverter", "battery", "ev_charger", "heat_pump"]]
    #: The vendor document the addresses come from: title and version.
    source: str = Field(min_length=10)
    default_unit_id: int = Field(default=1, ge=0, le=255)
    default_port: int = Field(default=502, ge=1, le=65535)
    transports: list[Literal["tcp", "rtu"]] = ["tcp"]
    #: Largest read the device accepts, in registers (Modbus allows 125).
    max_block_registers: int = Field(default=100, ge=1, le=125)
    #: Unused registers a block read may span; 0 reads only contiguous points,
    #: which is what devices answering ILLEGAL_ADDRESS inside gaps need.
    max_gap_registers: int = Field(default=0, ge=0, le=50)
    word_order: WordOrder = "big"
    #: Silence the device needs between two frames on its bus.
    interframe_delay_ms: float = Field(default=0.0, ge=0, le=1000)
    sunspec_sentinels: bool = False


class IdentifySpec(_Strict):
    """How ``hems scan`` recognises the device: a point and what it must hold."""

    point: str
    equals: str | int | None = None
    contains: str | None = None
    one_of: list[int] | None = None


class ConstantWrite(_Strict):
    """A fixed value a vendor needs written before a setpoint takes effect."""

    point: str
    value: float | int


class SignedPowerControl(_Strict):
    """One signed power register (plus an optional enable and timeout)."""

    strategy: Literal["signed_power"]
    #: Point taking the setpoint; ``sign`` says whether positive means charge (+1).
    power_point: str
    sign: Literal[1, -1] = 1
    enable_point: str | None = None
    enable_value: int | None = None
    disable_value: int | None = None
    timeout_point: str | None = None
    #: Written to ``timeout_point`` with every setpoint, in the point's unit: the
    #: device-side dead-man that ends remote control when hems stops refreshing.
    timeout_value: int | None = None
    setup_writes: list[ConstantWrite] = []


class CommandAndPowerControl(_Strict):
    """A command register (charge/discharge/stop) and a power magnitude."""

    strategy: Literal["command_and_power"]
    command_point: str
    charge_command: int
    discharge_command: int
    stop_command: int
    #: One magnitude register, or separate ones for charge and discharge.
    charge_power_point: str
    discharge_power_point: str
    mode_point: str | None = None
    remote_mode_value: int | None = None
    autonomous_mode_value: int | None = None
    timeout_point: str | None = None
    timeout_value: int | None = None
    #: Fixed writes before the power and the command (e.g. Huawei's 47246 = 0).
    setup_writes: list[ConstantWrite] = []


class SunSpecStorageControl(_Strict):
    """SunSpec model 124: charge/discharge rates in percent of WChaMax.

    The point names default to those SunSpec discovery gives model 124.
    """

    strategy: Literal["sunspec_storage"]
    mode_point: str = "m124_StorCtl_Mod"
    charge_rate_point: str = "m124_InWRte"
    discharge_rate_point: str = "m124_OutWRte"
    max_charge_point: str = "m124_WChaMax"
    timeout_point: str | None = "m124_InOutWRte_RvrtTms"


BatteryControl = Annotated[
    SignedPowerControl | CommandAndPowerControl | SunSpecStorageControl, Field(discriminator="strategy")
]


class ControlSpec(_Strict):
    """Vendor behaviour that is more than one register."""

    battery: BatteryControl | None = None


class RegisterMapSpec(_Strict):
    """A whole map file."""

    device: DeviceSpec
    identify: IdentifySpec | None = None
    control: ControlSpec = ControlSpec()
    point: list[PointSpec] = []

    @model_validator(mode="after")
    def _check_consistency(self) -> RegisterMapSpec:
        names = [point.name for point in self.point]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate point names: {', '.join(duplicates)}")
        by_name = {point.name: point for point in self.point}
        for point in self.point:
            if point.scale_factor_point is not None:
                factor = by_name.get(point.scale_factor_point)
                if factor is None or factor.type is not RegisterType.SUNSSF:
                    raise ValueError(f"point {point.name}: scale_factor_point {point.scale_factor_point!r} "
                                     "is not a sunssf point of this map")
        self._check_overlaps()
        for referenced in self._referenced_points():
            if referenced not in by_name:
                raise ValueError(f"control or identify names point {referenced!r}, which the map does not define")
        return self

    def _check_overlaps(self) -> None:
        spans: dict[tuple[Table, int | None], list[PointSpec]] = {}
        for point in self.point:
            spans.setdefault((point.table, point.device_id), []).append(point)
        for points in spans.values():
            points.sort(key=lambda point: point.address)
            for before, after in zip(points, points[1:]):
                if after.address < before.end_address:
                    raise ValueError(f"points {before.name} and {after.name} overlap at address {after.address}")

    def _referenced_points(self) -> list[str]:
        referenced = [self.identify.point] if self.identify else []
        battery = self.control.battery
        if battery is not None:
            for field_name, value in battery:
                if field_name.endswith("_point") and value is not None:
                    referenced.append(value)
            referenced += [write.point for write in getattr(battery, "setup_writes", [])]
        return referenced

    def sentinel_for(self, point: PointSpec) -> int | None:
        """The raw pattern meaning "not implemented" for ``point``, if any."""
        if point.not_implemented is not None:
            return point.not_implemented
        if self.device.sunspec_sentinels:
            return SUNSPEC_NOT_IMPLEMENTED.get(point.type)
        return None
