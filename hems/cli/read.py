"""``hems read --config FILE``: print the current readings of the configured devices."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``read`` subcommand."""
    parser = subparsers.add_parser("read", help="print current readings of the configured devices")
    parser.add_argument("--config", required=True, help="the home's TOML configuration")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--all", action="store_true", help="every point of each map, not only the roles")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Load the config, poll every device once, print what came back."""
    from hems.config import ConfigError, load_config

    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    return asyncio.run(_read(config, arguments.json, arguments.all))


async def _read(config, as_json: bool, every_point: bool) -> int:
    from hems.runtime.site_devices import DeviceSetupError, build_site_devices

    try:
        site = await build_site_devices(config)
    except DeviceSetupError as error:
        print(f"device error: {error}", file=sys.stderr)
        return 2
    try:
        results = await site.poll_all()
    finally:
        site.close()
    failures = 0
    document: dict[str, dict] = {}
    for name, readings in results.items():
        client = site.clients[name]
        if not client.health.last_good_s:
            failures += 1
            document[name] = {"error": client.health.last_error}
            continue
        roles = {point.name: role.value for role, point in client.map.roles.items()}
        chosen = readings if every_point else {point: readings[point] for point in roles if point in readings}
        document[name] = {
            (roles.get(point) or point): {"value": reading.value, "unit": reading.unit,
                                          "quality": reading.quality.value}
            for point, reading in chosen.items()
        }
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        for name, values in document.items():
            client = site.clients[name]
            print(f"{name}  ({client.map.id} at {client.connection.endpoint} unit {client.unit_id})")
            if "error" in values:
                print(f"  unavailable: {values['error']}")
                continue
            for key, entry in values.items():
                quality = "" if entry["quality"] == "good" else f"  [{entry['quality']}]"
                print(f"  {key:<32} {_format(entry['value']):>14} {entry['unit']}{quality}")
    return 1 if failures == len(document) and document else 0


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return "-" if value is None else str(value)
