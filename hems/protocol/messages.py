"""One versioned payload model per message type of protocol v1.

Quantities are integers: energy in Wh, prices in µ¤/kWh, money in n¤ (see :mod:`hems.protocol.units`).
The price rule ``k`` is a decimal string. docs/protocol.md is generated from these models
(``python -m hems.protocol.docs``) and a test keeps the two in step.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import Field, field_validator, model_validator

from hems.protocol.envelope import Identifier, ReceptionStatus, UtcInstant, WireModel

#: Bounds that keep a single message small and every product of two integers exact and sane.
MAX_ENERGY_WH = 10_000_000  # 10 MWh in one slot is far beyond any home
MAX_PRICE_MICRO = 100_000_000  # 100 currency units per kWh
MAX_SLOTS_PER_MESSAGE = 192  # 48 h of 15-min slots
MAX_ORDERS_PER_SLOT = 50
MAX_CURVE_POINTS = 101
MAX_PARTNERS = 50
MAX_DONATIONS_PER_SLOT = 10

EnergyWh = Annotated[int, Field(ge=0, le=MAX_ENERGY_WH)]
PositiveEnergyWh = Annotated[int, Field(ge=1, le=MAX_ENERGY_WH)]
SignedEnergyWh = Annotated[int, Field(ge=-MAX_ENERGY_WH, le=MAX_ENERGY_WH)]
PriceMicro = Annotated[int, Field(ge=0, le=MAX_PRICE_MICRO)]
SignedPriceMicro = Annotated[int, Field(ge=-MAX_PRICE_MICRO, le=MAX_PRICE_MICRO)]
SlotDuration = Annotated[int, Field(ge=60, le=86_400)]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderStatus(StrEnum):
    """The outcome of one order (reported in acks and allocations)."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    UNMATCHED = "UNMATCHED"
    EXPIRED = "EXPIRED"


class EnergyClass(StrEnum):
    """Where energy comes from: the retailer (grid), a home (local), a home's renewables (green_local).

    A home sells ``local`` or ``green_local``; ``grid`` is the retailer's alone."""

    GRID = "grid"
    LOCAL = "local"
    GREEN_LOCAL = "green_local"


class BidFormat(StrEnum):
    """What a mechanism wants from the homes before gate closure."""

    ORDERS = "orders"  # limit orders
    CURVE = "curve"  # a net-import curve per slot
    NONE = "none"  # nothing: the sharing rules work from metered positions


class SlotState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    CLEARED = "CLEARED"
    SETTLED = "SETTLED"


class Payload(WireModel):
    """The base of every payload: its type name and schema version travel in the envelope."""

    MESSAGE_TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1


class MarketConfig(Payload):
    """``market/config`` (retained): the mechanism, its parameters and the market calendar.

    The gate of the slot starting at ``s`` closes at ``s - gate_closure_lead_s``; orders are
    accepted for the next ``horizon_slots`` slots whose gate is still open.
    """

    MESSAGE_TYPE: ClassVar[str] = "market_config"

    community: Identifier
    config_version: Annotated[int, Field(ge=1)]
    mechanism: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]
    bid_format: BidFormat
    slot_duration_s: SlotDuration
    gate_closure_lead_s: Annotated[int, Field(ge=0, le=86_400)]
    horizon_slots: Annotated[int, Field(ge=1, le=MAX_SLOTS_PER_MESSAGE)]
    retail_price_micro: PriceMicro
    feed_in_price_micro: PriceMicro
    network_fee_micro: PriceMicro = 0
    community_fee_micro: PriceMicro = 0
    price_rule_k: str = "0.5"
    price_grid_micro: Annotated[list[PriceMicro], Field(min_length=2, max_length=MAX_CURVE_POINTS)]
    imbalance_import_price_micro: PriceMicro
    imbalance_export_price_micro: PriceMicro
    meter_deadline_s: Annotated[int, Field(ge=0, le=86_400)]

    @field_validator("price_rule_k")
    @classmethod
    def _k_in_unit_interval(cls, value: str) -> str:
        try:
            k = Decimal(value)
        except InvalidOperation:
            raise ValueError("must be a decimal string such as '0.5'") from None
        if not k.is_finite() or not 0 <= k <= 1:
            raise ValueError("must lie in [0, 1]")
        return value

    @model_validator(mode="after")
    def _prices_ordered(self) -> MarketConfig:
        if self.feed_in_price_micro >= self.retail_price_micro:
            raise ValueError("feed_in_price_micro must be below retail_price_micro")
        grid = self.price_grid_micro
        if any(b <= a for a, b in zip(grid, grid[1:])):
            raise ValueError("price_grid_micro must be strictly ascending")
        if grid[0] != self.feed_in_price_micro or grid[-1] != self.retail_price_micro:
            raise ValueError("price_grid_micro must run from feed_in_price_micro to retail_price_micro")
        return self


Partners = Annotated[list[Identifier], Field(min_length=1, max_length=MAX_PARTNERS)]


class EnergyPreferences(WireModel):
    """What differentiated markets read from an order or a curve (others ignore it).

    ``energy_class`` qualifies what the bid sells (``local`` when absent); ``green_premium_micro`` is what
    the home pays per kWh on top of the energy price for green-local energy it buys, and ``partners``
    (with a premium only) names the homes whose green energy earns that premium (any home when absent)."""

    energy_class: EnergyClass | None = None
    green_premium_micro: PriceMicro | None = None  # None: no premium (kept off the wire)
    partners: Partners | None = None

    @model_validator(mode="after")
    def _preferences(self) -> EnergyPreferences:
        if self.energy_class is EnergyClass.GRID:
            raise ValueError("energy_class: a home sells local or green_local energy, never grid")
        if self.partners is not None:
            if not self.green_premium_micro:
                raise ValueError("partners qualify a green premium: set green_premium_micro > 0")
            if len(set(self.partners)) != len(self.partners):
                raise ValueError("partners must be distinct")
        return self


class Order(EnergyPreferences):
    """A limit order: up to ``energy_wh`` at ``limit_price_micro`` or better (buyer pays fees on top).
    A sell may carry an ``energy_class``; a buy a ``green_premium_micro`` and ``partners``."""

    order_id: UUID
    side: Side
    energy_wh: PositiveEnergyWh
    limit_price_micro: PriceMicro

    @model_validator(mode="after")
    def _preferences_fit_the_side(self) -> Order:
        if self.side is Side.SELL and (self.green_premium_micro or self.partners is not None):
            raise ValueError("a sell order states an energy_class; premiums and partners belong to buy orders")
        if self.side is Side.BUY and self.energy_class is not None:
            raise ValueError("a buy order states a green_premium_micro; energy_class belongs to sell orders")
        return self


class Curve(EnergyPreferences):
    """Net import (Wh; + buy, − sell) at each price of the published grid, non-increasing in price.
    Its ``energy_class`` qualifies the energy it sells; its premium and partners the energy it buys."""

    prices_micro: Annotated[list[PriceMicro], Field(min_length=2, max_length=MAX_CURVE_POINTS)]
    net_import_wh: Annotated[list[SignedEnergyWh], Field(min_length=2, max_length=MAX_CURVE_POINTS)]

    @model_validator(mode="after")
    def _shape(self) -> Curve:
        prices, quantities = self.prices_micro, self.net_import_wh
        if len(prices) != len(quantities):
            raise ValueError("prices_micro and net_import_wh must have the same length")
        if any(b <= a for a, b in zip(prices, prices[1:])):
            raise ValueError("prices_micro must be strictly ascending")
        if any(b > a for a, b in zip(quantities, quantities[1:])):
            raise ValueError("net_import_wh must be non-increasing in price")
        return self


class Donation(WireModel):
    """Up to ``energy_wh`` of the home's surplus in the slot, at ``price_micro`` per kWh (0: free), for
    the ``recipients`` only (energy given to designated households). What the recipients do not take
    stays in the home's sells."""

    donation_id: UUID
    recipients: Annotated[list[Identifier], Field(min_length=1, max_length=MAX_PARTNERS)]
    energy_wh: PositiveEnergyWh
    price_micro: PriceMicro = 0

    @field_validator("recipients")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("recipients must be distinct")
        return value


class SlotBid(WireModel):
    """A home's bid for one slot: orders or a curve, and donations. It replaces the home's earlier bid
    for that slot; an empty ``orders`` list without a curve cancels it."""

    slot_start: UtcInstant
    duration_s: SlotDuration
    orders: Annotated[list[Order], Field(max_length=MAX_ORDERS_PER_SLOT)] = []
    curve: Curve | None = None
    donations: Annotated[list[Donation], Field(max_length=MAX_DONATIONS_PER_SLOT)] = []

    @model_validator(mode="after")
    def _one_kind(self) -> SlotBid:
        if self.orders and self.curve is not None:
            raise ValueError("a slot bid carries orders or a curve, not both")
        ids = [order.order_id for order in self.orders]
        if len(set(ids)) != len(ids):
            raise ValueError("order_id must be unique within a slot")
        donation_ids = [donation.donation_id for donation in self.donations]
        if len(set(donation_ids)) != len(donation_ids):
            raise ValueError("donation_id must be unique within a slot")
        if self.donations and not self.orders and self.curve is None:
            raise ValueError("donations come from the slot's sells: a bid without orders or a curve gives nothing")
        return self


class OrderSubmission(Payload):
    """``home/<id>/orders``: bids for one or more slots. ``sequence`` increases with every
    submission of the home (PowerMatcher's bid number) and is echoed in the allocation."""

    MESSAGE_TYPE: ClassVar[str] = "orders"

    sequence: Annotated[int, Field(ge=0)]
    slots: Annotated[list[SlotBid], Field(min_length=1, max_length=MAX_SLOTS_PER_MESSAGE)]

    @model_validator(mode="after")
    def _distinct_slots(self) -> OrderSubmission:
        starts = [slot.slot_start for slot in self.slots]
        if len(set(starts)) != len(starts):
            raise ValueError("each slot_start may appear once")
        return self


class SlotAck(WireModel):
    """Whether one slot of a submission was taken."""

    slot_start: UtcInstant
    status: Literal[OrderStatus.ACCEPTED, OrderStatus.REJECTED]
    reason: Annotated[str, Field(max_length=200)] = ""


class Ack(Payload):
    """``home/<id>/ack``: the reception status of one message (``correlation_id`` = its id)."""

    MESSAGE_TYPE: ClassVar[str] = "ack"

    status: ReceptionStatus
    diagnostic_label: Annotated[str, Field(max_length=500)] = ""
    acked_message_type: Annotated[str, Field(max_length=40)] | None = None
    slots: Annotated[list[SlotAck], Field(max_length=MAX_SLOTS_PER_MESSAGE)] = []


class OrderOutcome(WireModel):
    """The final status of one order after clearing."""

    order_id: UUID
    status: OrderStatus
    filled_wh: EnergyWh
    price_micro: PriceMicro | None = None


class Provenance(WireModel):
    """Where the energy a home bought in one slot came from, and where the energy it sold went (Wh),
    matched in time (the slot) and place (the community); the premiums paid and received (n¤).
    Bought: ``donated_wh + green_local_wh + local_wh + grid_wh`` = ``bought_wh`` of the allocation;
    sold: ``given_wh + sold_green_local_wh + sold_local_wh + sold_grid_wh`` = ``sold_wh``."""

    donated_wh: EnergyWh = 0
    green_local_wh: EnergyWh = 0
    local_wh: EnergyWh = 0
    grid_wh: EnergyWh = 0
    given_wh: EnergyWh = 0
    sold_green_local_wh: EnergyWh = 0
    sold_local_wh: EnergyWh = 0
    sold_grid_wh: EnergyWh = 0
    premium_paid_nano: Annotated[int, Field(ge=0)] = 0
    premium_received_nano: Annotated[int, Field(ge=0)] = 0


class Allocation(Payload):
    """``home/<id>/allocation`` (private): what the home bought and sold in one slot.

    ``paid_nano`` and ``received_nano`` are for energy; ``fees_nano`` (network and community) come on
    top for the buyer. The net position ``bought_wh - sold_wh`` is what settlement compares with the
    meter.
    """

    MESSAGE_TYPE: ClassVar[str] = "allocation"

    slot_start: UtcInstant
    duration_s: SlotDuration
    mechanism: str
    sequence: int | None = None
    bought_wh: EnergyWh
    sold_wh: EnergyWh
    buy_price_micro: PriceMicro | None = None
    sell_price_micro: PriceMicro | None = None
    paid_nano: Annotated[int, Field(ge=0)]
    received_nano: Annotated[int, Field(ge=0)]
    fees_nano: Annotated[int, Field(ge=0)]
    orders: Annotated[list[OrderOutcome], Field(max_length=MAX_ORDERS_PER_SLOT)] = []
    provenance: Provenance | None = None  # differentiated markets only


class MeterReport(Payload):
    """``home/<id>/meter``: the energy the grid meter counted in one finished slot."""

    MESSAGE_TYPE: ClassVar[str] = "meter"

    slot_start: UtcInstant
    duration_s: SlotDuration
    import_wh: EnergyWh
    export_wh: EnergyWh


class SlotResult(Payload):
    """``market/slot/<start>/result`` (retained, public): aggregates only, never who traded with whom."""

    MESSAGE_TYPE: ClassVar[str] = "slot_result"

    slot_start: UtcInstant
    duration_s: SlotDuration
    state: SlotState
    mechanism: str
    config_version: int
    price_rule_k: str
    price_micro: PriceMicro | None = None
    buy_price_micro: PriceMicro | None = None
    sell_price_micro: PriceMicro | None = None
    min_trade_price_micro: PriceMicro | None = None
    median_trade_price_micro: PriceMicro | None = None
    max_trade_price_micro: PriceMicro | None = None
    traded_wh: EnergyWh
    grid_import_wh: Annotated[int, Field(ge=0)]
    grid_export_wh: Annotated[int, Field(ge=0)]
    homes: Annotated[int, Field(ge=0)]
    non_responders: Annotated[int, Field(ge=0)]
    tie_break_seed: int | None = None
    book_hash: str
    rounding_nano: int
    ledger_head: str
    grid_congested: bool | None = None  # with a feeder model only: the clearing would have exceeded a limit
    grid_curtailed_wh: EnergyWh | None = None  # what the grid review took off the homes' positions


class HomeStatus(Payload):
    """``home/<id>/status`` (retained; the last will says ``offline``)."""

    MESSAGE_TYPE: ClassVar[str] = "home_status"

    state: Literal["online", "offline"]
    market: Literal["trading", "retail_only", "disabled"] = "retail_only"


class NegotiationState(StrEnum):
    """Where a negotiation (exchange ADMM, docs/negotiation.md) stands after a round."""

    ROUND = "round"  # answer this round
    CONVERGED = "converged"  # final: these positions and prices stand; allocations follow
    ABANDONED = "abandoned"  # round cap or time budget: the slot clears with the fallback mechanism


class NegotiationSignal(Payload):
    """``market/signal``: one round of exchange ADMM over ``len(mean_wh)`` slots from ``slot_start``.

    A home answers round k with x = argmin cost(x) + ρ/2·‖(x − v)/1000‖², v = x_last − mean_wh −
    1000·price_micro/rho_micro_per_kwh2, where x_last is its own last answer (zeros before round 0)."""

    MESSAGE_TYPE: ClassVar[str] = "negotiation_signal"

    negotiation_id: Identifier
    round: Annotated[int, Field(ge=0)]
    state: NegotiationState
    slot_start: UtcInstant
    duration_s: SlotDuration
    rho_micro_per_kwh2: Annotated[int, Field(ge=1, le=MAX_PRICE_MICRO)]
    mean_wh: Annotated[list[SignedEnergyWh], Field(min_length=1, max_length=MAX_SLOTS_PER_MESSAGE)]
    price_micro: Annotated[list[SignedPriceMicro], Field(min_length=1, max_length=MAX_SLOTS_PER_MESSAGE)]

    @model_validator(mode="after")
    def _same_length(self) -> NegotiationSignal:
        if len(self.mean_wh) != len(self.price_micro):
            raise ValueError("mean_wh and price_micro must have one value per slot")
        return self

    def target_wh(self, last_answer_wh: list[float]) -> list[float]:
        """A home's proximity target: v = x_last − x̄ − 1000·π/ρ (Wh per slot)."""
        return [last - mean - 1000.0 * price / self.rho_micro_per_kwh2
                for last, mean, price in zip(last_answer_wh, self.mean_wh, self.price_micro)]


class NegotiationAnswer(Payload):
    """``home/<id>/negotiation``: the home's net import per negotiated slot for one round."""

    MESSAGE_TYPE: ClassVar[str] = "negotiation_answer"

    negotiation_id: Identifier
    round: Annotated[int, Field(ge=0)]
    net_import_wh: Annotated[list[SignedEnergyWh], Field(min_length=1, max_length=MAX_SLOTS_PER_MESSAGE)]

