"""P1 emulator: writes valid DSMR 5 telegrams to a serial port, like a Dutch smart meter.

Two layers:

* :func:`build_telegram` -- a small pure function from :class:`TelegramValues` to
  the bytes of one telegram (header ``/``, OBIS lines in DSMR 5.0.2 formats, ``!``
  and the CRC-16/ARC as 4 uppercase hex digits). Tests use it directly; it needs
  neither dsmr-parser nor a port.
* :class:`P1Writer` -- asks a source (a callback, or a plant object through
  :func:`plant_source`) for the meter state every ``interval_s`` (1 s, as DSMR 5
  meters do), keeps the tariff registers like a real meter, and writes the
  telegram to a serial port path or a file descriptor (e.g. a pty master).
  :meth:`P1Writer.inject` corrupts or truncates upcoming telegrams.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)

#: DSMR timestamps are Dutch local time with an S(ummer)/W(inter) flag.
_METER_TZ = ZoneInfo("Europe/Amsterdam")
#: "/XXXZ" identification: manufacturer code, "5" for the DSMR 5 baud rate, "\\2" enhanced mode.
DEFAULT_HEADER = "/HMS5\\2HEMS-P1-EMULATOR"


class P1Fault(enum.Enum):
    """Faults the emulator can put into a telegram."""

    #: Right content, wrong CRC digits: the reader must count a CRC error.
    CORRUPT_CRC = "corrupt_crc"
    #: One data digit changed after the CRC was computed (line noise).
    CORRUPT_DATA = "corrupt_data"
    #: The telegram stops half-way, no "!" and no CRC (bytes lost, adapter unplugged).
    TRUNCATE = "truncate"


@dataclass(frozen=True, slots=True)
class PhaseValues:
    """Instantaneous values of one phase."""

    voltage_v: float = 230.0
    current_a: float = 0.0
    import_w: float = 0.0
    export_w: float = 0.0


@dataclass(frozen=True, slots=True)
class TelegramValues:
    """Everything one DSMR 5 telegram states. Energy registers in Wh, powers in W."""

    timestamp_s: float
    grid_import_w: float = 0.0
    grid_export_w: float = 0.0
    import_t1_wh: float = 0.0
    import_t2_wh: float = 0.0
    export_t1_wh: float = 0.0
    export_t2_wh: float = 0.0
    #: Active tariff: 1 = low (night, weekend), 2 = normal, as in the Netherlands.
    tariff: int = 2
    #: L1 only (single-phase connection) or L1..L3; empty sends no phase lines.
    phases: tuple[PhaseValues, ...] = ()
    gas_m3: float | None = None
    #: Capture time of the gas value (DSMR 5 gas meters report every 5 min).
    gas_timestamp_s: float | None = None
    equipment_id: str = "E0053000000000000"
    gas_equipment_id: str = "G0053000000000000"
    short_power_failures: int = 0
    long_power_failures: int = 0


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0xA001 reflected, initial value 0), the DSMR telegram checksum."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _fixed(value: float, scale: int, int_digits: int, decimals: int, *, wrap: bool = False) -> str:
    """DSMR fixed-point field: ``value * scale`` rounded to an integer, zero-padded.

    Registers wrap like a meter's counter; instantaneous values saturate.
    """
    count = round(value * scale)
    if count < 0:
        raise ValueError(f"DSMR values are unsigned, got {value}")
    limit = 10 ** (int_digits + decimals)
    if count >= limit:
        count = count % limit if wrap else limit - 1
    digits = str(count).rjust(int_digits + decimals, "0")
    return f"{digits[:int_digits]}.{digits[int_digits:]}" if decimals else digits


def _dsmr_time(timestamp_s: float) -> str:
    """YYMMDDhhmmssX in Dutch local time, X = S (summer time) or W (winter time)."""
    local = datetime.fromtimestamp(int(timestamp_s), _METER_TZ)
    return local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() else "W")


def _hex_id(text: str) -> str:
    """Equipment identifiers are sent as the hex of their ASCII characters."""
    return text.encode("ascii").hex().upper()


def build_telegram(values: TelegramValues, *, header: str = DEFAULT_HEADER) -> bytes:
    """Build one complete DSMR 5 telegram (bytes, CR LF line ends, valid CRC)."""
    if not header.startswith("/") or "!" in header or "\n" in header:
        raise ValueError("header must start with '/' and hold neither '!' nor a newline")
    v = values
    if len(v.phases) > 3:
        raise ValueError("a meter has at most three phases")
    lines = [
        header,
        "",
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({_dsmr_time(v.timestamp_s)})",
        f"0-0:96.1.1({_hex_id(v.equipment_id)})",
        f"1-0:1.8.1({_fixed(v.import_t1_wh, 1, 6, 3, wrap=True)}*kWh)",
        f"1-0:1.8.2({_fixed(v.import_t2_wh, 1, 6, 3, wrap=True)}*kWh)",
        f"1-0:2.8.1({_fixed(v.export_t1_wh, 1, 6, 3, wrap=True)}*kWh)",
        f"1-0:2.8.2({_fixed(v.export_t2_wh, 1, 6, 3, wrap=True)}*kWh)",
        f"0-0:96.14.0({v.tariff:04d})",
        f"1-0:1.7.0({_fixed(v.grid_import_w, 1, 2, 3)}*kW)",
        f"1-0:2.7.0({_fixed(v.grid_export_w, 1, 2, 3)}*kW)",
        f"0-0:96.7.21({v.short_power_failures:05d})",
        f"0-0:96.7.9({v.long_power_failures:05d})",
        "1-0:99.97.0(0)(0-0:96.7.19)",
    ]
    lines += [f"1-0:{c}.32.0(00000)" for c in (32, 52, 72)[: max(1, len(v.phases))]]
    lines += [f"1-0:{c}.36.0(00000)" for c in (32, 52, 72)[: max(1, len(v.phases))]]
    lines.append("0-0:96.13.0()")
    # OBIS codes per phase: voltage, current, power +P, power -P.
    codes = ((32, 31, 21, 22), (52, 51, 41, 42), (72, 71, 61, 62))[: len(v.phases)]
    pairs = list(zip(v.phases, codes, strict=True))
    lines += [f"1-0:{c[0]}.7.0({_fixed(p.voltage_v, 10, 4, 1)}*V)" for p, c in pairs]
    lines += [f"1-0:{c[1]}.7.0({_fixed(p.current_a, 1, 3, 0)}*A)" for p, c in pairs]
    lines += [f"1-0:{c[2]}.7.0({_fixed(p.import_w, 1, 2, 3)}*kW)" for p, c in pairs]
    lines += [f"1-0:{c[3]}.7.0({_fixed(p.export_w, 1, 2, 3)}*kW)" for p, c in pairs]
    if v.gas_m3 is not None:
        gas_time = v.timestamp_s if v.gas_timestamp_s is None else v.gas_timestamp_s
        lines += [
            "0-1:24.1.0(003)",
            f"0-1:96.1.0({_hex_id(v.gas_equipment_id)})",
            f"0-1:24.2.1({_dsmr_time(gas_time)})({_fixed(v.gas_m3, 1000, 5, 3, wrap=True)}*m3)",
        ]
    body = ("\r\n".join(lines) + "\r\n!").encode("ascii")
    return body + f"{crc16_arc(body):04X}\r\n".encode("ascii")


def apply_fault(telegram: bytes, fault: P1Fault) -> bytes:
    """Return ``telegram`` damaged by ``fault`` (pure; for the writer and for tests)."""
    bang = telegram.rindex(b"!")
    if fault is P1Fault.CORRUPT_CRC:
        crc = int(telegram[bang + 1 : bang + 5], 16)
        return telegram[: bang + 1] + f"{crc ^ 0x5A5A:04X}\r\n".encode("ascii")
    if fault is P1Fault.CORRUPT_DATA:
        # Change the first digit of the import power value: still well-formed, wrong CRC.
        pos = telegram.index(b"1-0:1.7.0(") + len(b"1-0:1.7.0(")
        digit = telegram[pos : pos + 1]
        new = b"1" if digit != b"1" else b"2"
        return telegram[:pos] + new + telegram[pos + 1 :]
    if fault is P1Fault.TRUNCATE:
        return telegram[: bang // 2]
    raise ValueError(f"unknown fault {fault!r}")


@dataclass(frozen=True, slots=True)
class MeterState:
    """What the plant knows at one instant; the writer turns it into a telegram.

    Energy counters (Wh, monotonic, since installation) are optional: when None,
    the writer integrates the power itself between telegrams.
    """

    grid_import_w: float
    grid_export_w: float
    import_energy_wh: float | None = None
    export_energy_wh: float | None = None
    #: None: one phase (L1) derived from the totals at ``voltage_v``.
    phases: tuple[PhaseValues, ...] | None = None
    voltage_v: float = 230.0
    gas_m3: float | None = None


def plant_source(plant: Any) -> Callable[[], MeterState]:
    """A source reading a plant object each time it is called.

    A :class:`~drivers.emulators.plant.SitePlant` (``flows.grid_w``, ``energy``,
    ``grid_voltage_v``) is first advanced to its clock, as the Modbus emulator does
    before a read, and its grid power is split evenly over three phases. Any other
    object needs ``grid_import_w`` and ``grid_export_w``, or the signed
    ``grid_power_w`` (positive = import); ``import_energy_wh``, ``export_energy_wh``
    and ``gas_m3`` are used when present (else the writer integrates the power).
    """

    def read_site_plant() -> MeterState:
        advance = getattr(plant, "advance", None)
        if callable(advance):
            advance()
        grid_w, volt_v = float(plant.flows.grid_w), float(plant.grid_voltage_v)
        phase_w = grid_w / 3.0
        phase = PhaseValues(volt_v, abs(phase_w) / volt_v, max(phase_w, 0.0), max(-phase_w, 0.0))
        return MeterState(grid_import_w=max(grid_w, 0.0), grid_export_w=max(-grid_w, 0.0),
                          import_energy_wh=plant.energy.grid_import_wh,
                          export_energy_wh=plant.energy.grid_export_wh,
                          phases=(phase, phase, phase), voltage_v=volt_v)

    def read_attributes() -> MeterState:
        if hasattr(plant, "grid_import_w"):
            imp, exp = float(plant.grid_import_w), float(getattr(plant, "grid_export_w", 0.0))
        else:
            power = float(plant.grid_power_w)
            imp, exp = max(power, 0.0), max(-power, 0.0)
        return MeterState(grid_import_w=imp, grid_export_w=exp,
                          import_energy_wh=getattr(plant, "import_energy_wh", None),
                          export_energy_wh=getattr(plant, "export_energy_wh", None),
                          gas_m3=getattr(plant, "gas_m3", None))

    if hasattr(plant, "flows") and hasattr(plant, "energy"):
        return read_site_plant
    return read_attributes


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def dutch_tariff(timestamp_s: float) -> int:
    """Dutch double tariff: 1 (low) 23:00-07:00 and at weekends, else 2 (normal)."""
    local = datetime.fromtimestamp(timestamp_s, _METER_TZ)
    return 1 if local.weekday() >= 5 or local.hour >= 23 or local.hour < 7 else 2


class P1Writer:
    """Writes one DSMR 5 telegram per ``interval_s`` to ``target``.

    ``target`` is a serial port path (opened at 115200 8N1 and reopened after
    errors) or an open file descriptor such as a pty master (made non-blocking;
    the caller keeps ownership). Like a real meter the writer never waits for a
    listener: a telegram that cannot be written within ``interval_s`` is dropped
    (counted in ``telegrams_dropped``).
    """

    def __init__(self, target: str | int, source: Callable[[], MeterState], *, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time, tariff_at: Callable[[float], int] = dutch_tariff,
                 header: str = DEFAULT_HEADER) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.target = target
        self.interval_s = interval_s
        self._source = source
        self._clock = clock
        self._tariff_at = tariff_at
        self._header = header
        self._faults: deque[P1Fault] = deque()
        self._port: Any = None  # pyserial port when target is a path
        self._stop = asyncio.Event()
        # Integer Wh registers per tariff, so T1 + T2 equals the rounded total exactly.
        self._registers = {"import": [0, 0], "export": [0, 0]}
        self._totals_wh: dict[str, float] | None = None
        self._last_total_wh = {"import": 0, "export": 0}
        self._last_time_s: float | None = None
        self._failing = False
        self.telegrams_written = 0
        self.telegrams_dropped = 0
        self.faults_injected = 0
        self.write_errors = 0

    @classmethod
    def for_plant(cls, target: str | int, plant: Any, **kwargs: Any) -> P1Writer:
        """A writer fed by ``plant`` (see :func:`plant_source`), on the plant's clock if it has one."""
        if callable(getattr(plant, "clock", None)):
            kwargs.setdefault("clock", plant.clock)
        return cls(target, plant_source(plant), **kwargs)

    def inject(self, fault: P1Fault, count: int = 1) -> None:
        """Apply ``fault`` to the next ``count`` telegrams (queued after earlier injections)."""
        self._faults.extend([fault] * count)

    def next_values(self) -> TelegramValues:
        """Ask the source for the current state and advance the meter registers."""
        now = self._clock()
        state = self._source()
        tariff = self._tariff_at(now)
        dt_h = 0.0 if self._last_time_s is None else max(now - self._last_time_s, 0.0) / 3600.0
        self._last_time_s = now
        first = self._totals_wh is None
        totals = self._totals_wh or {"import": 0.0, "export": 0.0}
        for key, power, counter in (("import", state.grid_import_w, state.import_energy_wh),
                                    ("export", state.grid_export_w, state.export_energy_wh)):
            totals[key] = float(counter) if counter is not None else totals[key] + power * dt_h
            total_wh = round(totals[key])
            regs = self._registers[key]
            if first:
                regs[0], regs[1] = total_wh // 2, total_wh - total_wh // 2
            else:
                # Real registers never run backwards; a plant reset is ignored.
                regs[tariff - 1] += max(total_wh - self._last_total_wh[key], 0)
            self._last_total_wh[key] = total_wh
        self._totals_wh = totals
        phases = state.phases
        if phases is None:
            current = max(state.grid_import_w, state.grid_export_w) / state.voltage_v
            phases = (PhaseValues(state.voltage_v, current, state.grid_import_w, state.grid_export_w),)
        return TelegramValues(
            timestamp_s=now, grid_import_w=state.grid_import_w, grid_export_w=state.grid_export_w,
            import_t1_wh=self._registers["import"][0], import_t2_wh=self._registers["import"][1],
            export_t1_wh=self._registers["export"][0], export_t2_wh=self._registers["export"][1],
            tariff=tariff, phases=phases, gas_m3=state.gas_m3,
        )

    async def write_once(self) -> bytes:
        """Build the next telegram, apply any injected fault, write it; return the bytes sent."""
        telegram = build_telegram(self.next_values(), header=self._header)
        if self._faults:
            telegram = apply_fault(telegram, self._faults.popleft())
            self.faults_injected += 1
        try:
            fd = await self._fd()
            complete = await self._write_all(fd, telegram, self.interval_s)
        except OSError as exc:
            self.write_errors += 1
            self._close_port()
            if not self._failing:
                logger.warning("P1 emulator: cannot write to %s: %s", self.target, exc)
            self._failing = True
            return b""
        if self._failing:
            logger.info("P1 emulator: writing to %s again", self.target)
        self._failing = False
        if complete:
            self.telegrams_written += 1
        else:
            self.telegrams_dropped += 1
        return telegram

    async def run(self) -> None:
        """Write a telegram every ``interval_s`` until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not self._stop.is_set():
                await self.write_once()
                # Fixed schedule, no drift; skip slots we were too late for.
                next_at += self.interval_s
                now = loop.time()
                if next_at < now:
                    next_at = now + self.interval_s - (now - next_at) % self.interval_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), next_at - now)
        finally:
            self._close_port()
            self._stop.clear()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current telegram."""
        self._stop.set()

    async def _fd(self) -> int:
        if isinstance(self.target, int):
            os.set_blocking(self.target, False)
            return self.target
        if self._port is None:
            import serial  # pyserial, a core dependency

            try:
                self._port = await asyncio.to_thread(
                    serial.Serial, self.target, baudrate=115200, bytesize=8, parity="N", stopbits=1,
                    timeout=0, write_timeout=0)
            except serial.SerialException as exc:
                raise OSError(str(exc)) from exc
            os.set_blocking(self._port.fileno(), False)
        return int(self._port.fileno())

    def _close_port(self) -> None:
        if self._port is not None:
            with contextlib.suppress(Exception):  # the device may already be gone
                self._port.close()
            self._port = None

    @staticmethod
    async def _write_all(fd: int, data: bytes, timeout_s: float) -> bool:
        """Write ``data`` without blocking the loop; False if the reader did not drain it in time."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        deadline = loop.time() + timeout_s
        while view:
            try:
                view = view[os.write(fd, view):]
                continue
            except BlockingIOError:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _resolve, writable)
            try:
                await asyncio.wait_for(writable, remaining)
            except TimeoutError:
                return False
            finally:
                loop.remove_writer(fd)
        return True
