"""Serve register maps over Modbus TCP or RTU, backed by one site's :class:`SitePlant`.

One :class:`EmulatorServer` is one TCP port or one serial line. Each served map sits
at a unit id (a point's own ``device_id`` overrides it, as on a Victron GX) and
becomes a pymodbus ``SimDevice``; holding and input registers are separate tables
when the map uses input registers. Addresses outside every point answer
ILLEGAL_ADDRESS (2), as do gaps, except gaps up to the map's ``max_gap_registers``,
which read as 0 (0xFFFF on SunSpec devices).

The request hook (pymodbus 3.16: ``async hook(function_code, start_address, address,
count, registers, set_values)``, called after pymodbus's own address and read-only
checks and before a write lands) does the physics:

- before a read: advance the plant to now and encode its role values into the
  registers (scale, scale-factor points, sign; clipped to the register type);
- on a write: refuse values outside a point's ``min``/``max`` with ILLEGAL_VALUE (3);
  writes to read-only points answer ILLEGAL_ADDRESS (2) (pymodbus's read-only
  SimData check); accepted writes of settable roles go into the plant, and writes to
  the points of ``[control.battery]`` set the battery window through the map's
  strategy, re-arming its timeout (the map's timeout point, else 60 s).

Requests for unit ids nobody serves answer ILLEGAL_ADDRESS on TCP and nothing on RTU
(a real RS-485 bus is silent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.devices.battery_control import SECONDS_PER_TIMEOUT_UNIT, BatteryControlStrategy, strategy_for
from drivers.emulators.faults import FaultInjector, FaultKind
from drivers.emulators.image import MapBinding, SiteRegisters, Space, encode_value, implausible_value
from drivers.emulators.plant import ENERGY_ROLES, SERVED_ROLES, SETTABLE_ROLES, SitePlant
from drivers.maps import PointSpec, Table
from drivers.readings import Quality

logger = logging.getLogger("drivers.emulators")

_READ_CODES = frozenset({3, 4})
_WRITE_CODES = frozenset({6, 16, 23})
#: The catch-all SimDevice id pymodbus uses for "every other unit".
_CATCH_ALL_UNIT = 0

Hook = Callable[[int, int, int, int, list[int], list[int] | list[bool] | None], Awaitable[ExcCodes | None]]


@dataclass(frozen=True)
class _BindingControl:
    binding: MapBinding
    strategy: BatteryControlStrategy
    points: frozenset[str]


class EmulatorServer:
    """Modbus server for one or more maps of one site; build and start inside a running loop."""

    def __init__(self, bindings: Sequence[MapBinding], plant: SitePlant, *, tcp: tuple[str, int] | None = None,
                 rtu_port: str | None = None, baudrate: int = 9600,
                 faults: FaultInjector | None = None) -> None:
        if (tcp is None) == (rtu_port is None):
            raise ValueError("give exactly one of tcp=(host, port) and rtu_port=")
        if not bindings:
            raise ValueError("an emulator needs at least one map")
        self.bindings = list(bindings)
        self.plant = plant
        self.faults = faults or FaultInjector()
        self._tcp = tcp
        self._rtu_port = rtu_port
        self._baudrate = baudrate
        self.registers = SiteRegisters()
        for binding in self.bindings:
            self.registers.add_binding(binding)
        self._controls = [self._control_of(binding) for binding in self.bindings]
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._requests_received = 0
        self._suppress_next_answer = False
        self._shared_units: set[int] = set()
        self.requests_served = 0
        self._apply_initial_controls()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def unit_ids(self) -> list[int]:
        """Every unit id this server answers."""
        return sorted({unit for unit, _ in self.registers.spaces})

    async def start(self) -> None:
        """Build the SimDevices and start listening (must run inside the event loop)."""
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs a hex dump per error
        devices = [self._sim_device(unit) for unit in self.unit_ids]
        if _CATCH_ALL_UNIT not in self.unit_ids:
            devices.append(SimDevice(id=_CATCH_ALL_UNIT, simdata=[SimData(0, datatype=DataType.INVALID)]))
        if self._tcp is not None:
            self._server = ModbusTcpServer(devices, address=self._tcp, trace_packet=self._trace_packet,
                                           trace_pdu=self._trace_pdu)
        else:
            self._server = ModbusSerialServer(devices, framer=FramerType.RTU, port=self._rtu_port,
                                              baudrate=self._baudrate, trace_packet=self._trace_packet,
                                              trace_pdu=self._trace_pdu)
        await self._server.serve_forever(background=True)
        logger.info("emulator serving %s on %s", ", ".join(b.register_map.id for b in self.bindings), self.address)

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    @property
    def port(self) -> int | None:
        """The bound TCP port (the real one when started on port 0); None on RTU or before start."""
        if self._tcp is None or self._server is None or self._server.transport is None:
            return None
        return int(self._server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    @property
    def address(self) -> str:
        """Where the server listens, for messages."""
        if self._tcp is not None:
            return f"tcp://{self._tcp[0]}:{self.port if self.port is not None else self._tcp[1]}"
        return f"rtu://{self._rtu_port}@{self._baudrate}"

    def drop_connections(self) -> int:
        """Close every client connection now (TCP); returns how many were closed."""
        if self._server is None or self._tcp is None:
            return 0
        handlers = list(self._server.active_connections.values())
        for handler in handlers:
            handler.close()
        return len(handlers)

    # -- building ----------------------------------------------------------------------------

    def _control_of(self, binding: MapBinding) -> _BindingControl | None:
        control = binding.register_map.spec.control.battery
        if control is None:
            return None
        names = frozenset(value for name, value in control if name.endswith("_point") and value is not None)
        return _BindingControl(binding, strategy_for(control), names)

    def _sim_device(self, unit: int) -> SimDevice:
        tables = {table: self._simdata(unit, table) for table in Table}
        self._shared_units.discard(unit)
        if not tables[Table.INPUT]:
            self._shared_units.add(unit)  # one table: fc 3 and 4 read the same registers
            return SimDevice(id=unit, simdata=tables[Table.HOLDING], action=self._hook_for(unit))
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        holding = tables[Table.HOLDING] or [SimData(0, datatype=DataType.INVALID)]
        return SimDevice(id=unit, simdata=(bits, list(bits), holding, tables[Table.INPUT]),
                         action=self._hook_for(unit))

    def _simdata(self, unit: int, table: Table) -> list[SimData]:
        space = (unit, table)
        registers = self.registers.spaces.get(space, {})
        writable = {address for binding, point in self.registers.points.get(space, []) if point.writable
                    for address in range(point.address, point.end_address)}
        runs: list[SimData] = []
        run_start, run_values, run_readonly = None, [], False
        for address in sorted(registers):
            readonly = address not in writable
            if run_start is not None and (address != run_start + len(run_values) or readonly != run_readonly):
                runs.append(SimData(run_start, values=run_values, datatype=DataType.REGISTERS, readonly=run_readonly))
                run_start = None
            if run_start is None:
                run_start, run_values, run_readonly = address, [], readonly
            run_values.append(registers[address])
        if run_start is not None:
            runs.append(SimData(run_start, values=run_values, datatype=DataType.REGISTERS, readonly=run_readonly))
        return runs

    def _apply_initial_controls(self) -> None:
        # Nameplate values and limits in the maps' initial registers configure the plant ...
        for binding in self.bindings:
            image = self.registers.view(binding)
            for point in binding.register_map.spec.point:
                if point.role in SETTABLE_ROLES and point.initial is not None:
                    reading = binding.register_map.decode(point, image, 0.0)
                    if reading is not None and isinstance(reading.value, (int, float)):
                        self.plant.apply_role(point.role, float(reading.value))
        # ... and control registers without an initial value show the plant's state
        # (no limit = 100 %), not a 0 that would read as "curtailed to nothing".
        controls = self.plant.control_values()
        for binding in self.bindings:
            image = self.registers.view(binding)
            for point in binding.register_map.spec.point:
                if point.initial is None and point.role in controls:
                    encoded = encode_value(binding.register_map, point, controls[point.role], image)
                    if encoded is not None:
                        image.store((point.device_id, point.table), point.address, encoded)

    # -- pymodbus callbacks ------------------------------------------------------------------

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self._requests_received += 1
        return pdu

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        # Returning b"" makes pymodbus write nothing: the way to not answer at all.
        if not sending or not packet:
            return packet
        if self._suppress_next_answer:
            self._suppress_next_answer = False
            return b""
        unit = packet[6] if self._tcp is not None else packet[0]
        if self._rtu_port is not None and unit not in self.unit_ids:
            return b""
        if self.faults.active(unit, FaultKind.NO_RESPONSE) is not None:
            return b""
        if self._rtu_port is not None and self.faults.active(unit, FaultKind.DROP_CONNECTION) is not None:
            return b""
        return packet

    def _hook_for(self, unit: int) -> Hook:
        async def hook(function_code: int, start_address: int, address: int, count: int, registers: list[int],
                       set_values: list[int] | list[bool] | None) -> ExcCodes | None:
            return await self._on_request(unit, function_code, start_address, address, count, registers,
                                          set_values)
        return hook

    async def _on_request(self, unit: int, function_code: int, start_address: int, address: int, count: int,
                          registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        faults = self.faults
        if faults.active(unit, FaultKind.NO_RESPONSE) is not None:
            return ExcCodes.DEVICE_FAILURE  # never sent (trace_packet), but keeps a write from landing
        if faults.active(unit, FaultKind.DROP_CONNECTION) is not None:
            self.drop_connections()
            return ExcCodes.DEVICE_FAILURE
        if (fault := faults.active(unit, FaultKind.EXCEPTION)) is not None:
            try:
                return ExcCodes(fault.exception_code)
            except ValueError:  # pymodbus can only send the codes it knows
                return ExcCodes.DEVICE_FAILURE
        if (fault := faults.active(unit, FaultKind.SLOW)) is not None and fault.delay_ms > 0:
            seen = self._requests_received
            await asyncio.sleep(fault.delay_ms / 1000.0)
            if self._requests_received != seen:
                # The client gave up and sent another request: this answer must not reach it.
                self._suppress_next_answer = True
        if function_code not in _READ_CODES | _WRITE_CODES:
            return None
        table = Table.HOLDING if unit in self._shared_units or function_code != 4 else Table.INPUT
        space = (unit, table)
        self.requests_served += 1
        if set_values is None:
            self.plant.advance()
            if faults.active(unit, FaultKind.STUCK) is None:
                self._serve(space, start_address, address, count, registers,
                            out_of_range=faults.active(unit, FaultKind.OUT_OF_RANGE) is not None)
            return None
        values = [int(value) for value in set_values]
        return self._write(space, address, values)

    # -- reads and writes --------------------------------------------------------------------

    def _serve(self, space: Space, start_address: int, address: int, count: int, block: list[int],
               out_of_range: bool) -> None:
        role_values = self.plant.role_values()
        table = self.registers.spaces[space]
        for binding, point in self.registers.overlapping(space, address, count):
            if point.role not in SERVED_ROLES:
                continue
            image = self.registers.view(binding)
            if out_of_range:
                encoded = implausible_value(binding.register_map, point, image)
            else:
                value = role_values[point.role]
                if point.role in ENERGY_ROLES and isinstance(point.initial, (int, float)):
                    value += point.initial  # the meter's reading when the emulator started
                encoded = encode_value(binding.register_map, point, value, image)
            if encoded is None:
                continue
            for offset, value in enumerate(encoded):
                table[point.address + offset] = value
                block[point.address + offset - start_address] = value

    def _write(self, space: Space, address: int, values: list[int]) -> ExcCodes | None:
        table = self.registers.spaces[space]
        previous = {addr: table.get(addr) for addr in range(address, address + len(values))}
        for offset, value in enumerate(values):
            table[address + offset] = value
        touched = self.registers.overlapping(space, address, len(values))
        decoded: list[tuple[MapBinding, PointSpec, float | int | str | None]] = []
        for binding, point in touched:
            reading = binding.register_map.decode(point, self.registers.view(binding), self.plant.clock())
            value = None if reading is None or reading.quality is Quality.NOT_IMPLEMENTED else reading.value
            if not self._in_range(binding, point, value):
                for addr, old in previous.items():  # refuse the whole request, as a device does
                    if old is None:
                        table.pop(addr, None)
                    else:
                        table[addr] = old
                return ExcCodes.ILLEGAL_VALUE
            decoded.append((binding, point, value))
        for binding, point, value in decoded:
            if point.role in SETTABLE_ROLES and isinstance(value, (int, float)):
                self.plant.apply_role(point.role, float(value))
        written = {(binding.register_map.id, binding.unit_id, point.name) for binding, point, _ in decoded}
        for control in self._controls:
            if control is not None and any((control.binding.register_map.id, control.binding.unit_id, name)
                                           in written for name in control.points):
                self._command_battery(control)
        return None

    def _in_range(self, binding: MapBinding, point: PointSpec, value: float | int | str | None) -> bool:
        if not isinstance(value, (int, float)):
            return True
        scale = binding.register_map.scale_of(point, self.registers.view(binding)) or 0.0
        tolerance = abs(scale) / 2  # rounding to the register's resolution
        if point.min is not None and value < point.min - tolerance:
            return False
        return point.max is None or value <= point.max + tolerance

    def _command_battery(self, control: _BindingControl) -> None:
        rmap = control.binding.register_map
        image = self.registers.view(control.binding)
        values: dict[str, float | int | None] = {}
        for name in control.points:
            reading = rmap.decode(rmap.points[name], image, 0.0)
            value = None if reading is None else reading.value
            values[name] = value if isinstance(value, (int, float)) else None
        window = control.strategy.window_from(values)
        timeout_point = control.strategy.timeout_point
        timeout = values.get(timeout_point) if timeout_point is not None else None
        timeout_s = None
        if timeout:
            # The timeout register's unit is the vendor's (Huawei counts minutes).
            timeout_s = float(timeout) * SECONDS_PER_TIMEOUT_UNIT.get(rmap.points[timeout_point].unit, 1.0)
        self.plant.set_battery_window(window, timeout_s)
        logger.debug("%s: battery window %s, timeout %s s", rmap.id, window, timeout_s)
