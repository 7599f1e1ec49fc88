"""Register codec: raw 16-bit Modbus registers <-> engineering values.

The byte-level conversion is pymodbus's own (``convert_from_registers`` /
``convert_to_registers``); this module adds what a register map describes on top:
word order, scale factors, "not implemented" sentinels, enums and bit fields.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

from pymodbus.client.mixin import ModbusClientMixin

_CONVERT = ModbusClientMixin
_PYMODBUS_TYPE = ModbusClientMixin.DATATYPE


class RegisterType(str, enum.Enum):
    """Register data types a map may use; the value is the name used in TOML."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    STRING = "string"
    BITFIELD16 = "bitfield16"
    BITFIELD32 = "bitfield32"
    ENUM16 = "enum16"
    ENUM32 = "enum32"
    #: SunSpec scale-factor register: an int16 power-of-ten exponent.
    SUNSSF = "sunssf"

    @property
    def register_count(self) -> int:
        """Registers one value occupies (strings: given per point)."""
        return _REGISTER_COUNT[self]

    @property
    def is_signed(self) -> bool:
        """True for two's-complement integer types."""
        return self in (RegisterType.INT16, RegisterType.INT32, RegisterType.INT64, RegisterType.SUNSSF)


_REGISTER_COUNT = {
    RegisterType.INT16: 1,
    RegisterType.UINT16: 1,
    RegisterType.INT32: 2,
    RegisterType.UINT32: 2,
    RegisterType.INT64: 4,
    RegisterType.UINT64: 4,
    RegisterType.FLOAT32: 2,
    RegisterType.STRING: 0,
    RegisterType.BITFIELD16: 1,
    RegisterType.BITFIELD32: 2,
    RegisterType.ENUM16: 1,
    RegisterType.ENUM32: 2,
    RegisterType.SUNSSF: 1,
}

_TO_PYMODBUS = {
    RegisterType.INT16: _PYMODBUS_TYPE.INT16,
    RegisterType.UINT16: _PYMODBUS_TYPE.UINT16,
    RegisterType.INT32: _PYMODBUS_TYPE.INT32,
    RegisterType.UINT32: _PYMODBUS_TYPE.UINT32,
    RegisterType.INT64: _PYMODBUS_TYPE.INT64,
    RegisterType.UINT64: _PYMODBUS_TYPE.UINT64,
    RegisterType.FLOAT32: _PYMODBUS_TYPE.FLOAT32,
    RegisterType.STRING: _PYMODBUS_TYPE.STRING,
    RegisterType.BITFIELD16: _PYMODBUS_TYPE.UINT16,
    RegisterType.BITFIELD32: _PYMODBUS_TYPE.UINT32,
    RegisterType.ENUM16: _PYMODBUS_TYPE.UINT16,
    RegisterType.ENUM32: _PYMODBUS_TYPE.UINT32,
    RegisterType.SUNSSF: _PYMODBUS_TYPE.INT16,
}

#: SunSpec's "not implemented" values, the default sentinel per type.
SUNSPEC_NOT_IMPLEMENTED = {
    RegisterType.INT16: 0x8000,
    RegisterType.SUNSSF: 0x8000,
    RegisterType.UINT16: 0xFFFF,
    RegisterType.ENUM16: 0xFFFF,
    RegisterType.BITFIELD16: 0xFFFF,
    RegisterType.INT32: 0x80000000,
    RegisterType.UINT32: 0xFFFFFFFF,
    RegisterType.ENUM32: 0xFFFFFFFF,
    RegisterType.BITFIELD32: 0xFFFFFFFF,
    RegisterType.INT64: 0x8000000000000000,
    RegisterType.UINT64: 0xFFFFFFFFFFFFFFFF,
}


def decode_raw(
    registers: Sequence[int], register_type: RegisterType, word_order: str = "big"
) -> int | float | str:
    """Decode registers into the raw (unscaled) value of ``register_type``."""
    if register_type is RegisterType.STRING:
        text = _CONVERT.convert_from_registers(list(registers), _PYMODBUS_TYPE.STRING, word_order="big",
                                               string_encoding="latin-1")
        return str(text).rstrip("\x00 ")
    value = _CONVERT.convert_from_registers(list(registers), _TO_PYMODBUS[register_type], word_order=word_order)
    return value  # type: ignore[return-value]


def encode_raw(
    value: int | float | str, register_type: RegisterType, word_order: str = "big", register_count: int = 0
) -> list[int]:
    """Encode a raw (already unscaled) value into registers."""
    if register_type is RegisterType.STRING:
        data = str(value).encode("latin-1")[: register_count * 2].ljust(register_count * 2, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if register_type is RegisterType.FLOAT32:
        return _CONVERT.convert_to_registers(float(value), _PYMODBUS_TYPE.FLOAT32, word_order=word_order)
    return _CONVERT.convert_to_registers(int(value), _TO_PYMODBUS[register_type], word_order=word_order)


def raw_bits(raw: int | float | str, register_type: RegisterType) -> int:
    """The unsigned bit pattern of an integer raw value, for sentinel comparisons."""
    if not isinstance(raw, int):
        return -1
    width = 16 * register_type.register_count
    return raw & ((1 << width) - 1)


def is_finite_number(value: object) -> bool:
    """True for ints and finite floats."""
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
