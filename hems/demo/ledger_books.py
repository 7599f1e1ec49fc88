"""What the community's ledger says about a demo run: settlements per home, clearings per slot.

Read with the community's own code (:class:`hems.community.ledger.Ledger`,
:func:`hems.community.settlement.settlement_from_body`), limited to the run's slots.

**Local price of a slot** (:meth:`LedgerBooks.local_prices_micro`): the CLEARING record's uniform
``price_micro`` when the mechanism has one and homes traded. Otherwise (pay-as-bid, the sharing
rules) the volume-weighted mean energy price of the slot's home-to-home trades: what the homes paid
for energy in the clearing (Σ ALLOCATION ``paid_nano``) less what went to the retailer
(``retailer_nano`` when only the retailer sold, 0 when only it bought), divided by ``traded_wh``
and rounded half-even to whole µ¤/kWh. A slot where the retailer both sold and bought (no
mechanism does this today) falls back to the record's ``median_trade_price_micro``. None when
nothing was traded home to home.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path

from hems.community.ledger import Ledger, RecordKind
from hems.community.settlement import HomeSettlement, settlement_from_body
from hems.protocol.units import round_half_even

#: The HomeSettlement fields that add up over slots (and over a settlement and its corrections).
_SUMMED = tuple(item.name for item in fields(HomeSettlement)
                if item.name not in ("home", "slot_start_s", "estimated"))


@dataclass(frozen=True)
class SettlementTotals:
    """A home's settlement figures summed over slots (Wh and n¤, as in HomeSettlement)."""

    import_wh: int = 0
    export_wh: int = 0
    bought_wh: int = 0
    sold_wh: int = 0
    energy_paid_nano: int = 0
    energy_received_nano: int = 0
    fees_nano: int = 0
    imbalance_wh: int = 0
    imbalance_charge_nano: int = 0
    imbalance_credit_nano: int = 0
    bill_nano: int = 0
    retail_only_bill_nano: int = 0
    savings_nano: int = 0


@dataclass(frozen=True)
class SlotClearing:
    """The public figures of one cleared slot, and what homes paid for energy in it."""

    traded_wh: int
    price_micro: int | None
    median_trade_price_micro: int | None
    grid_import_wh: int
    grid_export_wh: int
    retailer_nano: int
    homes_paid_nano: int


class LedgerBooks:
    """The ledger's settlements and clearings of a run's slots."""

    def __init__(self, slot_starts_s: Sequence[int], settlements: dict[tuple[str, int], list[HomeSettlement]],
                 clearings: dict[int, SlotClearing], market: dict | None) -> None:
        self.slot_starts_s = list(slot_starts_s)
        self._settlements = settlements  # (home, slot) -> settlement first, then its corrections
        self._clearings = clearings
        market = market or {}
        self.mechanism: str | None = market.get("mechanism")
        self.retail_price_micro: int | None = market.get("retail_price_micro")
        self.feed_in_price_micro: int | None = market.get("feed_in_price_micro")

    def is_settled(self, home: str, slot_start_s: int) -> bool:
        """True when the ledger holds a SETTLEMENT of the home for the slot."""
        return bool(self._settlements.get((home, slot_start_s)))

    def estimated_slots(self, home: str) -> int:
        """Slots whose latest settlement record of the home is still provisional (no reading)."""
        return sum(1 for start_s in self.slot_starts_s
                   if (records := self._settlements.get((home, start_s))) and records[-1].estimated)

    def home_totals(self, home: str) -> SettlementTotals:
        """The home's settlements and corrections summed over the run's slots."""
        totals = dict.fromkeys(_SUMMED, 0)
        for start_s in self.slot_starts_s:
            for record in self._settlements.get((home, start_s), ()):
                for name in _SUMMED:
                    totals[name] += getattr(record, name)
        return SettlementTotals(**totals)

    def traded_wh_per_slot(self) -> list[int]:
        """Home-to-home Wh per slot (0 where the slot was not cleared)."""
        return [clearing.traded_wh if (clearing := self._clearings.get(start_s)) else 0
                for start_s in self.slot_starts_s]

    def local_prices_micro(self) -> list[int | None]:
        """The local price of each slot (µ¤/kWh; see the module docstring), None without trades."""
        return [_local_price(self._clearings.get(start_s)) for start_s in self.slot_starts_s]


def _local_price(clearing: SlotClearing | None) -> int | None:
    if clearing is None or clearing.traded_wh <= 0:
        return None
    if clearing.price_micro is not None:
        return clearing.price_micro
    if clearing.grid_import_wh > 0 and clearing.grid_export_wh > 0:
        return clearing.median_trade_price_micro
    to_retailer_nano = clearing.retailer_nano if clearing.grid_import_wh > 0 else 0
    return round_half_even(Fraction(clearing.homes_paid_nano - to_retailer_nano, clearing.traded_wh))


def open_ledger(path: Path) -> sqlite3.Connection:
    """A connection to a community database for reading its ledger (autocommit, as Ledger wants)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no community database (the ledger of the trading run)")
    return sqlite3.connect(path, isolation_level=None)


def read_ledger_books(path: Path, slot_starts_s: Sequence[int]) -> LedgerBooks:
    """The settlements and clearings of ``slot_starts_s`` in the community database at ``path``."""
    wanted = set(slot_starts_s)
    span = {"since_slot_s": min(wanted), "until_slot_s": max(wanted) + 1} if wanted else {}
    connection = open_ledger(path)
    try:
        ledger = Ledger(connection)
        configs = ledger.records(kind=RecordKind.CONFIG)
        settlements: dict[tuple[str, int], list[HomeSettlement]] = defaultdict(list)
        # Ledger order: a SETTLEMENT precedes its corrections, so combining in order is exact.
        settlement_records = sorted(ledger.records(kind=RecordKind.SETTLEMENT, **span)
                                    + ledger.records(kind=RecordKind.SETTLEMENT_CORRECTION, **span),
                                    key=lambda record: record.seq)
        for record in settlement_records:
            if record.slot_start_s not in wanted:
                continue
            if record.kind is RecordKind.SETTLEMENT_CORRECTION and not settlements.get((record.home,
                                                                                          record.slot_start_s)):
                continue  # a correction without its settlement would be a manager bug; not a bill
            settlements[(str(record.home), record.slot_start_s)].append(settlement_from_body(record.body))
        paid: dict[int, int] = defaultdict(int)
        for record in ledger.records(kind=RecordKind.ALLOCATION, **span):
            if record.slot_start_s in wanted:
                paid[record.slot_start_s] += int(record.body["paid_nano"])
        clearings = {}
        for record in ledger.records(kind=RecordKind.CLEARING, **span):
            if record.slot_start_s in wanted:
                body = record.body
                clearings[record.slot_start_s] = SlotClearing(
                    traded_wh=int(body["traded_wh"]), price_micro=body.get("price_micro"),
                    median_trade_price_micro=body.get("median_trade_price_micro"),
                    grid_import_wh=int(body["grid_import_wh"]), grid_export_wh=int(body["grid_export_wh"]),
                    retailer_nano=int(body["retailer_nano"]), homes_paid_nano=paid[record.slot_start_s])
    finally:
        connection.close()
    market = configs[-1].body.get("market") if configs else None
    return LedgerBooks(slot_starts_s, dict(settlements), clearings, market)
