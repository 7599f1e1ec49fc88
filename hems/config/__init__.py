"""Configuration: one TOML file per daemon, validated into typed models.

Unknown keys and out-of-range values are errors that name the key, the value and
the allowed range (see :func:`load_config`).
"""

from hems.config.errors import ConfigError
from hems.config.home import DeviceConfig, HomeConfig, P1Config, RtuConfig, load_config

__all__ = ["ConfigError", "DeviceConfig", "HomeConfig", "P1Config", "RtuConfig", "load_config"]
