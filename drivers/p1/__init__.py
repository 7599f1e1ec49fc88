"""DSMR/P1 smart-meter reader (serial port, CRC-checked, reconnecting).

Importing this package is cheap: dsmr-parser (the optional ``p1`` extra,
``pip install 'hems[p1]'``) is only imported when a :class:`P1Reader` is built.
"""

from drivers.p1.framing import FeedResult, TelegramFramer
from drivers.p1.reader import P1Health, P1Reader
from drivers.p1.specs import P1_EXTRA_HINT, VARIANTS, P1DependencyError, P1Variant, SerialSettings, get_variant
from drivers.p1.telegram import P1Telegram, telegram_to_readings

__all__ = [
    "P1_EXTRA_HINT",
    "VARIANTS",
    "FeedResult",
    "P1DependencyError",
    "P1Health",
    "P1Reader",
    "P1Telegram",
    "P1Variant",
    "SerialSettings",
    "TelegramFramer",
    "get_variant",
    "telegram_to_readings",
]
