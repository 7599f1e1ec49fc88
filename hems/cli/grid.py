"""``hems grid``: a simulated grid operator talking to a community manager over MQTT (docs/grid.md).

```
hems grid limits   --broker URL --community ID (--file LIMITS.toml [--day DATE] | --from ISO --slots N
                   [--import-limit-kw X] [--export-limit-kw Y] [--fee F] [--slot-minutes 15]) [--wait S] [--json]
hems grid request  --broker URL --community ID --from ISO --slots N --delta-kw X --price P [--penalty Q]
                   [--id ID] [--slot-minutes 15] [--wait S] [--json]
hems grid offers   --broker URL --community ID [--wait S] [--json]
hems grid simulate --broker URL --community ID --config GRID.toml     until SIGTERM
```

Prices are currency per kWh and powers kW, as typed; they must be exact in µ¤/kWh and whole W.
Exit status: 0 done (limits acked OK; a request DISPATCHED or SETTLED; offers printed); 1 the broker
could not be used; 2 unusable input (one line on stderr), a REFUSED request or a limits ack that is not
OK; 3 nothing heard within ``--wait``. Answers go to stdout (``--json``: one JSON object a line, wire
integers); what was sent is said on stdout in text mode and on stderr with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger("hems.grid")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REFUSED = 2
EXIT_TIMEOUT = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``grid`` subcommand and its own subcommands."""
    parser = subparsers.add_parser("grid", help="a simulated grid operator: limits, flexibility requests, offers",
                                   description="Talk to a community manager as its grid operator would.")
    commands = parser.add_subparsers(dest="grid_command", metavar="SUBCOMMAND", required=True)
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--broker", required=True, metavar="URL", help="mqtt://host[:port] or mqtts://host[:port]")
    broker.add_argument("--community", required=True, metavar="ID", help="the community id (topic prefix)")
    broker.add_argument("--username", help="the broker user name")
    broker.add_argument("--password-file", type=Path, metavar="FILE", help="a file holding the broker password")
    broker.add_argument("--ca-file", type=Path, metavar="FILE", help="CA bundle of an mqtts:// broker")
    broker.add_argument("--sender", default="grid-operator", help="the envelope's sender (default grid-operator)")
    broker.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                        help="give up when the broker has not answered within S seconds (default 10)")

    limits = commands.add_parser("limits", parents=[broker], help="publish day-ahead limits and fees (retained)")
    limits.add_argument("--file", type=Path, metavar="LIMITS.toml", help="a limits file (docs/grid.md)")
    limits.add_argument("--day", metavar="YYYY-MM-DD", help="with --file: the day (default: the file's, else tomorrow)")
    limits.add_argument("--from", dest="start", metavar="ISO", help="the first slot, e.g. 2026-11-21T16:00Z")
    limits.add_argument("--slots", type=int, metavar="N", help="how many slots from --from")
    limits.add_argument("--slot-minutes", type=int, metavar="M", help="slot length (default 15)")
    limits.add_argument("--import-limit-kw", metavar="X", help="most power into the community (default: none)")
    limits.add_argument("--export-limit-kw", metavar="Y", help="most power out of the community (default: none)")
    limits.add_argument("--fee", metavar="F", help="locational fee, currency per kWh (default 0)")
    limits.add_argument("--wait", type=float, default=10.0, metavar="S", help="wait for the ack (0: do not)")
    limits.add_argument("--json", action="store_true", help="the ack as a JSON line")
    limits.set_defaults(handler=_limits)

    request = commands.add_parser("request", parents=[broker], help="send a flexibility request, print the answers")
    request.add_argument("--from", dest="start", required=True, metavar="ISO", help="the first slot's start")
    request.add_argument("--slots", type=int, required=True, metavar="N", help="how many slots")
    request.add_argument("--slot-minutes", type=int, default=15, metavar="M", help="slot length (default 15)")
    request.add_argument("--delta-kw", required=True, metavar="X", help="change of net import: + more, - less")
    request.add_argument("--price", required=True, metavar="P", help="paid per kWh delivered")
    request.add_argument("--penalty", default="0", metavar="Q", help="owed per kWh not delivered (default 0)")
    request.add_argument("--id", dest="request_id", metavar="ID", help="the request id (default: a fresh one)")
    request.add_argument("--wait", type=float, default=60.0, metavar="S", help="wait this long for answers")
    request.add_argument("--json", action="store_true", help="one JSON object a line")
    request.set_defaults(handler=_request)

    offers = commands.add_parser("offers", parents=[broker], help="print the community's retained offers")
    offers.add_argument("--wait", type=float, default=5.0, metavar="S", help="wait this long for them")
    offers.add_argument("--json", action="store_true", help="a JSON line")
    offers.set_defaults(handler=_offers)

    simulate = commands.add_parser("simulate", parents=[broker], help="run a simulated operator until SIGTERM")
    simulate.add_argument("--config", required=True, metavar="GRID.toml", help="its schedule (docs/grid.md)")
    simulate.set_defaults(handler=_simulate)


def _fail(message: str, code: int = EXIT_REFUSED) -> int:
    print(message, file=sys.stderr)
    return code


def _say(text: str, as_json: bool) -> None:
    """What was sent: stdout in text mode, stderr when stdout carries JSON lines."""
    stream = sys.stderr if as_json else sys.stdout
    stream.write(text)
    stream.flush()


def _answer(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _settings(arguments: argparse.Namespace, *, persistent: bool = False) -> Any:
    """The broker settings of the options; ValueError naming the option."""
    from hems.protocol.mqtt import BrokerSettings, broker_endpoint
    from hems.protocol.topics import IDENTIFIER, Topics

    broker_endpoint(arguments.broker, "--broker")
    if not arguments.connect_timeout > 0:
        raise ValueError(f"--connect-timeout {arguments.connect_timeout:g}: allowed > 0 seconds")
    if not getattr(arguments, "wait", 0) >= 0:
        raise ValueError(f"--wait {arguments.wait:g}: allowed >= 0 seconds")
    try:
        Topics(arguments.community)
    except ValueError as error:
        raise ValueError(f"--community: {error}") from None
    if not IDENTIFIER.match(arguments.sender):
        raise ValueError(f"--sender {arguments.sender!r}: use 1-64 letters, digits, '-' or '_'")
    password = None
    if arguments.password_file is not None:
        try:
            password = arguments.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--password-file: {error}") from None
    client_id = (f"{arguments.sender}-{arguments.community}" if persistent
                 else f"{arguments.sender}-{secrets.token_hex(4)}")
    return BrokerSettings(url=arguments.broker, client_id=client_id, username=arguments.username,
                          password=password, ca_file=arguments.ca_file, persistent_session=persistent)


async def _connected_client(arguments: argparse.Namespace, settings: Any) -> Any:
    """A started client, or None after saying why the broker cannot be used."""
    from hems.grid_operator.client import GridOperatorClient

    client = GridOperatorClient(settings, arguments.community, sender=arguments.sender)
    try:
        await client.start(arguments.connect_timeout)
    except (ConnectionError, TimeoutError, OSError) as error:
        print(f"--broker {arguments.broker}: {error}", file=sys.stderr)
        return None
    return client


# -- limits -------------------------------------------------------------------------------------

def _limits(arguments: argparse.Namespace) -> int:
    try:
        publication = _limits_publication(arguments)
        settings = _settings(arguments)
    except ValueError as error:
        return _fail(str(error))
    if publication is None:
        return EXIT_REFUSED
    return asyncio.run(_publish_limits(arguments, settings, publication))


def _limits_publication(arguments: argparse.Namespace) -> Any:
    """The publication of the options; None after printing a file's problems; ValueError otherwise."""
    from hems.config.errors import ConfigError
    from hems.grid_operator import messages
    from hems.grid_operator.config import load_limits_file

    inline = [name for name, value in (("--from", arguments.start), ("--slots", arguments.slots),
                                       ("--slot-minutes", arguments.slot_minutes),
                                       ("--import-limit-kw", arguments.import_limit_kw),
                                       ("--export-limit-kw", arguments.export_limit_kw), ("--fee", arguments.fee))
              if value is not None]
    if arguments.file is not None:
        if inline:
            raise ValueError(f"--file and {', '.join(inline)} exclude each other: the file says it all")
        try:
            limits_file = load_limits_file(arguments.file)
        except ConfigError as error:
            for problem in error.problems:
                print(f"{error.source}: {problem}", file=sys.stderr)
            return None
        day = _limits_day(arguments.day, limits_file)
        return _option(str(arguments.file), limits_file.publication, day, limits_file.zone, limits_file.slot_minutes)
    if arguments.day is not None:
        raise ValueError("--day goes with --file; without it give --from")
    if arguments.start is None or arguments.slots is None:
        raise ValueError("give --file LIMITS.toml, or --from ISO and --slots N (with the limits and --fee)")
    slot_minutes = _option("--slot-minutes", messages.check_slot_minutes,
                           15 if arguments.slot_minutes is None else arguments.slot_minutes)
    start = _option("--from", messages.first_slot, arguments.start, slot_minutes)
    import_w = None if arguments.import_limit_kw is None else _option(
        "--import-limit-kw", messages.power_w, arguments.import_limit_kw)
    export_w = None if arguments.export_limit_kw is None else _option(
        "--export-limit-kw", messages.power_w, arguments.export_limit_kw)
    fee_micro = _option("--fee", messages.price_micro, arguments.fee or "0")
    return _option("--slots", lambda: messages.uniform_limits(
        start, arguments.slots, slot_minutes, import_limit_w=import_w, export_limit_w=export_w,
        fee_micro=fee_micro))


def _limits_day(text: str | None, limits_file: Any) -> date:
    if text is not None:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--day {text!r}: allowed a date YYYY-MM-DD") from None
    if limits_file.day is not None:
        return limits_file.day
    return datetime.now(limits_file.zone).date() + timedelta(days=1)


def _option(option: str, convert: Any, *values: Any) -> Any:
    try:
        return convert(*values)
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None


async def _publish_limits(arguments: argparse.Namespace, settings: Any, publication: Any) -> int:
    from hems.grid_operator.client import PublishError
    from hems.grid_operator.render import ack_text, json_line, limits_text
    from hems.protocol.envelope import ReceptionStatus

    client = await _connected_client(arguments, settings)
    if client is None:
        return EXIT_FAILURE
    try:
        try:
            message_id = await client.publish_limits(publication)
        except PublishError as error:
            return _fail(str(error), EXIT_FAILURE)
        first, last = publication.slots[0].slot_start, publication.slots[-1].slot_start
        _say(f"published grid_limits {message_id}: {len(publication.slots)} slots {first:%Y-%m-%d %H:%M} … "
             f"{last:%Y-%m-%d %H:%M} UTC, retained\n", arguments.json)
        if not arguments.json:
            _say(limits_text(publication), False)
        if arguments.wait <= 0:
            return EXIT_OK
        ack = await client.wait_ack(message_id, arguments.wait)
        if ack is None:
            return _fail(f"no ack within {arguments.wait:g} s (the limits stay retained for the manager)",
                         EXIT_TIMEOUT)
        _answer(json_line(ack) if arguments.json else ack_text(ack))
        return EXIT_OK if ack.payload.status == ReceptionStatus.OK else EXIT_REFUSED
    finally:
        await client.stop()


# -- request ------------------------------------------------------------------------------------

def _request(arguments: argparse.Namespace) -> int:
    from hems.grid_operator import messages
    from hems.protocol.topics import IDENTIFIER

    try:
        _option("--slot-minutes", messages.check_slot_minutes, arguments.slot_minutes)
        start = _option("--from", messages.first_slot, arguments.start, arguments.slot_minutes)
        delta_w = _option("--delta-kw", lambda text: messages.power_w(text, signed=True), arguments.delta_kw)
        price = _option("--price", messages.price_micro, arguments.price)
        penalty = _option("--penalty", messages.price_micro, arguments.penalty)
        request_id = arguments.request_id or messages.new_request_id(datetime.now().timestamp())
        if not IDENTIFIER.match(request_id):
            raise ValueError(f"--id {request_id!r}: use 1-64 letters, digits, '-' or '_'")
        call = _option("--slots", lambda: messages.flexibility_call(
            request_id, start, arguments.slots, arguments.slot_minutes, delta_w=delta_w, price_micro=price,
            penalty_micro=penalty))
        settings = _settings(arguments)
    except ValueError as error:
        return _fail(str(error))
    return asyncio.run(_send_request(arguments, settings, call))


async def _send_request(arguments: argparse.Namespace, settings: Any, call: Any) -> int:
    from hems.grid_operator.client import PublishError
    from hems.grid_operator.render import json_line, request_text, response_text
    from hems.protocol.power_plant import RequestState

    client = await _connected_client(arguments, settings)
    if client is None:
        return EXIT_FAILURE
    try:
        try:
            message_id = await client.send_request(call)
        except PublishError as error:
            return _fail(str(error), EXIT_FAILURE)
        _say(request_text(call, message_id), arguments.json)
        if arguments.wait <= 0:
            return EXIT_OK
        loop = asyncio.get_running_loop()
        deadline = loop.time() + arguments.wait
        dispatched = False
        while (remaining := deadline - loop.time()) > 0:
            response = await client.next_response(message_id, remaining)
            if response is None:
                break
            _answer(json_line(response) if arguments.json else response_text(response))
            if response.payload.state == RequestState.REFUSED:
                return EXIT_REFUSED
            if response.payload.state == RequestState.SETTLED:
                return EXIT_OK
            dispatched = True
        if dispatched:
            return EXIT_OK
        return _fail(f"no response to {call.request_id} within {arguments.wait:g} s", EXIT_TIMEOUT)
    finally:
        await client.stop()


# -- offers -------------------------------------------------------------------------------------

def _offers(arguments: argparse.Namespace) -> int:
    try:
        settings = _settings(arguments)
    except ValueError as error:
        return _fail(str(error))
    return asyncio.run(_print_offers(arguments, settings))


async def _print_offers(arguments: argparse.Namespace, settings: Any) -> int:
    from hems.grid_operator.render import json_line, offers_text
    from hems.protocol.topics import GridTopic

    client = await _connected_client(arguments, settings)
    if client is None:
        return EXIT_FAILURE
    try:
        offers = await client.offers(arguments.wait)
        if offers is None:
            return _fail(f"no offers within {arguments.wait:g} s (none retained on "
                         f"{client.topics.grid(GridTopic.OFFERS)})", EXIT_TIMEOUT)
        _answer(json_line(offers) if arguments.json else offers_text(offers))
        return EXIT_OK
    finally:
        await client.stop()


# -- simulate -----------------------------------------------------------------------------------

def _simulate(arguments: argparse.Namespace) -> int:
    from hems.config.errors import ConfigError
    from hems.grid_operator.config import load_simulation_config

    try:
        config = load_simulation_config(arguments.config)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{error.source}: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        settings = _settings(arguments, persistent=True)
    except ValueError as error:
        return _fail(str(error))
    return asyncio.run(_run_simulation(arguments, settings, config))


async def _run_simulation(arguments: argparse.Namespace, settings: Any, config: Any) -> int:
    from hems.clock import SystemClock
    from hems.grid_operator.simulation import SimulatedOperator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    operator = SimulatedOperator(config, settings, arguments.community, SystemClock(), sender=arguments.sender)
    try:
        await operator.run(stop, connect_timeout_s=arguments.connect_timeout)
    except (ConnectionError, TimeoutError, OSError) as error:
        return _fail(f"--broker {arguments.broker}: {error}", EXIT_FAILURE)
    logger.info("stopped")
    return EXIT_OK


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    logger.info("%s received: stopping", signal.Signals(signum).name)
    stop.set()
