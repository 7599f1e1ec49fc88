"""``hems scan HOST[:PORT]``: find SunSpec devices and recognise known vendor maps.

For each unit id: SunSpec discovery at the usual base addresses (models, their
names and lengths, identification and a few live values), then every bundled
vendor map is probed by its ``[identify]`` point. Output is meant for an
installer; the exit code is 0 when something was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from drivers.maps.schema import IdentifySpec
    from drivers.readings import Reading
    from drivers.sunspec.discovery import SunSpecDevice
    from drivers.transport import ModbusConnection

#: Unit ids tried without --unit: the usual default, the next few on a shared
#: RS-485 gateway, Victron GX (100) and SMA's SunSpec id (126).
DEFAULT_UNITS = (1, 2, 3, 100, 126)
#: Roles whose live values the scan prints, when the device has them.
_KEY_ROLES = ("pv_power_w", "grid_power_w", "battery_power_w", "battery_soc_pct", "pv_rated_power_w")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scan`` subcommand."""
    parser = subparsers.add_parser("scan", help="find Modbus/SunSpec devices and what they are",
                                   description="Find SunSpec devices and recognise known vendor maps.")
    parser.add_argument("endpoint", metavar="HOST[:PORT]", help="Modbus TCP device or gateway (port 502 by default)")
    parser.add_argument("--unit", dest="units", type=int, action="append", metavar="ID",
                        help=f"unit id to scan (repeatable; default {', '.join(map(str, DEFAULT_UNITS))})")
    parser.add_argument("--timeout", type=float, default=1.0, metavar="S", help="answer timeout per request (s)")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace, out: TextIO | None = None) -> int:
    """Handler of ``hems scan``; returns 0 if anything was found."""
    import sys  # noqa: PLC0415

    from drivers.transport import parse_endpoint  # noqa: PLC0415 - imports pymodbus

    try:
        endpoint = parse_endpoint(arguments.endpoint)
    except ValueError as error:
        print(f"hems scan: {error}", file=sys.stderr)
        return 2
    units = arguments.units or list(DEFAULT_UNITS)
    if any(not 0 <= unit <= 255 for unit in units):
        print("hems scan: unit ids must be in 0..255", file=sys.stderr)
        return 2
    return asyncio.run(scan(endpoint, units, arguments.timeout, out or sys.stdout))


async def scan(endpoint, units: list[int], timeout_s: float, out: TextIO) -> int:
    """Scan ``units`` behind ``endpoint`` and print what answers; 0 if anything was found."""
    from drivers.transport import ConnectionPool, RetryPolicy  # noqa: PLC0415

    # No retries, and silence from one unit id must not drop the connection the
    # other unit ids share (a gateway times out absent ids).
    policy = RetryPolicy(timeout_s=timeout_s, retries=0, reconnect_delay_s=0.2, reconnect_delay_max_s=1.0,
                         reconnect_after_timeouts=1_000_000)
    pool = ConnectionPool(policy)
    connection = pool.get(endpoint)
    found = False
    print(f"Scanning {endpoint}, unit ids {', '.join(map(str, units))}", file=out)
    try:
        for unit in units:
            found |= await _scan_unit(connection, unit, out)
            if connection.connects == 0:
                print(f"cannot connect to {endpoint}", file=out)
                return 1
    finally:
        pool.close()
    print("found devices" if found else "nothing found", file=out)
    return 0 if found else 1


async def _scan_unit(connection: ModbusConnection, unit: int, out: TextIO) -> bool:
    from drivers.sunspec.discovery import discover, find_sunspec_base  # noqa: PLC0415

    search = await find_sunspec_base(connection, unit)
    if not search.answered:
        print(f"unit {unit}: no answer", file=out)
        return False
    found = False
    if search.base_address is None:
        print(f"unit {unit}: answers, but no SunSpec marker at base 40000, 0 or 50000", file=out)
    else:
        device = await discover(connection, unit, bases=(search.base_address,))
        if device is not None:
            found = True
            await _print_sunspec(connection, device, out)
    matches = await _probe_vendor_maps(connection, unit, out)
    return found or bool(matches)


async def _print_sunspec(connection: ModbusConnection, device: SunSpecDevice, out: TextIO) -> None:
    from drivers.devices.map_client import MapClient  # noqa: PLC0415
    from drivers.maps import Role  # noqa: PLC0415

    chain = device.chain
    state = "chain complete" if chain.complete else f"chain incomplete: {chain.problem}"
    print(f"unit {device.unit_id}: SunSpec device at base address {device.base_address} "
          f"({len(chain.models)} models, {state})", file=out)
    print(f"  {'address':>8}  {'model':>5}  {'length':>6}  name", file=out)
    for model in chain.models:
        note = "" if model.supported else "  (not decoded)"
        print(f"  {model.address:>8}  {model.model_id:>5}  {model.length:>6}  {model.label}{note}", file=out)
    common = device.common
    if common:
        print("  manufacturer {}, model {}, serial {}, version {}".format(
            common.get("Mn", "?"), common.get("Md", "?"), common.get("SN", "?"), common.get("Vr", "?")), file=out)
    register_map = device.register_map
    points = [point.name for role in _KEY_ROLES if (point := register_map.point_for(Role(role))) is not None]
    if not points:
        return
    client = MapClient(connection, register_map, unit_id=device.unit_id, points=points)
    readings = await client.poll()
    if client.health.failures_total:
        print(f"  values: unreadable ({client.health.last_error})", file=out)
        return
    for role in _KEY_ROLES:
        point = register_map.point_for(Role(role))
        if point is not None and point.name in readings:
            print(f"  {role}: {_format(readings[point.name])}  [{point.name}]", file=out)
    print(f"  map: {register_map.id} (use map = \"sunspec\" in the device config)", file=out)


async def _probe_vendor_maps(connection: ModbusConnection, unit: int, out: TextIO) -> list[str]:
    from drivers.devices.map_client import MapClient  # noqa: PLC0415
    from drivers.maps import MapError, available_maps, load_map  # noqa: PLC0415
    from drivers.transport import DeviceError  # noqa: PLC0415

    matches = []
    probed = 0
    for name in available_maps():
        try:
            register_map = load_map(name)
        except MapError as error:
            print(f"  map {name}: cannot be loaded ({error})", file=out)
            continue
        identify = register_map.spec.identify
        if identify is None:
            continue
        probed += 1
        client = MapClient(connection, register_map, unit_id=unit)
        try:
            reading = await client.read_point(identify.point)
        except DeviceError:
            continue
        if _identifies(identify, reading):
            matches.append(name)
            print(f"  vendor map {name} matches: {identify.point} = {reading.value!r} "
                  f"({register_map.spec.device.manufacturer} {', '.join(register_map.spec.device.models)})",
                  file=out)
    if not matches:
        print(f"  vendor maps: {probed} probed, none matched", file=out)
    return matches


def _identifies(identify: IdentifySpec, reading: Reading) -> bool:
    value = reading.value
    if value is None:
        return False
    if identify.equals is not None:
        if isinstance(identify.equals, str):
            return str(value).strip() == identify.equals
        return isinstance(value, (int, float)) and value == identify.equals
    if identify.contains is not None:
        return identify.contains.lower() in str(value).lower()
    if identify.one_of is not None:
        return isinstance(value, (int, float)) and value in identify.one_of
    return True  # the point merely answering identifies the device


def _format(reading: Reading) -> str:
    if reading.value is None:
        return reading.quality.value.replace("_", " ")
    # "or 0.0" turns the -0.0 of a sign-flipped zero into 0.0.
    value = f"{reading.value or 0.0:g}" if isinstance(reading.value, float) else str(reading.value)
    return f"{value} {reading.unit}".strip()
