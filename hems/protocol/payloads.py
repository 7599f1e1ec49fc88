"""Every payload type of protocol v1 by its ``message_type``: the market's and the power plant's."""

from __future__ import annotations

from hems.protocol.messages import (
    Ack,
    Allocation,
    HomeStatus,
    MarketConfig,
    MeterReport,
    NegotiationAnswer,
    NegotiationSignal,
    OrderSubmission,
    Payload,
    SlotResult,
)
from hems.protocol.power_plant import POWER_PLANT_PAYLOADS

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    model.MESSAGE_TYPE: model
    for model in (MarketConfig, OrderSubmission, Ack, Allocation, MeterReport, SlotResult, HomeStatus,
                  NegotiationSignal, NegotiationAnswer, *POWER_PLANT_PAYLOADS)
}
