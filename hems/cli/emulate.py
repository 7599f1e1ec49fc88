"""``hems emulate MAP [MAP ...] (--tcp HOST:PORT | --rtu TTY)``: serve device emulators of one site.

All maps share one plant (PV, household load, battery, grid balance), so a battery
command written to one of them shows on the grid meter of another. Several maps on
one address get consecutive unit ids from ``--unit`` unless ``MAP@ID`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from drivers.emulators import SitePlant


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``emulate`` subcommand."""
    parser = subparsers.add_parser("emulate", help="serve device emulators (Modbus TCP/RTU) of one simulated site",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("maps", nargs="*", metavar="MAP[@ID]",
                        help="bundled map, builtin SunSpec device or map file; @ID sets its unit id")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--tcp", metavar="HOST:PORT", help="Modbus TCP address (host defaults to 127.0.0.1)")
    where.add_argument("--rtu", metavar="TTY", help="serial port (RS-485 adapter or pty) for Modbus RTU")
    parser.add_argument("--baudrate", type=int, default=9600, help="RTU baud rate (default 9600)")
    parser.add_argument("--unit", type=int, default=None, metavar="ID",
                        help="unit id of the first map (default: the map's own default unit id)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="FACTOR",
                        help="simulated time runs FACTOR times faster than real time")
    parser.add_argument("--start-hour", type=float, default=None, metavar="H",
                        help="simulated local hour of day to start at (default: now)")
    parser.add_argument("--status-every", type=float, default=10.0, metavar="S",
                        help="print a status line every S seconds of real time (0: never)")
    parser.add_argument("--list", action="store_true", help="list every emulatable map and SunSpec device")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace, out: TextIO | None = None) -> int:
    """Handler of ``hems emulate``; returns the exit code."""
    out = out or sys.stdout
    if arguments.list:
        return list_maps(out)
    if not arguments.maps or (arguments.tcp is None and arguments.rtu is None):
        print("hems emulate: give MAP [MAP ...] and --tcp HOST:PORT or --rtu TTY (or --list)", file=sys.stderr)
        return 2
    if arguments.speed <= 0:
        print("hems emulate: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        bindings = parse_bindings(arguments.maps, arguments.unit)
        tcp = parse_tcp(arguments.tcp) if arguments.tcp is not None else None
    except ValueError as error:
        print(f"hems emulate: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(bindings, tcp, arguments.rtu, arguments.baudrate, arguments.speed,
                                 arguments.start_hour, arguments.status_every, out))
    except (OSError, RuntimeError) as error:
        print(f"hems emulate: {error}", file=sys.stderr)
        return 1


def list_maps(out: TextIO) -> int:
    """Print every emulatable device: name, kinds, manufacturer, origin."""
    from drivers.emulators.catalog import catalog  # noqa: PLC0415

    entries = catalog()
    width = max((len(entry.name) for entry in entries), default=10)
    for entry in entries:
        kinds = ",".join(entry.kinds) or "-"
        print(f"{entry.name:<{width}}  {kinds:<32}  {entry.manufacturer}  ({entry.origin})", file=out)
    return 0


def parse_tcp(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError as error:
        raise ValueError(f"--tcp {text!r}: the port is not a number") from error
    if not 0 <= port <= 65535:
        raise ValueError(f"--tcp {text!r}: port outside 0..65535")
    return host, port


def parse_bindings(names: list[str], first_unit: int | None):
    """Resolve ``MAP[@ID]`` arguments into map bindings with consecutive unit ids."""
    from drivers.emulators.catalog import resolve_map  # noqa: PLC0415
    from drivers.emulators.image import MapBinding  # noqa: PLC0415
    from drivers.maps import MapError  # noqa: PLC0415

    bindings = []
    next_unit = first_unit
    for text in names:
        name, _, unit_text = text.partition("@")
        try:
            register_map = resolve_map(name)
        except MapError as error:
            raise ValueError(str(error)) from error
        if unit_text:
            try:
                unit = int(unit_text)
            except ValueError as error:
                raise ValueError(f"{text!r}: unit id {unit_text!r} is not a number") from error
        elif next_unit is not None:
            unit = next_unit
        else:
            unit = register_map.spec.device.default_unit_id
            # A second map with the same default gets the next free id.
            while any(binding.unit_id == unit for binding in bindings):
                unit += 1
        if not 0 <= unit <= 255:
            raise ValueError(f"{text!r}: unit id {unit} outside 0..255")
        if any(binding.unit_id == unit for binding in bindings):
            raise ValueError(f"{text!r}: unit id {unit} is already taken")
        bindings.append(MapBinding(register_map, unit))
        next_unit = unit + 1
    return bindings


def status_line(plant: SitePlant) -> str:
    """One line of the site's state for the console."""
    flows = plant.flows
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((plant.time_s or 0.0) + plant.utc_offset_s))
    mode = "remote" if plant.remote_active() else "auto"
    return (f"{local}  SoC {plant.battery.soc_pct:5.1f} %  PV {flows.pv_w:7.0f} W  load {flows.load_w:6.0f} W  "
            f"battery {flows.battery_charge_w:+7.0f} W ({mode})  grid {flows.grid_w:+7.0f} W")


async def serve(bindings, tcp: tuple[str, int] | None, rtu: str | None, baudrate: int, speed: float,
                start_hour: float | None, status_every_s: float, out: TextIO) -> int:
    """Run the emulators until SIGINT or SIGTERM."""
    from drivers.emulators import ScaledClock, SitePlant  # noqa: PLC0415
    from drivers.emulators.modbus_server import EmulatorServer  # noqa: PLC0415

    utc_offset_s = float(time.localtime().tm_gmtoff)
    start_s = time.time()
    if start_hour is not None:
        midnight_local = start_s - (start_s + utc_offset_s) % 86_400
        start_s = midnight_local + start_hour * 3600.0
    plant = SitePlant(clock=ScaledClock(speed, start_s), utc_offset_s=utc_offset_s)
    server = EmulatorServer(bindings, plant, tcp=tcp, rtu_port=rtu, baudrate=baudrate)
    await server.start()
    units = ", ".join(f"{binding.register_map.id}@{binding.unit_id}" for binding in bindings)
    print(f"hems emulate: serving {units} on {server.address} (speed x{speed:g})", file=out, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        while not stop.is_set():
            timeout = status_every_s if status_every_s > 0 else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if status_every_s > 0 and not stop.is_set():
                plant.advance()
                print(status_line(plant), file=out, flush=True)
    finally:
        await server.stop()
        print("hems emulate: stopped", file=out, flush=True)
    return 0
