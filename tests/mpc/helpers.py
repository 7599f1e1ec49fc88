"""Shared builders for the MPC tests (real solvers, no mocks)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
from hems.mpc.inputs import EvSession, PlanInputs
from hems.mpc.site import BatteryConfig, EvConfig, GridConfig, HeatPumpConfig, MpcSettings, PvConfig, SiteConfig

START = datetime(2024, 6, 1, tzinfo=timezone.utc)


def battery(**overrides) -> BatteryConfig:
    """A 10 kWh / 5 kW battery."""
    return BatteryConfig(**{"capacity_wh": 10_000, "max_charge_w": 5_000, "max_discharge_w": 5_000, **overrides})


def full_site(**mpc) -> SiteConfig:
    """Battery + curtailable PV + EV + heat pump + demand charge + market."""
    return SiteConfig(
        battery=battery(charge_taper_start_soc=0.8, charge_w_at_full=1_000, backup_reserve_soc=0.2),
        grid=GridConfig(import_limit_w=17_000, export_limit_w=7_000, demand_charge_per_kw=0.1),
        ev=EvConfig(max_charge_w=11_000, min_charge_w=1_400), heat_pump=HeatPumpConfig(max_electric_w=3_000),
        mpc=MpcSettings(market_enabled=True, **mpc),
    )


def day_inputs(n: int = 96, step_s: int = 900, seed: int = 0, ev: bool = True) -> PlanInputs:
    """A summer day: PV bell, evening load, time-varying prices, an EV session."""
    rng = np.random.default_rng(seed)
    hours = np.arange(n) * step_s / 3600.0
    pv = np.maximum(0.0, 6_000 * np.sin((hours % 24 - 5) / 14 * np.pi)) * (0.8 + 0.2 * rng.random())
    load = 400 + 600 * np.sin(hours / 24 * 2 * np.pi) ** 2 + 100 * rng.random(n)
    import_price = 0.3 + 0.1 * np.sin(hours / 4 + rng.random())
    session = EvSession(START + timedelta(hours=17), START + timedelta(hours=31), 20_000) if ev else None
    return PlanInputs(
        start=START, load_w=load, pv_w=pv, import_price=import_price, export_price=np.full(n, 0.08),
        soc_initial=0.5, outdoor_temp_c=5 + 5 * np.sin(hours / 24 * 6), ev_session=session,
    )


def simple_site(curtailable: bool = True, export_limit_w: float = 4_000, **battery_overrides) -> SiteConfig:
    """Battery + PV only."""
    return SiteConfig(battery=battery(**battery_overrides),
                      grid=GridConfig(import_limit_w=17_000, export_limit_w=export_limit_w),
                      pv=PvConfig(curtailable=curtailable))
