"""Per-solve inputs of the MPC and their repair.

The planner must never fail on bad data: NaN values are interpolated, short series are
extended, out-of-range measurements are clamped, and each repair is reported as a flag in the
plan. :func:`prepare` turns :class:`PlanInputs` (user units: W, Wh, fractions, datetimes) into
:class:`PreparedInputs` (numpy arrays of exactly ``horizon_steps`` values, same units).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from hems.mpc.site import SiteConfig

#: How far below the lowest reachable net import an absent floor lies (W).
UNREACHABLE_MARGIN_W = 1000.0


@dataclass(frozen=True)
class EvSession:
    """One charging session of the EV: connected from ``arrival`` to ``departure`` (UTC)."""

    arrival: datetime
    departure: datetime
    energy_needed_wh: float
    # Room left in the car's battery; None means the configured capacity.
    max_energy_wh: float | None = None


@dataclass(frozen=True)
class Trades:
    """Committed peer-to-peer trades per slot: fixed quantities at agreed prices."""

    quantity_wh: Sequence[float]  # + bought from peers, - sold to peers
    price_per_kwh: Sequence[float]


@dataclass(frozen=True)
class Negotiation:
    """One exchange-ADMM round as the plan sees it (hems.community.negotiation.exchange).

    In the negotiated slots (``first_slot`` onwards, one per target) the retailer is a party of the
    community's exchange, so the home's own tariff drops out of its objective there, and its net
    import E (kWh per slot) is pulled towards the round's target v by ``rho/2 * (E - v)²``."""

    first_slot: int
    target_wh: Sequence[float]
    rho_per_kwh2: float


@dataclass(frozen=True)
class PlanInputs:
    """What changes from one solve to the next. Arrays are per slot, starting at ``start``."""

    start: datetime
    load_w: Sequence[float]
    pv_w: Sequence[float]
    import_price: Sequence[float]
    export_price: Sequence[float]
    soc_initial: float
    outdoor_temp_c: Sequence[float] | None = None
    heat_demand_w: Sequence[float] | None = None  # hot-water draws or other heat demand
    indoor_temp_c: float | None = None  # measured temperature of the thermal store
    comfort_min_c: Sequence[float] | None = None  # per-slot band (e.g. night setback)
    comfort_max_c: Sequence[float] | None = None
    ev_session: EvSession | None = None
    trades: Trades | None = None
    # Bounds on net import (import - export) per slot, e.g. a grid-operator cap or a flexibility
    # commitment; None, or a non-finite value in a slot (a NaN is also flagged), means no bound there.
    net_demand_cap_w: Sequence[float] | None = None
    net_demand_floor_w: Sequence[float] | None = None
    export_limit_w: Sequence[float] | None = None  # per-slot override of the site's limit
    peak_import_so_far_w: float = 0.0  # highest import already billed in this period
    community_price_band: tuple[float, float] | None = None  # (floor, cap) of the local market
    negotiation: Negotiation | None = None  # an ADMM round in progress


@dataclass(frozen=True)
class PlanTerms:
    """What the community adds to a home's plan: committed trades, the local market's price band
    and bounds on net import per slot (e.g. confirmed flexibility commitments), all aligned with
    one horizon as :class:`PlanInputs` takes them."""

    trades: Trades | None = None
    community_price_band: tuple[float, float] | None = None
    net_demand_cap_w: Sequence[float] | None = None
    net_demand_floor_w: Sequence[float] | None = None

    def applied_to(self, inputs: PlanInputs) -> PlanInputs:
        """``inputs`` with these terms in place of its own (the terms may be newer than the plan)."""
        return dataclasses.replace(inputs, trades=self.trades, community_price_band=self.community_price_band,
                                   net_demand_cap_w=self.net_demand_cap_w, net_demand_floor_w=self.net_demand_floor_w)


@dataclass
class PreparedInputs:
    """Repaired per-slot arrays of exactly ``n_steps`` values, in W / Wh / currency per kWh."""

    start: datetime
    step_s: int
    load_w: np.ndarray
    pv_w: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    soc_initial: float  # fraction, clamped into [soc_min, soc_max]
    import_limit_w: np.ndarray
    export_limit_w: np.ndarray
    net_demand_cap_w: np.ndarray  # never above the import limit
    net_demand_floor_w: np.ndarray  # finite; where no floor was asked, a value the site cannot reach
    peak_import_so_far_w: float
    trade_wh: np.ndarray
    trade_price: np.ndarray
    ev_available: np.ndarray  # fraction of each slot the EV is connected, in [0, 1]
    ev_energy_needed_wh: float
    ev_max_energy_wh: float
    outdoor_temp_c: np.ndarray
    heat_demand_w: np.ndarray
    indoor_temp_c: float
    comfort_min_c: np.ndarray
    comfort_max_c: np.ndarray
    community_price_band: tuple[float, float] | None
    # The ADMM proximity term, per slot: sum of (scale * net_import_kw - target)²; zero outside a
    # negotiation (see :class:`Negotiation`).
    negotiation_scale: np.ndarray | None = None
    negotiation_target: np.ndarray | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        """Number of slots in the horizon."""
        return int(self.load_w.size)

    def slot_start(self, index: int) -> datetime:
        """Start instant of slot ``index``."""
        return self.start + timedelta(seconds=self.step_s * index)


def repair_series(name: str, values: Sequence[float] | None, n_steps: int, steps_per_day: int,
                  default: float, flags: list[str]) -> np.ndarray:
    """Return exactly ``n_steps`` finite values; NaN/inf are interpolated, a short series is
    continued with the previous day (or its last value), and each repair appends a flag."""
    if values is None:
        return np.full(n_steps, float(default))
    array = np.asarray(values, dtype=float).ravel().copy()
    if array.size == 0:
        flags.append(f"{name}:empty")
        return np.full(n_steps, float(default))
    finite = np.isfinite(array)
    if not finite.all():
        if not finite.any():
            flags.append(f"{name}:all_nan")
            return np.full(n_steps, float(default))
        flags.append(f"{name}:nan_repaired:{int((~finite).sum())}")
        index = np.arange(array.size)
        # np.interp holds the first/last finite value beyond the ends: a safe edge repair.
        array = np.interp(index, index[finite], array[finite])
    if array.size < n_steps:
        flags.append(f"{name}:short:{array.size}<{n_steps}")
        extended = np.empty(n_steps)
        extended[: array.size] = array
        for i in range(array.size, n_steps):
            # Daily persistence where a day of data exists; otherwise hold the last value.
            extended[i] = extended[i - steps_per_day] if i - steps_per_day >= 0 else extended[i - 1]
        array = extended
    return array[:n_steps]


def _clip_nonnegative(name: str, array: np.ndarray, flags: list[str]) -> np.ndarray:
    if (array < 0).any():
        flags.append(f"{name}:negative_clipped:{int((array < 0).sum())}")
        return np.maximum(array, 0.0)
    return array


def _bound_series(name: str, values: Sequence[float] | None, n_steps: int, unbounded: np.ndarray,
                  flags: list[str]) -> np.ndarray:
    """A per-slot bound of exactly ``n_steps`` values: slots without a bound (None, +-inf, NaN, past
    the end of a short series) take ``unbounded``'s value. Unlike a forecast, a bound is never
    interpolated or continued: a commitment holds only in the slots it names."""
    bound = np.array(unbounded, dtype=float)
    if values is None:
        return bound
    array = np.asarray(values, dtype=float).ravel()[:n_steps]
    if np.isnan(array).any():
        flags.append(f"{name}:nan_ignored:{int(np.isnan(array).sum())}")
    if array.size < n_steps:
        flags.append(f"{name}:short:{array.size}<{n_steps}")
    finite = np.isfinite(array)
    bound[: array.size][finite] = array[finite]
    return bound


def ev_availability(start: datetime, step_s: int, n_steps: int, session: EvSession | None) -> np.ndarray:
    """Fraction of each slot during which the EV is connected (partial slots count pro rata)."""
    available = np.zeros(n_steps)
    if session is None:
        return available
    for index in range(n_steps):
        slot_start = start + timedelta(seconds=step_s * index)
        slot_end = slot_start + timedelta(seconds=step_s)
        overlap = (min(slot_end, session.departure) - max(slot_start, session.arrival)).total_seconds()
        available[index] = min(max(overlap / step_s, 0.0), 1.0)
    return available


def prepare(inputs: PlanInputs, site: SiteConfig, n_steps: int, step_s: int) -> PreparedInputs:
    """Repair and complete ``inputs`` for a horizon of ``n_steps`` slots of ``step_s`` seconds."""
    flags: list[str] = []
    per_day = max(1, 86_400 // step_s)

    def series(name: str, values: Sequence[float] | None, default: float) -> np.ndarray:
        return repair_series(name, values, n_steps, per_day, default, flags)

    load = _clip_nonnegative("load_w", series("load_w", inputs.load_w, 0.0), flags)
    pv = _clip_nonnegative("pv_w", series("pv_w", inputs.pv_w, 0.0), flags)
    import_price = series("import_price", inputs.import_price, 0.0)
    export_price = series("export_price", inputs.export_price, 0.0)
    above = export_price > import_price
    if above.any():
        # Selling above the buying price would make simultaneous import and export pay; no
        # real tariff does that, so the feed-in price is capped at the retail price.
        flags.append(f"export_price:above_import_capped:{int(above.sum())}")
        export_price = np.minimum(export_price, import_price)

    battery = site.battery
    soc = float(inputs.soc_initial)
    if not np.isfinite(soc):
        flags.append("soc_initial:nan_replaced")
        soc = battery.soc_min
    if soc < battery.soc_min or soc > battery.soc_max:
        flags.append(f"soc_initial:clamped:{soc:.4f}")
        soc = min(max(soc, battery.soc_min), battery.soc_max)

    export_limit = series("export_limit_w", inputs.export_limit_w, site.grid.export_limit_w)
    export_limit = np.clip(export_limit, 0.0, site.grid.export_limit_w)
    import_limit = np.full(n_steps, float(site.grid.import_limit_w))
    # A cap above the fuse means nothing more than the fuse.
    net_cap = np.minimum(_bound_series("net_demand_cap_w", inputs.net_demand_cap_w, n_steps, import_limit, flags),
                         import_limit)
    net_floor = _net_floor(inputs.net_demand_floor_w, site, pv, net_cap, flags)

    trade_wh = np.zeros(n_steps)
    trade_price = np.zeros(n_steps)
    if inputs.trades is not None:
        trade_wh = series("trades.quantity_wh", inputs.trades.quantity_wh, 0.0)
        trade_price = series("trades.price_per_kwh", inputs.trades.price_per_kwh, 0.0)
        if not site.mpc.market_enabled and np.any(trade_wh != 0):
            flags.append("trades:ignored_market_disabled")
            trade_wh = np.zeros(n_steps)

    ev_available = np.zeros(n_steps)
    ev_needed = 0.0
    ev_room = 0.0
    if site.ev is not None:
        ev_available = ev_availability(inputs.start, step_s, n_steps, inputs.ev_session)
        if inputs.ev_session is not None:
            ev_room = site.ev.capacity_wh if inputs.ev_session.max_energy_wh is None else inputs.ev_session.max_energy_wh
            ev_room = max(0.0, float(ev_room)) if np.isfinite(ev_room) else site.ev.capacity_wh
            ev_needed = float(inputs.ev_session.energy_needed_wh)
            if not np.isfinite(ev_needed) or ev_needed < 0:
                flags.append("ev.energy_needed_wh:invalid_zeroed")
                ev_needed = 0.0
            if ev_needed > ev_room:
                flags.append("ev.energy_needed_wh:capped_at_room")
                ev_needed = ev_room
    elif inputs.ev_session is not None:
        flags.append("ev_session:ignored_no_ev_configured")

    heat = site.heat_pump
    outdoor = series("outdoor_temp_c", inputs.outdoor_temp_c, heat.outdoor_temp_c if heat else 10.0)
    heat_demand = _clip_nonnegative("heat_demand_w", series("heat_demand_w", inputs.heat_demand_w, 0.0), flags)
    comfort_min = series("comfort_min_c", inputs.comfort_min_c, heat.comfort_min_c if heat else 0.0)
    comfort_max = series("comfort_max_c", inputs.comfort_max_c, heat.comfort_max_c if heat else 0.0)
    comfort_max = np.maximum(comfort_max, comfort_min)
    indoor = inputs.indoor_temp_c
    if indoor is None or not np.isfinite(indoor):
        if inputs.indoor_temp_c is not None:
            flags.append("indoor_temp_c:nan_replaced")
        indoor = heat.initial_temp_c if heat else 20.0

    negotiation_scale, negotiation_target = _negotiation(inputs.negotiation, site, n_steps, step_s, flags)
    if negotiation_scale.any():
        negotiated = negotiation_scale > 0
        import_price, export_price = np.where(negotiated, 0.0, import_price), np.where(negotiated, 0.0, export_price)

    peak = float(inputs.peak_import_so_far_w)
    if not np.isfinite(peak) or peak < 0:
        flags.append("peak_import_so_far_w:invalid_zeroed")
        peak = 0.0

    return PreparedInputs(
        start=inputs.start, step_s=step_s, load_w=load, pv_w=pv,
        import_price=import_price, export_price=export_price, soc_initial=soc,
        import_limit_w=import_limit, export_limit_w=export_limit,
        net_demand_cap_w=net_cap, net_demand_floor_w=net_floor, peak_import_so_far_w=peak,
        trade_wh=trade_wh, trade_price=trade_price,
        ev_available=ev_available, ev_energy_needed_wh=ev_needed, ev_max_energy_wh=ev_room,
        outdoor_temp_c=outdoor, heat_demand_w=heat_demand, indoor_temp_c=float(indoor),
        comfort_min_c=comfort_min, comfort_max_c=comfort_max,
        community_price_band=inputs.community_price_band, negotiation_scale=negotiation_scale,
        negotiation_target=negotiation_target, flags=flags,
    )


def _net_floor(values: Sequence[float] | None, site: SiteConfig, pv_w: np.ndarray, net_cap_w: np.ndarray,
               flags: list[str]) -> np.ndarray:
    """The per-slot floor on net import, never above the cap (nor, through it, the import limit).

    Where no floor is asked the value is finite yet out of reach: the load, the EV and the heat
    pump draw >= 0, so net import never goes below -(PV + the battery's discharge); it also stays
    below the cap, so the two never meet."""
    unbounded = np.minimum(-(pv_w + site.battery.max_discharge_w), net_cap_w) - UNREACHABLE_MARGIN_W
    floor = _bound_series("net_demand_floor_w", values, pv_w.size, unbounded, flags)
    above = floor > net_cap_w
    if above.any():
        # Asked to import more than the cap (or the fuse) allows: the cap wins.
        flags.append(f"net_demand_floor_w:above_cap:{int(above.sum())}")
        floor = np.minimum(floor, net_cap_w)
    return floor


def _negotiation(negotiation: Negotiation | None, site: SiteConfig, n_steps: int, step_s: int,
                 flags: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The per-slot scale and target of the ADMM term (zeros when there is nothing to negotiate)."""
    scale, target = np.zeros(n_steps), np.zeros(n_steps)
    if negotiation is None:
        return scale, target
    values = np.asarray(negotiation.target_wh, dtype=float).ravel()
    rho = float(negotiation.rho_per_kwh2)
    if not site.mpc.market_enabled:
        flags.append("negotiation:ignored_market_disabled")
    elif not (np.isfinite(rho) and rho > 0) or not np.all(np.isfinite(values)) or negotiation.first_slot < 0:
        flags.append("negotiation:invalid_ignored")
    else:
        slots = np.arange(negotiation.first_slot, min(negotiation.first_slot + values.size, n_steps))
        root = np.sqrt(rho / 2.0)
        scale[slots] = root * step_s / 3600.0  # times net import in kW gives sqrt(rho/2) * kWh
        target[slots] = root * values[: slots.size] / 1000.0
        if slots.size < values.size:
            flags.append(f"negotiation:beyond_horizon:{values.size - slots.size}")
    return scale, target


def heat_pump_cop(site: SiteConfig, outdoor_temp_c: np.ndarray) -> np.ndarray:
    """COP per slot from the linear model around 7 degC, never below ``cop_min``."""
    heat = site.heat_pump
    if heat is None:
        return np.ones_like(outdoor_temp_c)
    return np.maximum(heat.cop_min, heat.cop_at_7c + heat.cop_slope_per_k * (outdoor_temp_c - 7.0))
