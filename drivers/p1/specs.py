"""DSMR/P1 variants: telegram specification and serial line settings per version.

The version names are the ones dsmr-parser's own clients use ("2.2", "4", "5",
"5B", ...), so a configuration written for other DSMR tools reads the same here.
dsmr-parser is imported only when a specification is actually needed: it is an
optional extra (``pip install hems[p1]``) that costs ~90 ms and ~28 MB to import.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

#: The extra that installs dsmr-parser; named in every "not installed" error.
P1_EXTRA_HINT = "pip install 'hems[p1]'"


class P1DependencyError(ImportError):
    """dsmr-parser is not installed; the message names the extra that installs it."""


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings of a P1 port (pyserial names and values)."""

    baudrate: int
    bytesize: int  # data bits: 7 or 8
    parity: str  # "E" even, "N" none (pyserial's PARITY_* values)
    stopbits: int = 1


#: DSMR 2.2/3: 9600 baud, 7 data bits, even parity (DSMR P1 companion standard 2.2).
SERIAL_9600_7E1 = SerialSettings(baudrate=9600, bytesize=7, parity="E")
#: DSMR 4.x: 115200 baud but still 7E1 (P1 companion standard 4.0.4, section 5.1;
#: dsmr-parser's SERIAL_SETTINGS_V4 agrees).
SERIAL_115200_7E1 = SerialSettings(baudrate=115200, bytesize=7, parity="E")
#: DSMR 5.x and its Belgian/Luxembourg/Swedish profiles: 115200 8N1.
SERIAL_115200_8N1 = SerialSettings(baudrate=115200, bytesize=8, parity="N")


@dataclass(frozen=True, slots=True)
class P1Variant:
    """One supported meter variant: how to parse it and how the line is set up."""

    version: str
    description: str
    #: Attribute name in ``dsmr_parser.telegram_specifications`` (resolved lazily).
    spec_name: str
    serial: SerialSettings
    #: True when telegrams end in ``!XXXX`` (CRC-16/ARC); DSMR 2.2/3 have no CRC.
    has_crc: bool


_VARIANTS: tuple[P1Variant, ...] = (
    P1Variant("2.2", "DSMR 2.2 (NL, no CRC)", "V2_2", SERIAL_9600_7E1, has_crc=False),
    P1Variant("3", "DSMR 3.0 (NL, no CRC)", "V3", SERIAL_9600_7E1, has_crc=False),
    P1Variant("4", "DSMR 4.x (NL)", "V4", SERIAL_115200_7E1, has_crc=True),
    # Some 4.2 meters already send the 5.0 object set, but on a 7E1 line.
    P1Variant("4+", "DSMR 5 objects on a DSMR 4 (7E1) line", "V5", SERIAL_115200_7E1, has_crc=True),
    P1Variant("5", "DSMR 5.x (NL)", "V5", SERIAL_115200_8N1, has_crc=True),
    P1Variant("5B", "eMUCs/DSMR 5 Belgium (Fluvius)", "BELGIUM_FLUVIUS", SERIAL_115200_8N1, has_crc=True),
    P1Variant("5L", "DSMR 5 Luxembourg (Smarty), unencrypted", "LUXEMBOURG_SMARTY", SERIAL_115200_8N1,
              has_crc=True),
    P1Variant("5S", "DSMR 5 Sweden (HAN port)", "SWEDEN", SERIAL_115200_8N1, has_crc=True),
)

#: Version name -> variant. A read-only view: building it once at import is not
#: mutable state.
VARIANTS: dict[str, P1Variant] = {v.version: v for v in _VARIANTS}

#: dsmr-parser versions that exist but need the encrypted (DLMS) framing, which
#: this reader does not implement; named in the error so nobody guesses.
_ENCRYPTED_VERSIONS = frozenset({"MSn", "SAGEMCOM_T210_D_R"})


def get_variant(version: str) -> P1Variant:
    """Return the variant for a version name, or raise ``ValueError`` naming the valid ones."""
    try:
        return VARIANTS[version]
    except KeyError:
        if version in _ENCRYPTED_VERSIONS:
            raise ValueError(
                f"P1 version {version!r} sends encrypted (DLMS) telegrams, which the hems P1 reader "
                "does not support yet"
            ) from None
        raise ValueError(
            f"unknown P1/DSMR version {version!r}; expected one of {', '.join(VARIANTS)}"
        ) from None


def import_dsmr_module(name: str) -> ModuleType:
    """Import ``dsmr_parser.<name>`` or raise :class:`P1DependencyError` naming the extra."""
    # dsmr-parser logs a traceback for every line it cannot parse: one odd OBIS line
    # would flood the journal every second. The reader counts those failures itself.
    logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)
    try:
        return importlib.import_module(f"dsmr_parser.{name}")
    except ModuleNotFoundError as exc:
        raise P1DependencyError(
            f"the P1 smart-meter reader needs dsmr-parser, which is not installed ({exc}); "
            f"install the p1 extra: {P1_EXTRA_HINT}"
        ) from exc


def load_specification(version: str) -> dict[str, Any]:
    """Return dsmr-parser's telegram specification for ``version`` (imports dsmr-parser)."""
    variant = get_variant(version)
    specs = import_dsmr_module("telegram_specifications")
    spec: dict[str, Any] = getattr(specs, variant.spec_name)
    return spec
