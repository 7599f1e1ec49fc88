"""The report of ``hems demo``: HTML with PNG figures, a Markdown summary, and the data behind them.

``out_dir`` receives::

    report.html            self-contained but for the figures it links
    summary.md             the Markdown summary (also returned, to print in the terminal)
    results.json           Accounts.to_json() plus the run's metadata (and the comparison, if any)
    plots/*.png            the figures (hems.demo.plots)
    data/meters.csv        scenario, home, slot_start (UTC), import_wh, export_wh: the meter readings
                           the bills were computed from (whole Wh; for the trading run the emulated
                           meter's counts, while the ledger holds what the homes reported)
    data/homes.json        the sites, with each tariff in its configuration form
    data/community.sqlite  a consistent copy of the community manager's database (the ledger)

Every figure comes from :mod:`hems.demo.accounts`; this module only formats them.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hems.demo.accounts import Accounts, metered, money_display, price_text
from hems.demo.compare import Comparison
from hems.demo.model import DemoHome, RunOutcome, Scenario

#: The terminal summary lists this many homes; the HTML report lists them all.
MAX_SUMMARY_HOMES = 20

SETTLEMENT_NOTE = (
    "In the community (MPC with trading) a home's residual energy, what it did not trade locally, is "
    "settled at the community's flat retail and feed-in prices; in the three other scenarios every "
    "imported and exported kWh is billed at the home's own tariff, flat or time-of-use.")


def _compass(azimuth_deg: float) -> str:
    names = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
    return names[round((azimuth_deg % 360) / 45) % 8]


def site_text(home: DemoHome) -> str:
    """A one-line description of a home's site (``PV 6.0 kWp S 30°, battery 10.0 kWh / 5.0 kW, EV``)."""
    parts = [f"{home.household}, {home.annual_load_kwh:.0f} kWh/a"]
    if home.pv is not None:
        parts.append(f"PV {home.pv.peak_w / 1000:.1f} kWp {_compass(home.pv.azimuth_deg)} {home.pv.tilt_deg:.0f}°")
    if home.battery is not None:
        parts.append(f"battery {home.battery.capacity_wh / 1000:.1f} kWh / {home.battery.max_power_w / 1000:.1f} kW")
    if home.ev is not None:
        parts.append(f"EV {home.ev.annual_kwh:.0f} kWh/a")
    if home.heat_pump is not None:
        parts.append(f"heat pump {home.heat_pump.annual_kwh:.0f} kWh/a")
    if home.consumer_only:
        parts.append("consumer only")
    return ", ".join(parts)


def _home_slots(count: int) -> str:
    return f"{count} home-slot{'' if count == 1 else 's'}"


def _local(start_s: int, zone_name: str) -> str:
    return datetime.fromtimestamp(start_s, tz=timezone.utc).astimezone(ZoneInfo(zone_name)).strftime(
        "%Y-%m-%d %H:%M %Z")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


# -- tables (rows of strings, shared by Markdown and HTML) -----------------------------------------


@dataclass(frozen=True)
class Table:
    """A table of formatted cells; the first ``text_columns`` are text, the rest numbers."""

    head: list[str]
    rows: list[list[str]]
    text_columns: int = 1


def _cost_table(accounts: Accounts) -> Table:
    community = accounts.community
    head = ["scenario", "community cost", "saving vs no control", "grid import kWh", "grid export kWh",
            "self-sufficiency"]
    base = community.cost_nano.get(Scenario.NO_CONTROL)
    rows = [[scenario.title, money_display(community.cost_nano[scenario]),
             "—" if base is None else money_display(base - community.cost_nano[scenario]),
             f"{sum(community.import_wh[scenario]) / 1000:.1f}", f"{sum(community.export_wh[scenario]) / 1000:.1f}",
             _percent(community.self_sufficiency_run[scenario])] for scenario in accounts.scenarios]
    return Table(head, rows)


def _bills_table(accounts: Accounts) -> Table:
    scenarios = accounts.scenarios
    head = ["home", "tariff"] + [f"bill: {scenario.title}" for scenario in scenarios]
    best = scenarios[-1]
    if Scenario.NO_CONTROL in scenarios and best is not Scenario.NO_CONTROL:
        head.append(f"saving: {best.title} vs no control")
    if Scenario.MPC in scenarios and Scenario.MPC_TRADING in scenarios:
        head += ["value of trading", "bought kWh", "sold kWh"]
    rows = []
    for account in accounts.homes.values():
        row = [account.home_id, account.tariff_name] + [money_display(account.bill_nano[s]) for s in scenarios]
        if Scenario.NO_CONTROL in scenarios and best is not Scenario.NO_CONTROL:
            row.append(money_display(account.savings_nano[best]))
        if account.trading_value_nano is not None and account.trading is not None:
            row += [money_display(account.trading_value_nano), f"{account.trading.bought_wh / 1000:.2f}",
                    f"{account.trading.sold_wh / 1000:.2f}"]
        rows.append(row)
    return Table(head, rows, text_columns=2)


def _stats_table(accounts: Accounts) -> Table:
    head = ["scenario", "plans", "solve ms median", "p95", "max", "messages sent by homes",
            "messages sent by the manager", "wall time s"]
    rows = [[scenario.title, str(stats.plans), _ms(stats.solve_ms_median), _ms(stats.solve_ms_p95),
             _ms(stats.solve_ms_max), str(stats.home_messages_sent), str(stats.manager_messages_sent),
             f"{stats.wall_s:.1f}"] for scenario, stats in accounts.stats.items()]
    return Table(head, rows)


def _markdown_table(table: Table) -> list[str]:
    align = ["---"] * table.text_columns + ["---:"] * (len(table.head) - table.text_columns)
    return (["| " + " | ".join(table.head) + " |", "|" + "|".join(align) + "|"]
            + ["| " + " | ".join(row) + " |" for row in table.rows])


def _trading_lines(accounts: Accounts) -> list[str]:
    community = accounts.community
    if Scenario.MPC_TRADING not in accounts.scenarios:
        return []
    prices = [price for price in community.local_price_micro if price is not None]
    lines = [f"Traded in the community ({community.mechanism}): {community.traded_wh / 1000:.1f} kWh in "
             f"{len(prices)} of {len(community.slot_starts_s)} slots; local price "
             + (f"{price_text(min(prices))} … {price_text(max(prices))}" if prices else "—")
             + f" per kWh (retail {price_text(community.retail_price_micro)}, "
             f"feed-in {price_text(community.feed_in_price_micro)})."]
    if accounts.unsettled_slots:
        lines.append(f"**{_home_slots(accounts.unsettled_slots)} had no settlement in the ledger** and "
                     f"{'is' if accounts.unsettled_slots == 1 else 'are'} billed at the home's own tariff.")
    estimated = sum(home.trading.estimated_slots for home in accounts.homes.values() if home.trading)
    if estimated:
        lines.append(f"{_home_slots(estimated)} {'was' if estimated == 1 else 'were'} settled provisionally "
                     "(no meter reading reached the manager).")
    return lines


def summary_markdown(homes: Sequence[DemoHome], accounts: Accounts, comparison: Comparison | None = None) -> str:
    """The compact Markdown summary printed in the terminal."""
    community = accounts.community
    hours = len(community.slot_starts_s) * community.slot_s / 3600
    start = _local(community.slot_starts_s[0], accounts.timezone) if community.slot_starts_s else "—"
    lines = [f"# hems demo: {len(homes)} homes, {hours:g} h from {start}", "", "## Community cost", ""]
    lines += _markdown_table(_cost_table(accounts))
    lines += ["", *_trading_lines(accounts), "", "## Bills per home", ""]
    bills = _bills_table(accounts)
    shown = Table(bills.head, bills.rows[:MAX_SUMMARY_HOMES], bills.text_columns)
    lines += _markdown_table(shown)
    if len(bills.rows) > len(shown.rows):
        lines += ["", f"… and {len(bills.rows) - len(shown.rows)} more homes in report.html."]
    lines += ["", SETTLEMENT_NOTE, "", "## Solver and messages", ""]
    lines += _markdown_table(_stats_table(accounts))
    if comparison is not None:
        lines += ["", "## Mechanisms compared", "", comparison.markdown().rstrip()]
    return "\n".join(lines) + "\n"


# -- HTML ---------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; } th { background: #f4f4f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; } pre { background: #f8f8f8; padding: .8em; overflow-x: auto; }
.note { background: #fff8e1; border-left: 4px solid #f2a900; padding: .5em .8em; }
"""


def _html_table(table: Table) -> str:
    def cell(tag: str, index: int, text: str) -> str:
        return f"<{tag}{' class=num' if index >= table.text_columns else ''}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", index, name) for index, name in enumerate(table.head))
    body = "".join("<tr>" + "".join(cell("td", index, value) for index, value in enumerate(row)) + "</tr>"
                   for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CAPTIONS = {
    "community_grid": "What the community as a whole imported from and exported to the grid in each slot.",
    "self_sufficiency": "The share of the community's consumption (households, EVs, heat pumps) not imported.",
    "local_price": "The price of energy traded between homes in each slot, between the community's retail and "
                   "feed-in prices; gaps are slots without local trades.",
    "home_bills": "Each home's bill under each scenario (negative: the home earned).",
    "home_savings": "How much each home saved against no control.",
    "solve_times": "How long each MPC solve took.",
    "comparison": "The community's cost under the baselines and under each mechanism.",
}


def _html(homes: Sequence[DemoHome], accounts: Accounts, figures: list, attribution: str, settings_text: str,
          comparison: Comparison | None) -> str:
    community = accounts.community
    hours = len(community.slot_starts_s) * community.slot_s / 3600
    start = _local(community.slot_starts_s[0], accounts.timezone) if community.slot_starts_s else "—"
    sites = [[home.home_id, site_text(home), home.tariff_name] for home in homes]
    parts = [f"<h1>hems demo: {len(homes)} homes, {hours:g} h from {html.escape(start)}</h1>",
             "<h2>Community cost</h2>", _html_table(_cost_table(accounts))]
    parts += [f"<p>{html.escape(line.replace('**', ''))}</p>" for line in _trading_lines(accounts)]
    parts += ["<h2>Bills per home</h2>", _html_table(_bills_table(accounts)),
              f"<p class=note>{html.escape(SETTLEMENT_NOTE)}</p>", "<h2>Figures</h2>"]
    for figure in figures:
        parts.append(f"<figure><img src=\"plots/{html.escape(figure.path.name)}\" alt=\"{html.escape(figure.title)}\">"
                     f"<figcaption><b>{html.escape(figure.title)}.</b> {html.escape(_CAPTIONS.get(figure.name, ''))}"
                     "</figcaption></figure>")
    if comparison is not None:
        parts += ["<h2>Mechanisms compared</h2>", _markdown_to_html_table(comparison.markdown())]
    parts += ["<h2>Solver and messages</h2>", _html_table(_stats_table(accounts)),
              "<h2>The homes</h2>", _html_table(Table(["home", "site", "tariff"], sites, text_columns=3)),
              "<h2>Settings</h2>", f"<pre>{html.escape(settings_text)}</pre>",
              "<h2>Data</h2>", "<p>The figures come from <code>results.json</code>; the meter readings from "
              "<code>data/meters.csv</code>, the sites from <code>data/homes.json</code> and the community's "
              "ledger from <code>data/community.sqlite</code>.</p>",
              f"<p><small>{html.escape(attribution)}</small></p>"]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>hems demo report</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _markdown_to_html_table(markdown: str) -> str:
    lines = [line.strip().strip("|").split("|") for line in markdown.strip().splitlines()]
    head, rows = [cell.strip() for cell in lines[0]], [[cell.strip() for cell in row] for row in lines[2:]]
    return _html_table(Table(head, rows))


# -- data files ---------------------------------------------------------------------------------------


def homes_document(homes: Sequence[DemoHome], timezone_name: str) -> dict[str, Any]:
    """The sites as JSON: specs as objects, the tariff in its configuration form."""
    documents = []
    for home in homes:
        document = {item.name: getattr(home, item.name) for item in dataclasses.fields(home)}
        for name in ("pv", "battery", "ev", "heat_pump"):
            spec = document[name]
            document[name] = dataclasses.asdict(spec) if spec is not None else None
        document["tariff"] = home.tariff.model_dump(mode="json")
        documents.append(document)
    return {"timezone": timezone_name, "homes": documents}


def write_meters_csv(path: Path, runs: Mapping[Scenario, RunOutcome], scenarios: Sequence[Scenario]) -> None:
    """Every run's metered whole Wh per home and slot, as the bills used them."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["scenario", "home", "slot_start", "import_wh", "export_wh"])
        for scenario in scenarios:
            run = runs[scenario]
            starts = [datetime.fromtimestamp(start_s, tz=timezone.utc).isoformat().replace("+00:00", "Z")
                      for start_s in run.slot_starts_s]
            for home_id, outcome in run.homes.items():
                import_wh, export_wh = metered(outcome.energy)
                writer.writerows([scenario.value, home_id, start, imported, exported]
                                 for start, imported, exported in zip(starts, import_wh, export_wh))


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database (the backup API reads through a WAL), in rollback-journal
    mode."""
    target.unlink(missing_ok=True)
    reader = sqlite3.connect(source)
    try:
        writer = sqlite3.connect(target)
        try:
            reader.backup(writer)
            # One self-contained file: readers of the copy need no -wal/-shm (and may open it read-only).
            writer.execute("PRAGMA journal_mode=DELETE")
        finally:
            writer.close()
    finally:
        reader.close()


def _metadata(runs: Mapping[Scenario, RunOutcome], attribution: str, settings_text: str) -> dict[str, Any]:
    return {"attribution": attribution, "settings": settings_text,
            "runs": {scenario.value: {"mechanism": run.mechanism, "wall_s": run.wall_s, "homes": len(run.homes),
                                      "slots": len(run.slot_starts_s), "slot_s": run.slot_s}
                     for scenario, run in runs.items()}}


def write_report(out_dir: Path, homes: Sequence[DemoHome], runs: Mapping[Scenario, RunOutcome], accounts: Accounts,
                 *, attribution: str, settings_text: str, comparison: Comparison | None = None) -> str:
    """Write the report into ``out_dir`` (see the module docstring); returns the Markdown summary."""
    from hems.demo.plots import write_plots  # matplotlib costs ~0.5 s to import: only when reporting

    out_dir = Path(out_dir)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    solve_ms = {scenario: [value for outcome in runs[scenario].homes.values() for value in outcome.solve_ms]
                for scenario in accounts.scenarios}
    figures = write_plots(out_dir / "plots", accounts, solve_ms, comparison)
    summary = summary_markdown(homes, accounts, comparison)
    (out_dir / "summary.md").write_text(summary, encoding="utf-8")
    (out_dir / "report.html").write_text(_html(homes, accounts, figures, attribution, settings_text, comparison),
                                         encoding="utf-8")
    results = accounts.to_json() | {"run": _metadata(runs, attribution, settings_text)}
    if comparison is not None:
        results["comparison"] = comparison.to_json()
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_meters_csv(data_dir / "meters.csv", runs, accounts.scenarios)
    (data_dir / "homes.json").write_text(json.dumps(homes_document(homes, accounts.timezone), indent=1,
                                                    ensure_ascii=False) + "\n", encoding="utf-8")
    trading = runs.get(Scenario.MPC_TRADING)
    if trading is not None and trading.ledger_path is not None:
        copy_database(Path(trading.ledger_path), data_dir / "community.sqlite")
    return summary
