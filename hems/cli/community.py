"""``hems community``: the community manager, its books and offline clearing.

```
hems community --config FILE                                   run the manager until SIGTERM
hems community statement --config FILE --home ID --month YYYY-MM [--json]
hems community verify-ledger --config FILE [--expect-head HASH]
hems community clear --mechanism NAME --input FILE.json        clear one slot offline (no config)
hems community clear --list                                    the mechanisms
```

Exit status: 0 done; 1 a failure at run time (a ledger that does not verify, its problems one a line
on stdout; a database or broker that cannot be used); 2 unusable input (configuration, arguments, the
book to clear), one line per problem on stderr and nothing on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("hems.community")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``community`` subcommand and its own subcommands."""
    parser = subparsers.add_parser(
        "community", help="run the community manager, print statements, verify the ledger, clear offline",
        description="Without a subcommand: run the community manager of --config until SIGTERM.")
    parser.add_argument("--config", dest="manager_config", metavar="FILE",
                        help="the community manager's TOML configuration")
    parser.set_defaults(handler=_run_manager)
    commands = parser.add_subparsers(dest="community_command", metavar="SUBCOMMAND")

    statement = commands.add_parser("statement", help="a home's monthly statement from the ledger")
    statement.add_argument("--config", required=True, metavar="FILE", help="the manager's configuration")
    statement.add_argument("--home", required=True, metavar="ID", help="a member's id")
    statement.add_argument("--month", required=True, metavar="YYYY-MM", help="the UTC month")
    statement.add_argument("--currency", default="EUR", help="the currency shown in the text form")
    statement.add_argument("--json", action="store_true", help="JSON, money as exact decimal strings")
    statement.set_defaults(handler=_statement)

    verify = commands.add_parser("verify-ledger", help="recompute every hash and link of the ledger")
    verify.add_argument("--config", required=True, metavar="FILE", help="the manager's configuration")
    verify.add_argument("--expect-head", metavar="HASH", help="a head published earlier (in a slot result)")
    verify.set_defaults(handler=_verify_ledger)

    clear = commands.add_parser(
        "clear", help="clear one slot offline and print the result as JSON",
        description="Clear one slot from a JSON book (see hems.community.offline) with any mechanism.")
    clear.add_argument("--mechanism", metavar="NAME", help="a mechanism name (--list shows them)")
    clear.add_argument("--input", metavar="FILE", help="the book as JSON ('-': standard input)")
    clear.add_argument("--list", action="store_true", help="name the mechanisms and what each clears from")
    clear.set_defaults(handler=_clear)


def _fail(message: str, code: int = EXIT_INVALID) -> int:
    print(message, file=sys.stderr)
    return code


def _load_config(path: str) -> Any:
    """The validated configuration, or None after printing every problem."""
    from hems.community.config import load_community_config
    from hems.config.errors import ConfigError

    try:
        return load_community_config(path)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{error.source}: {problem}", file=sys.stderr)
        return None


# -- the manager --------------------------------------------------------------------------------

def _run_manager(arguments: argparse.Namespace) -> int:
    from hems.observability.logging_setup import setup_logging

    if arguments.manager_config is None:
        return _fail("hems community: give --config FILE to run the manager, or a subcommand "
                     "(statement, verify-ledger, clear)")
    config = _load_config(arguments.manager_config)
    if config is None:
        return EXIT_INVALID
    setup_logging(config.logging.level, json_format=config.logging.format == "json")
    return asyncio.run(_serve(config))


async def _serve(config: Any) -> int:
    from hems.community.service import run_community_manager
    from hems.store import StoreError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    try:
        code = await run_community_manager(config, stop=stop)
    except (StoreError, OSError) as error:
        logger.error("cannot start: %s", error)
        return EXIT_FAILURE
    logger.info("stopped")
    return code


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    logger.info("%s received: stopping", signal.Signals(signum).name)
    stop.set()


# -- the books ----------------------------------------------------------------------------------

def _open_state(config: Any) -> Any:
    """The manager's database, read where it is; None (after saying why) when there is none."""
    from hems.community.state import CommunityState

    path = config.community.database_path
    if not Path(path).is_file():
        print(f"{path}: no community database (has the manager run with this configuration?)", file=sys.stderr)
        return None
    return CommunityState(path)


def _statement(arguments: argparse.Namespace) -> int:
    from hems.community.statement import month_bounds_s, monthly_statement, render_statement
    from hems.store import StoreError

    config = _load_config(arguments.config)
    if config is None:
        return EXIT_INVALID
    if arguments.home not in config.member_ids:
        return _fail(f"--home {arguments.home!r}: not a member of {config.community.id} "
                     f"(members: {', '.join(config.member_ids)})")
    try:
        month_bounds_s(arguments.month)
    except ValueError as error:
        return _fail(f"--month: {error}")
    try:
        state = _open_state(config)
        if state is None:
            return EXIT_INVALID
        with state:
            statement = monthly_statement(state.ledger, arguments.home, arguments.month)
    except StoreError as error:
        return _fail(str(error), EXIT_FAILURE)
    if arguments.json:
        print(json.dumps(statement.to_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render_statement(statement, currency=arguments.currency))
    return EXIT_OK


def _verify_ledger(arguments: argparse.Namespace) -> int:
    from hems.store import StoreError

    config = _load_config(arguments.config)
    if config is None:
        return EXIT_INVALID
    try:
        state = _open_state(config)
        if state is None:
            return EXIT_INVALID
        with state:
            verification = state.ledger.verify(arguments.expect_head)
    except StoreError as error:
        return _fail(str(error), EXIT_FAILURE)
    if not verification.ok:
        for problem in verification.problems:
            print(problem)
        return EXIT_FAILURE
    print(f"ledger OK: {verification.records} records, head {verification.head}")
    return EXIT_OK


# -- offline clearing ---------------------------------------------------------------------------

def _clear(arguments: argparse.Namespace) -> int:
    from hems.community.mechanisms.registry import mechanism_names
    from hems.community.offline import OfflineInputError, clear_offline, describe_mechanisms, parse_book

    if arguments.list:
        for item in describe_mechanisms():
            print(f"{item['name']:<20} {item['clears_from']:<10} {item['description']}")
        return EXIT_OK
    if arguments.mechanism is None or arguments.input is None:
        return _fail("hems community clear: give --mechanism NAME and --input FILE (or --list)")
    if arguments.mechanism not in mechanism_names():
        return _fail(f"--mechanism: unknown {arguments.mechanism!r}; choose one of {', '.join(mechanism_names())}")
    try:
        text = sys.stdin.read() if arguments.input == "-" else Path(arguments.input).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return _fail(f"{arguments.input}: cannot read the file: {error}")
    try:
        result = clear_offline(arguments.mechanism, parse_book(text))
    except OfflineInputError as error:
        return _fail(f"{arguments.input}: {error}")
    except RuntimeError as error:  # a solver that found no optimum: the book was fine
        return _fail(f"{arguments.mechanism}: clearing failed: {error}", EXIT_FAILURE)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return EXIT_OK
