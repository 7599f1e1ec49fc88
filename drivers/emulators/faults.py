"""Fault injection for the Modbus emulators, switchable at run time, per server or per unit id.

Each fault and the state a reader (``MapClient`` over a ``ModbusConnection``) ends in
while it lasts; every one of them clears by :meth:`FaultInjector.clear`, after which
the next successful poll marks the device available again (``DeviceHealth``):

============== ======================================================= =====================================================
fault          what the emulator does                                  reader's state while it lasts
============== ======================================================= =====================================================
no_response    handles the request but sends nothing back (writes are  ``timeout`` counted per poll; unavailable after
               not applied)                                            ``unavailable_after_failures``; readings STALE; on TCP
                                                                       the connection is re-opened after
                                                                       ``reconnect_after_timeouts`` timeouts
exception      answers every request with Modbus exception ``code``    ``exception_code_N`` counted; unavailable after the
               (writes are not applied)                                configured failures; readings STALE (codes 5 and 6 are
                                                                       retried first)
drop_connection closes every client connection of the server on each   ``disconnected`` counted; the connection backs off and
               request (TCP; on RTU it acts as no_response)            reconnects; unavailable after the configured failures
slow           delays each answer by ``delay_ms``                      below the client timeout: GOOD readings, slower; above
                                                                       it: as no_response (late answers are discarded, never
                                                                       delivered to a later request)
out_of_range   serves every measured role far outside the point's      device available; readings IMPLAUSIBLE for points whose
               min/max                                                 map gives a range (GOOD for points without one)
stuck          stops refreshing measured registers (the plant keeps    device available, readings GOOD but frozen while the
               running, energy keeps accumulating)                     plant time advances; only a plausibility check against
                                                                       other devices or energy counters can catch it
============== ======================================================= =====================================================

How "no response" is made: pymodbus 3.16's server always answers a request it has
handled, and a hook that merely sleeps is unsafe (the server stamps the late answer
with the transaction id of the *next* request, so the client would take it as that
request's answer). The emulator therefore passes a ``trace_packet`` callback to the
server that swallows outgoing frames (returns ``b""``, so nothing is written) for the
units under ``no_response``, and for answers that became stale during a ``slow`` delay.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FaultKind(str, enum.Enum):
    """The faults an emulator can inject."""

    NO_RESPONSE = "no_response"
    EXCEPTION = "exception"
    DROP_CONNECTION = "drop_connection"
    SLOW = "slow"
    OUT_OF_RANGE = "out_of_range"
    STUCK = "stuck"


@dataclass(frozen=True, slots=True)
class Fault:
    """One active fault with its parameters."""

    kind: FaultKind
    #: Modbus exception code answered by ``exception`` (4 = device failure).
    exception_code: int = 4
    #: Added latency of ``slow``.
    delay_ms: float = 0.0


@dataclass
class FaultInjector:
    """The faults in force on one emulator server; unit id None means every unit.

    A fault set for the server applies to every unit; a unit's own fault of the same
    kind takes precedence (its parameters win).
    """

    _server: dict[FaultKind, Fault] = field(default_factory=dict)
    _units: dict[int, dict[FaultKind, Fault]] = field(default_factory=dict)

    def inject(self, fault: Fault, unit_id: int | None = None) -> None:
        """Switch ``fault`` on for ``unit_id`` (None: the whole server)."""
        table = self._server if unit_id is None else self._units.setdefault(unit_id, {})
        table[fault.kind] = fault

    def clear(self, kind: FaultKind | None = None, unit_id: int | None = None) -> None:
        """Switch off ``kind`` (None: every fault) for ``unit_id`` (None: server-wide and every unit)."""
        tables = [self._server, *self._units.values()] if unit_id is None else [self._units.get(unit_id, {})]
        for table in tables:
            if kind is None:
                table.clear()
            else:
                table.pop(kind, None)

    def active(self, unit_id: int, kind: FaultKind) -> Fault | None:
        """The fault of ``kind`` in force for ``unit_id``, if any."""
        unit_faults = self._units.get(unit_id)
        if unit_faults is not None and kind in unit_faults:
            return unit_faults[kind]
        return self._server.get(kind)

    def any_active(self) -> bool:
        """True while any fault is switched on."""
        return bool(self._server) or any(self._units.values())

    # Convenience switches, one per fault kind.

    def no_response(self, unit_id: int | None = None) -> None:
        """Stop answering (see the module table for the reader's state)."""
        self.inject(Fault(FaultKind.NO_RESPONSE), unit_id)

    def exception(self, code: int = 4, unit_id: int | None = None) -> None:
        """Answer every request with Modbus exception ``code``."""
        if not 1 <= code <= 255:
            raise ValueError(f"Modbus exception code {code} outside 1..255")
        self.inject(Fault(FaultKind.EXCEPTION, exception_code=code), unit_id)

    def drop_connection(self, unit_id: int | None = None) -> None:
        """Close the client connections on every request."""
        self.inject(Fault(FaultKind.DROP_CONNECTION), unit_id)

    def slow(self, delay_ms: float, unit_id: int | None = None) -> None:
        """Delay every answer by ``delay_ms``."""
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.inject(Fault(FaultKind.SLOW, delay_ms=delay_ms), unit_id)

    def out_of_range(self, unit_id: int | None = None) -> None:
        """Serve measured values far outside their plausible range."""
        self.inject(Fault(FaultKind.OUT_OF_RANGE), unit_id)

    def stuck(self, unit_id: int | None = None) -> None:
        """Freeze the measured values at what was last served."""
        self.inject(Fault(FaultKind.STUCK), unit_id)
