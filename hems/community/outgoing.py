"""What the community manager publishes: a topic, the encoded message, retained or not."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from hems.community.records import utc
from hems.protocol.codec import encode
from hems.protocol.messages import Payload

#: The manager's sender id in every envelope.
SENDER = "manager"


@dataclass(frozen=True)
class Outgoing:
    """A message to publish."""

    topic: str
    payload: bytes
    retain: bool = False


def encode_as_manager(payload: Payload, now_s: float, correlation_id: UUID | None = None) -> bytes:
    """``payload`` in the manager's envelope, stamped with the manager's clock (to the millisecond)."""
    return encode(payload, sender=SENDER, sent_at=utc(round(now_s, 3)), correlation_id=correlation_id)


def outgoing(topic: str, payload: Payload, now_s: float, *, retain: bool = False,
             correlation_id: UUID | None = None) -> Outgoing:
    """One message to publish on ``topic``."""
    return Outgoing(topic, encode_as_manager(payload, now_s, correlation_id), retain)
