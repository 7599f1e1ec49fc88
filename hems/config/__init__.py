"""Configuration: one TOML file per daemon, validated into typed, frozen models.

Unknown keys and out-of-range values are errors that name the key, the value and
the allowed range (see :func:`load_config`); ``hems check-config FILE`` runs the same
validation plus a check of every device's register map. docs/configuration.md lists
every key.
"""

from hems.config.devices import CapabilityName, DeviceConfig, P1Config, RtuConfig
from hems.config.errors import ConfigError
from hems.config.home import HomeConfig, HomeSection, load_config, parse_config
from hems.config.operations import (
    ControlConfig,
    ForecastConfig,
    HomeAssistantConfig,
    LoggingConfig,
    LoopsConfig,
    MetricsConfig,
    StoreConfig,
)
from hems.config.tariff import WEEKDAYS, Tariff, TariffPeriod

__all__ = [
    "WEEKDAYS", "CapabilityName", "ConfigError", "ControlConfig", "DeviceConfig", "ForecastConfig",
    "HomeAssistantConfig", "HomeConfig", "HomeSection", "LoggingConfig", "LoopsConfig", "MetricsConfig",
    "P1Config", "RtuConfig", "StoreConfig", "Tariff", "TariffPeriod", "load_config", "parse_config",
]
