"""Monthly statements summed from a real ledger, across a month boundary."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from hems.community.ledger import Ledger, RecordKind, create_ledger_schema
from hems.community.mechanisms.base import ClearingResult, HomeAllocation
from hems.community.settlement import (MeteredEnergy, SettlementPrices, correction, settle_slot,
                                       settlement_to_body)
from hems.community.statement import Statement, month_bounds_s, monthly_statement, render_statement

PRICES = SettlementPrices(300_000, 80_000, 300_000, 80_000)
LAST_JANUARY_SLOT = int(datetime(2024, 1, 31, 23, 45, tzinfo=timezone.utc).timestamp())
FIRST_FEBRUARY_SLOT = int(datetime(2024, 2, 1, 0, 0, tzinfo=timezone.utc).timestamp())
EARLY_JANUARY_SLOT = int(datetime(2024, 1, 1, 0, 0, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def ledger(tmp_path):
    connection = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
    create_ledger_schema(connection)
    yield Ledger(connection)
    connection.close()


def settle(ledger: Ledger, slot_start_s: int, meters: dict[str, MeteredEnergy], clearing=None):
    result = settle_slot(slot_start_s, clearing, meters, ["a", "b"], PRICES)
    for home in result.homes:
        ledger.append(RecordKind.SETTLEMENT, settlement_to_body(home), slot_start_s=slot_start_s, home=home.home,
                      at_s=slot_start_s + 1800)
    return result


def test_month_boundary_and_corrections(ledger):
    trade = ClearingResult("uniform_auction", (HomeAllocation("a", bought_wh=400, paid_nano=400 * 190_000),
                                               HomeAllocation("b", sold_wh=400, received_nano=400 * 190_000)),
                           price_micro=190_000, traded_wh=400)
    early = settle(ledger, EARLY_JANUARY_SLOT, {"a": MeteredEnergy("a", 100, 0), "b": MeteredEnergy("b", 0, 50)})
    last = settle(ledger, LAST_JANUARY_SLOT, {"b": MeteredEnergy("b", 0, 400)}, trade)  # a: no reading yet
    february = settle(ledger, FIRST_FEBRUARY_SLOT, {"a": MeteredEnergy("a", 1000, 0), "b": MeteredEnergy("b", 0, 0)})
    # a's reading for 23:45 arrives in February: it still belongs to January.
    provisional = last.home("a")
    fix = correction(provisional, MeteredEnergy("a", 450, 0), PRICES)
    ledger.append(RecordKind.SETTLEMENT_CORRECTION, settlement_to_body(fix), slot_start_s=LAST_JANUARY_SLOT,
                  home="a", at_s=FIRST_FEBRUARY_SLOT + 7200)
    ledger.append(RecordKind.METER, {"import_wh": 450, "export_wh": 0}, slot_start_s=LAST_JANUARY_SLOT, home="a",
                  at_s=FIRST_FEBRUARY_SLOT + 7200)  # not a settlement: not summed

    january = monthly_statement(ledger, "a", "2024-01")
    assert (january.home, january.month, january.slots, january.estimated_slots) == ("a", "2024-01", 2, 0)
    assert (january.import_wh, january.bought_wh, january.sold_wh) == (100 + 450, 400, 0)
    assert january.energy_paid_nano == 400 * 190_000
    # 100 Wh imported without trading on the 1st, 50 Wh beyond what it bought at 23:45.
    assert january.imbalance_charge_nano == (100 + 50) * 300_000
    expected_bill = early.home("a").bill_nano + 400 * 190_000 + 50 * 300_000
    assert january.bill_nano == expected_bill
    assert january.retail_only_bill_nano == 550 * 300_000
    assert january.savings_nano == january.retail_only_bill_nano - january.bill_nano == 400 * (300_000 - 190_000)

    feb = monthly_statement(ledger, "a", "2024-02")
    assert (feb.slots, feb.import_wh, feb.bill_nano) == (1, 1000, february.home("a").bill_nano)
    seller = monthly_statement(ledger, "b", "2024-01")
    assert (seller.slots, seller.export_wh, seller.sold_wh) == (2, 450, 400)
    assert seller.energy_received_nano == 400 * 190_000
    assert monthly_statement(ledger, "nobody", "2024-01") == Statement("nobody", "2024-01", *([0] * 14))


def test_estimated_slots_count_until_corrected(ledger):
    settle(ledger, LAST_JANUARY_SLOT, {"a": MeteredEnergy("a", 10, 0)})
    settle(ledger, EARLY_JANUARY_SLOT, {})
    statement = monthly_statement(ledger, "b", "2024-01")
    assert (statement.slots, statement.estimated_slots) == (2, 2)
    assert monthly_statement(ledger, "a", "2024-01").estimated_slots == 1


@pytest.mark.parametrize("month", ["2024-13", "2024-00", "2024-1", "24-01", "2024/01", "", "2024-01-01", " 2024-01"])
def test_bad_month_strings_are_refused(ledger, month):
    with pytest.raises(ValueError, match="YYYY-MM"):
        monthly_statement(ledger, "a", month)


def test_month_bounds_including_december():
    assert month_bounds_s("2024-01") == (EARLY_JANUARY_SLOT, FIRST_FEBRUARY_SLOT)
    start, end = month_bounds_s("2023-12")
    assert (start, end) == (int(datetime(2023, 12, 1, tzinfo=timezone.utc).timestamp()), EARLY_JANUARY_SLOT)


def test_render_and_json_forms():
    statement = Statement("home-01", "2024-01", slots=2976, estimated_slots=3, import_wh=123_456, export_wh=98_765,
                          bought_wh=40_000, sold_wh=30_000, energy_paid_nano=7_600_000_000,
                          energy_received_nano=5_700_000_000, fees_nano=400_000_001, imbalance_charge_nano=5,
                          imbalance_credit_nano=0, bill_nano=12_345_000_000, retail_only_bill_nano=20_005_000_000,
                          savings_nano=7_660_000_000)
    text = render_statement(statement, currency="CHF")
    assert "home-01" in text and "2024-01" in text and "3 provisional" in text
    assert "123.456 kWh" in text and "12.34 CHF" in text and "7.66 CHF" in text and "-5.70 CHF" in text
    assert "provisional" not in render_statement(replace(statement, estimated_slots=0))
    data = json.loads(statement.to_json())
    assert data == statement.to_dict()
    assert data["bill"] == "12.345000000" and data["fees"] == "0.400000001" and data["imbalance_credit"] == "0.000000000"
    assert data["import_wh"] == 123_456 and data["slots"] == 2976 and "bill_nano" not in data
