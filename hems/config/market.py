"""``[market]``: the home's market agent (hems/trading) and the community broker it talks to.

Off by default: without it the home optimises against its retail tariff alone. When enabled the
MPC also takes committed trades into account (``[mpc] market_enabled`` is set for it).
"""

from __future__ import annotations

from pydantic import Field, StrictBool, model_validator

from hems.config.errors import config_problem, invalid
from hems.config.operations import MqttBrokerConfig

#: What a community or home id may look like (it becomes an MQTT topic level).
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class MarketSection(MqttBrokerConfig):
    """``[market]``: trade the home's flexibility in the community market over MQTT.

    The broker keys (``broker``, ``username``, ``password_file``, ``ca_file``, ``cert_file``,
    ``key_file``) are those of every MQTT section; ``username`` defaults to the home id, which is
    what the community broker's ACL is written for.
    """

    enabled: StrictBool = False
    #: The community id: the topic prefix ``hems/v1/<community>/``. Required when enabled.
    community: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN)
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

    @model_validator(mode="after")
    def _consistent(self) -> MarketSection:
        problems: list[tuple[str, str]] = []
        if self.enabled and self.community is None:
            problems.append(("community", ": required when enabled (the community id the manager publishes under)"))
        if not self.broker_tls:
            problems += [(name, invalid(str(getattr(self, name)), "only with an mqtts:// broker"))
                         for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if problems:
            raise config_problem(*problems)
        return self
