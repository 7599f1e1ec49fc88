"""``hems run --config FILE``: the daemon of one home, as systemd runs it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

logger = logging.getLogger("hems.run")

EXIT_CONFIG_ERROR = 2
EXIT_SETUP_ERROR = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser("run", help="run the daemon of one home",
                                   description="Read, plan and actuate until SIGTERM (see docs/operations.md).")
    parser.add_argument("--config", required=True, help="the home's TOML configuration (hems check-config)")
    parser.set_defaults(handler=_run)


def _run(arguments: argparse.Namespace) -> int:
    from hems.config import ConfigError, load_config
    from hems.observability.logging_setup import setup_logging

    try:
        config = load_config(arguments.config)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{error.source}: {problem}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    setup_logging(config.logging.level, json_format=config.logging.format == "json")
    return asyncio.run(_serve(config))


async def _serve(config) -> int:
    from hems.clock import SystemClock
    from hems.runtime.home import HomeRuntime
    from hems.runtime.site_devices import DeviceSetupError
    from hems.store import StoreError

    runtime = HomeRuntime(config, SystemClock())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, runtime, signum)
    try:
        await runtime.run()
    except (StoreError, DeviceSetupError, OSError) as error:
        logger.error("cannot start: %s", error)
        return EXIT_SETUP_ERROR
    logger.info("stopped")
    return 0


def _on_signal(runtime, signum: int) -> None:
    logger.info("%s received: stopping", signal.Signals(signum).name)
    runtime.request_stop()
