"""``[market]``: the home's market agent (hems/trading) and the community broker it talks to.

Off by default: without it the home optimises against its retail tariff alone. When enabled the
MPC also takes committed trades into account (``[mpc] market_enabled`` is set for it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, field_validator, model_validator

from hems.config.base import Section
from hems.config.errors import config_problem, invalid
from hems.config.operations import MQTT_DEFAULT_PORTS

#: What a community or home id may look like (it becomes an MQTT topic level).
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_BROKER_FORMAT = "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"


class MarketSection(Section):
    """``[market]``: trade the home's flexibility in the community market over MQTT."""

    enabled: StrictBool = False
    #: The community broker: ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS).
    broker_url: str = "mqtt://127.0.0.1:1883"
    #: The community id: the topic prefix ``hems/v1/<community>/``. Required when enabled.
    community: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
    #: Broker user; unset: the home id (the broker's ACL is written per home).
    username: str | None = Field(default=None, min_length=1)
    #: A file holding the broker password (read at start); never the password here.
    password_file: Path | None = None
    #: CA bundle of an ``mqtts://`` broker with a private CA; unset: the system CAs.
    ca_file: Path | None = None
    #: Client certificate and key for brokers that authenticate homes by certificate.
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Seconds before a slot's gate closure at which the bid is submitted.
    submit_lead_s: float = Field(default=60.0, ge=1, le=3600)
    #: Points of a bid curve when the market publishes no price grid (its grid wins otherwise).
    bid_points: int = Field(default=11, ge=2, le=101)
    #: How many upcoming slots each submission bids for (later ones are re-bid, replacing).
    bid_slots: int = Field(default=1, ge=1, le=96)
    #: Seconds after which a sent but unacknowledged meter report is sent again.
    resend_after_s: float = Field(default=60.0, ge=5, le=86_400)
    #: Seconds the manager has to acknowledge a submission before the home counts it unreachable.
    ack_timeout_s: float = Field(default=30.0, ge=1, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _no_password_in_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            # The configuration is readable by the service group; a secret belongs in its own file.
            raise config_problem(("password", ": a password never goes in this file: write it to a file "
                                              "readable only by the hems user and set password_file"))
        return data

    @field_validator("broker_url")
    @classmethod
    def _valid_broker(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise config_problem(("", invalid(value, _BROKER_FORMAT))) from None
        if parts.scheme not in MQTT_DEFAULT_PORTS or not parts.hostname or port == 0 \
                or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise config_problem(("", invalid(value, _BROKER_FORMAT)))
        if parts.username is not None or parts.password is not None:
            raise config_problem(("", invalid(value, f"{_BROKER_FORMAT} without credentials (use username "
                                                     "and password_file)")))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MarketSection:
        problems: list[tuple[str, str]] = []
        if self.enabled and self.community is None:
            problems.append(("community", ": required when enabled (the community id the manager publishes under)"))
        if not self.tls:
            problems += [(name, invalid(str(getattr(self, name)), "only with an mqtts:// broker_url"))
                         for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            problems.append((missing, ": required together with " + ("cert_file" if missing == "key_file"
                                                                       else "key_file")))
        if problems:
            raise config_problem(*problems)
        return self

    @property
    def tls(self) -> bool:
        """True for an ``mqtts://`` broker."""
        return urlsplit(self.broker_url).scheme == "mqtts"
