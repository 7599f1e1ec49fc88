"""How the daemon runs: loop periods, control policy, forecasts, storage, metrics, logging and
the Home Assistant bridge (``[loops]``, ``[control]``, ``[forecast]``, ``[store]``, ``[metrics]``,
``[logging]``, ``[home_assistant]``). Every key has a default, so each table is optional.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, field_validator, model_validator

from hems.config.base import Section
from hems.config.errors import config_problem, invalid, out_of_range, show
from hems.observability.metrics import DEFAULT_METRICS_ADDRESS, DEFAULT_METRICS_PORT
from hems.protocol.mqtt import BrokerSettings, broker_endpoint

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# MQTT topic levels without wildcards (+, #) or empty levels.
_TOPIC_PREFIX = r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$"


class LoopsConfig(Section):
    """``[loops]``: how often the daemon reads, controls and re-plans."""

    #: Seconds between two polls of every device.
    telemetry_period_s: float = Field(default=5.0, ge=0.5, le=300)
    #: Seconds between two setpoint decisions; at least one poll per decision.
    control_period_s: float = Field(default=10.0, ge=1, le=300)
    #: Re-plan early when the measured SoC differs from the plan's by this fraction of capacity.
    replan_soc_deviation: float = Field(default=0.05, ge=0.01, le=0.5)
    #: Seconds that must pass between two early re-plans (a noisy SoC must not re-plan every cycle).
    replan_min_interval_s: float = Field(default=60.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _control_not_faster_than_telemetry(self) -> LoopsConfig:
        # A decision without a new reading in between would act on the same data twice.
        if self.control_period_s < self.telemetry_period_s:
            raise config_problem(("control_period_s", out_of_range(
                self.control_period_s, f">= telemetry_period_s ({show(self.telemetry_period_s)})")))
        return self


class ControlConfig(Section):
    """``[control]``: the real-time setpoint policy and its safety margins."""

    #: What the devices do when the daemon cannot decide (stale data, no plan): hand control back
    #: to the devices' own mode ("autonomous") or run the daemon's self-consumption rule.
    fallback: Literal["autonomous", "self_consumption"] = "autonomous"
    #: Readings older than this (seconds) never drive a setpoint; unset: two telemetry periods
    #: (:meth:`HomeConfig.reading_max_age_s`), so a lost device is noticed within one control period.
    stale_after_s: float | None = Field(default=None, ge=1, le=3600)
    #: Largest change of the battery setpoint per second (W/s).
    battery_ramp_w_per_s: float = Field(default=1000.0, gt=0, le=100_000)
    #: Setpoint changes smaller than this (W) are not re-written, except for the dead-man refresh.
    deadband_w: float = Field(default=25.0, ge=0, le=1000)
    #: Device-side dead-man timeout (seconds) written where the map has one.
    setpoint_timeout_s: float = Field(default=60.0, ge=10, le=3600)
    #: Headroom (W) the control keeps below the export limit and the fuse limit.
    export_margin_w: float = Field(default=100.0, ge=0, le=5000)
    #: May the control limit PV output to hold the export limit?
    curtail_pv: StrictBool = True


class ForecastConfig(Section):
    """``[forecast]``: the load and PV forecasters' starting points."""

    #: Yearly consumption (kWh) that scales the standard load profile until history exists.
    annual_load_kwh: float = Field(default=3500.0, ge=100, le=100_000)
    #: Days of measured load the load forecaster learns from.
    load_history_days: int = Field(default=28, ge=1, le=365)
    #: Fraction of the clear-sky PV power expected before any PV has been measured.
    pv_initial_scale: float = Field(default=0.7, ge=0, le=1.5)
    #: Public holidays of this country (ISO 3166 code) are forecast like Sundays; "" for none.
    holiday_country: str = Field(default="DE", pattern=r"^([A-Z]{2})?$")
    #: Subdivision for regional holidays (e.g. "BY" for Bavaria), as the holidays package names them.
    holiday_subdivision: str | None = Field(default=None, pattern=r"^[A-Z0-9]{1,4}$")

    @model_validator(mode="after")
    def _known_calendar(self) -> ForecastConfig:
        if self.holiday_country:
            import holidays

            try:
                holidays.country_holidays(self.holiday_country, subdiv=self.holiday_subdivision)
            except NotImplementedError:
                raise ValueError(f"holiday_country = {self.holiday_country!r} / holiday_subdivision = "
                                 f"{self.holiday_subdivision!r}: not known to the holidays package") from None
        return self


class StoreConfig(Section):
    """``[store]``: the SQLite history in ``[home] state_directory``."""

    #: Days after which history, plans and sent messages are deleted.
    retention_days: float = Field(default=90.0, ge=1, le=3650)
    #: Width (seconds) of one bucket of stored readings (mean, min, max).
    bucket_s: int = Field(default=300, ge=60, le=3600)


class MetricsConfig(Section):
    """``[metrics]``: the Prometheus exporter."""

    enabled: StrictBool = True
    #: Listen address; the loopback default keeps metrics (which show when a home is empty) private.
    address: str = DEFAULT_METRICS_ADDRESS
    #: TCP port; 0 picks any free port.
    port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535)

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.match(value):
                raise config_problem(("", invalid(value, "an IP address or a host name"))) from None
        return value


class LoggingConfig(Section):
    """``[logging]``: arguments of :func:`hems.observability.logging_setup.setup_logging`."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: "keyvalue": ``ts=... level=info msg="..."`` lines; "json": one JSON object per line.
    format: Literal["keyvalue", "json"] = "keyvalue"

    @field_validator("level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def json_format(self) -> bool:
        """The ``json_format`` argument of ``setup_logging``."""
        return self.format == "json"


class MqttBrokerConfig(Section):
    """Where an MQTT broker is and how to log in: shared by every section that talks to one."""

    #: ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS); default ports 1883 and 8883.
    broker: str = "mqtt://127.0.0.1:1883"
    username: str | None = Field(default=None, min_length=1)
    #: A file holding the broker password (readable by the hems user only); never the password here.
    password_file: Path | None = None
    #: CA bundle for an ``mqtts://`` broker with a private CA; unset: the system CAs.
    ca_file: Path | None = None
    #: A client certificate and its key, for brokers that authenticate clients by certificate.
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_password_in_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            # The configuration is readable by the service group; a secret belongs in its own file.
            raise config_problem(("password", ": a password never goes in this file: write it to a file "
                                              "readable only by the hems user and set password_file"))
        return data

    @model_validator(mode="after")
    def _certificate_with_key(self) -> MqttBrokerConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise config_problem(("cert_file", ": cert_file and key_file go together; set both or neither"))
        return self

    @field_validator("broker")
    @classmethod
    def _valid_broker(cls, value: str) -> str:
        allowed = "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        try:
            parts = urlsplit(value)
            credentials = parts.username is not None or parts.password is not None
            if not credentials:
                broker_endpoint(value)
        except ValueError:
            raise config_problem(("", invalid(value, allowed))) from None
        if credentials:
            raise config_problem(("", invalid(value, f"{allowed} without credentials (use username and "
                                                     "password_file)")))
        return value

    @property
    def broker_host(self) -> str:
        """The broker's host name or address."""
        return broker_endpoint(self.broker)[0]

    @property
    def broker_port(self) -> int:
        """The broker's TCP port (the scheme's default when none is given)."""
        return broker_endpoint(self.broker)[1]

    @property
    def broker_tls(self) -> bool:
        """True for ``mqtts://``."""
        return broker_endpoint(self.broker)[2]

    def broker_settings(self, client_id: str, *, password: str | None,
                        username: str | None = None) -> BrokerSettings:
        """The connection settings of :class:`hems.protocol.mqtt.MqttLink` for this broker
        (``username`` overrides the configured one, e.g. a default taken from elsewhere)."""
        return BrokerSettings(url=self.broker, client_id=client_id, username=username or self.username,
                              password=password, ca_file=self.ca_file, cert_file=self.cert_file,
                              key_file=self.key_file)

    def read_password(self) -> str | None:
        """The password from ``password_file`` (trailing newline stripped), or None without one."""
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")


class HomeAssistantConfig(MqttBrokerConfig):
    """``[home_assistant]``: publish state to Home Assistant over MQTT (discovery)."""

    enabled: StrictBool = False
    discovery_prefix: str = Field(default="homeassistant", pattern=_TOPIC_PREFIX)
    state_topic_prefix: str = Field(default="hems", pattern=_TOPIC_PREFIX)
    #: Seconds between two state publications.
    publish_period_s: float = Field(default=30.0, ge=1, le=3600)
    #: Currency of the planned-cost sensor (ISO 4217 code).
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
