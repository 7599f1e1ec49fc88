"""Async DSMR/P1 smart-meter reader on a serial port.

The port is opened with pyserial in a worker thread (opening a USB tty can block
in the driver) and then read without blocking through ``loop.add_reader`` on its
file descriptor, so the event loop never waits on the line. The byte stream is
split into telegrams by :class:`~drivers.p1.framing.TelegramFramer`, each telegram
is CRC-checked and parsed by dsmr-parser, and turned into typed readings.

When the USB adapter disappears (open fails, read errors, end of file) or the line
goes silent, the reader closes the port, marks the meter unavailable and reopens
it with exponential backoff plus jitter. One log line per state change: lost and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.backoff import backoff_delay_s
from drivers.p1.framing import DEFAULT_MAX_TELEGRAM_BYTES, TelegramFramer
from drivers.p1.specs import get_variant, import_dsmr_module, load_specification
from drivers.p1.telegram import P1Telegram, telegram_to_readings
from drivers.readings import Quality, Reading

logger = logging.getLogger(__name__)

#: One read() per readiness event; a DSMR 5 telegram is ~1 kB, so 4 kB keeps up easily.
_READ_SIZE = 4096


def _monotonic() -> float:
    """Monotonic seconds for durations (the wall clock may be simulated or jump)."""
    return time.monotonic()


OnTelegram = Callable[[P1Telegram], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class P1Health:
    """A snapshot of the reader's state and counters (for metrics and status pages)."""

    port: str
    #: The serial port is open.
    connected: bool
    #: Good telegrams are arriving (one within ``silence_timeout_s``).
    available: bool
    telegrams_ok: int
    crc_errors: int
    parse_errors: int
    truncated: int
    #: Successful reopenings of the port after it was lost.
    reconnects: int
    #: Times the port was lost (error, end of file or silence).
    disconnects: int
    #: Bytes outside any telegram (noise, half telegrams on connect).
    discarded_bytes: int
    callback_errors: int
    #: Clock time of the last good telegram, None before the first one.
    last_good_s: float | None
    #: Why the meter was last lost, for the status page.
    last_error: str | None


@dataclass(slots=True)
class _Counters:
    telegrams_ok: int = 0
    crc_errors: int = 0
    parse_errors: int = 0
    truncated: int = 0
    reconnects: int = 0
    disconnects: int = 0
    discarded_bytes: int = 0
    callback_errors: int = 0


class P1Reader:
    """Reads a DSMR/P1 meter on ``port`` and hands each good telegram to ``on_telegram``.

    ``dsmr_version`` is one of :data:`drivers.p1.specs.VARIANTS` ("2.2", "4", "5",
    "5B", "5L", "5S", ...); it chooses the telegram specification and the line
    settings. ``clock`` is the wall clock (UTC seconds, real or simulated) that
    stamps readings when the meter sends no time. ``on_telegram`` may be a plain function or a coroutine function;
    it is awaited before the next telegram is processed, so keep it short.

    Run it as a task: ``task = asyncio.create_task(reader.run())``; end it with
    :meth:`stop` (or by cancelling the task). Raises
    :class:`~drivers.p1.specs.P1DependencyError` at construction when dsmr-parser
    is not installed, and ``ValueError`` for an unknown version.
    """

    def __init__(
        self,
        port: str,
        dsmr_version: str = "5",
        on_telegram: OnTelegram | None = None,
        clock: Callable[[], float] = time.time,
        *,
        silence_timeout_s: float = 30.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_telegram_bytes: int = DEFAULT_MAX_TELEGRAM_BYTES,
        trust_meter_clock: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        if silence_timeout_s <= 0:
            raise ValueError("silence_timeout_s must be positive")
        self.port = port
        self.variant = get_variant(dsmr_version)
        self._on_telegram = on_telegram
        self._clock = clock
        self.silence_timeout_s = silence_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.trust_meter_clock = trust_meter_clock
        self._rng = rng or random.Random()
        self._framer = TelegramFramer(max_telegram_bytes)

        # dsmr-parser is imported here, not at module import: it is an optional extra.
        parsers = import_dsmr_module("parsers")
        exceptions = import_dsmr_module("exceptions")
        self._parser: Any = parsers.TelegramParser(load_specification(dsmr_version))
        self._checksum_error: type[Exception] = exceptions.InvalidChecksumError
        self._parse_error: type[Exception] = exceptions.ParseError

        self._counters = _Counters()
        self._connected = False
        #: None until the first outcome, then True/False; logged on every change.
        self._available: bool | None = None
        self._last_error: str | None = None
        self._last_good_s: float | None = None
        self._last_good_mono: float | None = None
        self._lost_since_mono: float | None = None
        self._latest: P1Telegram | None = None
        self._callback_failing = False
        self._stop = asyncio.Event()
        self._wake: asyncio.Future[bytes | None] | None = None
        self._running = False
        self._ever_opened = False

    # -- public state -------------------------------------------------------------

    @property
    def health(self) -> P1Health:
        """Current state and counters."""
        c = self._counters
        return P1Health(
            port=self.port, connected=self._connected, available=bool(self._available),
            telegrams_ok=c.telegrams_ok, crc_errors=c.crc_errors, parse_errors=c.parse_errors,
            truncated=c.truncated, reconnects=c.reconnects, disconnects=c.disconnects,
            discarded_bytes=c.discarded_bytes, callback_errors=c.callback_errors,
            last_good_s=self._last_good_s, last_error=self._last_error,
        )

    @property
    def latest(self) -> P1Telegram | None:
        """The last good telegram, however old (check :attr:`health` or its timestamps)."""
        return self._latest

    def readings(self) -> dict[str, Reading]:
        """The last good readings; marked STALE while the meter is unavailable."""
        if self._latest is None:
            return {}
        if self._available:
            return dict(self._latest.readings)
        return {name: Reading(r.name, r.value, r.unit, r.timestamp_s,
                              Quality.STALE if r.quality is Quality.GOOD else r.quality)
                for name, r in self._latest.readings.items()}

    # -- lifecycle ----------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to close the port and return (safe to call from the loop at any time)."""
        self._stop.set()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        """Read telegrams until :meth:`stop`; reopens the port whenever it is lost."""
        if self._running:
            raise RuntimeError(f"P1 reader on {self.port} is already running")
        self._running = True
        attempt = 0  # consecutive failures, drives the backoff
        try:
            while not self._stop.is_set():
                serial_port = await self._open()
                if serial_port is None:
                    attempt += 1
                    await self._sleep(self._backoff_s(attempt))
                    continue
                got_good = await self._session(serial_port)
                if self._stop.is_set():
                    break
                attempt = 1 if got_good else attempt + 1
                await self._sleep(self._backoff_s(attempt))
        finally:
            self._connected = False
            self._running = False
            # Stopped: whatever we had is no longer current (readings() marks it STALE).
            self._available = None
            self._stop.clear()

    # -- internals ----------------------------------------------------------------

    def _backoff_s(self, attempt: int) -> float:
        """Exponential backoff with jitter: spreads retries of many gateways after an outage."""
        return backoff_delay_s(self.backoff_initial_s, max(attempt - 1, 0), self.backoff_max_s, self._rng)

    async def _sleep(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay_s)

    async def _open(self) -> Any | None:
        """Open and configure the port in a thread; None (and state updated) on failure."""
        import serial  # pyserial: a core dependency; imported here to keep module import light

        s = self.variant.serial

        def open_port() -> Any:
            # timeout=0: non-blocking reads, we only read when the loop says it is readable.
            return serial.Serial(self.port, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity,
                                 stopbits=s.stopbits, timeout=0, exclusive=True)

        try:
            port = await asyncio.to_thread(open_port)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._set_unavailable(f"cannot open port: {exc}")
            return None
        if self._stop.is_set():
            port.close()
            return None
        if self._ever_opened:
            self._counters.reconnects += 1
        self._ever_opened = True
        self._connected = True
        self._framer.reset()
        logger.debug("P1 %s: port open (%s %d%s%d)", self.port, self.variant.version, s.baudrate,
                     s.parity, s.bytesize)
        return port

    async def _session(self, port: Any) -> bool:
        """Read from an open port until it fails, goes silent or we stop; True if any telegram was good."""
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        ok_before = self._counters.telegrams_ok
        try:
            while not self._stop.is_set():
                try:
                    data = await self._read_chunk(loop, fd)
                except TimeoutError:
                    self._lost(f"no data for {self.silence_timeout_s:g} s")
                    break
                except OSError as exc:
                    self._lost(f"read failed: {exc}")
                    break
                if data is None:
                    break  # stop() woke us
                if not data:
                    # A vanished USB adapter reads as end of file.
                    self._lost("port closed (end of file)")
                    break
                await self._process(data)
                self._check_stale(loop.time())
        finally:
            self._connected = False
            # Plain close: nothing was written, so there is no output to drain and it cannot block.
            try:
                port.close()
            except Exception:  # pyserial raises its own types on a dead fd
                logger.debug("P1 %s: error while closing port", self.port, exc_info=True)
        return self._counters.telegrams_ok > ok_before

    async def _read_chunk(self, loop: asyncio.AbstractEventLoop, fd: int) -> bytes | None:
        """The next bytes from ``fd``; b"" at end of file, None when stopped."""
        fut: asyncio.Future[bytes | None] = loop.create_future()

        def on_readable() -> None:
            if fut.done():
                return
            try:
                data = os.read(fd, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return  # spurious wake-up
            except OSError as exc:  # EIO when the tty is hung up
                fut.set_exception(exc)
            else:
                fut.set_result(data)

        self._wake = fut
        loop.add_reader(fd, on_readable)
        try:
            return await asyncio.wait_for(fut, self.silence_timeout_s)
        finally:
            loop.remove_reader(fd)
            self._wake = None

    async def _process(self, data: bytes) -> None:
        result = self._framer.feed(data)
        self._counters.truncated += result.truncated
        self._counters.discarded_bytes += result.discarded_bytes
        for raw in result.telegrams:
            telegram = self._parse(raw)
            if telegram is not None:
                await self._deliver(telegram)

    def _parse(self, raw: bytes) -> P1Telegram | None:
        # latin-1 maps every byte to one character, so the CRC dsmr-parser computes
        # over characters equals the CRC over the bytes on the wire.
        text = raw.decode("latin-1")
        try:
            parsed = self._parser.parse(text)
        except self._checksum_error as exc:
            self._counters.crc_errors += 1
            logger.debug("P1 %s: CRC error: %s", self.port, exc)
            return None
        except self._parse_error as exc:
            self._counters.parse_errors += 1
            logger.debug("P1 %s: parse error: %s", self.port, exc)
            return None
        except Exception as exc:  # dsmr-parser lets ValueError & co escape on odd values
            self._counters.parse_errors += 1
            logger.debug("P1 %s: parse failure %s: %s", self.port, type(exc).__name__, exc)
            return None
        telegram = telegram_to_readings(parsed, self._clock(), trust_meter_clock=self.trust_meter_clock)
        if not telegram.readings:
            # Without a CRC (DSMR 2.2/3) a mangled telegram can parse into nothing.
            self._counters.parse_errors += 1
            return None
        return telegram

    async def _deliver(self, telegram: P1Telegram) -> None:
        self._counters.telegrams_ok += 1
        self._latest = telegram
        self._last_good_s = telegram.received_s
        self._last_good_mono = asyncio.get_running_loop().time()
        self._set_available()
        if self._on_telegram is None:
            return
        try:
            result = self._on_telegram(telegram)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._counters.callback_errors += 1
            if not self._callback_failing:  # one traceback per streak, not one per second
                logger.exception("P1 %s: telegram callback failed", self.port)
            self._callback_failing = True
        else:
            self._callback_failing = False

    def _check_stale(self, now_mono: float) -> None:
        """Bytes keep coming but none of them is a good telegram (wrong baud rate, noise)."""
        if not self._available or self._last_good_mono is None:
            return
        if now_mono - self._last_good_mono > self.silence_timeout_s:
            c = self._counters
            self._set_unavailable(
                f"no valid telegram for {self.silence_timeout_s:g} s "
                f"({c.crc_errors} CRC errors, {c.parse_errors} parse errors, {c.truncated} truncated so far)")

    def _lost(self, reason: str) -> None:
        self._counters.disconnects += 1
        self._set_unavailable(reason)

    def _set_unavailable(self, reason: str) -> None:
        self._last_error = reason
        if self._available is False:
            logger.debug("P1 %s: still unavailable: %s", self.port, reason)
            return
        self._available = False
        self._lost_since_mono = _monotonic()
        logger.warning("P1 meter on %s unavailable: %s; retrying with backoff up to %g s",
                       self.port, reason, self.backoff_max_s)

    def _set_available(self) -> None:
        if self._available:
            return
        if self._available is None:
            logger.info("P1 meter on %s: receiving DSMR %s telegrams", self.port, self.variant.version)
        else:
            now = _monotonic()
            down_s = now - (self._lost_since_mono if self._lost_since_mono is not None else now)
            logger.info("P1 meter on %s back after %.1f s", self.port, down_s)
        self._available = True
