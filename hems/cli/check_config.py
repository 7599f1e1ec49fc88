"""``hems check-config FILE``: validate a home configuration without touching any device.

Exit status 0 when the file is usable (a short summary on stdout, warnings on stderr), 2 when
it is not (every problem on stderr, one per line, prefixed by the file name). ``--json``
prints the configuration with every default filled in.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_OK = 0
EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check-config`` subcommand."""
    parser = subparsers.add_parser(
        "check-config", help="validate a configuration file and the register maps it names",
        description="Validate FILE: every key, value and range, each device's register map and "
                    "capabilities. Connects to nothing.")
    parser.add_argument("file", metavar="FILE", help="the home's TOML configuration, e.g. /etc/hems/hems.toml")
    parser.add_argument("--json", action="store_true", help="print the normalised configuration as JSON")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Validate, check the devices' maps, print the summary or the problems."""
    from hems.config import ConfigError, load_config
    from hems.config.check import check_devices

    source = arguments.file
    try:
        config = load_config(source)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{source}: {problem}", file=sys.stderr)
        return EXIT_INVALID
    result = check_devices(config)
    for problem in result.problems:
        print(f"{source}: {problem}", file=sys.stderr)
    for warning in result.warnings:
        print(f"{source}: warning: {warning}", file=sys.stderr)
    if not result.ok:
        return EXIT_INVALID
    if arguments.json:
        print(json.dumps(config.normalised(), indent=2))
    else:
        print("\n".join(summary_lines(source, config, result)))
    return EXIT_OK


def summary_lines(source: str, config, result) -> list[str]:
    """A short human summary of a valid configuration."""
    home, site = config.home, config.site
    lines = [f"{source}: ok",
             f"home      {home.id}: {home.timezone}, {_coordinate(home.latitude_deg, 'N', 'S')} "
             f"{_coordinate(home.longitude_deg, 'E', 'W')}, state in {home.state_directory}"]
    for report in result.devices:
        map_text = "sunspec (discovered at start-up)" if report.map_id == "sunspec" else report.map_id
        unit = "" if report.unit_id is None else f" unit {report.unit_id}"
        kinds = ", ".join(report.capabilities) or "capabilities found at start-up"
        lines.append(f"device    {report.name}: {map_text}, {report.endpoint}{unit}; {kinds}")
    if not result.devices:
        lines.append("device    none configured")
    if config.p1 is not None:
        lines.append(f"p1        {config.p1.port}, DSMR {config.p1.dsmr_version}")
    battery = site.battery
    lines.append(f"battery   {battery.capacity_wh / 1000:g} kWh, charge <= {battery.max_charge_w:g} W, "
                 f"discharge <= {battery.max_discharge_w:g} W, "
                 f"SoC {battery.soc_min * 100:g}..{battery.soc_max * 100:g} %")
    lines.append(f"grid      import <= {site.grid.import_limit_w:g} W, export <= {site.grid.export_limit_w:g} W, "
                 f"control margin {config.control.export_margin_w:g} W")
    if site.pv.arrays:
        peak_kw = sum(array.peak_power_w for array in site.pv.arrays) / 1000
        lines.append(f"pv        {len(site.pv.arrays)} array(s), {peak_kw:g} kWp"
                     f"{', curtailable' if site.pv.curtailable else ''}")
    if site.ev is not None:
        lines.append(f"ev        charger up to {site.ev.max_charge_w:g} W")
    if site.heat_pump is not None:
        lines.append(f"heat pump {site.heat_pump.kind}, up to {site.heat_pump.max_electric_w:g} W electric")
    tariff = config.tariff
    periods = f"; {len(tariff.period)} time-of-use period(s)" if tariff.period else ""
    lines.append(f"tariff    import {tariff.import_price_per_kwh:g}, export {tariff.export_price_per_kwh:g} "
                 f"per kWh{periods}")
    loops = config.loops
    lines.append(f"loops     telemetry every {loops.telemetry_period_s:g} s, control every "
                 f"{loops.control_period_s:g} s, plan {site.mpc.horizon_steps} x {site.mpc.step_s} s")
    metrics = config.metrics
    host = f"[{metrics.address}]" if ":" in metrics.address else metrics.address  # IPv6 in a URL
    lines.append(f"metrics   http://{host}:{metrics.port}/metrics" if metrics.enabled else "metrics   off")
    if config.home_assistant.enabled:
        lines.append(f"home assistant  {config.home_assistant.broker}")
    return lines


def _coordinate(value: float, positive: str, negative: str) -> str:
    return f"{abs(value):.2f} {positive if value >= 0 else negative}"
