"""``hems community`` as an operator runs it: offline clearing, statements and ledger checks against a
real SQLite state, the manager against a real mosquitto, and every bad input refused with exit 2."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from hems.cli import main
from hems.community.config import load_community_config
from hems.community.mechanisms.base import ClearingResult, HomeAllocation
from hems.community.mechanisms.registry import mechanism_names
from hems.community.settlement import MeteredEnergy, SettlementPrices, settle_slot
from hems.community.state import CommunityState
from hems.protocol.codec import decode
from hems.protocol.messages import MarketConfig
from hems.protocol.mqtt import BrokerSettings, IncomingMessage, MqttLink
from tests.community.test_offline_clear import BOOK, available
from tests.conftest import wait_for

CONFIG = """
[community]
id = "sunny-street"
state_directory = "{state}"

[broker]
broker = "{broker}"

[market]
mechanism = "uniform_auction"
retail_price = 0.30
feed_in_price = 0.08

[[member]]
id = "a"

[[member]]
id = "b"
"""
JANUARY_SLOT_S = int(datetime(2024, 1, 31, 23, 45, tzinfo=timezone.utc).timestamp())


def hems(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def book_file(tmp_path) -> Path:
    path = tmp_path / "book.json"
    path.write_text(BOOK)
    return path


def write_config(tmp_path: Path, broker: str = "mqtt://127.0.0.1:1") -> Path:
    path = tmp_path / "community.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", broker=broker))
    return path


# -- clear ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", [pytest.param(name, marks=pytest.mark.skipif(
    not available(name), reason=f"{name}'s module not written yet")) for name in mechanism_names()])
def test_clear_prints_the_result_as_json(capsys, book_file, mechanism):
    code, out, err = hems(capsys, "community", "clear", "--mechanism", mechanism, "--input", str(book_file))
    assert code == 0, err
    result = json.loads(out)
    assert result["mechanism"] == mechanism and result["seed"] == 7
    paid = sum(Decimal(item["paid"]) for item in result["allocations"])
    received = sum(Decimal(item["received"]) for item in result["allocations"])
    assert paid - received == Decimal(result["retailer"]) + Decimal(result["rounding"])


def test_clear_list_names_every_mechanism_with_what_it_clears_from(capsys):
    code, out, _ = hems(capsys, "community", "clear", "--list")
    assert code == 0
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert list(lines) == list(mechanism_names())
    assert (lines["uniform_auction"], lines["bid_curve"], lines["bill_sharing"]) == ("orders", "curves", "positions")


@pytest.mark.parametrize(("book", "message"), [
    ('{"retail_price": 0.3}', "feed_in_price: required key is missing"),
    ('{"retail_price": 0.3, "feed_in_price": 0.08, "orders": [{"home": "a", "side": "buy", "energy_wh": -5, '
     '"limit_price": 0.2}]}', "orders[0].energy_wh: -5 is out of range"),
    ('{"retail_price": "cheap", "feed_in_price": 0.08}', "retail_price: 'cheap' is not a decimal number"),
    ('{"retail_price": 0.3, "feed_in_price": 0.08, "orders": [{"home": "a", "side": "buy", "energy_wh": 1.5, '
     '"limit_price": 0.2}]}', "orders[0].energy_wh: must be an integer"),
    ("not json", "input: not JSON"),
])
def test_clear_refuses_a_bad_book_with_one_line_and_exit_2(capsys, tmp_path, book, message):
    path = tmp_path / "bad.json"
    path.write_text(book)
    code, out, err = hems(capsys, "community", "clear", "--mechanism", "uniform_auction", "--input", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"{path}: {message}")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("arguments", "message"), [
    (["--mechanism", "lottery", "--input", "book.json"], "--mechanism: unknown 'lottery'"),
    (["--mechanism", "uniform_auction", "--input", "/nonexistent/book.json"], "/nonexistent/book.json: cannot read"),
    (["--mechanism", "uniform_auction"], "give --mechanism NAME and --input FILE"),
])
def test_clear_refuses_bad_arguments(capsys, arguments, message):
    code, out, err = hems(capsys, "community", "clear", *arguments)
    assert (code, out) == (2, "")
    assert message in err


def test_clear_a_sharing_rule_without_positions(capsys, tmp_path):
    path = tmp_path / "orders-only.json"
    path.write_text('{"retail_price": 0.3, "feed_in_price": 0.08, "orders": []}')
    code, out, err = hems(capsys, "community", "clear", "--mechanism", "mid_market_rate", "--input", str(path))
    assert (code, out) == (2, "")
    assert "positions: required key is missing" in err


def test_clear_as_a_process_reads_standard_input_and_keeps_stdout_clean():
    command = [sys.executable, "-m", "hems", "community", "clear", "--mechanism", "uniform_auction", "--input", "-"]
    good = subprocess.run(command, input=BOOK.encode(), capture_output=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["price"] is not None
    bad = subprocess.run(command, input=b'{"retail_price": 0.3, "feed_in_price": 0.08, "seed": -1}',
                         capture_output=True, timeout=60)
    assert (bad.returncode, bad.stdout) == (2, b"")
    assert b"seed: -1 is out of range" in bad.stderr


# -- the configuration ----------------------------------------------------------------------------

def test_a_bad_config_is_refused_like_check_config(capsys, tmp_path):
    path = tmp_path / "community.toml"
    path.write_text(CONFIG.format(state=tmp_path, broker="mqtt://127.0.0.1:1883")
                    .replace("feed_in_price = 0.08", "feed_in_price = 0.08\nslot_duration_s = 10\ncolour = \"red\""))
    code, out, err = hems(capsys, "community", "--config", str(path))
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert any("market.colour: unknown key" in line for line in lines)
    assert any("market.slot_duration_s = 10 is out of range" in line for line in lines)


@pytest.mark.parametrize("arguments", [["community", "--config", "/nonexistent/community.toml"],
                                       ["community", "verify-ledger", "--config", "/nonexistent/community.toml"]])
def test_a_missing_config_file(capsys, arguments):
    code, out, err = hems(capsys, *arguments)
    assert (code, out) == (2, "")
    assert err.strip() == "/nonexistent/community.toml: file not found"


def test_community_without_config_or_subcommand(capsys):
    code, _, err = hems(capsys, "community")
    assert code == 2 and "give --config FILE" in err


# -- statement and verify-ledger ----------------------------------------------------------------

@pytest.fixture
def settled_config(tmp_path) -> Path:
    """A configuration whose state holds one settled slot: a bought 400 Wh from b at 0.19 and imported 450."""
    path = write_config(tmp_path)
    config = load_community_config(path)
    trade = ClearingResult("uniform_auction", (HomeAllocation("a", bought_wh=400, paid_nano=400 * 190_000),
                                               HomeAllocation("b", sold_wh=400, received_nano=400 * 190_000)),
                           price_micro=190_000, traded_wh=400)
    meters = {"a": MeteredEnergy("a", 450, 0), "b": MeteredEnergy("b", 0, 400)}
    settled = settle_slot(JANUARY_SLOT_S, trade, meters, ["a", "b"], SettlementPrices(300_000, 80_000, 300_000, 80_000))
    with CommunityState(config.community.database_path) as state:
        state.record_settlement(JANUARY_SLOT_S, settled.homes, {}, JANUARY_SLOT_S + 1800, duration_s=900)
    return path


def test_statement_as_text(capsys, settled_config):
    code, out, err = hems(capsys, "community", "statement", "--config", str(settled_config), "--home", "a",
                          "--month", "2024-01")
    assert code == 0, err
    assert out.startswith("Statement of a for 2024-01 (UTC)")
    assert "0.09 EUR" in out  # 400 Wh × 0.19 + 50 Wh × 0.30 = 0.091


def test_statement_as_json_with_exact_money(capsys, settled_config):
    code, out, _ = hems(capsys, "community", "statement", "--config", str(settled_config), "--home", "a",
                        "--month", "2024-01", "--json")
    assert code == 0
    statement = json.loads(out)
    assert (statement["home"], statement["slots"], statement["import_wh"], statement["bought_wh"]) == ("a", 1, 450, 400)
    assert Decimal(statement["bill"]) == Decimal("0.091")
    assert Decimal(statement["savings"]) == Decimal("0.135") - Decimal("0.091")


@pytest.mark.parametrize(("arguments", "message"), [
    (["--home", "zed", "--month", "2024-01"], "--home 'zed': not a member of sunny-street"),
    (["--home", "a", "--month", "2024-13"], "--month:"),
    (["--home", "a", "--month", "January"], "--month:"),
])
def test_statement_refuses_bad_arguments(capsys, settled_config, arguments, message):
    code, out, err = hems(capsys, "community", "statement", "--config", str(settled_config), *arguments)
    assert (code, out) == (2, "")
    assert message in err


def test_statement_without_a_database(capsys, tmp_path):
    code, out, err = hems(capsys, "community", "statement", "--config", str(write_config(tmp_path)), "--home", "a",
                          "--month", "2024-01")
    assert (code, out) == (2, "")
    assert "no community database" in err
    assert not (tmp_path / "state" / "community.sqlite").exists()  # a read never creates the books


def test_verify_ledger_ok(capsys, settled_config):
    with CommunityState(load_community_config(settled_config).community.database_path) as state:
        head, records = state.ledger.head(), len(state.ledger)
    code, out, _ = hems(capsys, "community", "verify-ledger", "--config", str(settled_config),
                        "--expect-head", head)
    assert code == 0
    assert out.strip() == f"ledger OK: {records} records, head {head}"
    assert records == 2


def test_verify_ledger_finds_a_tampered_record(capsys, settled_config):
    database = load_community_config(settled_config).community.database_path
    connection = sqlite3.connect(database)
    connection.execute("DROP TRIGGER ledger_no_update")
    connection.execute("UPDATE ledger SET body = replace(body, '450', '999') WHERE seq = 1")
    connection.commit()
    connection.close()
    code, out, _ = hems(capsys, "community", "verify-ledger", "--config", str(settled_config))
    assert code == 1
    assert "record 1" in out and "ledger OK" not in out


def test_verify_ledger_with_a_head_it_never_had(capsys, settled_config):
    code, out, _ = hems(capsys, "community", "verify-ledger", "--config", str(settled_config),
                        "--expect-head", "ab" * 32)
    assert code == 1
    assert "expected head abababababababab… is not in the ledger" in out


# -- the manager --------------------------------------------------------------------------------

async def test_the_manager_publishes_its_config_and_stops_on_sigterm(tmp_path, mosquitto_broker):
    config = write_config(tmp_path, mosquitto_broker.url)
    received: list[IncomingMessage] = []

    async def collect(message: IncomingMessage) -> None:
        received.append(message)

    link = MqttLink(BrokerSettings(url=mosquitto_broker.url, client_id="cli-test", persistent_session=False))
    link.subscribe("hems/v1/sunny-street/market/config", collect)
    await link.start()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "hems", "community", "--config",
                                                   str(config), stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: received, timeout_s=20)
        message = decode(received[0].payload, (MarketConfig,))
        assert (message.payload.community, message.payload.mechanism) == ("sunny-street", "uniform_auction")
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0, stderr.decode()
        assert b"SIGTERM received: stopping" in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await link.stop()
