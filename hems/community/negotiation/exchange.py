"""Exchange ADMM: the community optimum reached by negotiation (Boyd et al. 2011, §7.3.2; markets.md §7).

Every home i holds x_i, its net import per slot of the negotiated horizon (kWh inside this module,
Wh at its edges); the retailer is party 0 with x_0 its net import *from the community* and the cost
f_0(x) = max(−λ⁻·x, −λ⁺·x) per slot (it buys the community's surplus at feed-in λ⁻ and sells its
shortfall at retail λ⁺). The community's problem is min Σ f_i(x_i) subject to Σ_{i=0..N} x_i = 0 per
slot, and exchange ADMM solves it with each home solving only its own problem:

1. the manager broadcasts round k: the mean x̄ᵏ over the N+1 parties and the scaled price uᵏ;
2. each home answers x_iᵏ⁺¹ = argmin f_i(x) + ρ/2‖x − v_i‖², v_i = x_iᵏ − x̄ᵏ − uᵏ, with x_iᵏ its own
   last answer (a home that misses a round keeps its last position, on both sides);
3. the manager updates the retailer in closed form (v = x_0ᵏ − x̄ᵏ − uᵏ; x_0 = v + λ⁻/ρ if that is > 0,
   v + λ⁺/ρ if that is < 0, else 0; per copy, see below), then x̄ᵏ⁺¹ and uᵏ⁺¹ = uᵏ + x̄ᵏ⁺¹; the
   price is π = ρ·u.

It stops when the total imbalance (N+1)·x̄ is within ``eps_primal_wh`` in every slot and the dual
residual ρ·max|Δ(x_i − x̄)| is within ``eps_dual_per_kwh``; or at the round cap; or at the time budget,
after which the caller falls back to a one-shot mechanism. The final price is clamped to [λ⁻, λ⁺].

ρ is in currency per kWh². A larger ρ balances faster but moves prices more slowly.

**The retailer as many parties.** With the retailer as one party, the rounds grew with the number of
homes (ρ = 0.2: 155 rounds for 30 homes, 671 for 300, over 2,000 for 1,000): the retailer must take
the whole community's imbalance, yet each round moves every party by only the mean imbalance x̄,
which shrinks as 1/(N+1). f_0 is convex and positively homogeneous, so splitting the retailer into M
identical parties (each with cost f_0, each taking x_0/M) is the same optimum. With M = N (``retailer
_weight`` 1) the rounds stay flat: 24, 39 and 56 rounds for 30, 300 and 1,000 homes at ρ = 0.2 (same
prices to 4 decimals; numbers from tests/community/test_exchange_admm.py's homes, bench/RESULTS.md).
The copies are one closed-form update in the manager; nothing is sent to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hems.community.negotiation.homes import WH_PER_KWH, NegotiatingHome


@dataclass(frozen=True)
class ExchangeSettings:
    """How a negotiation runs and when it stops."""

    rho_per_kwh2: float = 0.2
    max_rounds: int = 300
    eps_primal_wh: float = 2.5  # 10 W mean over a 15-minute slot
    eps_dual_per_kwh: float = 0.0002  # 0.02 ct/kWh: prices to about 0.5 % at feed-in
    budget_s: float | None = None  # wall-clock budget of the whole negotiation
    retailer_weight: float = 1.0  # retailer copies per home (see the module docstring)

    def __post_init__(self) -> None:
        for name in ("rho_per_kwh2", "eps_primal_wh", "eps_dual_per_kwh"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {self.max_rounds!r}")


@dataclass(frozen=True)
class RoundSignal:
    """What the manager broadcasts for a round: everything a home needs to answer it."""

    round: int
    mean_wh: tuple[float, ...]  # x̄ per slot
    scaled_price_kwh: tuple[float, ...]  # u per slot (π = ρ·u)
    rho_per_kwh2: float

    def target_wh(self, last_position_wh: np.ndarray) -> np.ndarray:
        """v_i = x_i − x̄ − u for a home whose last answer was ``last_position_wh``."""
        return (np.asarray(last_position_wh, dtype=float) - np.asarray(self.mean_wh)
                - np.asarray(self.scaled_price_kwh) * WH_PER_KWH)


@dataclass(frozen=True)
class RoundReport:
    """The state after a round."""

    round: int
    primal_residual_wh: float  # max over slots of |total imbalance|
    dual_residual_per_kwh: float
    answered: int  # homes whose answer to this round arrived
    converged: bool


@dataclass(frozen=True)
class ExchangeResult:
    """A finished negotiation."""

    positions_wh: dict[str, np.ndarray]  # each home's net import per slot (+ import)
    price_per_kwh: np.ndarray  # per slot, clamped to [feed-in, retail]
    retailer_net_export_wh: np.ndarray  # what the retailer delivers to the community (+) per slot
    rounds: int
    converged: bool
    stopped_by: str  # "converged", "max_rounds" or "budget"
    history: tuple[RoundReport, ...] = field(repr=False, default=())


class ExchangeCoordinator:
    """The manager's side of exchange ADMM: round state, answers, the retailer and the price.

    Answers are checked against the round they belong to: an answer to an earlier round is stale and
    ignored, a repeated answer to the current round replaces the first (the last one counts), and a
    home that does not answer keeps its last position."""

    def __init__(self, homes: Sequence[str], n_slots: int, retail_per_kwh: float | Sequence[float],
                 feed_in_per_kwh: float | Sequence[float], settings: ExchangeSettings = ExchangeSettings()) -> None:
        if len(set(homes)) != len(homes):
            raise ValueError("home names must be unique")
        self.settings = settings
        self.homes = tuple(homes)
        self.n_slots = int(n_slots)
        self.retail = np.broadcast_to(np.asarray(retail_per_kwh, dtype=float), (self.n_slots,)).copy()
        self.feed_in = np.broadcast_to(np.asarray(feed_in_per_kwh, dtype=float), (self.n_slots,)).copy()
        if np.any(self.feed_in >= self.retail):
            raise ValueError("the feed-in price must be below the retail price in every slot")
        self._positions_kwh = {home: np.zeros(self.n_slots) for home in self.homes}
        self._answered: set[str] = set()
        self._retailer_kwh = np.zeros(self.n_slots)
        self._scaled_price = np.zeros(self.n_slots)
        self._mean_kwh = np.zeros(self.n_slots)
        self.round = 0
        self.history: list[RoundReport] = []

    @property
    def retailer_copies(self) -> int:
        """How many identical parties the retailer is split into (see the module docstring)."""
        return max(1, round(self.settings.retailer_weight * len(self.homes)))

    @property
    def parties(self) -> int:
        """Homes plus the retailer's copies."""
        return len(self.homes) + self.retailer_copies

    def signal(self) -> RoundSignal:
        """The broadcast of the current round."""
        return RoundSignal(self.round, tuple(self._mean_kwh * WH_PER_KWH), tuple(self._scaled_price),
                           self.settings.rho_per_kwh2)

    def receive(self, home: str, round_number: int, position_wh: Sequence[float]) -> bool:
        """Record a home's answer to ``round_number``; False (and nothing changes) when the home is
        unknown, the round is not the current one, or the position is malformed."""
        if home not in self._positions_kwh or round_number != self.round:
            return False
        position = np.asarray(position_wh, dtype=float)
        if position.shape != (self.n_slots,) or not np.all(np.isfinite(position)):
            return False
        self._positions_kwh[home] = position / WH_PER_KWH
        self._answered.add(home)
        return True

    @property
    def answered_all(self) -> bool:
        """Every home has answered the open round."""
        return len(self._answered) == len(self.homes)

    def position_wh(self, home: str) -> np.ndarray:
        """The position the manager holds for ``home`` (its last answer that arrived)."""
        return self._positions_kwh[home] * WH_PER_KWH

    def advance(self) -> RoundReport:
        """Close the current round: update the retailer, the mean and the price; report residuals."""
        rho = self.settings.rho_per_kwh2
        deviation_before = self._deviations()
        v = self._retailer_kwh - self._mean_kwh - self._scaled_price
        self._retailer_kwh = np.where(v + self.feed_in / rho > 0, v + self.feed_in / rho,
                                      np.where(v + self.retail / rho < 0, v + self.retail / rho, 0.0))
        total = self.retailer_copies * self._retailer_kwh + sum(self._positions_kwh.values())
        self._mean_kwh = total / self.parties
        self._scaled_price = self._scaled_price + self._mean_kwh
        dual = rho * float(np.max(np.abs(self._deviations() - deviation_before)))
        primal_wh = float(np.max(np.abs(total))) * WH_PER_KWH
        converged = primal_wh <= self.settings.eps_primal_wh and dual <= self.settings.eps_dual_per_kwh
        report = RoundReport(self.round, primal_wh, dual, len(self._answered), converged)
        self.history.append(report)
        self.round += 1
        self._answered = set()
        return report

    def _deviations(self) -> np.ndarray:
        stacked = np.vstack([self._retailer_kwh, *self._positions_kwh.values()])
        return stacked - self._mean_kwh

    def result(self, stopped_by: str) -> ExchangeResult:
        """Positions and prices now. The retailer takes whatever imbalance is left, so the
        positions balance exactly, and the price is clamped into [feed-in, retail]."""
        price = np.clip(self.settings.rho_per_kwh2 * self._scaled_price, self.feed_in, self.retail)
        positions = {home: value * WH_PER_KWH for home, value in self._positions_kwh.items()}
        retailer_export = sum(positions.values()) if positions else np.zeros(self.n_slots)
        return ExchangeResult(positions, price, np.asarray(retailer_export, dtype=float), self.round,
                              stopped_by == "converged", stopped_by, tuple(self.history))


def negotiate_exchange(homes: Sequence[NegotiatingHome], n_slots: int, retail_per_kwh: float | Sequence[float],
                       feed_in_per_kwh: float | Sequence[float], settings: ExchangeSettings = ExchangeSettings(),
                       silent: Callable[[int, str], bool] | None = None,
                       clock: Callable[[], float] = time.monotonic) -> ExchangeResult:
    """Run a whole negotiation in-process (tests, benchmarks, the offline tool). ``silent(round,
    home)`` True drops that home's answer in that round, as a lost message would."""
    coordinator = ExchangeCoordinator([home.home for home in homes], n_slots, retail_per_kwh, feed_in_per_kwh,
                                      settings)
    last_answer = {home.home: np.zeros(n_slots) for home in homes}
    started = clock()
    while True:
        signal = coordinator.signal()
        for home in homes:
            answer = home.best_response(signal.target_wh(last_answer[home.home]), signal.rho_per_kwh2)
            last_answer[home.home] = answer
            if silent is None or not silent(signal.round, home.home):
                coordinator.receive(home.home, signal.round, answer)
            else:
                # The home did answer, but the manager never saw it: the manager keeps the old
                # position, and so must the home's own bookkeeping to stay consistent.
                last_answer[home.home] = coordinator.position_wh(home.home)
        report = coordinator.advance()
        if report.converged:
            return coordinator.result("converged")
        if coordinator.round >= settings.max_rounds:
            return coordinator.result("max_rounds")
        if settings.budget_s is not None and clock() - started > settings.budget_s:
            return coordinator.result("budget")
