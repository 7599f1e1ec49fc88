"""The topic tree of protocol v1, one community per prefix ``hems/v1/<community>/``.

```
market/config                 CM -> all    retained: mechanism, parameters, calendar
market/slot/<start>/result    CM -> all    retained: public, anonymised clearing result
market/signal                 CM -> all    iterative mechanisms
vpp/request                   CM -> all    flexibility requests
home/<home>/orders            home -> CM   orders or bid curves (replace semantics per slot)
home/<home>/ack               CM -> home   reception status per message_id
home/<home>/allocation        CM -> home   private: cleared volumes, prices, order status
home/<home>/meter             home -> CM   metered energy per settled slot
home/<home>/status            home -> all  retained; online/offline (last will)
home/<home>/negotiation       home -> CM   answers to the rounds of an iterative mechanism
home/<home>/commitment        CM -> home   private: the home's share of a flexibility request
home/<home>/commitment_answer home -> CM   accept or decline a commitment
grid/limits                   GO -> CM     retained: day-ahead import/export limits and locational fees
grid/request                  GO -> CM     flexibility requests of the grid operator (or aggregator)
grid/response                 CM -> GO     what became of a request: dispatched, refused, settled
grid/offers                   CM -> GO     retained: the community's pooled flexibility offers
grid/ack                      CM -> GO     reception status of the operator's limits
```

GO is the grid operator (``hems grid`` simulates one).

``<start>`` is the slot's UTC start in ISO 8601 basic form (``20261121T101500Z``): no ``:`` and no
``+``, which some tools treat specially in topic names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

ROOT = "hems/v1"
IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SLOT_FORMAT = "%Y%m%dT%H%M%SZ"


class HomeTopic(StrEnum):
    """The leaves under ``home/<home>/``."""

    ORDERS = "orders"
    ACK = "ack"
    ALLOCATION = "allocation"
    METER = "meter"
    STATUS = "status"
    NEGOTIATION = "negotiation"
    COMMITMENT = "commitment"
    COMMITMENT_ANSWER = "commitment_answer"


class GridTopic(StrEnum):
    """The leaves under ``grid/`` (the grid operator's side)."""

    LIMITS = "limits"
    REQUEST = "request"
    RESPONSE = "response"
    OFFERS = "offers"
    ACK = "ack"


def slot_token(slot_start: datetime) -> str:
    """A slot start as it appears in a topic."""
    return slot_start.astimezone(timezone.utc).strftime(_SLOT_FORMAT)


def parse_slot_token(token: str) -> datetime:
    """The inverse of :func:`slot_token`; ValueError if malformed."""
    return datetime.strptime(token, _SLOT_FORMAT).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class HomeAddress:
    """A parsed ``home/<home>/<leaf>`` topic."""

    home: str
    leaf: HomeTopic


@dataclass(frozen=True)
class Topics:
    """Every topic name of one community."""

    community: str

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.community):
            raise ValueError(f"community id {self.community!r}: use 1-64 letters, digits, '-' or '_'")

    @property
    def prefix(self) -> str:
        """``hems/v1/<community>``."""
        return f"{ROOT}/{self.community}"

    def market_config(self) -> str:
        return f"{self.prefix}/market/config"

    def slot_result(self, slot_start: datetime) -> str:
        return f"{self.prefix}/market/slot/{slot_token(slot_start)}/result"

    def market_signal(self) -> str:
        return f"{self.prefix}/market/signal"

    def vpp_request(self) -> str:
        return f"{self.prefix}/vpp/request"

    def grid(self, leaf: GridTopic) -> str:
        """``grid/<leaf>``: the grid operator's topics."""
        return f"{self.prefix}/grid/{leaf}"

    def home(self, home: str, leaf: HomeTopic) -> str:
        """``home/<home>/<leaf>``; ValueError for an id that could escape its subtree."""
        if not IDENTIFIER.match(home):
            raise ValueError(f"home id {home!r}: use 1-64 letters, digits, '-' or '_'")
        return f"{self.prefix}/home/{home}/{leaf}"

    def all_homes(self, leaf: HomeTopic) -> str:
        """The subscription filter ``home/+/<leaf>``."""
        return f"{self.prefix}/home/+/{leaf}"

    def parse_home(self, topic: str) -> HomeAddress | None:
        """``home/<home>/<leaf>`` of this community, or None for any other topic."""
        head = f"{self.prefix}/home/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        if len(parts) != 2 or not IDENTIFIER.match(parts[0]):
            return None
        try:
            return HomeAddress(parts[0], HomeTopic(parts[1]))
        except ValueError:
            return None
