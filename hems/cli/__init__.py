"""The ``hems`` command.

Each subcommand lives in its own module that exposes ``register(subparsers)``; the
module is imported only when the command line is built, and heavy libraries
(cvxpy, pymodbus.server) are imported inside the command functions, so
``hems --help`` stays fast on a gateway.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order shown by ``hems --help``.
_SUBCOMMAND_MODULES = (
    "hems.cli.run",
    "hems.cli.community",
    "hems.cli.grid",
    "hems.cli.check_config",
    "hems.cli.emulate",
    "hems.cli.scan",
    "hems.cli.read",
    "hems.cli.plan",
    "hems.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="hems", description="Home energy management for prosumers in peer-to-peer energy communities.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # a subcommand whose issue has not landed yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hems`` console script; returns the process exit code."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    from hems.observability.logging_setup import setup_logging

    # key=value lines on stderr for every command; `hems run` re-configures from its file.
    setup_logging(arguments.log_level.upper())
    return int(arguments.handler(arguments) or 0)


if __name__ == "__main__":
    sys.exit(main())
