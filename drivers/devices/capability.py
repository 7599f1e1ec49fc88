"""The base of the capability classes: a typed view over one device's map client.

A device (a map at a unit id) is polled once per cycle through its
:class:`MapClient`; the capabilities it offers (a hybrid inverter is a PV inverter,
a battery and a grid meter at once) read their values from that one poll, by role.
"""

from __future__ import annotations

from drivers.devices.map_client import MapClient
from drivers.maps import PointWriteError, Role
from drivers.readings import Quality, Reading


class CapabilityMissing(LookupError):
    """The device's map does not provide what a capability requires."""


class Capability:
    """A view over a :class:`MapClient` by roles."""

    #: Roles without which the capability makes no sense (checked at construction).
    required_roles: tuple[tuple[Role, ...], ...] = ()

    def __init__(self, client: MapClient) -> None:
        self.client = client
        for alternatives in self.required_roles:
            if not any(client.map.point_for(role) for role in alternatives):
                names = " or ".join(role.value for role in alternatives)
                raise CapabilityMissing(f"{client.map.id} provides no {names} for {type(self).__name__}")

    @property
    def name(self) -> str:
        """The device's name (map, endpoint, unit id)."""
        return self.client.name

    async def refresh(self) -> None:
        """Poll the device (when the capability is used on its own)."""
        await self.client.poll()

    def reading(self, role: Role) -> Reading | None:
        """The last reading for ``role`` from the last poll."""
        return self.client.reading(role)

    def sum_of(self, name: str, roles: tuple[Role, ...]) -> Reading | None:
        """A reading that adds several roles (per-phase powers to a total)."""
        parts = [self.reading(role) for role in roles]
        present = [part for part in parts if part is not None]
        if not present:
            return None
        # A total is only as good as its worst part; a missing phase makes it implausible.
        flawed = [part.quality for part in present if part.quality is not Quality.GOOD]
        quality = flawed[0] if flawed else (Quality.GOOD if len(present) == len(parts) else Quality.IMPLAUSIBLE)
        value = sum(float(part.value) for part in present if part.value is not None)
        timestamp_s = min(part.timestamp_s for part in present)
        return Reading(name, value, present[0].unit, timestamp_s, quality)

    async def write_role(self, role: Role, value: float | int) -> None:
        """Write the point carrying ``role``; raises PointWriteError if there is none."""
        point = self.client.map.point_for(role)
        if point is None:
            raise PointWriteError(f"{self.client.map.id} has no writable {role.value}")
        await self.client.write(point.name, value)
