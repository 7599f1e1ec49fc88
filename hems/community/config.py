"""The community manager's configuration (``hems community --config FILE``).

```toml
[community]
id = "sunny-street"                        # the topic prefix hems/v1/<id>/
state_directory = "/var/lib/hems-community"

[broker]                                   # see docs/configuration.md, [home_assistant] keys
broker = "mqtts://broker.example.org:8883"
username = "manager"
password_file = "/etc/hems/manager.password"
ca_file = "/etc/hems/ca.crt"

[market]
mechanism = "bid_curve"
slot_duration_s = 900
gate_closure_lead_s = 300
horizon_slots = 4
retail_price = 0.30                        # currency per kWh
feed_in_price = 0.08

[[member]]
id = "home-01"

[upstream]                                 # optional: trade the residual in an upstream market
community = "feeder-7"                     # docs/community.md, "Nesting"
```
Prices are read as decimals (the TOML text, not a binary float) and become integer µ¤/kWh.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hems.community.grid.feeder import FeederSection
from hems.community.mechanisms.base import InputKind, MarketParameters
from hems.community.mechanisms.registry import input_kind, mechanism_names
from hems.config.base import Section
from hems.config.errors import (
    config_problem,
    invalid,
    out_of_range,
    read_config_file,
    validate_toml,
)
from hems.config.operations import LoggingConfig, MetricsConfig, MqttBrokerConfig
from hems.protocol.messages import BidFormat, MarketConfig
from hems.protocol.topics import IDENTIFIER
from hems.protocol.units import price_to_micro

Price = Field(ge=0, le=100)


class CommunitySection(Section):
    """``[community]``: who the community is and where its books live."""

    id: str = Field(pattern=IDENTIFIER.pattern)
    #: The manager's SQLite database (orders, meters, ledger) lives here.
    state_directory: Path = Path("/var/lib/hems-community")

    @property
    def database_path(self) -> Path:
        return self.state_directory / "community.sqlite"


class NegotiationSection(Section):
    """``[market.negotiation]``: exchange ADMM before each gate closure (mechanism ``admm``)."""

    #: ADMM's penalty weight ρ, currency per kWh² (docs/negotiation.md).
    rho_per_kwh2: float = Field(default=0.2, gt=0, le=100)
    max_rounds: int = Field(default=300, ge=1, le=10_000)
    #: Slots negotiated together, from the slot whose gate closes next.
    slots: int = Field(default=4, ge=1, le=96)
    #: The negotiation starts this long before the gate closes and must end by it.
    lead_s: int = Field(default=240, ge=10, le=3_600)
    #: A round closes when every member answered, or after this long.
    round_timeout_s: float = Field(default=2.0, gt=0, le=60)


class BilateralSection(Section):
    """``[market.bilateral]``: multi-bilateral trading (mechanism ``bilateral``, docs/negotiation.md)."""

    #: Each home trades with at least this many partners (a seeded random graph; ≥ homes − 1: all).
    partners_per_home: int = Field(default=8, ge=2, le=1_000)
    #: Preference cost per kWh of a trade between homes of different ``[[member]] zone`` (currency per
    #: kWh, shared by the two ends; it shapes who trades with whom, no one pays it).
    zone_cost: Decimal = Field(default=Decimal("0.01"), ge=0, le=1)
    #: ADMM's penalty weight ρ, currency per kWh² (adapted by residual balancing while it runs).
    rho_per_kwh2: float = Field(default=1.0, gt=0, le=100)
    max_rounds: int = Field(default=2_000, ge=1, le=20_000)


class MarketSection(Section):
    """``[market]``: the mechanism, its prices and the calendar."""

    mechanism: str = "bid_curve"
    #: What homes submit; unset: curves for the bidding mechanisms, nothing for the sharing rules.
    bid_format: Literal["orders", "curve", "none"] | None = None
    slot_duration_s: int = Field(default=900, ge=300, le=3600)
    #: The gate of a slot closes this many seconds before the slot starts.
    gate_closure_lead_s: int = Field(default=300, ge=0, le=86_400)
    #: Orders are accepted for this many slots ahead of the next gate closure.
    horizon_slots: int = Field(default=4, ge=1, le=192)
    retail_price: Decimal = Price
    feed_in_price: Decimal = Price
    network_fee: Decimal = Field(default=Decimal(0), ge=0, le=10)
    community_fee: Decimal = Field(default=Decimal(0), ge=0, le=10)
    #: Price rule of the auctions: p* = k·bid + (1 − k)·ask (0.5: midpoint of the marginal pair).
    price_rule_k: Decimal = Field(default=Decimal("0.5"), ge=0, le=1)
    #: Points of the published price grid for bid curves (feed-in … retail).
    price_grid_points: int = Field(default=21, ge=2, le=101)
    #: Deviations from the allocation are settled at these prices (unset: retail and feed-in).
    imbalance_import_price: Decimal | None = Field(default=None, ge=0, le=100)
    imbalance_export_price: Decimal | None = Field(default=None, ge=0, le=100)
    #: Meter reports are awaited this long after a slot ends; then the slot settles provisionally.
    meter_deadline_s: int = Field(default=600, ge=0, le=86_400)
    #: Energy collective: extra cost per kWh a home imports or exports (preference weights).
    import_preference: Decimal = Field(default=Decimal(0), ge=0, le=10)
    export_preference: Decimal = Field(default=Decimal(0), ge=0, le=10)
    #: Fixed tie-break seed base (tests, audits); unset: a fresh random seed per slot, published.
    tie_break_seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    negotiation: NegotiationSection = NegotiationSection()
    bilateral: BilateralSection = BilateralSection()

    @field_validator("mechanism")
    @classmethod
    def _known_mechanism(cls, value: str) -> str:
        if value not in mechanism_names():
            raise config_problem(("", invalid(value, "one of " + ", ".join(mechanism_names()))))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MarketSection:
        if self.feed_in_price >= self.retail_price:
            raise config_problem(("feed_in_price", out_of_range(self.feed_in_price,
                                                                f"< retail_price ({self.retail_price})")))
        wants_positions = input_kind(self.mechanism) is InputKind.POSITIONS
        if self.bid_format is not None and (self.bid_format == "none") != wants_positions:
            allowed = '"none"' if wants_positions else '"orders" or "curve"'
            raise config_problem(("bid_format", invalid(self.bid_format, f"{allowed} for {self.mechanism}")))
        return self

    @property
    def effective_bid_format(self) -> BidFormat:
        if self.bid_format is not None:
            return BidFormat(self.bid_format)
        positions = input_kind(self.mechanism) is InputKind.POSITIONS
        return BidFormat.NONE if positions else BidFormat.CURVE

    def price_grid_micro(self) -> list[int]:
        """The published grid: ``price_grid_points`` prices from feed-in to retail, integer µ¤/kWh."""
        low, high = price_to_micro(self.feed_in_price), price_to_micro(self.retail_price)
        points = self.price_grid_points
        grid = sorted({low + (high - low) * index // (points - 1) for index in range(points)})
        return grid

    def parameters(self, seed: int) -> MarketParameters:
        """The mechanism parameters of one slot."""
        return MarketParameters(
            retail_price_micro=price_to_micro(self.retail_price),
            feed_in_price_micro=price_to_micro(self.feed_in_price),
            k=Fraction(self.price_rule_k), network_fee_micro=price_to_micro(self.network_fee),
            community_fee_micro=price_to_micro(self.community_fee), seed=seed,
            price_grid_micro=tuple(self.price_grid_micro()),
            import_preference_micro=price_to_micro(self.import_preference),
            export_preference_micro=price_to_micro(self.export_preference),
        )

    @property
    def imbalance_import_price_micro(self) -> int:
        return price_to_micro(self.imbalance_import_price if self.imbalance_import_price is not None
                              else self.retail_price)

    @property
    def imbalance_export_price_micro(self) -> int:
        return price_to_micro(self.imbalance_export_price if self.imbalance_export_price is not None
                              else self.feed_in_price)


class MemberSection(Section):
    """``[[member]]``: one home of the community; its id is its broker user name."""

    id: str = Field(pattern=IDENTIFIER.pattern)
    #: The member's network zone (e.g. its feeder); the ``bilateral`` mechanism prefers trades within one.
    zone: str = Field(default="", max_length=64)
    #: The owner's standing opt-out of the federated power plant: never dispatched, whatever the price.
    flexibility_opt_out: bool = False
    #: The member's weight when flexibility revenue is shared ``weighted`` (× delivered Wh).
    flexibility_weight: int = Field(default=1, ge=1, le=1000)


class FlexibilitySection(Section):
    """``[flexibility]``: the federated power plant (docs/flexibility.md)."""

    #: Take the grid operator's requests at all (``grid/request``).
    enabled: bool = True
    #: How long a home has to accept or decline a proposed commitment (clock seconds).
    answer_window_s: int = Field(default=120, ge=5, le=3600)
    #: Proposal rounds per request: after declines the manager re-dispatches at most this often.
    max_rounds: int = Field(default=3, ge=1, le=10)
    #: The smallest offer published on ``grid/offers`` (mean power over the slot); smaller blocks are merged.
    minimum_offer_w: int = Field(default=1000, ge=1, le=10_000_000)
    #: How the revenue of a delivered request is shared among the homes that delivered.
    revenue_policy: Literal["pro_rata", "equal", "weighted"] = "pro_rata"
    #: A home that delivers less than this share of its commitment in a slot is replaced in the
    #: request's later slots (re-dispatch before the slot).
    delivery_tolerance_pct: int = Field(default=20, ge=0, le=100)
    #: Baseline from metered history: the same slot on up to this many previous days ...
    baseline_days: int = Field(default=10, ge=1, le=60)
    #: ... when at least this many of them have a reading; otherwise the baseline the home declared.
    baseline_min_days: int = Field(default=5, ge=1, le=60)


#: The id of the upstream market's participant in our own clearings (docs/community.md, "Nesting"):
#: no member may take it.
UPSTREAM_PARTICIPANT = "upstream"


class UpstreamSection(Section):
    """``[upstream]``: the community is a member of an upstream market (a feeder or aggregator
    manager) and trades its residual there (docs/community.md, "Nesting")."""

    #: The upstream market's community id: its topic prefix ``hems/v1/<community>/``.
    community: str = Field(pattern=IDENTIFIER.pattern)
    #: Our member id in the upstream market; unset: our own community id.
    member_id: str | None = Field(default=None, pattern=IDENTIFIER.pattern)
    #: The upstream broker; unset: the broker of ``[broker]``, over a second connection.
    broker: MqttBrokerConfig | None = None
    #: The residual curve is submitted this long before the upstream gate closes.
    submit_lead_s: int = Field(default=60, ge=1, le=3_600)


class CommunityConfig(Section):
    """The whole file."""

    community: CommunitySection
    broker: MqttBrokerConfig = MqttBrokerConfig(username="manager")
    market: MarketSection
    member: list[MemberSection] = Field(min_length=1)
    #: The feeder the community sits on (docs/grid.md); unset: no grid review of the clearings.
    grid: FeederSection | None = None
    flexibility: FlexibilitySection = FlexibilitySection()
    metrics: MetricsConfig = MetricsConfig(enabled=False)
    logging: LoggingConfig = LoggingConfig()
    #: The upstream market the community trades its residual in; unset: the retailer only.
    upstream: UpstreamSection | None = None

    @field_validator("member")
    @classmethod
    def _unique_members(cls, members: list[MemberSection]) -> list[MemberSection]:
        seen: set[str] = set()
        for index, member in enumerate(members):
            if member.id in seen:
                raise config_problem((f"{index}.id", invalid(member.id, "an id not used by another member")))
            if member.id == UPSTREAM_PARTICIPANT:
                raise config_problem((f"{index}.id", invalid(member.id, f"any id but {UPSTREAM_PARTICIPANT!r}, "
                                                                        "which names the upstream market")))
            seen.add(member.id)
        return members

    @model_validator(mode="after")
    def _nesting_possible(self) -> CommunityConfig:
        upstream = self.upstream
        if upstream is None:
            return self
        if upstream.community == self.community.id:
            raise config_problem(("upstream.community", invalid(upstream.community,
                                                                "another community than [community] id")))
        mechanism = self.market.mechanism
        if input_kind(mechanism) is InputKind.POSITIONS or mechanism == "admm":
            # No bids (or a negotiated outcome that ignores the book): no residual curve to submit and
            # no book the upstream trade could be shared in.
            raise config_problem(("upstream", f": nesting needs a mechanism that clears the homes' bids, "
                                              f"not market.mechanism = {mechanism!r}"))
        if self.grid is not None:
            raise config_problem(("upstream", ": nesting together with a [grid] feeder review is not supported"))
        return self

    @property
    def upstream_member_id(self) -> str | None:
        """Our member id in the upstream market (None without ``[upstream]``)."""
        if self.upstream is None:
            return None
        return self.upstream.member_id or self.community.id

    @model_validator(mode="after")
    def _feeder_homes_are_members(self) -> CommunityConfig:
        members = set(self.member_ids)
        for index, home in enumerate(self.grid.homes if self.grid is not None else ()):
            if home.id not in members:
                raise config_problem((f"grid.homes[{index}].id", invalid(home.id, "the id of a [[member]]")))
        return self

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(member.id for member in self.member)

    def market_config(self, config_version: int) -> MarketConfig:
        """The retained ``market/config`` message."""
        market = self.market
        return MarketConfig(
            community=self.community.id, config_version=config_version, mechanism=market.mechanism,
            bid_format=market.effective_bid_format, slot_duration_s=market.slot_duration_s,
            gate_closure_lead_s=market.gate_closure_lead_s, horizon_slots=market.horizon_slots,
            retail_price_micro=price_to_micro(market.retail_price),
            feed_in_price_micro=price_to_micro(market.feed_in_price),
            network_fee_micro=price_to_micro(market.network_fee),
            community_fee_micro=price_to_micro(market.community_fee),
            price_rule_k=str(market.price_rule_k), price_grid_micro=market.price_grid_micro(),
            imbalance_import_price_micro=market.imbalance_import_price_micro,
            imbalance_export_price_micro=market.imbalance_export_price_micro,
            meter_deadline_s=market.meter_deadline_s,
        )


def parse_community_config(text: str, source: str = "<config>") -> CommunityConfig:
    """Validate TOML text (prices read as decimals); raises :class:`ConfigError` naming ``source``."""
    return validate_toml(text, source, CommunityConfig, decimals=True)


def load_community_config(path: str | Path) -> CommunityConfig:
    """Read and validate a community manager configuration file."""
    text = read_config_file(path)
    return parse_community_config(text, str(path))
