"""``hems demo --compare``: the same community traded under each mechanism, side by side.

For each mechanism the accounts of :mod:`hems.demo.accounts` are computed with the shared baseline
runs, so every figure here is one of the report's figures, not a second computation. Medians of
money are ``statistics.median_low``: the bill of an actual home (exact n¤, no averaging of the two
middle homes).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hems.demo.accounts import Accounts, compute_accounts, money_display, money_text
from hems.demo.model import DemoHome, RunOutcome, Scenario


@dataclass(frozen=True)
class Spread:
    """Minimum, median (low) and maximum over the homes (n¤)."""

    min_nano: int
    median_nano: int
    max_nano: int

    @classmethod
    def of(cls, values_nano: Sequence[int]) -> Spread | None:
        """The spread of ``values_nano``; None when there are none."""
        if not values_nano:
            return None
        return cls(min(values_nano), statistics.median_low(values_nano), max(values_nano))

    def to_json(self) -> dict[str, Any]:
        """Decimal strings of the currency and integer n¤."""
        return {name: value for key in ("min", "median", "max")
                for name, value in ((key, money_text(getattr(self, f"{key}_nano"))),
                                    (f"{key}_nano", getattr(self, f"{key}_nano")))}


@dataclass(frozen=True)
class MechanismResult:
    """One mechanism's run of the community."""

    mechanism: str
    community_cost_nano: int
    trading_value: Spread | None  # per home: bill(MPC) − bill(with this mechanism)
    savings: Spread | None  # per home: bill(no control) − bill(with this mechanism)
    traded_wh: int
    self_sufficiency: float | None
    unsettled_slots: int


@dataclass(frozen=True)
class Comparison:
    """The baselines' community cost and each mechanism's results."""

    baseline_cost_nano: dict[Scenario, int]
    mechanisms: list[MechanismResult]

    def markdown(self) -> str:
        """A Markdown table: community cost, fairness (min/median/max per home) and traded volume."""
        lines = ["| run | community cost | value of trading per home (min / median / max) | "
                 "savings vs no control per home (min / median / max) | traded kWh | self-sufficiency |",
                 "|---|---:|---:|---:|---:|---:|"]
        for scenario, cost in self.baseline_cost_nano.items():
            lines.append(f"| {scenario.title} | {money_display(cost)} | | | | |")
        for result in self.mechanisms:
            unsettled = f" ({result.unsettled_slots} unsettled home-slots)" if result.unsettled_slots else ""
            sufficiency = "—" if result.self_sufficiency is None else f"{result.self_sufficiency:.1%}"
            lines.append(f"| MPC with trading: {result.mechanism}{unsettled} | "
                         f"{money_display(result.community_cost_nano)} | {_spread_text(result.trading_value)} | "
                         f"{_spread_text(result.savings)} | {result.traded_wh / 1000:.1f} | {sufficiency} |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (money as decimal strings and n¤)."""
        return {
            "baseline_cost": {scenario.value: {"amount": money_text(cost), "amount_nano": cost}
                              for scenario, cost in self.baseline_cost_nano.items()},
            "mechanisms": [{
                "mechanism": result.mechanism,
                "community_cost": money_text(result.community_cost_nano),
                "community_cost_nano": result.community_cost_nano,
                "trading_value": result.trading_value.to_json() if result.trading_value else None,
                "savings": result.savings.to_json() if result.savings else None,
                "traded_wh": result.traded_wh, "self_sufficiency": result.self_sufficiency,
                "unsettled_slots": result.unsettled_slots,
            } for result in self.mechanisms],
        }


def _spread_text(spread: Spread | None) -> str:
    if spread is None:
        return "—"
    return " / ".join(money_display(value) for value in (spread.min_nano, spread.median_nano, spread.max_nano))


def mechanism_result(mechanism: str, accounts: Accounts) -> MechanismResult:
    """The comparison's row for accounts that include an MPC_TRADING run."""
    homes = accounts.homes.values()
    values = [home.trading_value_nano for home in homes if home.trading_value_nano is not None]
    savings = [home.savings_nano[Scenario.MPC_TRADING] for home in homes
               if Scenario.MPC_TRADING in home.savings_nano]
    community = accounts.community
    return MechanismResult(
        mechanism=mechanism, community_cost_nano=community.cost_nano[Scenario.MPC_TRADING],
        trading_value=Spread.of(values), savings=Spread.of(savings), traded_wh=community.traded_wh,
        self_sufficiency=community.self_sufficiency_run.get(Scenario.MPC_TRADING),
        unsettled_slots=accounts.unsettled_slots)


def compare_mechanisms(homes: Sequence[DemoHome], baseline_runs: Mapping[Scenario, RunOutcome],
                       trading_runs: Mapping[str, RunOutcome]) -> Comparison:
    """The community cost, the spread of each home's gain and the traded volume per mechanism.

    ``baseline_runs`` holds the runs without trading (no control, self-consumption rule, MPC);
    ``trading_runs`` one MPC_TRADING run per mechanism name, each with its ledger.
    """
    baselines = {scenario: run for scenario, run in baseline_runs.items() if scenario is not Scenario.MPC_TRADING}
    if not baselines:
        raise ValueError("no baseline runs to compare the mechanisms with")
    baseline_accounts = compute_accounts(homes, baselines)
    results = [mechanism_result(mechanism, compute_accounts(homes, {**baselines, Scenario.MPC_TRADING: run}))
               for mechanism, run in trading_runs.items()]
    return Comparison(dict(baseline_accounts.community.cost_nano), results)
