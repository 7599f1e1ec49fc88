"""An independent recomputation of a demo report's money figures, from its data files only.

It reads ``results.json`` (the figures to check), ``data/meters.csv``, ``data/homes.json`` and
``data/community.sqlite`` with the standard library alone (json, csv, sqlite3, decimal, zoneinfo,
hashlib) and none of hems' accounting code: the tariff's time-of-use periods, the price rounding and
the ledger's hash chain are re-implemented here from their documentation, so a bug in
``hems.demo.accounts`` (or in the report's data files) cannot cancel itself out.

Checked to the n¤: each home's bill per scenario (own tariff, or the ledger's settlements plus the
unsettled slots at the own tariff for ``mpc_trading``), its savings and value of trading, the
community's cost per scenario, its import and export per slot and the traded volume; and that the
ledger's hash chain is intact.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TRADING = "mpc_trading"


def _micro(price_per_kwh: float) -> int:
    """Currency per kWh -> whole µ¤/kWh, half-even, from the shortest decimal form of the number."""
    return int((Decimal(repr(price_per_kwh)) * 1_000_000).to_integral_value(ROUND_HALF_EVEN))


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _covers(period: dict[str, Any], local: datetime) -> bool:
    minute = local.hour * 60 + local.minute + local.second / 60
    start, end = _minutes(period["start"]), _minutes(period["end"])
    days = period.get("days") or _WEEKDAYS
    if end > start:
        return start <= minute < end and _WEEKDAYS[local.weekday()] in days
    if minute >= start:  # a period over midnight, on the evening it starts
        return _WEEKDAYS[local.weekday()] in days
    return minute < end and _WEEKDAYS[(local - timedelta(days=1)).weekday()] in days


def tariff_prices_micro(tariff: dict[str, Any], slot_start_s: int, zone: ZoneInfo) -> tuple[int, int]:
    """(import, export) µ¤/kWh of a tariff (its configuration form) at a slot's start."""
    local = datetime.fromtimestamp(slot_start_s, tz=timezone.utc).astimezone(zone)
    for period in tariff.get("period") or ():
        if _covers(period, local):
            export = period.get("export_price_per_kwh")
            return (_micro(period["import_price_per_kwh"]),
                    _micro(tariff["export_price_per_kwh"] if export is None else export))
    return _micro(tariff["import_price_per_kwh"]), _micro(tariff["export_price_per_kwh"])


def _slot_seconds(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def read_meters(path: Path) -> dict[tuple[str, str], list[tuple[int, int, int]]]:
    """(scenario, home) -> [(slot_start_s, import_wh, export_wh)] in file order."""
    readings: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            readings[(row["scenario"], row["home"])].append(
                (_slot_seconds(row["slot_start"]), int(row["import_wh"]), int(row["export_wh"])))
    return readings


def verify_chain(connection: sqlite3.Connection) -> None:
    """Recompute every record's hash and link (hems' ledger format, docs/community.md)."""
    previous = "0" * 64
    expected_seq = 1
    for seq, kind, slot, home, at_ms, body, previous_hash, stored in connection.execute(
            "SELECT seq, kind, slot_start_s, home, recorded_at_ms, body, previous_hash, hash FROM ledger ORDER BY seq"):
        assert seq == expected_seq, f"ledger: record {expected_seq} is missing"
        assert previous_hash == previous, f"ledger: record {seq} does not link to its predecessor"
        header = json.dumps([previous_hash, seq, kind, slot, home, at_ms], separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256((header + "\n" + body).encode("utf-8")).hexdigest()
        assert digest == stored, f"ledger: record {seq} was altered"
        previous, expected_seq = stored, seq + 1


def read_ledger(path: Path, slots: set[int]) -> tuple[dict[tuple[str, int], int], int]:
    """(home, slot) -> Σ bill_nano of its settlement and corrections; and Σ traded_wh of the slots."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        verify_chain(connection)
        bills: dict[tuple[str, int], int] = {}
        for kind, slot, home, body in connection.execute(
                "SELECT kind, slot_start_s, home, body FROM ledger WHERE kind IN ('settlement', "
                "'settlement_correction') ORDER BY seq"):
            if slot not in slots:
                continue
            key = (home, slot)
            if kind == "settlement":
                assert key not in bills, f"ledger: {home} settled twice for slot {slot}"
                bills[key] = 0
            assert key in bills, f"ledger: a correction of {home} for slot {slot} precedes its settlement"
            bills[key] += json.loads(body)["bill_nano"]
        traded = sum(json.loads(body)["traded_wh"] for slot, body in connection.execute(
            "SELECT slot_start_s, body FROM ledger WHERE kind = 'clearing'") if slot in slots)
    finally:
        connection.close()
    return bills, traded


def _assert_money(figure: dict[str, Any], expected_nano: int, what: str) -> None:
    assert figure["amount_nano"] == expected_nano, f"{what}: report {figure['amount_nano']} n¤, recomputed {expected_nano}"
    assert Decimal(figure["amount"]).scaleb(9) == expected_nano, f"{what}: decimal {figure['amount']} ≠ n¤ figure"


def check_report(out_dir: Path) -> None:
    """Assert that the report in ``out_dir`` agrees with a recomputation from its data, to the n¤."""
    out_dir = Path(out_dir)
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    sites = json.loads((out_dir / "data" / "homes.json").read_text(encoding="utf-8"))
    meters = read_meters(out_dir / "data" / "meters.csv")
    zone = ZoneInfo(sites["timezone"])
    tariffs = {site["home_id"]: site["tariff"] for site in sites["homes"]}
    community = results["community"]
    starts = list(community["slot_starts_s"])
    scenarios = results["scenarios"]
    assert {home["home_id"] for home in results["homes"]} == set(tariffs), "results.json and homes.json differ"
    ledger_bills: dict[tuple[str, int], int] = {}
    if _TRADING in scenarios:
        ledger_bills, traded_wh = read_ledger(out_dir / "data" / "community.sqlite", set(starts))
        assert community["traded_wh"] == traded_wh, f"traded volume: report {community['traded_wh']}, ledger {traded_wh}"
    costs = dict.fromkeys(scenarios, 0)
    net_wh = {scenario: [0] * len(starts) for scenario in scenarios}
    unsettled_total = 0
    for home in results["homes"]:
        home_id, bills = home["home_id"], {}
        for scenario in scenarios:
            readings = meters[(scenario, home_id)]
            assert [slot for slot, _, _ in readings] == starts, f"meters.csv: {scenario}/{home_id} slots differ"
            bill = unsettled = 0
            for index, (slot, imported, exported) in enumerate(readings):
                net_wh[scenario][index] += imported - exported
                if scenario == _TRADING and (home_id, slot) in ledger_bills:
                    bill += ledger_bills[(home_id, slot)]
                    continue
                unsettled += scenario == _TRADING
                import_micro, export_micro = tariff_prices_micro(tariffs[home_id], slot, zone)
                bill += imported * import_micro - exported * export_micro
            _assert_money(home["bill"][scenario], bill, f"bill of {home_id} under {scenario}")
            bills[scenario] = bill
            costs[scenario] += bill
            if scenario == _TRADING:
                assert home["trading"]["unsettled_slots"] == unsettled, f"{home_id}: unsettled slots differ"
                unsettled_total += unsettled
        if "no_control" in bills:
            for scenario, bill in bills.items():
                _assert_money(home["savings"][scenario], bills["no_control"] - bill, f"saving of {home_id} ({scenario})")
        if "mpc" in bills and _TRADING in bills:
            _assert_money({"amount": home["trading_value"], "amount_nano": home["trading_value_nano"]},
                          bills["mpc"] - bills[_TRADING], f"value of trading for {home_id}")
    assert results["unsettled_slots"] == unsettled_total, "unsettled slots differ"
    for scenario in scenarios:
        _assert_money(community["cost"][scenario], costs[scenario], f"community cost under {scenario}")
        assert community["import_wh"][scenario] == [max(value, 0) for value in net_wh[scenario]], \
            f"community import per slot under {scenario}"
        assert community["export_wh"][scenario] == [max(-value, 0) for value in net_wh[scenario]], \
            f"community export per slot under {scenario}"
