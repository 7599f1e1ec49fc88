"""Settlement of one slot against metered energy: pure functions, integer money (n¤).

A home's cleared net position is ``bought_wh − sold_wh``; its metered net import is
``import_wh − export_wh``. The difference is its imbalance (markets.md §9), settled with the
retailer as residual balancer: a positive imbalance is charged at ``imbalance_import_price_micro``,
a negative one credited at ``imbalance_export_price_micro``. The imbalance is netted per slot, so a
home that imports and exports within one slot pays for its net only; its retail-only bill (every
imported Wh at the retail price, every exported Wh at the feed-in price) is then higher and the
difference shows as savings.

Books per slot: Σ bills = retailer + network fees + community fees + rounding, where the retailer
receives the clearing's ``retailer_nano`` plus the imbalance charges minus the imbalance credits.

Late meter data (markets.md §9): a home without a reading is settled provisionally at its cleared
position (``estimated``, zero imbalance); when the reading arrives, :func:`correction` gives the
difference to append. Ledger entries are never edited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from hems.community.mechanisms.base import ClearingResult, HomeAllocation
from hems.protocol.units import money_nano


@dataclass(frozen=True)
class MeteredEnergy:
    """What a home's grid meter counted in one slot (both ≥ 0)."""

    home: str
    import_wh: int
    export_wh: int
    estimated: bool = False  # a substitute value, not a reading


@dataclass(frozen=True)
class SettlementPrices:
    """The prices a slot settles at (µ¤/kWh)."""

    retail_price_micro: int  # the retail-only comparison: imports
    feed_in_price_micro: int  # the retail-only comparison: exports
    imbalance_import_price_micro: int  # charged per Wh imported beyond the cleared position
    imbalance_export_price_micro: int  # credited per Wh exported beyond the cleared position


@dataclass(frozen=True)
class HomeSettlement:
    """One home's slot: energy, trades, imbalance and the bill (n¤; positive = the home pays).

    In a correction every number is the change to the previous figures.
    """

    home: str
    slot_start_s: int
    import_wh: int
    export_wh: int
    estimated: bool
    bought_wh: int
    sold_wh: int
    energy_paid_nano: int
    energy_received_nano: int
    fees_nano: int
    imbalance_wh: int  # (import − export) − (bought − sold); + charged, − credited
    imbalance_charge_nano: int
    imbalance_credit_nano: int
    bill_nano: int  # energy_paid + fees + imbalance_charge − energy_received − imbalance_credit
    retail_only_bill_nano: int  # import·retail − export·feed_in
    savings_nano: int  # retail_only_bill − bill


@dataclass(frozen=True)
class SlotSettlement:
    """Every home of one slot, and where the money goes (n¤)."""

    slot_start_s: int
    homes: tuple[HomeSettlement, ...]
    retailer_nano: int  # clearing retailer_nano + imbalance charges − imbalance credits
    network_fees_nano: int
    community_fees_nano: int
    rounding_nano: int

    def balance_error_nano(self) -> int:
        """Σ bills − (retailer + fees + rounding): 0 when the books balance."""
        bills = sum(home.bill_nano for home in self.homes)
        return bills - (self.retailer_nano + self.network_fees_nano + self.community_fees_nano
                        + self.rounding_nano)

    def home(self, home: str) -> HomeSettlement | None:
        """The settlement of one home, if it is in this slot."""
        return next((item for item in self.homes if item.home == home), None)


def settle_slot(slot_start_s: int, clearing: ClearingResult | None, meters: Mapping[str, MeteredEnergy],
                members: Sequence[str], prices: SettlementPrices) -> SlotSettlement:
    """Settle one slot.

    Every member is settled, and so is every home that appears in the clearing or the meters (so no
    cleared money is dropped): members in the given order, then the others sorted. ``clearing`` None
    means nothing traded: every home settles with the retailer through its imbalance. A home
    without a reading is settled provisionally at its cleared position (``estimated``).
    """
    _check_prices(prices)
    for key, meter in meters.items():
        if key != meter.home:
            raise ValueError(f"meters[{key!r}] holds the reading of {meter.home!r}")
    allocated = [item.home for item in clearing.allocations] if clearing is not None else []
    homes = list(dict.fromkeys(members))
    homes += sorted(set(allocated).union(meters) - set(homes))
    settlements = []
    charges = credits = 0
    for home in homes:
        allocation = (clearing.allocation(home) if clearing is not None else None) or HomeAllocation(home)
        settlement = _settle_home(slot_start_s, allocation, meters.get(home), prices)
        charges += settlement.imbalance_charge_nano
        credits += settlement.imbalance_credit_nano
        settlements.append(settlement)
    retailer = clearing.retailer_nano if clearing is not None else 0
    return SlotSettlement(
        slot_start_s=slot_start_s, homes=tuple(settlements), retailer_nano=retailer + charges - credits,
        network_fees_nano=clearing.network_fees_nano if clearing is not None else 0,
        community_fees_nano=clearing.community_fees_nano if clearing is not None else 0,
        rounding_nano=clearing.rounding_nano if clearing is not None else 0)


def _settle_home(slot_start_s: int, allocation: HomeAllocation, meter: MeteredEnergy | None,
                 prices: SettlementPrices) -> HomeSettlement:
    if meter is None:
        import_wh, export_wh, estimated = allocation.bought_wh, allocation.sold_wh, True
    else:
        _check_meter(meter)
        import_wh, export_wh, estimated = meter.import_wh, meter.export_wh, meter.estimated
    return _figures(allocation.home, slot_start_s, import_wh, export_wh, estimated, allocation.bought_wh,
                    allocation.sold_wh, allocation.paid_nano, allocation.received_nano, allocation.fees_nano,
                    prices, zero_imbalance=meter is None)


def _figures(home: str, slot_start_s: int, import_wh: int, export_wh: int, estimated: bool, bought_wh: int,
             sold_wh: int, paid_nano: int, received_nano: int, fees_nano: int, prices: SettlementPrices,
             *, zero_imbalance: bool = False) -> HomeSettlement:
    imbalance_wh = 0 if zero_imbalance else (import_wh - export_wh) - (bought_wh - sold_wh)
    charge = money_nano(max(imbalance_wh, 0), prices.imbalance_import_price_micro)
    credit = money_nano(max(-imbalance_wh, 0), prices.imbalance_export_price_micro)
    bill = paid_nano + fees_nano + charge - received_nano - credit
    retail_only = (money_nano(import_wh, prices.retail_price_micro)
                   - money_nano(export_wh, prices.feed_in_price_micro))
    return HomeSettlement(
        home=home, slot_start_s=slot_start_s, import_wh=import_wh, export_wh=export_wh, estimated=estimated,
        bought_wh=bought_wh, sold_wh=sold_wh, energy_paid_nano=paid_nano, energy_received_nano=received_nano,
        fees_nano=fees_nano, imbalance_wh=imbalance_wh, imbalance_charge_nano=charge,
        imbalance_credit_nano=credit, bill_nano=bill, retail_only_bill_nano=retail_only,
        savings_nano=retail_only - bill)


#: The fields that add up when a settlement and its corrections are combined.
_SUMMED = tuple(item.name for item in fields(HomeSettlement)
                if item.name not in ("home", "slot_start_s", "estimated"))


def correction(previous: HomeSettlement, actual: MeteredEnergy, prices: SettlementPrices) -> HomeSettlement:
    """The difference to append when a (late or changed) reading arrives for a settled home.

    ``previous`` is the home's figures so far: the settlement, or :func:`combine` of it and the
    corrections already appended. Every number of the result is a delta (trades and their money do
    not change, so those are 0) and ``estimated`` is the reading's, so ``combine(previous, result)``
    equals settling the slot with ``actual`` from the start.
    """
    if actual.home != previous.home:
        raise ValueError(f"the reading of {actual.home!r} cannot correct the settlement of {previous.home!r}")
    _check_prices(prices)
    _check_meter(actual)
    final = _figures(previous.home, previous.slot_start_s, actual.import_wh, actual.export_wh, actual.estimated,
                     previous.bought_wh, previous.sold_wh, previous.energy_paid_nano,
                     previous.energy_received_nano, previous.fees_nano, prices)
    deltas = {name: getattr(final, name) - getattr(previous, name) for name in _SUMMED}
    return replace(final, **deltas)


def combine(settlement: HomeSettlement, *corrections: HomeSettlement) -> HomeSettlement:
    """A settlement plus its corrections: the home's final figures (``estimated`` from the last)."""
    result = settlement
    for item in corrections:
        if (item.home, item.slot_start_s) != (settlement.home, settlement.slot_start_s):
            raise ValueError(f"a correction of {item.home!r} at {item.slot_start_s} does not belong to "
                             f"{settlement.home!r} at {settlement.slot_start_s}")
        sums = {name: getattr(result, name) + getattr(item, name) for name in _SUMMED}
        result = replace(result, estimated=item.estimated, **sums)
    return result


_INTEGER_FIELDS = ("slot_start_s",) + _SUMMED


def settlement_to_body(s: HomeSettlement) -> dict[str, Any]:
    """A settlement as a ledger body: integers, the home's id and the ``estimated`` flag."""
    body: dict[str, Any] = {"home": s.home, "estimated": bool(s.estimated)}
    body.update({name: int(getattr(s, name)) for name in _INTEGER_FIELDS})
    return body


def settlement_from_body(body: Mapping[str, Any]) -> HomeSettlement:
    """The inverse of :func:`settlement_to_body`; ValueError naming a missing or mistyped key.

    Keys it does not know are ignored, so a newer body still reads.
    """
    values: dict[str, Any] = {}
    for name in ("home", "estimated") + _INTEGER_FIELDS:
        if name not in body:
            raise ValueError(f"settlement body: {name!r} is missing")
        value = body[name]
        expected, described = ((str, "a string") if name == "home" else (bool, "a boolean")
                               if name == "estimated" else (int, "an integer"))
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"settlement body: {name} = {value!r} is not {described}")
        values[name] = value
    return HomeSettlement(**values)


def _check_meter(meter: MeteredEnergy) -> None:
    for name in ("import_wh", "export_wh"):
        value = getattr(meter, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"meter of {meter.home!r}: {name} = {value!r} must be an integer ≥ 0")


def _check_prices(prices: SettlementPrices) -> None:
    for item in fields(SettlementPrices):
        value = getattr(prices, item.name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{item.name} = {value!r} must be an integer (µ¤/kWh)")
