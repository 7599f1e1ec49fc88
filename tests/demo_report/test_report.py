"""The report's files, checked by the independent recomputation (tests/demo_report/recompute.py)."""

from __future__ import annotations

import csv
import json
import sqlite3
import time

import pytest

from hems.demo.accounts import compute_accounts, whole_wh
from hems.demo.baselines import run_baselines
from hems.demo.compare import compare_mechanisms
from hems.demo.model import RunOutcome, Scenario
from hems.demo.report import write_report
from hems.protocol.messages import Side
from tests.demo_report.community import (FLAT, START_S, TIME_OF_USE, build_ledger, home, profiles, run,
                                         slot_starts)
from tests.demo_report.recompute import check_report

STARTS = slot_starts(8)  # 16:30 to 18:30 in Berlin: PV surplus early, the ToU peak from 17:00
HOMES = [home("alpha", tariff=FLAT), home("bravo", battery_wh=None, tariff=TIME_OF_USE),
         home("charlie", pv_w=None, battery_wh=None, tariff=FLAT),
         home("delta", pv_w=9000, ev=True, heat_pump=True, tariff=TIME_OF_USE)]
PNG = b"\x89PNG\r\n\x1a\n"


def _runs(tmp_path, mechanisms=("uniform_auction",)) -> tuple[dict[Scenario, RunOutcome], dict[str, RunOutcome]]:
    """Real baselines on the homes' profiles; the MPC runs stand in as the self-consumption energies
    (with solve times), and each trading run has a real ledger from those energies' whole Wh."""
    data = {item.home_id: profiles(item, START_S, 8, seed=index) for index, item in enumerate(HOMES)}
    runs = run_baselines(HOMES, data, STARTS, 900)
    energies = {home_id: outcome.energy for home_id, outcome in runs[Scenario.SELF_CONSUMPTION].homes.items()}
    runs[Scenario.MPC] = run(Scenario.MPC, STARTS, energies, solve_ms=[5.0, 6.5, 9.0])
    meters = {home_id: (whole_wh(item.import_wh), whole_wh(item.export_wh)) for home_id, item in energies.items()}
    orders = {}
    for home_id, (imports, exports) in meters.items():
        for index in range(len(STARTS)):
            if exports[index] > 0:
                orders[(home_id, index)] = [(Side.SELL, exports[index], 100_000)]
            elif imports[index] > 0:
                orders[(home_id, index)] = [(Side.BUY, imports[index], 300_000)]
    trading = {}
    for mechanism in mechanisms:
        ledger = build_ledger(tmp_path / mechanism, [item.home_id for item in HOMES], STARTS, meters, orders,
                              mechanism=mechanism, missing=frozenset({("charlie", 7)}))
        trading[mechanism] = run(Scenario.MPC_TRADING, STARTS, energies, mechanism=mechanism, ledger_path=ledger,
                                 solve_ms=[7.0, 8.0, 12.5])
    return runs, trading


def test_the_report_is_written_and_its_money_recomputes_to_the_nano(tmp_path):
    runs, trading = _runs(tmp_path)
    runs[Scenario.MPC_TRADING] = trading["uniform_auction"]
    accounts = compute_accounts(HOMES, runs)
    assert accounts.community.traded_wh > 0  # the ledger has trades to check
    out = tmp_path / "report"
    started = time.perf_counter()
    summary = write_report(out, HOMES, runs, accounts, attribution="Profiles: test data.",
                           settings_text="homes = 4\nhours = 2")
    assert time.perf_counter() - started < 10  # plotting 4 homes takes about a second
    for name in ("report.html", "summary.md", "results.json", "data/meters.csv", "data/homes.json",
                 "data/community.sqlite"):
        assert (out / name).is_file(), name
    plots = sorted(path.name for path in (out / "plots").iterdir())
    assert plots == ["community_grid.png", "home_bills.png", "home_savings.png", "local_price.png",
                     "self_sufficiency.png", "solve_times.png"]
    assert all((out / "plots" / name).read_bytes().startswith(PNG) for name in plots)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert all(f'src="plots/{name}"' in html for name in plots)
    assert "<script" not in html and "Profiles: test data." in html and "PV 9.0 kWp S 30°" in html
    assert summary == (out / "summary.md").read_text(encoding="utf-8")
    assert all(item.home_id in summary for item in HOMES) and "MPC with trading" in summary
    assert "community's flat retail and feed-in prices" in summary and "settled provisionally" in summary
    with (out / "data" / "meters.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 4 * len(HOMES) * len(STARTS) and rows[0]["slot_start"] == "2026-06-15T14:30:00Z"
    connection = sqlite3.connect(out / "data" / "community.sqlite")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    connection.close()
    check_report(out)


def test_the_recomputation_catches_a_figure_off_by_one_nano(tmp_path):
    runs, trading = _runs(tmp_path)
    runs[Scenario.MPC_TRADING] = trading["uniform_auction"]
    out = tmp_path / "report"
    write_report(out, HOMES, runs, compute_accounts(HOMES, runs), attribution="", settings_text="")
    check_report(out)
    path = out / "results.json"
    original = path.read_text(encoding="utf-8")
    results = json.loads(original)
    results["homes"][1]["bill"]["mpc_trading"]["amount_nano"] += 1
    path.write_text(json.dumps(results), encoding="utf-8")
    with pytest.raises(AssertionError, match="bill of bravo under mpc_trading"):
        check_report(out)
    path.write_text(original, encoding="utf-8")
    ledger = sqlite3.connect(out / "data" / "community.sqlite")
    ledger.execute("DROP TRIGGER ledger_no_update")
    ledger.execute("UPDATE ledger SET body = replace(body, '\"bill_nano\":', '\"bill_nano\":1') "
                   "WHERE seq = (SELECT max(seq) FROM ledger WHERE kind = 'settlement')")
    ledger.commit()
    ledger.close()
    with pytest.raises(AssertionError, match="altered"):
        check_report(out)


def test_mechanisms_compared_in_a_table_and_a_figure(tmp_path):
    runs, trading = _runs(tmp_path, mechanisms=("uniform_auction", "pay_as_bid"))
    comparison = compare_mechanisms(HOMES, runs, trading)
    assert [result.mechanism for result in comparison.mechanisms] == ["uniform_auction", "pay_as_bid"]
    assert set(comparison.baseline_cost_nano) == {Scenario.NO_CONTROL, Scenario.SELF_CONSUMPTION, Scenario.MPC}
    for mechanism, result in zip(trading, comparison.mechanisms):
        accounts = compute_accounts(HOMES, {**runs, Scenario.MPC_TRADING: trading[mechanism]})
        assert result.community_cost_nano == accounts.community.cost_nano[Scenario.MPC_TRADING]
        values = sorted(home.trading_value_nano for home in accounts.homes.values())
        assert (result.trading_value.min_nano, result.trading_value.max_nano) == (values[0], values[-1])
        assert result.trading_value.median_nano in values and result.traded_wh == accounts.community.traded_wh
    table = comparison.markdown()
    assert "uniform_auction" in table and "pay_as_bid" in table and "no control" in table
    runs[Scenario.MPC_TRADING] = trading["pay_as_bid"]
    out = tmp_path / "report"
    summary = write_report(out, HOMES, runs, compute_accounts(HOMES, runs), attribution="", settings_text="",
                           comparison=comparison)
    assert "## Mechanisms compared" in summary and "pay_as_bid" in summary
    assert (out / "plots" / "comparison.png").read_bytes().startswith(PNG)
    assert json.loads((out / "results.json").read_text())["comparison"]["mechanisms"][1]["mechanism"] == "pay_as_bid"
    check_report(out)


def test_many_homes_are_plotted_as_points_and_the_summary_stays_short(tmp_path):
    from hems.demo.report import MAX_SUMMARY_HOMES
    from tests.demo_report.community import energy

    many = [home(f"h{index:02d}", pv_w=None, battery_wh=None) for index in range(31)]
    starts = STARTS[:2]
    runs = {scenario: run(scenario, starts, {item.home_id: energy([100 + index, 50], [0, 0])
                                             for index, item in enumerate(many)})
            for scenario in (Scenario.NO_CONTROL, Scenario.MPC)}
    out = tmp_path / "report"
    summary = write_report(out, many, runs, compute_accounts(many, runs), attribution="", settings_text="")
    assert (out / "plots" / "home_bills.png").read_bytes().startswith(PNG)
    assert f"… and {31 - MAX_SUMMARY_HOMES} more homes in report.html." in summary
    assert "| h30 |" not in summary and "<td>h30</td>" in (out / "report.html").read_text(encoding="utf-8")
    check_report(out)
