"""Every money and energy figure of the demo's report, computed once, here (the report only formats).

**Money** is integer nano-currency (n¤), exact, as in the community's ledger
(:mod:`hems.protocol.units`). The only roundings are the settlement's own:

- a slot's metered energy is whole Wh, the difference of the rounded (half-even) cumulative
  counter values at its boundaries, as a home's meter reporting does (``hems.trading.metering``),
  so the slots of a run add up exactly to the rounded total;
- a price is whole µ¤/kWh (``price_to_micro``, half-even), taken at the slot's start;
- then Wh × µ¤/kWh = n¤ exactly: a slot's bill is ``import_wh·import_price − export_wh·export_price``,
  the settlement's retail-only bill (:func:`hems.community.settlement._figures`).

**Bills.** Without trading (no control, self-consumption rule, MPC) a home pays its own tariff,
flat or time-of-use. With trading the bill is what the community's ledger says: the sum of the
home's SETTLEMENT and SETTLEMENT_CORRECTION ``bill_nano`` over the run's slots (energy bought and
sold locally, fees, and the imbalance settled at the *community's* flat retail and feed-in prices).
A slot of the run the ledger has not settled for the home is billed at its own tariff and counted
in ``unsettled_slots``.

**Community.** Per slot and scenario, import = max(Σ_homes (import − export), 0) and export =
max(−Σ, 0): what crosses the community's connection to the grid. Consumption is household + EV +
heat pump, and self-sufficiency = 1 − import / consumption, clipped to [0, 1] (None for a slot
without consumption). The community's cost is the sum of its homes' bills.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from hems.config.tariff import Tariff
from hems.demo.ledger_books import LedgerBooks, read_ledger_books
from hems.demo.model import DemoHome, RunOutcome, Scenario, SlotEnergy
from hems.demo.sites import TIMEZONE
from hems.protocol.units import format_money, nano_to_decimal, price_to_micro

#: The demo community's time zone (the homes' tariffs are written in it).
DEFAULT_TIMEZONE = TIMEZONE


def whole_wh(energy_wh: Sequence[float] | np.ndarray) -> list[int]:
    """Per-slot Wh as whole Wh: differences of the rounded cumulative sums (they add up exactly)."""
    cumulative = [0] + [round(value) for value in np.cumsum(np.asarray(energy_wh, dtype=float)).tolist()]
    return [max(0, after - before) for before, after in zip(cumulative, cumulative[1:])]


def tariff_prices_micro(tariff: Tariff, slot_starts_s: Sequence[int], timezone_name: str
                        ) -> tuple[list[int], list[int]]:
    """The (import, export) price of each slot start in whole µ¤/kWh."""
    instants = [datetime.fromtimestamp(start_s, tz=timezone.utc) for start_s in slot_starts_s]
    imports, exports = tariff.prices(instants, timezone_name)
    return [price_to_micro(price) for price in imports], [price_to_micro(price) for price in exports]


def slot_bills_nano(import_wh: Sequence[int], export_wh: Sequence[int], import_micro: Sequence[int],
                    export_micro: Sequence[int]) -> list[int]:
    """Each slot's retail bill (n¤): imported Wh at the import price minus exported Wh at the export price."""
    return [imported * buy - exported * sell
            for imported, exported, buy, sell in zip(import_wh, export_wh, import_micro, export_micro)]


@dataclass(frozen=True)
class TradingAccount:
    """A home's run in the community, from the ledger (Wh; n¤, positive = the home pays)."""

    settled_slots: int
    estimated_slots: int  # settled at the cleared position because no reading arrived
    unsettled_slots: int  # billed at the home's own tariff: no settlement in the ledger
    reported_import_wh: int  # what the home reported (the ledger's meter figures)
    reported_export_wh: int
    bought_wh: int
    sold_wh: int
    imbalance_wh: int  # Σ (import − export) − (bought − sold): + bought from, − sold to the retailer
    energy_paid_nano: int
    energy_received_nano: int
    fees_nano: int
    imbalance_charge_nano: int
    imbalance_credit_nano: int
    ledger_bill_nano: int  # Σ settlement bills
    unsettled_bill_nano: int  # the unsettled slots at the home's own tariff
    bill_nano: int  # ledger_bill + unsettled_bill


@dataclass(frozen=True)
class HomeAccount:
    """One home across the scenarios."""

    home_id: str
    tariff_name: str
    bill_nano: dict[Scenario, int]
    import_wh: dict[Scenario, int]  # metered, whole Wh, over the run
    export_wh: dict[Scenario, int]
    savings_nano: dict[Scenario, int]  # bill(no control) − bill(scenario); empty without no control
    trading_value_nano: int | None  # bill(MPC) − bill(MPC with trading), when both ran
    trading: TradingAccount | None


@dataclass(frozen=True)
class RunStats:
    """How one scenario's run went: solver and messages."""

    plans: int
    solve_ms_median: float | None
    solve_ms_p95: float | None
    solve_ms_max: float | None
    home_messages_sent: int
    home_messages_received: int
    manager_messages_sent: int
    manager_messages_received: int
    wall_s: float


@dataclass(frozen=True)
class CommunityAccount:
    """The community per slot and over the run."""

    slot_starts_s: list[int]
    slot_s: int
    mechanism: str | None
    cost_nano: dict[Scenario, int]
    import_wh: dict[Scenario, list[int]]  # per slot, across the community's connection
    export_wh: dict[Scenario, list[int]]
    consumption_wh: dict[Scenario, list[float]]  # household + EV + heat pump
    self_sufficiency: dict[Scenario, list[float | None]]
    self_sufficiency_run: dict[Scenario, float | None]
    traded_wh: int  # home-to-home, from the CLEARING records
    traded_wh_per_slot: list[int]
    local_price_micro: list[int | None]  # see LedgerBooks.local_prices_micro
    retail_price_micro: int | None  # the community's, from the ledger's market config
    feed_in_price_micro: int | None


@dataclass(frozen=True)
class Accounts:
    """Everything the report shows."""

    scenarios: tuple[Scenario, ...]
    homes: dict[str, HomeAccount]
    community: CommunityAccount
    stats: dict[Scenario, RunStats]
    timezone: str = DEFAULT_TIMEZONE
    unsettled_slots: int = field(default=0)  # over all homes

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form: money as an exact decimal string of the currency under its name and as
        integer n¤ under ``<name>_nano``; energy in Wh; prices in µ¤/kWh."""
        return _accounts_json(self)


def compute_accounts(homes: Sequence[DemoHome], runs: Mapping[Scenario, RunOutcome], *,
                     timezone_name: str = DEFAULT_TIMEZONE) -> Accounts:
    """The accounts of every home and of the community, for the scenarios in ``runs``.

    Every run must cover the same slots. The MPC_TRADING run's ``ledger_path`` is read for its bills.
    """
    scenarios = tuple(scenario for scenario in Scenario if scenario in runs)
    if not scenarios:
        raise ValueError("no runs to account for")
    reference = runs[scenarios[0]]
    slot_starts_s, slot_s = list(reference.slot_starts_s), reference.slot_s
    for scenario in scenarios:
        if list(runs[scenario].slot_starts_s) != slot_starts_s or runs[scenario].slot_s != slot_s:
            raise ValueError(f"the {scenario.value} run covers other slots than the {scenarios[0].value} run")
    trading_run = runs.get(Scenario.MPC_TRADING)
    books = None
    if trading_run is not None:
        if trading_run.ledger_path is None:
            raise ValueError("the mpc_trading run has no ledger_path: its bills come from the ledger")
        books = read_ledger_books(trading_run.ledger_path, slot_starts_s)
    home_accounts = {}
    for home in homes:
        import_micro, export_micro = tariff_prices_micro(home.tariff, slot_starts_s, timezone_name)
        home_accounts[home.home_id] = _home_account(home, runs, scenarios, books, import_micro, export_micro)
    community = _community_account(homes, runs, scenarios, home_accounts, books, slot_starts_s, slot_s)
    stats = {scenario: _run_stats(runs[scenario]) for scenario in scenarios}
    unsettled = sum(account.trading.unsettled_slots for account in home_accounts.values()
                    if account.trading is not None)
    return Accounts(scenarios, home_accounts, community, stats, timezone_name, unsettled)


def metered(energy: SlotEnergy) -> tuple[list[int], list[int]]:
    """A home's metered (import, export) per slot in whole Wh."""
    return whole_wh(energy.import_wh), whole_wh(energy.export_wh)


def _home_account(home: DemoHome, runs: Mapping[Scenario, RunOutcome], scenarios: tuple[Scenario, ...],
                  books: LedgerBooks | None, import_micro: list[int], export_micro: list[int]) -> HomeAccount:
    bills, imports, exports = {}, {}, {}
    trading = None
    for scenario in scenarios:
        outcome = runs[scenario].homes.get(home.home_id)
        if outcome is None:
            raise ValueError(f"the {scenario.value} run has no outcome for home {home.home_id!r}")
        import_wh, export_wh = metered(outcome.energy)
        imports[scenario], exports[scenario] = sum(import_wh), sum(export_wh)
        own_tariff = slot_bills_nano(import_wh, export_wh, import_micro, export_micro)
        if scenario is Scenario.MPC_TRADING:
            assert books is not None
            trading = _trading_account(home.home_id, books, own_tariff)
            bills[scenario] = trading.bill_nano
        else:
            bills[scenario] = sum(own_tariff)
    savings = ({scenario: bills[Scenario.NO_CONTROL] - bills[scenario] for scenario in scenarios}
               if Scenario.NO_CONTROL in bills else {})
    value = (bills[Scenario.MPC] - bills[Scenario.MPC_TRADING]
             if Scenario.MPC in bills and Scenario.MPC_TRADING in bills else None)
    return HomeAccount(home.home_id, home.tariff_name, bills, imports, exports, savings, value, trading)


def _trading_account(home_id: str, books: LedgerBooks, own_tariff_bills_nano: list[int]) -> TradingAccount:
    totals = books.home_totals(home_id)
    unsettled = [index for index, start_s in enumerate(books.slot_starts_s)
                 if not books.is_settled(home_id, start_s)]
    unsettled_bill = sum(own_tariff_bills_nano[index] for index in unsettled)
    return TradingAccount(
        settled_slots=len(books.slot_starts_s) - len(unsettled), estimated_slots=books.estimated_slots(home_id),
        unsettled_slots=len(unsettled), reported_import_wh=totals.import_wh, reported_export_wh=totals.export_wh,
        bought_wh=totals.bought_wh, sold_wh=totals.sold_wh, imbalance_wh=totals.imbalance_wh,
        energy_paid_nano=totals.energy_paid_nano, energy_received_nano=totals.energy_received_nano,
        fees_nano=totals.fees_nano, imbalance_charge_nano=totals.imbalance_charge_nano,
        imbalance_credit_nano=totals.imbalance_credit_nano, ledger_bill_nano=totals.bill_nano,
        unsettled_bill_nano=unsettled_bill, bill_nano=totals.bill_nano + unsettled_bill)


def _community_account(homes: Sequence[DemoHome], runs: Mapping[Scenario, RunOutcome],
                       scenarios: tuple[Scenario, ...], accounts: Mapping[str, HomeAccount],
                       books: LedgerBooks | None, slot_starts_s: list[int], slot_s: int) -> CommunityAccount:
    slots = len(slot_starts_s)
    imports: dict[Scenario, list[int]] = {}
    exports: dict[Scenario, list[int]] = {}
    consumption: dict[Scenario, list[float]] = {}
    sufficiency: dict[Scenario, list[float | None]] = {}
    sufficiency_run: dict[Scenario, float | None] = {}
    for scenario in scenarios:
        net_wh = np.zeros(slots, dtype=np.int64)
        used_wh = np.zeros(slots)
        for home in homes:
            energy = runs[scenario].homes[home.home_id].energy
            import_wh, export_wh = metered(energy)
            net_wh += np.asarray(import_wh, dtype=np.int64) - np.asarray(export_wh, dtype=np.int64)
            used_wh += np.asarray(energy.household_wh) + np.asarray(energy.ev_wh) + np.asarray(energy.heat_pump_wh)
        imports[scenario] = [max(int(value), 0) for value in net_wh]
        exports[scenario] = [max(-int(value), 0) for value in net_wh]
        consumption[scenario] = [float(value) for value in used_wh]
        sufficiency[scenario] = [_self_sufficiency(imported, used)
                                 for imported, used in zip(imports[scenario], consumption[scenario])]
        sufficiency_run[scenario] = _self_sufficiency(sum(imports[scenario]), sum(consumption[scenario]))
    cost = {scenario: sum(account.bill_nano[scenario] for account in accounts.values()) for scenario in scenarios}
    traded_per_slot = books.traded_wh_per_slot() if books is not None else [0] * slots
    return CommunityAccount(
        slot_starts_s=slot_starts_s, slot_s=slot_s,
        mechanism=runs[Scenario.MPC_TRADING].mechanism if Scenario.MPC_TRADING in runs else None,
        cost_nano=cost, import_wh=imports, export_wh=exports, consumption_wh=consumption,
        self_sufficiency=sufficiency, self_sufficiency_run=sufficiency_run, traded_wh=sum(traded_per_slot),
        traded_wh_per_slot=traded_per_slot,
        local_price_micro=books.local_prices_micro() if books is not None else [None] * slots,
        retail_price_micro=books.retail_price_micro if books is not None else None,
        feed_in_price_micro=books.feed_in_price_micro if books is not None else None)


def _self_sufficiency(import_wh: float, consumption_wh: float) -> float | None:
    if consumption_wh <= 0:
        return None
    return min(max(1.0 - import_wh / consumption_wh, 0.0), 1.0)


def _run_stats(run: RunOutcome) -> RunStats:
    solve_ms = np.array([value for outcome in run.homes.values() for value in outcome.solve_ms], dtype=float)
    has_plans = solve_ms.size > 0
    return RunStats(
        plans=int(solve_ms.size),
        solve_ms_median=float(np.median(solve_ms)) if has_plans else None,
        solve_ms_p95=float(np.percentile(solve_ms, 95)) if has_plans else None,
        solve_ms_max=float(solve_ms.max()) if has_plans else None,
        home_messages_sent=sum(outcome.messages_sent for outcome in run.homes.values()),
        home_messages_received=sum(outcome.messages_received for outcome in run.homes.values()),
        manager_messages_sent=run.manager_messages_sent, manager_messages_received=run.manager_messages_received,
        wall_s=run.wall_s)


# -- JSON ------------------------------------------------------------------------------------------


def money_text(amount_nano: int) -> str:
    """n¤ as an exact decimal string of the currency (``"1.234567890"``)."""
    return format(nano_to_decimal(amount_nano), "f")


def _money(name: str, amount_nano: int | None) -> dict[str, Any]:
    if amount_nano is None:
        return {name: None, f"{name}_nano": None}
    return {name: money_text(amount_nano), f"{name}_nano": int(amount_nano)}


def _by_scenario_money(values: Mapping[Scenario, int]) -> dict[str, Any]:
    return {scenario.value: _money("amount", amount) for scenario, amount in values.items()}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _trading_json(trading: TradingAccount) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in vars(trading).items():
        result.update(_money(name.removesuffix("_nano"), value) if name.endswith("_nano") else {name: value})
    return result


def _accounts_json(accounts: Accounts) -> dict[str, Any]:
    community = accounts.community
    homes = []
    for account in accounts.homes.values():
        homes.append({
            "home_id": account.home_id, "tariff": account.tariff_name,
            "bill": _by_scenario_money(account.bill_nano), "savings": _by_scenario_money(account.savings_nano),
            "import_wh": {scenario.value: value for scenario, value in account.import_wh.items()},
            "export_wh": {scenario.value: value for scenario, value in account.export_wh.items()},
            **_money("trading_value", account.trading_value_nano),
            "trading": _trading_json(account.trading) if account.trading is not None else None,
        })
    return {
        "timezone": accounts.timezone,
        "scenarios": [scenario.value for scenario in accounts.scenarios],
        "unsettled_slots": accounts.unsettled_slots,
        "homes": homes,
        "community": {
            "slot_starts_s": community.slot_starts_s, "slot_s": community.slot_s,
            "mechanism": community.mechanism, "cost": _by_scenario_money(community.cost_nano),
            "import_wh": {scenario.value: values for scenario, values in community.import_wh.items()},
            "export_wh": {scenario.value: values for scenario, values in community.export_wh.items()},
            "consumption_wh": {scenario.value: [round(value, 3) for value in values]
                               for scenario, values in community.consumption_wh.items()},
            "self_sufficiency": {scenario.value: [_finite(value) for value in values]
                                 for scenario, values in community.self_sufficiency.items()},
            "self_sufficiency_run": {scenario.value: _finite(value)
                                     for scenario, value in community.self_sufficiency_run.items()},
            "traded_wh": community.traded_wh, "traded_wh_per_slot": community.traded_wh_per_slot,
            "local_price_micro": community.local_price_micro,
            "retail_price_micro": community.retail_price_micro,
            "feed_in_price_micro": community.feed_in_price_micro,
        },
        "stats": {scenario.value: {name: (_finite(value) if isinstance(value, float) else value)
                                   for name, value in vars(stats).items()}
                  for scenario, stats in accounts.stats.items()},
    }


def money_display(amount_nano: int) -> str:
    """n¤ rounded to cents for tables (``12.35``); an amount that rounds to zero shows as ``0.00``."""
    text = format_money(amount_nano)
    return text.removeprefix("-") if Decimal(text) == 0 else text


def price_text(price_micro: int | None) -> str:
    """µ¤/kWh as currency per kWh for display, 2 to 4 decimals (``0.32``, ``0.2067``); "—" for None."""
    if price_micro is None:
        return "—"
    text = format(Decimal(price_micro).scaleb(-6).quantize(Decimal("0.0001"), ROUND_HALF_EVEN), "f")
    return text[:-2] + text[-2:].rstrip("0") if text.endswith("0") else text
