"""Real pymodbus servers on 127.0.0.1 serving SunSpec images built from our maps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from drivers.emulators.image import MapBinding, SiteRegisters
from drivers.maps import RegisterMap
from drivers.maps.register_map import RegisterSpace
from drivers.transport import RetryPolicy

#: A run of registers: (start address, values).
RegisterRun = tuple[int, list[int]]

#: Short timeouts, no retries: absent bases must not slow the tests down.
FAST_POLICY = RetryPolicy(timeout_s=0.3, retries=0, reconnect_delay_s=0.05, reconnect_delay_max_s=0.2,
                          reconnect_after_timeouts=1000)


def register_image(register_map: RegisterMap) -> dict[RegisterSpace, list[RegisterRun]]:
    """Contiguous register runs per (unit id override, table), as the emulators build them."""
    unit_id = register_map.spec.device.default_unit_id
    binding = MapBinding(register_map, unit_id)
    site = SiteRegisters()
    site.add_binding(binding)
    image: dict[RegisterSpace, list[RegisterRun]] = {}
    for (unit, table), registers in site.spaces.items():
        runs: list[RegisterRun] = []
        for address in sorted(registers):
            if runs and address == runs[-1][0] + len(runs[-1][1]):
                runs[-1][1].append(registers[address])
            else:
                runs.append((address, [registers[address]]))
        image[(None if unit == unit_id else unit, table)] = runs
    return image


def runs_of(register_map: RegisterMap) -> list[RegisterRun]:
    """The holding-register runs of a map's image (SunSpec maps have one space)."""
    (runs,) = register_image(register_map).values()
    return runs


@contextlib.asynccontextmanager
async def modbus_server(runs: Sequence[RegisterRun], unit_id: int = 1, action=None) -> AsyncIterator[int]:
    """Serve ``runs`` as holding (and input) registers of ``unit_id``; yields the port."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    simdata = [SimData(address, values=list(values), datatype=DataType.REGISTERS) for address, values in runs]
    server = ModbusTcpServer([SimDevice(id=unit_id, simdata=simdata, action=action)], address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        yield server.transport.sockets[0].getsockname()[1]
    finally:
        await server.shutdown()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers: every request times out."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(256):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:  # end the handlers by closing their sockets, not by cancelling them
            writer.close()
        server.close()
        await server.wait_closed()


def patched(runs: Sequence[RegisterRun], address: int, values: Sequence[int]) -> list[RegisterRun]:
    """``runs`` with ``values`` written from ``address`` (which must lie inside one run)."""
    result = []
    for start, registers in runs:
        registers = list(registers)
        if start <= address and address + len(values) <= start + len(registers):
            registers[address - start:address - start + len(values)] = values
        result.append((start, registers))
    return result
