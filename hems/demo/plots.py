"""The report's figures as PNG files (matplotlib, Agg backend: no display needed).

Every figure draws figures of :class:`hems.demo.accounts.Accounts` (or of a comparison); nothing is
computed here but unit conversions. Time axes are in the community's local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a gateway or in CI

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hems.demo.accounts import Accounts  # noqa: E402
from hems.demo.compare import Comparison  # noqa: E402
from hems.demo.model import Scenario  # noqa: E402

_COLOURS = {Scenario.NO_CONTROL: "#9e9e9e", Scenario.SELF_CONSUMPTION: "#f2a900",
            Scenario.MPC: "#1f77b4", Scenario.MPC_TRADING: "#2ca02c"}
#: Dashed MPC lines show where they run on top of another scenario's.
_LINES = {Scenario.NO_CONTROL: "-", Scenario.SELF_CONSUMPTION: "-", Scenario.MPC: "--", Scenario.MPC_TRADING: "-"}
_DPI = 100


@dataclass(frozen=True)
class Figure:
    """One written figure: its file (relative to the report) and what it shows."""

    name: str
    path: Path
    title: str


def _slot_times(accounts: Accounts) -> list[datetime]:
    zone = ZoneInfo(accounts.timezone)
    return [datetime.fromtimestamp(start_s, tz=timezone.utc).astimezone(zone)
            for start_s in accounts.community.slot_starts_s]


def _time_axis(axis: plt.Axes, accounts: Accounts) -> None:
    zone = ZoneInfo(accounts.timezone)
    locator = mdates.AutoDateLocator(tz=zone, minticks=4, maxticks=10)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone, show_offset=False))
    axis.set_xlabel(f"local time ({accounts.timezone})")
    axis.grid(True, alpha=0.3)


def _step_edges(accounts: Accounts) -> list[datetime]:
    """Slot starts plus the end of the last slot, for step plots that show each slot's value over it."""
    times = _slot_times(accounts)
    if times:
        zone = ZoneInfo(accounts.timezone)
        end_s = accounts.community.slot_starts_s[-1] + accounts.community.slot_s
        times.append(datetime.fromtimestamp(end_s, tz=timezone.utc).astimezone(zone))
    return times


def _stairs(axis: plt.Axes, edges: list[datetime], values: list, **style) -> None:
    data = np.array([np.nan if value is None else value for value in values], dtype=float)
    axis.stairs(data, mdates.date2num(edges), baseline=None, **style)


def _save(figure: plt.Figure, directory: Path, name: str, title: str) -> Figure:
    path = directory / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return Figure(name, path, title)


def community_grid(accounts: Accounts, directory: Path) -> Figure:
    """Community import (top) and export (bottom) per slot, one line per scenario (kWh)."""
    edges = _step_edges(accounts)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for scenario in accounts.scenarios:
        style = {"color": _COLOURS[scenario], "label": scenario.title, "linewidth": 1.4,
                 "linestyle": _LINES[scenario], "zorder": 3 if _LINES[scenario] == "--" else 2}
        _stairs(top, edges, [wh / 1000 for wh in accounts.community.import_wh[scenario]], **style)
        _stairs(bottom, edges, [wh / 1000 for wh in accounts.community.export_wh[scenario]], **style)
    top.set_ylabel("import, kWh per slot")
    bottom.set_ylabel("export, kWh per slot")
    top.legend(fontsize=8, ncol=2)
    for axis in (top, bottom):
        _time_axis(axis, accounts)
    top.set_xlabel("")
    return _save(figure, directory, "community_grid", "Community import and export per slot")


def self_sufficiency(accounts: Accounts, directory: Path) -> Figure:
    """The share of the community's consumption not imported from the grid, per slot."""
    edges = _step_edges(accounts)
    figure, axis = plt.subplots(figsize=(9, 3.5))
    for scenario in accounts.scenarios:
        values = [None if value is None else value * 100 for value in accounts.community.self_sufficiency[scenario]]
        _stairs(axis, edges, values, color=_COLOURS[scenario], label=scenario.title, linewidth=1.4,
                linestyle=_LINES[scenario], zorder=3 if _LINES[scenario] == "--" else 2)
    axis.set_ylabel("self-sufficiency, %")
    axis.set_ylim(-2, 102)
    axis.legend(fontsize=8, ncol=2)
    _time_axis(axis, accounts)
    return _save(figure, directory, "self_sufficiency", "Self-sufficiency per slot")


def local_price(accounts: Accounts, directory: Path) -> Figure:
    """The local price of each slot between the community's retail and feed-in prices (per kWh)."""
    community = accounts.community
    edges = _step_edges(accounts)
    figure, axis = plt.subplots(figsize=(9, 3.5))
    prices = [None if price is None else price / 1e6 for price in community.local_price_micro]
    _stairs(axis, edges, prices, color=_COLOURS[Scenario.MPC_TRADING], linewidth=1.8,
            label=f"local price ({community.mechanism or 'no trading'})")
    for price, label, style in ((community.retail_price_micro, "retail", "--"),
                                (community.feed_in_price_micro, "feed-in", ":")):
        if price is not None:
            axis.axhline(price / 1e6, color="#555555", linestyle=style, linewidth=1, label=label)
    # The retail and feed-in lines bound the plot, so neither hides under an axis.
    shown = [price for price in prices if price is not None]
    shown += [price / 1e6 for price in (community.retail_price_micro, community.feed_in_price_micro)
              if price is not None]
    if shown:
        pad = max(max(shown) - min(shown), 0.01) * 0.08
        axis.set_ylim(min(shown) - pad, max(shown) + pad)
    axis.set_ylabel("price per kWh")
    axis.legend(fontsize=8)
    _time_axis(axis, accounts)
    return _save(figure, directory, "local_price", "Local price per slot")


#: Up to this many homes get one bar group each; more are drawn as points, homes sorted by value.
MAX_BAR_HOMES = 30


def _home_bars(accounts: Accounts, directory: Path, name: str, title: str, ylabel: str,
               scenarios: list[Scenario], values: dict[Scenario, list[float]]) -> Figure:
    homes = list(accounts.homes)
    if len(homes) > MAX_BAR_HOMES:
        return _home_points(directory, name, title, ylabel, scenarios, values)
    positions = np.arange(len(homes))
    width = 0.8 / max(len(scenarios), 1)
    figure, axis = plt.subplots(figsize=(min(16.0, max(6.0, 0.25 * len(homes) * len(scenarios) + 2)), 4))
    for index, scenario in enumerate(scenarios):
        axis.bar(positions + (index - (len(scenarios) - 1) / 2) * width, values[scenario], width,
                 color=_COLOURS[scenario], label=scenario.title)
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_xticks(positions, homes, rotation=90 if len(homes) > 12 else 0, fontsize=8)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8, ncol=2)
    axis.grid(True, axis="y", alpha=0.3)
    return _save(figure, directory, name, title)


def _home_points(directory: Path, name: str, title: str, ylabel: str, scenarios: list[Scenario],
                 values: dict[Scenario, list[float]]) -> Figure:
    """Many homes: one point per home and scenario, homes ordered by the first scenario's value."""
    order = np.argsort(values[scenarios[0]], kind="stable")
    figure, axis = plt.subplots(figsize=(10, 4))
    for scenario in scenarios:
        axis.plot(np.arange(len(order)), np.asarray(values[scenario])[order], ".", markersize=4,
                  color=_COLOURS[scenario], label=scenario.title)
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_xlabel(f"homes, ordered by {scenarios[0].title}")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8, ncol=2)
    axis.grid(True, alpha=0.3)
    return _save(figure, directory, name, title)


def home_bills(accounts: Accounts, directory: Path) -> Figure:
    """Each home's bill under each scenario (currency)."""
    scenarios = list(accounts.scenarios)
    values = {scenario: [home.bill_nano[scenario] / 1e9 for home in accounts.homes.values()]
              for scenario in scenarios}
    return _home_bars(accounts, directory, "home_bills", "Bill per home and scenario", "bill", scenarios, values)


def home_savings(accounts: Accounts, directory: Path) -> Figure:
    """Each home's savings against no control, per scenario (currency)."""
    scenarios = [scenario for scenario in accounts.scenarios if scenario is not Scenario.NO_CONTROL]
    values = {scenario: [home.savings_nano.get(scenario, 0) / 1e9 for home in accounts.homes.values()]
              for scenario in scenarios}
    return _home_bars(accounts, directory, "home_savings", "Savings per home against no control",
                      "saving vs no control", scenarios, values)


def solve_times(accounts: Accounts, directory: Path, solve_ms: dict[Scenario, list[float]]) -> Figure:
    """A histogram of the MPC's solve times per scenario that planned (ms)."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    planned = {scenario: times for scenario, times in solve_ms.items() if times}
    if planned:
        upper = max(max(times) for times in planned.values())
        bins = np.linspace(0, upper * 1.02 if upper > 0 else 1, 40)
        for scenario, times in planned.items():
            axis.hist(times, bins=bins, alpha=0.6, color=_COLOURS[scenario], label=scenario.title)
        axis.legend(fontsize=8)
    else:
        axis.text(0.5, 0.5, "no plans were made", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("solve time, ms")
    axis.set_ylabel("plans")
    axis.grid(True, alpha=0.3)
    return _save(figure, directory, "solve_times", "MPC solve times")


def comparison_costs(comparison: Comparison, directory: Path) -> Figure:
    """Community cost per baseline and per mechanism, with each mechanism's spread of savings."""
    labels = [scenario.title for scenario in comparison.baseline_cost_nano]
    labels += [result.mechanism for result in comparison.mechanisms]
    costs = [cost / 1e9 for cost in comparison.baseline_cost_nano.values()]
    costs += [result.community_cost_nano / 1e9 for result in comparison.mechanisms]
    colours = [_COLOURS[scenario] for scenario in comparison.baseline_cost_nano]
    colours += [_COLOURS[Scenario.MPC_TRADING]] * len(comparison.mechanisms)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4))
    axis.bar(np.arange(len(labels)), costs, color=colours)
    axis.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("community cost")
    axis.grid(True, axis="y", alpha=0.3)
    return _save(figure, directory, "comparison", "Community cost per mechanism")


def write_plots(directory: Path, accounts: Accounts, solve_ms: dict[Scenario, list[float]],
                comparison: Comparison | None = None) -> list[Figure]:
    """Write every figure into ``directory`` (created); returns them in report order."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = [community_grid(accounts, directory), self_sufficiency(accounts, directory)]
    if Scenario.MPC_TRADING in accounts.scenarios:
        figures.append(local_price(accounts, directory))
    figures.append(home_bills(accounts, directory))
    if Scenario.NO_CONTROL in accounts.scenarios and len(accounts.scenarios) > 1:
        figures.append(home_savings(accounts, directory))
    if any(solve_ms.values()):
        figures.append(solve_times(accounts, directory, solve_ms))
    if comparison is not None and comparison.mechanisms:
        figures.append(comparison_costs(comparison, directory))
    return figures
