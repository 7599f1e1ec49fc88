"""The mechanisms by configured name. Imported lazily, so listing them costs nothing and the
energy collective's cvxpy is only loaded when it is chosen."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hems.community.mechanisms.base import InputKind, Mechanism

if TYPE_CHECKING:
    from hems.community.config import CommunityConfig

#: name -> ("module:Class" under hems.community.mechanisms, what it clears from)
_MECHANISMS: dict[str, tuple[str, InputKind]] = {
    "uniform_auction": ("uniform:UniformPriceAuction", InputKind.ORDERS),
    "pay_as_bid": ("pay_as_bid:PayAsBidAuction", InputKind.ORDERS),
    "bid_curve": ("bid_curve:BidCurveEquilibrium", InputKind.CURVES),
    "supply_demand_ratio": ("sharing:SupplyDemandRatio", InputKind.POSITIONS),
    "mid_market_rate": ("sharing:MidMarketRate", InputKind.POSITIONS),
    "bill_sharing": ("sharing:BillSharing", InputKind.POSITIONS),
    "energy_collective": ("collective:EnergyCollective", InputKind.ORDERS),
    "admm": ("admm:ExchangeAdmm", InputKind.CURVES),
    "differentiated": ("differentiated:DifferentiatedAuction", InputKind.CLASSED_ORDERS),
    "bilateral": ("bilateral:BilateralTrading", InputKind.CURVES),
}


def mechanism_names() -> tuple[str, ...]:
    """Every configurable mechanism name."""
    return tuple(_MECHANISMS)


def input_kind(name: str) -> InputKind:
    """What the named mechanism clears from, without importing it."""
    if name not in _MECHANISMS:
        raise KeyError(f"unknown mechanism {name!r}; choose one of {', '.join(_MECHANISMS)}")
    return _MECHANISMS[name][1]


def mechanism_class(name: str) -> type[Mechanism]:
    """The class behind ``name``; KeyError naming the choices for an unknown one."""
    try:
        module_name, class_name = _MECHANISMS[name][0].split(":")
    except KeyError:
        raise KeyError(f"unknown mechanism {name!r}; choose one of {', '.join(_MECHANISMS)}") from None
    module = importlib.import_module(f"hems.community.mechanisms.{module_name}")
    return getattr(module, class_name)


def create_mechanism(name: str, config: CommunityConfig | None = None) -> Mechanism:
    """A ready instance of the named mechanism (mechanisms are stateless). With the community's
    ``config``, a mechanism that has settings of its own takes them (``for_community``)."""
    cls = mechanism_class(name)
    for_community = getattr(cls, "for_community", None)
    return for_community(config) if config is not None and for_community is not None else cls()
