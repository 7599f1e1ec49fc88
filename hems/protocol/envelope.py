"""The envelope of every message (S2 / EN 50491-12-2 style) and the statuses an ack reports."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hems.protocol.topics import IDENTIFIER


def _utc_instant(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError("must be UTC with an explicit offset (…Z or +00:00)")
    return value


#: A timezone-aware UTC instant; naive or non-UTC times are refused.
UtcInstant = Annotated[datetime, AfterValidator(_utc_instant)]
Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern)]


class ReceptionStatus(StrEnum):
    """How a receiver took a message (S2 ReceptionStatus)."""

    OK = "OK"
    INVALID_DATA = "INVALID_DATA"  # the payload does not match its schema
    INVALID_MESSAGE = "INVALID_MESSAGE"  # not a message: size, JSON, envelope, type or version
    INVALID_CONTENT = "INVALID_CONTENT"  # well-formed but not acceptable now (window, sequence, sender)
    TEMPORARY_ERROR = "TEMPORARY_ERROR"  # try again later
    PERMANENT_ERROR = "PERMANENT_ERROR"  # will never be accepted


class WireModel(BaseModel):
    """Strict, closed and immutable: ``1.0`` is not an integer and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Envelope(WireModel):
    """What every payload travels in."""

    message_id: UUID
    message_type: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")]
    schema_version: Annotated[int, Field(ge=1)]
    sent_at: UtcInstant
    sender: Identifier
    correlation_id: UUID | None = None
    payload: dict[str, Any]
