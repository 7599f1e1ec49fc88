"""The mechanisms by configured name. Imported lazily, so listing them costs nothing and the
energy collective's cvxpy is only loaded when it is chosen."""

from __future__ import annotations

import importlib

from hems.community.mechanisms.base import Mechanism

#: name -> "module:Class" under hems.community.mechanisms
_MECHANISMS: dict[str, str] = {
    "uniform_auction": "uniform:UniformPriceAuction",
    "pay_as_bid": "pay_as_bid:PayAsBidAuction",
    "bid_curve": "bid_curve:BidCurveEquilibrium",
    "supply_demand_ratio": "sharing:SupplyDemandRatio",
    "mid_market_rate": "sharing:MidMarketRate",
    "bill_sharing": "sharing:BillSharing",
    "energy_collective": "collective:EnergyCollective",
}


def mechanism_names() -> tuple[str, ...]:
    """Every configurable mechanism name."""
    return tuple(_MECHANISMS)


def mechanism_class(name: str) -> type[Mechanism]:
    """The class behind ``name``; KeyError naming the choices for an unknown one."""
    try:
        module_name, class_name = _MECHANISMS[name].split(":")
    except KeyError:
        raise KeyError(f"unknown mechanism {name!r}; choose one of {', '.join(_MECHANISMS)}") from None
    module = importlib.import_module(f"hems.community.mechanisms.{module_name}")
    return getattr(module, class_name)


def create_mechanism(name: str) -> Mechanism:
    """A ready instance of the named mechanism (mechanisms are stateless)."""
    return mechanism_class(name)()
