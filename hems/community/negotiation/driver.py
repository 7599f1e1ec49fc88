"""The manager's negotiation before a gate closure: rounds in time, answers in, signals out.

Synchronous and free of MQTT and encoding, like the manager that owns it: every method takes the
time and returns the :class:`~hems.protocol.messages.NegotiationSignal` payloads to publish.

A negotiation for the slot starting at s covers ``slots`` slots from s (the later ones only couple
the homes' storage across time; the next negotiation covers them again). It starts ``lead_s``
before the gate of s closes. A round closes as soon as every member has answered, or when its
``round_timeout_s`` passes (a home that did not answer keeps its last position). The negotiation
ends converged, at the round cap, or at gate closure ("budget"); the manager then clears s from its
outcome, or with the fallback mechanism when it did not converge. A member that never answers stays
at zero (it buys and sells at the tariff); if no member answered at all, the trivial balance of all
zeros is not an agreement ("no_answers") and the slot falls back too.

Answers are the next round's acknowledgement: a taken answer gets no ack of its own (hundreds of
homes times dozens of rounds), a refused one gets an ack that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from hems.community.config import CommunityConfig
from hems.community.negotiation.exchange import ExchangeCoordinator, ExchangeResult, ExchangeSettings, RoundSignal
from hems.protocol.messages import NegotiationAnswer, NegotiationSignal, NegotiationState
from hems.protocol.topics import slot_token

MICRO = 1_000_000


@dataclass(frozen=True)
class NegotiationTiming:
    """When a negotiation runs and how many slots it spans."""

    slots: int = 4
    lead_s: float = 240.0  # starts this long before the gate closes
    round_timeout_s: float = 2.0


@dataclass
class _Active:
    slot_start_s: int
    negotiation_id: str
    coordinator: ExchangeCoordinator
    round_deadline_s: float
    ends_by_s: float
    heard: set[str] = field(default_factory=set)  # members that answered at least once


class NegotiationDriver:
    """Runs one negotiation at a time for the manager (see the module docstring)."""

    def __init__(self, members: Sequence[str], *, retail_micro: int, feed_in_micro: int, slot_duration_s: int,
                 gate_closure_lead_s: int, settings: ExchangeSettings = ExchangeSettings(),
                 timing: NegotiationTiming = NegotiationTiming()) -> None:
        self.members = tuple(sorted(members))
        self.retail_per_kwh = retail_micro / MICRO
        self.feed_in_per_kwh = feed_in_micro / MICRO
        self.slot_duration_s = slot_duration_s
        self.gate_closure_lead_s = gate_closure_lead_s
        self.settings = settings
        self.timing = timing
        self.active: _Active | None = None
        self._outcomes: dict[int, ExchangeResult] = {}
        self._last_started_s: int | None = None
        self.refused = 0

    @classmethod
    def for_community(cls, config: CommunityConfig) -> NegotiationDriver:
        """The driver of a community's ``[market]`` and ``[market.negotiation]`` sections."""
        market, section = config.market, config.market.negotiation
        prices = market.parameters(0)
        return cls(config.member_ids, retail_micro=prices.retail_price_micro, feed_in_micro=prices.feed_in_price_micro,
                   slot_duration_s=market.slot_duration_s, gate_closure_lead_s=market.gate_closure_lead_s,
                   settings=ExchangeSettings(rho_per_kwh2=section.rho_per_kwh2, max_rounds=section.max_rounds),
                   timing=NegotiationTiming(slots=section.slots, lead_s=section.lead_s,
                                            round_timeout_s=section.round_timeout_s))

    def start_due_s(self, slot_start_s: int) -> float:
        """When the negotiation for the slot starting at ``slot_start_s`` begins."""
        return slot_start_s - self.gate_closure_lead_s - self.timing.lead_s

    def started(self, slot_start_s: int) -> bool:
        """Whether the negotiation for ``slot_start_s`` (or a later slot's) has begun."""
        return self._last_started_s is not None and self._last_started_s >= slot_start_s

    def start(self, slot_start_s: int, now_s: float) -> list[NegotiationSignal]:
        """Begin negotiating ``slot_start_s`` (ending any negotiation still open, as abandoned)."""
        out = self._finish("budget") if self.active is not None else []
        self._last_started_s = slot_start_s
        coordinator = ExchangeCoordinator(self.members, self.timing.slots, self.retail_per_kwh, self.feed_in_per_kwh,
                                          self.settings)
        token = slot_token(datetime.fromtimestamp(slot_start_s, tz=timezone.utc))
        self.active = _Active(slot_start_s, token, coordinator, now_s + self.timing.round_timeout_s,
                              float(slot_start_s - self.gate_closure_lead_s))
        return out + [self._signal(NegotiationState.ROUND)]

    def take(self, home: str, answer: NegotiationAnswer, now_s: float) -> tuple[str, list[NegotiationSignal]]:
        """Apply a home's answer: (why it was refused or "", signals to publish)."""
        active = self.active
        if active is None or answer.negotiation_id != active.negotiation_id:
            self.refused += 1
            return "no negotiation with this id is open", []
        coordinator = active.coordinator
        if answer.round != coordinator.round:
            self.refused += 1
            return f"round {answer.round} is not the open round {coordinator.round}", []
        if len(answer.net_import_wh) != coordinator.n_slots:
            self.refused += 1
            return f"net_import_wh needs {coordinator.n_slots} values", []
        coordinator.receive(home, answer.round, answer.net_import_wh)
        active.heard.add(home)
        if coordinator.answered_all:
            return "", self._close_round(now_s)
        return "", []

    def tick(self, now_s: float) -> list[NegotiationSignal]:
        """Close a round whose time is up; end a negotiation at its gate closure."""
        active = self.active
        if active is None:
            return []
        if now_s >= active.ends_by_s:
            return self._finish("budget")
        if now_s >= active.round_deadline_s:
            return self._close_round(now_s)
        return []

    def next_event_s(self) -> float | None:
        """When :meth:`tick` next has something to do (None: no negotiation open)."""
        return None if self.active is None else min(self.active.round_deadline_s, self.active.ends_by_s)

    def outcome(self, slot_start_s: int) -> ExchangeResult | None:
        """The finished negotiation of ``slot_start_s``, once (None: there was none)."""
        return self._outcomes.pop(slot_start_s, None)

    def _close_round(self, now_s: float) -> list[NegotiationSignal]:
        active = self.active
        assert active is not None
        report = active.coordinator.advance()
        if report.converged:
            # Nobody answering balances trivially (every position zero): that is no agreement.
            return self._finish("converged" if active.heard else "no_answers")
        if active.coordinator.round >= self.settings.max_rounds:
            return self._finish("max_rounds")
        if now_s >= active.ends_by_s:
            return self._finish("budget")
        active.round_deadline_s = now_s + self.timing.round_timeout_s
        return [self._signal(NegotiationState.ROUND)]

    def _finish(self, stopped_by: str) -> list[NegotiationSignal]:
        active = self.active
        assert active is not None
        self._outcomes[active.slot_start_s] = active.coordinator.result(stopped_by)
        state = NegotiationState.CONVERGED if stopped_by == "converged" else NegotiationState.ABANDONED
        signal = self._signal(state)
        self.active = None
        return [signal]

    def _signal(self, state: NegotiationState) -> NegotiationSignal:
        active = self.active
        assert active is not None
        return wire_signal(active.coordinator.signal(), negotiation_id=active.negotiation_id, state=state,
                           slot_start_s=active.slot_start_s, duration_s=self.slot_duration_s)


def wire_signal(signal: RoundSignal, *, negotiation_id: str, state: NegotiationState, slot_start_s: int,
                duration_s: int) -> NegotiationSignal:
    """A coordinator's round as it goes on the wire: integer Wh, µ¤/kWh and µ¤/kWh²."""
    rho = signal.rho_per_kwh2
    return NegotiationSignal(
        negotiation_id=negotiation_id, round=signal.round, state=state,
        slot_start=datetime.fromtimestamp(slot_start_s, tz=timezone.utc), duration_s=duration_s,
        rho_micro_per_kwh2=max(1, round(rho * MICRO)),
        mean_wh=[int(value) for value in np.rint(signal.mean_wh)],
        price_micro=[int(value) for value in np.rint(np.asarray(signal.scaled_price_kwh) * rho * MICRO)])
