"""``[market]``: the home's market agent (hems/trading) and the community broker it talks to.

Off by default: without it the home optimises against its retail tariff alone. When enabled the
MPC also takes committed trades into account (``[mpc] market_enabled`` is set for it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from hems.config.base import Section
from hems.config.errors import config_problem, invalid
from hems.config.operations import MqttBrokerConfig

#: What a community or home id may look like (it becomes an MQTT topic level).
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
HomeId = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class DonationSection(BaseModel):
    """``[[market.donation]]``: part of each slot's surplus given to designated households (a
    differentiated market clears it; others refuse bids with donations, so leave it out there)."""

    model_config = ConfigDict(extra="forbid")

    #: The homes that may receive it (community member ids), and no one else.
    recipients: Annotated[list[HomeId], Field(min_length=1, max_length=50)]
    #: At most this much per slot (Wh), from what the home sells.
    energy_wh: int = Field(ge=1, le=10_000_000)
    #: The price per kWh the recipients pay (currency per kWh; 0: free).
    price: float = Field(default=0.0, ge=0, le=10)

    @model_validator(mode="after")
    def _distinct(self) -> DonationSection:
        if len(set(self.recipients)) != len(self.recipients):
            raise config_problem(("recipients", invalid(str(self.recipients), "distinct member ids")))
        return self


#: The most power a flexibility setting may name (W): the protocol's MAX_POWER_W, 10 MW.
MAX_FLEXIBILITY_W = 10_000_000


class FlexibilitySection(Section):
    """``[market.flexibility]``: what the home lets the community's power plant ask of it
    (hems/trading/power_plant.py). The site's import and export limits always hold as well."""

    #: The owner's opt-out: every commitment the community proposes is declined ("owner opt-out").
    opt_out: StrictBool = False
    #: The largest change of the home's mean net import per slot the home accepts (W); unset: any
    #: change within the site's import and export limits.
    max_change_w: float | None = Field(default=None, ge=0, le=MAX_FLEXIBILITY_W)


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
    #: What the home sells: ``local`` energy, or ``green_local`` (from its own renewables).
    energy_class: Literal["local", "green_local"] = "local"
    #: What the home pays on top of the energy price for green-local energy (currency per kWh).
    green_premium: float = Field(default=0.0, ge=0, le=10)
    #: Only these homes' green energy earns the premium (any home when unset; needs a premium).
    green_partners: Annotated[list[HomeId], Field(min_length=1, max_length=50)] | None = None
    #: Surplus given to designated households, each slot (see DonationSection).
    donation: list[DonationSection] = Field(default_factory=list, max_length=10)
    #: What the community's power plant may ask of the home (see FlexibilitySection).
    flexibility: FlexibilitySection = FlexibilitySection()

    @model_validator(mode="after")
    def _consistent(self) -> MarketSection:
        problems: list[tuple[str, str]] = []
        if self.enabled and self.community is None:
            problems.append(("community", ": required when enabled (the community id the manager publishes under)"))
        if self.green_partners is not None and self.green_premium == 0:
            problems.append(("green_partners", ": only with a green_premium above 0 (partners qualify the premium)"))
        if not self.broker_tls:
            problems += [(name, invalid(str(getattr(self, name)), "only with an mqtts:// broker"))
                         for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if problems:
            raise config_problem(*problems)
        return self
