"""Bytes <-> validated messages. Every way a message can be wrong becomes a :class:`ProtocolError`
carrying the reception status and a label that says why, so a receiver can ack it and move on."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

from pydantic import ValidationError

from hems.protocol.envelope import Envelope, ReceptionStatus
from hems.protocol.messages import Payload
from hems.protocol.payloads import PAYLOAD_TYPES

#: The largest message a receiver parses; a full 48 h order set is well under 64 KiB.
MAX_MESSAGE_BYTES = 64 * 1024
#: An ack's diagnostic label carries at most this many characters.
MAX_LABEL_CHARS = 500
_MAX_LOCATION_PART_CHARS = 40

P = TypeVar("P", bound=Payload)


class ProtocolError(Exception):
    """A message that cannot be accepted; ``message_id`` is known when the envelope parsed."""

    def __init__(self, status: ReceptionStatus, label: str, message_id: UUID | None = None,
                 message_type: str | None = None) -> None:
        super().__init__(f"{status}: {label}")
        self.status = status
        self.label = label
        self.message_id = message_id
        self.message_type = message_type


@dataclass(frozen=True)
class Message(Generic[P]):
    """A decoded, validated message."""

    envelope: Envelope
    payload: P

    @property
    def message_id(self) -> UUID:
        return self.envelope.message_id

    @property
    def sender(self) -> str:
        return self.envelope.sender


def encode(payload: Payload, *, sender: str, sent_at: datetime, correlation_id: UUID | None = None,
           message_id: UUID | None = None) -> bytes:
    """The wire form of ``payload`` in a fresh envelope (compact JSON, UTF-8)."""
    envelope = Envelope(
        message_id=message_id or uuid.uuid4(), message_type=payload.MESSAGE_TYPE,
        schema_version=payload.SCHEMA_VERSION, sent_at=sent_at, sender=sender,
        correlation_id=correlation_id, payload=payload.model_dump(mode="json", exclude_none=True),
    )
    return envelope.model_dump_json(exclude_none=True).encode()


def decode(raw: bytes, accepted: tuple[type[P], ...]) -> Message[P]:
    """Parse and validate ``raw`` as one of the ``accepted`` payload types."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(ReceptionStatus.INVALID_MESSAGE,
                            f"message of {len(raw)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:  # bad UTF-8, bad JSON, an int beyond Python's digit limit
        raise ProtocolError(ReceptionStatus.INVALID_MESSAGE, f"not JSON: {error}") from None
    message_id = _message_id_of(document)
    try:
        envelope = Envelope.model_validate_json(raw)
    except ValidationError as error:
        raise ProtocolError(ReceptionStatus.INVALID_MESSAGE, "envelope: " + describe(error), message_id) from None
    model = next((kind for kind in accepted if kind.MESSAGE_TYPE == envelope.message_type), None)
    if model is None:
        known = "unknown" if envelope.message_type not in PAYLOAD_TYPES else "not accepted on this topic"
        raise ProtocolError(ReceptionStatus.INVALID_MESSAGE,
                            f"message_type {envelope.message_type!r} {known}; expected "
                            + " or ".join(kind.MESSAGE_TYPE for kind in accepted),
                            envelope.message_id, envelope.message_type)
    if envelope.schema_version != model.SCHEMA_VERSION:
        raise ProtocolError(ReceptionStatus.INVALID_MESSAGE,
                            f"schema_version {envelope.schema_version} of {model.MESSAGE_TYPE} not supported; "
                            f"this receiver speaks {model.SCHEMA_VERSION}",
                            envelope.message_id, envelope.message_type)
    try:
        # JSON mode: strings become UUIDs and datetimes, but 1.0 or "1" never becomes an int.
        payload = model.model_validate_json(json.dumps(envelope.payload))
    except ValidationError as error:
        raise ProtocolError(ReceptionStatus.INVALID_DATA, describe(error), envelope.message_id,
                            envelope.message_type) from None
    return Message(envelope, payload)


def describe(error: ValidationError, limit: int = 3) -> str:
    """The first few problems of a validation error as ``location: message`` (short enough for an ack)."""
    problems = []
    for item in error.errors(include_url=False)[:limit]:
        # A key name comes from the sender: keep each part short so the label stays an ack's size.
        location = ".".join(_shorten(str(part), _MAX_LOCATION_PART_CHARS) for part in item["loc"]) or "(root)"
        problems.append(f"{location}: {item['msg']}")
    more = error.error_count() - limit
    return _shorten("; ".join(problems) + (f"; and {more} more" if more > 0 else ""), MAX_LABEL_CHARS)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _message_id_of(document: object) -> UUID | None:
    if isinstance(document, dict):
        try:
            return UUID(str(document.get("message_id")))
        except (ValueError, TypeError, AttributeError):
            return None
    return None
