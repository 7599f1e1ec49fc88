"""Planning: when to re-plan, and turning forecasts, prices and the measured state into a plan.

A plan is made at every slot boundary, when the measured SoC has drifted from the planned one
by more than ``replan_soc_deviation`` (at most every ``replan_min_interval_s``), when there is
none, and when someone asks for one (the market agent, after a new allocation or a confirmed or
cancelled commitment). The solve runs in a worker thread, so the event loop keeps polling and
controlling.

With a market, :attr:`PlanningService.market_terms` supplies the committed trades, the
community's price band and the bounds on net import (confirmed power-plant commitments) of each
plan (:class:`~hems.mpc.inputs.PlanTerms`); the inputs of the last solve are kept
(:attr:`PlanningService.last_inputs`) for the agent's bid curves, which use the same planner
through :meth:`PlanningService.run_with_planner` (one solve at a time: the planner is stateful).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeVar

from hems.mpc.inputs import PlanInputs, PlanTerms
from hems.mpc.plan import Plan, PlanStep
from hems.mpc.planner import Planner
from hems.runtime.forecasting import ForecastProvider
from hems.runtime.snapshot import Quantity, SiteSnapshot

logger = logging.getLogger(__name__)

#: (instants, timezone) -> (import prices, export prices), currency per kWh.
PriceSource = Callable[[Sequence[datetime], str], tuple[Sequence[float], Sequence[float]]]
#: (horizon start, slots, slot length s) -> what the community adds to the plan, aligned with the
#: horizon: committed trades, the (floor, cap) price band, net-import cap and floor per slot in W.
MarketTermsSource = Callable[[datetime, int, int], PlanTerms]
T = TypeVar("T")


@dataclass(frozen=True)
class PlanInForce:
    """A plan and when it was made (clock seconds)."""

    plan: Plan
    made_at_s: float
    start_s: float
    initial_soc: float  # the measured SoC the plan started from

    def step_at(self, now_s: float) -> PlanStep | None:
        """The step covering ``now_s``; None outside the horizon."""
        index = int((now_s - self.start_s) // self.plan.step_s)
        return self.plan.steps[index] if 0 <= index < len(self.plan.steps) else None

    def soc_at(self, now_s: float) -> float | None:
        """The planned SoC at ``now_s``, interpolated within the step."""
        index = int((now_s - self.start_s) // self.plan.step_s)
        if not 0 <= index < len(self.plan.steps):
            return None
        end = self.plan.steps[index].soc
        if index == 0:
            # The plan was made mid-slot from the SoC measured then; the battery runs at the
            # step's power from that moment.
            return self.initial_soc + (end - self.initial_soc) * (now_s - self.made_at_s) / self.plan.step_s
        fraction = (now_s - self.start_s - index * self.plan.step_s) / self.plan.step_s
        begin = self.plan.steps[index - 1].soc
        return begin + (end - begin) * fraction


class PlanningService:
    """Owns the planner, the forecast and the plan in force."""

    def __init__(self, planner: Planner, forecast: ForecastProvider, prices: PriceSource, timezone_name: str,
                 replan_soc_deviation: float = 0.05, replan_min_interval_s: float = 60.0) -> None:
        self.planner = planner
        self.forecast = forecast
        self._prices = prices
        self._timezone = timezone_name
        self.replan_soc_deviation = replan_soc_deviation
        self.replan_min_interval_s = replan_min_interval_s
        self.current: PlanInForce | None = None
        self.plans_made = 0
        #: The inputs of the last solve (the market agent derives its bid curves from them).
        self.last_inputs: PlanInputs | None = None
        #: Committed trades, price band and net-import bounds for each plan; None: no market.
        self.market_terms: MarketTermsSource | None = None
        self._observations: list[tuple[datetime, float, float]] = []
        self._requested: str | None = None
        self._terms = PlanTerms()  # of the plan being made
        self._planner_lock = asyncio.Lock()

    @property
    def step_s(self) -> int:
        """The planner's slot length."""
        return self.planner.step_s

    def slot_start_s(self, now_s: float) -> float:
        """Start of the slot containing ``now_s``."""
        return now_s - now_s % self.step_s

    def observe_slot(self, slot_start_s: float, load_w: float, pv_w: float) -> None:
        """A finished slot's measured averages; learned from in the next planning run's thread."""
        self._observations.append((_utc(slot_start_s), load_w, pv_w))

    def reason_to_plan(self, snapshot: SiteSnapshot, now_s: float) -> str | None:
        """Why a plan is needed now, or None."""
        current = self.current
        if current is None:
            return "no plan"
        if self._requested is not None:
            return self._requested
        if self.slot_start_s(now_s) > current.start_s:
            return "slot boundary"
        if now_s - current.made_at_s < self.replan_min_interval_s:
            return None
        measured = snapshot.value(Quantity.BATTERY_SOC)
        planned = current.soc_at(now_s)
        if measured is not None and planned is not None and abs(measured - planned) > self.replan_soc_deviation:
            return f"soc deviation {measured - planned:+.3f}"
        return None

    def request_replan(self, reason: str) -> None:
        """Plan again at the next planning cycle, whatever the other rules say."""
        self._requested = reason

    async def run_with_planner(self, function: Callable[[Planner], T]) -> T:
        """Run ``function(planner)`` in a worker thread while no plan is being made."""
        async with self._planner_lock:
            return await asyncio.to_thread(function, self.planner)

    async def plan(self, snapshot: SiteSnapshot, now_s: float) -> PlanInForce:
        """Make a plan from now's slot with the measured state; the solve runs in a thread."""
        start_s = self.slot_start_s(now_s)
        soc = snapshot.value(Quantity.BATTERY_SOC)
        soc_initial = self.planner.site.battery.soc_initial if soc is None else soc
        observations, self._observations = self._observations, []
        async with self._planner_lock:
            # Read on the event loop, at plan time: an allocation that came in before this
            # instant is in this plan; a request arriving while it is made asks for the next one.
            self._requested = None
            self._terms = PlanTerms() if self.market_terms is None else self.market_terms(
                _utc(start_s), self.planner.n_steps, self.step_s)
            plan = await asyncio.to_thread(self._plan_blocking, start_s, now_s, soc_initial, observations)
        in_force = PlanInForce(plan, now_s, start_s, soc_initial)
        self.current = in_force
        self.plans_made += 1
        return in_force

    def _plan_blocking(self, start_s: float, now_s: float, soc_initial: float,
                       observations: list[tuple[datetime, float, float]]) -> Plan:
        for slot_start, load_w, pv_w in observations:
            self.forecast.observe(slot_start, load_w, pv_w)
        start = _utc(start_s)
        steps, step_s = self.planner.n_steps, self.step_s
        forecast = self.forecast.forecast(start, steps, step_s, _utc(now_s))
        instants = [start + timedelta(seconds=step_s * index) for index in range(steps)]
        import_price, export_price = self._prices(instants, self._timezone)
        inputs = self._terms.applied_to(PlanInputs(
            start=start, load_w=list(forecast.load_w), pv_w=list(forecast.pv_w), import_price=list(import_price),
            export_price=list(export_price), soc_initial=soc_initial))
        self.last_inputs = inputs
        return self.planner.plan(inputs)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
